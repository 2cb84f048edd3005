#!/usr/bin/env python3
"""Cross-checks `ckpt distill` checkpoints with the independent reader.

Trains the tiny llama fixture against a cache of itself: once at learning rate 0 (the
checkpoint's weights must equal the student file's tensors, which checks the layout and
tensor order), then for real with f32 and with 8-bit optimizer state (every CRC-32C,
size and decoded moment must check out, the weights must have moved, and the decoded 8-bit
moments must agree with the f32 run's).

    check_distill_checkpoint.py [--ckpt .build/debug/ckpt]
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Tools/reference"))
import read_distill_checkpoint as reader  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=str(REPO / ".build/debug/ckpt"))
    a = ap.parse_args()
    model = REPO / "Tests/Fixtures/engine/tiny-llama.gguf"
    text = REPO / "Tests/Fixtures/logits/text.txt"
    with tempfile.TemporaryDirectory(prefix="ckpt-distill-check-") as tmp:
        tmp = Path(tmp)
        subprocess.run([a.ckpt, "logits", "build", "--model", model, "--file", text, "--seq", "32", "-o", tmp / "t.cache"], check=True, capture_output=True)
        for name, lr, state in [("lr 0", "0", "f32"), ("f32 state", "3e-3", "f32"), ("8-bit state", "3e-3", "8bit")]:
            out = tmp / f"{name.replace(' ', '-')}.gguf"
            subprocess.run([a.ckpt, "distill", "--student", model, "--cache", tmp / "t.cache", "--steps", "4", "--batch", "2", "--lr", lr,
                            "--warmup", "1", "--checkpoint-every", "2", "--optimizer-state", state, "--dtype", "f32", "-o", out],
                           check=True, capture_output=True)
            ck = out.with_name(out.name + ".checkpoints") / "step-00000002"
            st, arrays = reader.read(ck)
            m, v = reader.moments(st, arrays)
            if not (np.isfinite(m).all() and np.isfinite(v).all() and (v >= 0).all() and np.abs(m).max() > 0):
                sys.exit(f"distill checkpoint {name}: moments not finite or all zero")
            w = np.frombuffer(arrays["weights.f32"], "<f4")
            import gguf
            src = np.concatenate([np.asarray(t.data, np.float32).reshape(-1) for t in gguf.GGUFReader(model).tensors
                                  if t.name in {x["name"] for x in st["tensors"]}])
            if lr == "0":
                subprocess.run([sys.executable, REPO / "Tools/reference/read_distill_checkpoint.py", ck, "--compare", model], check=True)
            elif np.array_equal(np.sort(w), np.sort(src)):
                sys.exit(f"distill checkpoint {name}: weights did not move")
            if name == "f32 state":
                reference = (m, v)
            if name == "8-bit state":
                # The decoded 8-bit moments against the f32 run's (same data, nearly the same weights).
                for got, want, what in [(m, reference[0], "m"), (np.sqrt(v), np.sqrt(reference[1]), "sqrt v")]:
                    err = np.linalg.norm(got - want) / np.linalg.norm(want)
                    if not err < 0.15:
                        sys.exit(f"distill checkpoint 8-bit state: decoded {what} is {err:.1%} off the f32 run's")
                    print(f"  decoded 8-bit {what} within {err:.1%} of the f32 run's")
            print(f"distill checkpoint {name}: {st['parameters']} parameters, {st['optimizer_state']} state, "
                  f"CRCs, sizes and decoded moments check out")


if __name__ == "__main__":
    main()
