#!/usr/bin/env python3
"""Load `ckpt convert`'s HF output in `transformers` and compare its logits with llama.cpp.

Converts SmolLM2 (Q4_1 GGUF) to an HF directory (f32, with config.json, tokenizer.json,
tokenizer_config.json) and to an f32 GGUF, then on a few prompts:
  * the HF tokenizer (AutoTokenizer) must give llama.cpp's ids;
  * transformers (AutoModelForCausalLM, CPU, float32) logits at every position are compared
    with llama.cpp's on the f32 GGUF with an f32 KV cache (same weights: differences are
    float summation order only; tolerance 1e-3 absolute, top-1 agreement 100%) and on the original Q4_1 GGUF
    (llama.cpp quantizes activations to 8 bits for quantized weights: differences up to
    about a logit, top-1 agreement >= 90%).
Ends with `check_transformers: N passed, M failed`.

Needs llama-cpp-python, torch and transformers from PyPI (not part of CI).

    python3 Tools/reference/check_transformers.py [--ckpt BIN]
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import llama_cpp
import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO = Path(__file__).resolve().parents[2]
PROMPTS = [
    "The Debian package manager keeps track of installed software and",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "In 1969, the first humans landed on the Moon. The mission was called",
    "Compressing a large language model by pruning attention heads and MLP neurons",
]


def llama_logits(path, ids):
    # KV cache in f32 (llama.cpp's default is f16), so that f32 weights compare exactly.
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=2, logits_all=True, verbose=False,
                          type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    llm.eval(ids)
    return np.array(llm.scores[:len(ids)], dtype=np.float64), llm


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--gguf", default=str(REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="ckpt-hf-") as tmp:
        hf, f32 = Path(tmp) / "hf", Path(tmp) / "f32.gguf"
        subprocess.run([args.ckpt, "convert", args.gguf, str(hf), "--dtype", "f32"], check=True, stderr=subprocess.DEVNULL)
        subprocess.run([args.ckpt, "convert", args.gguf, str(f32), "--dtype", "f32"], check=True, stderr=subprocess.DEVNULL)
        tokenizer = AutoTokenizer.from_pretrained(str(hf))
        model = AutoModelForCausalLM.from_pretrained(str(hf), dtype=torch.float32)
        model.eval()
        rows = []
        for prompt in PROMPTS:
            ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                hf_logits = model(torch.tensor([ids])).logits[0].double().numpy()
            for label, path in (("f32 GGUF", f32), ("original Q4_1", Path(args.gguf))):
                ref, llm = llama_logits(path, ids)
                same_ids = llm.tokenize(prompt.encode(), add_bos=False, special=False) == ids
                diff = np.abs(hf_logits - ref)
                top1 = float(np.mean(hf_logits.argmax(-1) == ref.argmax(-1)))
                rows.append((label, prompt, len(ids), same_ids, diff.max(), diff.mean(), top1))
        print(f"{'llama.cpp on':<15}{'tokens':>7}{'same ids':>9}{'max |diff|':>12}{'mean |diff|':>13}{'top-1':>7}  prompt")
        for label, prompt, n, same, mx, mean, top1 in rows:
            print(f"{label:<15}{n:>7}{str(same):>9}{mx:>12.4f}{mean:>13.5f}{top1:>7.2f}  {prompt[:40]!r}")
        exact = [r for r in rows if r[0] == "f32 GGUF"]
        quant = [r for r in rows if r[0] != "f32 GGUF"]
        checks = [
            ("HF tokenizer ids equal llama.cpp's", all(r[3] for r in rows)),
            ("f32: max |diff| <= 1e-3 and top-1 100%", all(r[4] <= 1e-3 and r[6] == 1.0 for r in exact)),
            ("Q4_1: top-1 agreement >= 90% overall", np.mean([r[6] for r in quant]) >= 0.9),
        ]
        for name, ok in checks:
            print(f"{'PASS' if ok else 'FAIL'}  {name}")
            passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
    print(f"check_transformers: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
