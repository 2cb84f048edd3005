#!/usr/bin/env python3
"""Cross-checks ckpt's logit-cache writer with the independent reader.

Builds caches with the given ckpt binary (topk and sample, zstd and lz4, the tiny llama
fixture and the real SmolLM2 with its 49152-token vocabulary), decodes each with
Tools/reference/read_logit_cache.py and requires its records to equal `ckpt logits dump`
byte for byte.

    check_logit_cache.py [--ckpt .build/debug/ckpt]
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Tools/reference"))
import read_logit_cache  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=str(REPO / ".build/debug/ckpt"))
    a = ap.parse_args()
    text = REPO / "Tests/Fixtures/logits/text.txt"
    cases = [
        ("tiny topk zstd", REPO / "Tests/Fixtures/engine/tiny-llama.gguf", ["--seq", "32", "--encoding", "topk", "--k", "8", "--chunk-sequences", "5"]),
        ("tiny sample lz4", REPO / "Tests/Fixtures/engine/tiny-llama.gguf", ["--seq", "32", "--draws", "32", "--codec", "lz4", "--chunk-sequences", "4"]),
        ("smollm2 topk", REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf", ["--seq", "64", "--encoding", "topk", "--k", "16", "--sequences", "3"]),
        ("smollm2 sample", REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf", ["--seq", "64", "--draws", "64", "--temperature", "1.5", "--sequences", "3"]),
    ]
    failed = 0
    with tempfile.TemporaryDirectory(prefix="ckpt-logits-check-") as tmp:
        for name, model, opts in cases:
            cache = Path(tmp) / (name.replace(" ", "-") + ".cache")
            subprocess.run([a.ckpt, "logits", "build", "--model", str(model), "--file", str(text), "-o", str(cache)] + opts,
                           check=True, capture_output=True)
            ours = subprocess.run([a.ckpt, "logits", "dump", str(cache), "--jsonl"], check=True, capture_output=True, text=True).stdout
            data, header, entries = read_logit_cache.read(cache)
            import json
            theirs = "".join(json.dumps(r) + "\n" for e in entries for r in read_logit_cache.records(data, header, e))
            n = ours.count("\n")
            if ours == theirs and n > 0:
                print(f"logit cache {name}: {n} records, ckpt dump == independent reader")
            else:
                failed += 1
                print(f"logit cache {name}: MISMATCH ({n} records from ckpt, {theirs.count(chr(10))} from the reader)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
