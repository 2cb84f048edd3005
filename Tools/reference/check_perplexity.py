#!/usr/bin/env python3
"""Perplexity of `ckpt convert` outputs in llama.cpp, against the original model.

Converts SmolLM2-135M (Q4_1 GGUF) with ckpt to GGUF f32, q8_0, q4_1 and q4_k (GGUF to
GGUF: the tokenizer keys travel with it), then runs each file in llama.cpp
(llama-cpp-python) over the same chunks of the corpus hold-out and reports perplexity
the way llama-perplexity does: non-overlapping chunks of --ctx tokens, each scored on
its second half (positions ctx/2 … ctx-2 predicting the next token).

The f32 file is what GGUF -> HF (f32) -> GGUF (f32) gives too: ConversionTests checks
that the two are identical tensor for tensor. Target from the issue: f32 within 0.5% of
the original's perplexity (llama.cpp quantizes activations to 8 bits for quantized
weights, so even an exact f32 copy differs by about 0.15%).

Text: ../shared/corpus/train.txt, from the first blank line after 90% of its bytes (the
hold-out), --chunks chunks of --ctx tokens. Ends with `check_perplexity: N passed, M failed`.

    python3 Tools/reference/check_perplexity.py [--ckpt BIN] [--chunks 16] [--ctx 512]
"""

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import llama_cpp
import numpy as np

REPO = Path(__file__).resolve().parents[2]


def holdout(corpus: Path):
    data = corpus.read_bytes()
    start = data.find(b"\n\n", int(len(data) * 0.9)) + 2
    return data[start:].decode("utf-8", errors="replace"), start, len(data)


def perplexity(model_path, text, ctx, chunks):
    llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=ctx, n_batch=ctx, n_threads=2, logits_all=True, verbose=False)
    tokens = llm.tokenize(text.encode(), add_bos=False, special=False)
    add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
    nll, count = 0.0, 0
    for c in range(chunks):
        chunk = list(tokens[c * ctx:(c + 1) * ctx])
        if len(chunk) < ctx:
            break
        if add_bos:
            chunk[0] = llm.token_bos()
        llm.reset()
        llm.eval(chunk)
        logits = np.array(llm.scores[:ctx], dtype=np.float64)
        for pos in range(ctx // 2, ctx - 1):
            row = logits[pos]
            m = row.max()
            logz = m + math.log(np.exp(row - m).sum())
            nll += logz - row[chunk[pos + 1]]
            count += 1
    return math.exp(nll / count), count


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--gguf", default=str(REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--corpus", default=str(REPO.parent / "shared/corpus/train.txt"))
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=512)
    args = ap.parse_args()
    text, start, end = holdout(Path(args.corpus))
    print(f"text: {args.corpus} bytes {start}..{end} (hold-out), {args.chunks} chunks of {args.ctx} tokens, second halves scored")
    base, scored = perplexity(args.gguf, text, args.ctx, args.chunks)
    print(f"{'model':<28}{'ppl':>10}{'vs original':>13}")
    print(f"{'original Q4_1':<28}{base:>10.4f}{'':>13}")
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="ckpt-ppl-") as tmp:
        # GGUF -> HF (f32, with tokenizer.json) -> GGUF (f32): the round trip the issue names.
        hf = Path(tmp) / "hf"
        subprocess.run([args.ckpt, "convert", args.gguf, str(hf), "--dtype", "f32"], check=True, stderr=subprocess.DEVNULL)
        for dtype in ("hf-roundtrip", "f32", "q8_0", "q4_1", "q4_k"):
            out = Path(tmp) / f"{dtype}.gguf"
            source = str(hf) if dtype == "hf-roundtrip" else args.gguf
            subprocess.run([args.ckpt, "convert", source, str(out), "--dtype", "f32" if dtype == "hf-roundtrip" else dtype],
                           check=True, stderr=subprocess.DEVNULL)
            ppl, _ = perplexity(out, text, args.ctx, args.chunks)
            change = (ppl / base - 1) * 100
            verdict = ""
            if dtype in ("f32", "hf-roundtrip"):
                ok = abs(change) <= 0.5
                passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
                verdict = f"  (target within 0.5%) {'PASS' if ok else 'FAIL'}"
            label = "GGUF -> HF f32 -> GGUF f32" if dtype == "hf-roundtrip" else "ckpt convert --dtype " + dtype
            print(f"{label:<28}{ppl:>10.4f}{change:>+12.2f}%{verdict}")
    print(f"{scored} positions scored per model")
    print(f"check_perplexity: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
