#!/usr/bin/env python3
"""Reference token ids from llama.cpp for the SmolLM2 tokenizer (needs llama-cpp-python).

Writes Tests/Fixtures/tokenizer/:
  smollm2-corpus.ids.u16   llama.cpp's ids for the whole of ../shared/corpus/train.txt
                           (tokenize(text, add_bos=False, special=False)), little-endian uint16
  smollm2-awkward.json     awkward inputs (emoji, CJK, runs of spaces and newlines, digits,
                           contractions, invalid UTF-8 bytes) as hex bytes, with llama.cpp's ids
  smollm2-as-{llama-bpe,qwen2}.*  the same vocabulary with tokenizer.ggml.pre overridden:
                           Llama 3's and Qwen2's pre-tokenizers, on the first 300 kB and the
                           awkward inputs

    python3 Tools/reference/make_tokenizer_fixtures.py
"""

import json
from pathlib import Path

import llama_cpp
import numpy as np

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "Tests/Fixtures/tokenizer"

AWKWARD = [
    "Hello world", " leading space", "trailing space ", "  two  spaces   three", "\n\n\nnewlines\n \n",
    "\t tabs\tand\r\nCRLF", "emoji 🤖🚀 and 👩‍👩‍👧 family", "CJK: 日本語のテキスト 中文 한국어", "digits 1234567890 3.14159 1e-5",
    "contractions: don't, I'll, we've, she's, they're, I'd", "URL https://example.com/a?b=c&d=e#f", "ümlaut café naïve",
    "x" * 300, " " * 64 + "end", "mixed\u00a0nbsp\u2028line sep", "<|im_start|>not special<|im_end|>", "",
    "CamelCaseWord HTTPServer iPhone XMLHttpRequest McDonald's", "ÉCOLE école Ñandú ΑΒΓαβγ ǅungla", "path/to/file.txt\n//comment /\n/",
]
INVALID = [b"bad \xff byte", b"\xc3\x28 broken pair", b"cut \xe2\x82", b"\x80\x81\x82 lone continuations"]


def main():
    llm = llama_cpp.Llama(model_path=str(REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"), vocab_only=True, verbose=False)
    OUT.mkdir(parents=True, exist_ok=True)
    text = (REPO.parent / "shared/corpus/train.txt").read_bytes()
    ids = llm.tokenize(text, add_bos=False, special=False)
    (OUT / "smollm2-corpus.ids.u16").write_bytes(np.array(ids, dtype="<u2").tobytes())
    cases = [{"bytes": s.encode().hex(), "valid_utf8": True, "ids": llm.tokenize(s.encode(), add_bos=False, special=False)} for s in AWKWARD]
    cases += [{"bytes": b.hex(), "valid_utf8": False, "ids": llm.tokenize(b, add_bos=False, special=False)} for b in INVALID]
    (OUT / "smollm2-awkward.json").write_text(json.dumps({"llama_cpp_python": llama_cpp.__version__, "cases": cases}, indent=0) + "\n")
    print(f"{len(ids)} corpus ids, {len(cases)} awkward cases written to {OUT}")
    # The other pre-tokenizers, on the same vocabulary: llama.cpp with tokenizer.ggml.pre
    # overridden tokenizes with Llama 3's and Qwen2's rules (the first 300 kB of the corpus).
    head = text[:300_000].decode("utf-8", errors="ignore").encode()
    for pre in ("llama-bpe", "qwen2", "tekken"):
        other = llama_cpp.Llama(model_path=str(REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"), vocab_only=True,
                                verbose=False, kv_overrides={"tokenizer.ggml.pre": pre})
        ids = other.tokenize(head, add_bos=False, special=False)
        (OUT / f"smollm2-as-{pre}.corpus300k.ids.u16").write_bytes(np.array(ids, dtype="<u2").tobytes())
        awkward = [{"bytes": s.encode().hex(), "ids": other.tokenize(s.encode(), add_bos=False, special=False)} for s in AWKWARD]
        (OUT / f"smollm2-as-{pre}.awkward.json").write_text(json.dumps({"cases": awkward}, indent=0) + "\n")
        print(f"{pre}: {len(ids)} ids for the first 300 kB, {len(awkward)} awkward cases")


if __name__ == "__main__":
    main()
