#!/usr/bin/env python3
"""Reference ids for Mistral-NeMo's Tekken pre-tokenizer on SmolLM2's vocabulary.

The `tokenizers` library runs the regex llama.cpp uses for LLAMA_VOCAB_PRE_TYPE_TEKKEN
(llama-vocab.cpp: the case classes as "a letter that is not a-z" / "not A-Z"), then
byte-level BPE with ignore_merges, as llama.cpp sets for tekken. Writes
Tests/Fixtures/tokenizer/smollm2-as-tekken.{corpus300k.ids.u16,awkward.json}: the first
300 kB of the corpus and the awkward inputs of make_tokenizer_fixtures.py.

    ckpt tokenize --model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --export-hf /tmp/smol-hf
    python3 Tools/reference/make_tekken_fixture.py /tmp/smol-hf/tokenizer.json
"""

import json
import sys
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "Tests/Fixtures/tokenizer"
LLAMA_CPP_TEKKEN = (r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+"
                    r"((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def awkward_inputs():
    src = (REPO / "Tools/reference/make_tokenizer_fixtures.py").read_text()
    start = src.index("AWKWARD = [") + len("AWKWARD = ")
    return eval(src[start:src.index("]\nINVALID") + 1])


def main():
    tok = json.loads(Path(sys.argv[1]).read_text())
    tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA_CPP_TEKKEN}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    tok["model"]["ignore_merges"] = True
    tok["normalizer"] = None
    t = Tokenizer.from_str(json.dumps(tok))
    head = (REPO / "Tests/Fixtures/corpus/train.txt").read_bytes()[:300_000].decode("utf-8", errors="ignore")
    ids = t.encode(head, add_special_tokens=False).ids
    (OUT / "smollm2-as-tekken.corpus300k.ids.u16").write_bytes(np.array(ids, dtype="<u2").tobytes())
    cases = [{"bytes": s.encode().hex(), "ids": t.encode(s, add_special_tokens=False).ids} for s in awkward_inputs()]
    (OUT / "smollm2-as-tekken.awkward.json").write_text(
        json.dumps({"reference": "tokenizers with llama.cpp's tekken regex", "cases": cases}, indent=0) + "\n")
    print(f"tekken: {len(ids)} ids for the first 300 kB, {len(cases)} awkward cases")


if __name__ == "__main__":
    main()
