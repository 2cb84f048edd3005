#!/usr/bin/env python3
"""Importance and pruning of a 15B-shape model on a small box: peak RSS and throughput.

Needs a filled 15B-shape checkpoint (Tools/make_big_checkpoint.py DIR --fill-all: bf16,
48 layers, hidden 5120, FFN 13824, 40/8 heads, vocab 152064, ~29.5 GB of random
weights). Runs, each under GNU time (peak RSS measured from outside):

  1. ckpt importance --samples 2 --seq 32 --max-resident 1G   (tokenized with SmolLM2's
     vocabulary: --tokenizer, since the synthetic checkpoint ships none)
  2. ckpt prune to an 8B-class shape: FFN 13824→9216, hidden 5120→4096, 48→40 layers
  3. cp -r of the checkpoint's shards to the same disk (+ sync): the throughput anchor

and prints peak RSS against the targets (≤ 2 GiB for importance, ≤ 1 GiB for the
rewrite) and the rewrite's bytes/s against cp's. Random weights give degenerate
statistics (that is part of the test: the run must warn, not abort). Outputs are
deleted afterwards.

    python3 Tools/bench/big_prune_bench.py DIR [--workdir /work/big]
"""

import argparse
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SMOLLM2 = REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def timed(cmd):
    t0 = time.time()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    rss = next(int(l.split()[-1]) for l in p.stderr.splitlines() if "Maximum resident set size" in l) * 1024
    return p, wall, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--corpus", default=str(REPO.parent / "shared/corpus/train.txt"))
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or args.model.parent
    stats = work / "big.imp"
    out = work / "big-pruned"
    copy = work / "big-copy"
    for p in (out, copy):
        shutil.rmtree(p, ignore_errors=True)
    size = sum(f.stat().st_size for f in args.model.glob("*.safetensors"))
    try:
        p, t_imp, rss_imp = timed([args.ckpt, "importance", "--model", str(args.model), "--tokenizer", str(SMOLLM2),
                                   "--calib", args.corpus, "--samples", "2", "--seq", "32", "--batch", "2",
                                   "--max-resident", "1G", "-o", str(stats)])
        warned = "warning" in p.stderr
        p, t_prune, rss_prune = timed([args.ckpt, "prune", "--model", str(args.model), "--importance", str(stats),
                                       "--ffn", "9216", "--hidden", "4096", "--layers", "40", "-o", str(out)])
        plan = next((l for l in p.stderr.splitlines() if l.startswith("plan")), "")
        written = sum(f.stat().st_size for f in out.glob("*.safetensors"))
        t0 = time.time()
        subprocess.run(["cp", "-r", str(args.model), str(copy)], check=True)
        subprocess.run(["sync"], check=True)
        t_cp = time.time() - t0
    finally:
        for p in (out, copy):
            shutil.rmtree(p, ignore_errors=True)
    gib = 2**30
    print(f"model {args.model}: {size / 1e9:.1f} GB of bf16 shards")
    print(f"{'step':<34}{'wall':>9}{'peak RSS':>12}{'target':>10}")
    print(f"{'importance (2 × 32 tokens)':<34}{t_imp:>8.1f}s{rss_imp / gib:>9.2f} GiB{'≤ 2 GiB':>10}  "
          f"{'warned about degenerate statistics' if warned else ''}")
    print(f"{'prune → 8B-class shape':<34}{t_prune:>8.1f}s{rss_prune / gib:>9.2f} GiB{'≤ 1 GiB':>10}")
    print(f"  {plan}")
    print(f"rewrite: read {size / 1e9:.1f} GB, wrote {written / 1e9:.1f} GB in {t_prune:.1f} s = {(size + written) / t_prune / 1e6:.0f} MB/s moved; "
          f"cp -r + sync of the source: {t_cp:.1f} s = {2 * size / t_cp / 1e6:.0f} MB/s moved; ratio {((size + written) / t_prune) / (2 * size / t_cp):.2f}")


if __name__ == "__main__":
    main()
