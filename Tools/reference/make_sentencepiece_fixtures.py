#!/usr/bin/env python3
"""Reference token ids from llama.cpp for SentencePiece vocabularies, and for invalid UTF-8.

What: no SentencePiece GGUF model is on this machine, so this trains two small ones on
../shared/corpus/train.txt with the `sentencepiece` package (4,000 pieces each):
  - a BPE model with byte fallback, Llama-style settings (llama.cpp's LLAMA_VOCAB_TYPE_SPM,
    GGUF tokenizer.ggml.model "llama");
  - a unigram model with T5-style settings and the nmt_nfkc normalizer (LLAMA_VOCAB_TYPE_UGM,
    GGUF tokenizer.ggml.model "t5", with tokenizer.ggml.precompiled_charsmap);
converts each to a vocab-only GGUF the way llama.cpp's convert_hf_to_gguf.py does
(`_create_vocab_sentencepiece` / T5Model.set_vocab: tokens, scores, token types NORMAL /
UNKNOWN / CONTROL / USER_DEFINED / BYTE, special ids, add_space_prefix …; architecture
"llama" with the few hyperparameters llama.cpp reads before the vocabulary), and records
the ids llama.cpp gives (llama-cpp-python, vocab_only=True, tokenize(add_bos=False)).

Writes Tests/Fixtures/tokenizer/spm/:
  spm-bpe.gguf, spm-unigram.gguf         the vocab-only GGUFs (no tensors)
  {spm-bpe,spm-unigram}.corpus20k.ids.u16  ids of the first 20,000 bytes of the corpus (cut back
                                         to a whole UTF-8 character), little-endian uint16
  {spm-bpe,spm-unigram}.awkward.json      awkward inputs as hex bytes with llama.cpp's ids, for
                                         special=False and special=True, and (BPE) again with
                                         tokenizer.ggml.add_space_prefix overridden to false
and Tests/Fixtures/tokenizer/invalid-utf8.json: invalid UTF-8 byte strings with llama.cpp's ids
for SmolLM2's byte-level BPE vocabulary (.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf) and
for both SentencePiece fixtures.

How:
    pip install sentencepiece protobuf   # plus llama-cpp-python, gguf, numpy
    python3 Tools/reference/make_sentencepiece_fixtures.py

Deterministic: training is single-threaded with a fixed seed on a fixed corpus, and the GGUF
writer orders keys as written here, so a rerun reproduces every file byte for byte (the script
prints SHA-256 sums to compare).
"""

import hashlib
import json
import tempfile
from pathlib import Path

import gguf
import llama_cpp
import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "Tests/Fixtures/tokenizer/spm"
CORPUS = REPO.parent / "shared/corpus/train.txt"
SMOLLM2 = REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"

USER_DEFINED = ["<user>", "<bot>"]          # added tokens that are not special (USER_DEFINED in GGUF)
CONTROL = ["<|im_start|>", "<|im_end|>"]    # sentencepiece control symbols (CONTROL in GGUF)

AWKWARD = [
    "Hello world", " leading space", "trailing space ", "  two  spaces   three", "\n\n\nnewlines\n \n",
    "\t tabs\tand\r\nCRLF", "emoji 🤖🚀 and 👩‍👩‍👧 family", "CJK: 日本語のテキスト 中文 한국어", "digits 1234567890 3.14159 1e-5",
    "contractions: don't, I'll, we've, she's, they're, I'd", "URL https://example.com/a?b=c&d=e#f", "ümlaut café naïve",
    "x" * 300, " " * 64 + "end", "mixed\u00a0nbsp\u2028line sep", "", " ", "  ", "a", "\n", "aaaaaaa", "abababab",
    "Greek αβγ Cyrillic жзи Arabic مرحبا Hindi नमस्ते", "e\u0301 combining, ﬁ ligature, Ｆｕｌｌｗｉｄｔｈ, ① ², ℌ",
    "zero\u200bwidth\ufeffbom", "control \x00\x01\x1f\x7f chars", "▁ already escaped ▁▁x", "<0x41> spelled byte token",
    "<s>text</s> and <unk> inside", "<|im_start|>user\nhi<|im_end|>\n", "<user>question<bot>answer",
    "x<user> <user>  <bot>y", "<s><s></s>", "The Debian system is a very powerful computing platform.",
    "trailing newline\n", "   ", "😀" * 5, "apt-get install foo-bar_baz.deb # comment", "\u3000ideographic space\u3000",
]

INVALID = [
    b"\x80", b"a\x80b", b"\xbf\xbf\xbf", b"lone \x80\x81\x82 continuations",
    b"\xc3", b"x\xc3 y", b"\xc3\x28 broken pair",
    b"\xe2\x82", b"cut \xe2\x82", b"\xe2\x82x",
    b"\xf0\x9f\x98", b"\xf0\x9f\x98 end", b"\xf0\x9f",
    b"\xc0\x80", b"\xc1\xbf", b"over\xe0\x80\xaflong", b"\xf0\x80\x80\xaf",
    b"\xed\xa0\x80 surrogate", b"\xed\xbf\xbf",
    b"\xff", b"bad \xff byte", b"ab\xffcdef", b"\xfe\xff", b"\xf8\x88\x80\x80\x80",
    b"end\xe2", b"\xe2\x96", b" \xe2\x96\x81\xe2\x96",
]
# Code points above U+10FFFF (F4 90.., F5-F7 leads with continuations) pass llama.cpp's decoder
# but make its byte-level BPE path throw from unicode_cpt_to_utf8; they are left out.


def corpus_head(n: int) -> bytes:
    head = CORPUS.read_bytes()[:n]
    while True:
        try:
            head.decode("utf-8")
            return head
        except UnicodeDecodeError:
            head = head[:-1]


def train(tmp: Path, kind: str) -> model_pb2.ModelProto:
    spm.set_random_generator_seed(1234)
    common = dict(input=str(CORPUS), model_prefix=str(tmp / kind), vocab_size=4000, num_threads=1,
                  user_defined_symbols=USER_DEFINED, control_symbols=CONTROL, minloglevel=2)
    if kind == "bpe":
        # Llama's settings: byte fallback, digits split, whitespace-only pieces, no normalization.
        spm.SentencePieceTrainer.train(model_type="bpe", byte_fallback=True, split_digits=True,
                                       allow_whitespace_only_pieces=True, remove_extra_whitespaces=False,
                                       normalization_rule_name="identity", **common)
    else:
        # T5's layout: pad 0, eos 1, unk 2, no BOS; nmt_nfkc normalization, dummy prefix, extra spaces removed.
        spm.SentencePieceTrainer.train(model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, **common)
    proto = model_pb2.ModelProto()
    proto.ParseFromString((tmp / f"{kind}.model").read_bytes())
    return proto


def write_gguf(path: Path, tmp: Path, kind: str, proto: model_pb2.ModelProto) -> None:
    sp = spm.SentencePieceProcessor(model_file=str(tmp / f"{kind}.model"))
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        # as convert_hf_to_gguf.py: NORMAL unless unknown / control / unused / byte
        t = gguf.TokenType.NORMAL
        if sp.IsUnknown(i):
            t = gguf.TokenType.UNKNOWN
        elif sp.IsControl(i):
            t = gguf.TokenType.CONTROL
        elif sp.IsUnused(i):
            t = gguf.TokenType.UNUSED
        elif sp.IsByte(i):
            t = gguf.TokenType.BYTE
        score = sp.GetScore(i)
        piece = sp.IdToPiece(i)
        if piece in USER_DEFINED:
            # an HF tokenizer_config.json added token with special=false (added_tokens.json for T5)
            t, score = gguf.TokenType.USER_DEFINED, -1000.0
        tokens.append(piece.encode("utf-8"))
        scores.append(score)
        types.append(t)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(f"sentencepiece-{kind}-fixture")
    w.add_context_length(128)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(1)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("llama" if kind == "bpe" else "t5")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    if kind == "bpe":
        w.add_bos_token_id(sp.bos_id())
        w.add_eos_token_id(sp.eos_id())
        w.add_unk_token_id(sp.unk_id())
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)
    else:
        norm = proto.normalizer_spec
        w.add_add_space_prefix(norm.add_dummy_prefix)
        w.add_remove_extra_whitespaces(norm.remove_extra_whitespaces)
        w.add_precompiled_charsmap(norm.precompiled_charsmap)
        w.add_eos_token_id(sp.eos_id())
        w.add_unk_token_id(sp.unk_id())
        w.add_pad_token_id(sp.pad_id())
        w.add_add_bos_token(False)
        w.add_add_eos_token(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()


def load(path: Path, **overrides) -> llama_cpp.Llama:
    return llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False, kv_overrides=overrides or None)


def cases(llm: llama_cpp.Llama, inputs: list[bytes]) -> list[dict]:
    return [{"bytes": b.hex(),
             "ids": llm.tokenize(b, add_bos=False, special=False),
             "special_ids": llm.tokenize(b, add_bos=False, special=True)} for b in inputs]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    head = corpus_head(20_000)
    awkward = [s.encode() for s in AWKWARD]
    invalid = {"llama_cpp_python": llama_cpp.__version__, "inputs": [b.hex() for b in INVALID], "ids": {}}
    written = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for kind in ("bpe", "unigram"):
            proto = train(tmp, kind)
            path = OUT / f"spm-{kind}.gguf"
            write_gguf(path, tmp, kind, proto)
            llm = load(path)
            ids = llm.tokenize(head, add_bos=False, special=False)
            (OUT / f"spm-{kind}.corpus20k.ids.u16").write_bytes(np.array(ids, dtype="<u2").tobytes())
            fixture = {"llama_cpp_python": llama_cpp.__version__, "corpus_bytes": len(head), "cases": cases(llm, awkward)}
            if kind == "bpe":
                fixture["no_space_prefix_cases"] = cases(load(path, **{"tokenizer.ggml.add_space_prefix": False}), awkward)
            (OUT / f"spm-{kind}.awkward.json").write_text(json.dumps(fixture, indent=0, ensure_ascii=True) + "\n")
            invalid["ids"][f"spm-{kind}"] = [{"ids": c["ids"], "special_ids": c["special_ids"]} for c in cases(llm, INVALID)]
            written += [path, OUT / f"spm-{kind}.corpus20k.ids.u16", OUT / f"spm-{kind}.awkward.json"]
            print(f"{kind}: {len(ids)} corpus ids for {len(head)} bytes, {len(awkward)} awkward cases")
    smol = load(SMOLLM2)
    invalid["ids"]["smollm2"] = [{"ids": c["ids"], "special_ids": c["special_ids"]} for c in cases(smol, INVALID)]
    path = OUT.parent / "invalid-utf8.json"
    path.write_text(json.dumps(invalid, indent=0) + "\n")
    written.append(path)
    for p in written:
        print(f"{sha(p)}  {p.relative_to(REPO)} ({p.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
