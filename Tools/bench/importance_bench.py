#!/usr/bin/env python3
"""Hook overhead of `ckpt importance`: calibration against `ckpt eval` over the same tokens.

Both read the start of the corpus as --samples chunks of --seq tokens (eval: --chunks of
--ctx), on the same threads, alternating --rounds times; the best run of each is kept
(the machine is shared). `ckpt importance` runs every layer with all its hooks (neuron,
head output, head contribution through the output projection, hidden-channel and Block
Influence statistics); `ckpt eval` runs the same layers plus the LM head on half the
positions. Prints tokens/s of both and the overhead (eval rate / importance rate − 1);
the target is ≤ 10%. Peak RSS from GNU time.

    python3 Tools/bench/importance_bench.py [--samples 64] [--seq 512] [--threads 2] [--rounds 2]
"""

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Tools/bench"))
from benchlib import timed  # noqa: E402
MODEL = REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--model", default=str(MODEL))
    ap.add_argument("--corpus", default=str(REPO.parent / "shared/corpus/train.txt"))
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    best_imp = best_eval = None
    with tempfile.TemporaryDirectory(prefix="ckpt-imp-bench-") as tmp:
        out = Path(tmp) / "stats.imp"
        for _ in range(args.rounds):
            p, rss = timed([args.ckpt, "importance", "--model", args.model, "--calib", args.corpus, "--samples", str(args.samples),
                            "--seq", str(args.seq), "--threads", str(args.threads), "-o", str(out)])
            rate = float(re.search(r"([0-9.]+) tokens/s", p.stderr).group(1))
            if best_imp is None or rate > best_imp[0]:
                best_imp = (rate, rss)
            p, rss = timed([args.ckpt, "eval", "--model", args.model, "--file", args.corpus, "--ctx", str(args.seq),
                            "--chunks", str(args.samples), "--threads", str(args.threads), "--json"])
            r = json.loads(p.stdout)
            if best_eval is None or r["tokens_per_s"] > best_eval[0]:
                best_eval = (r["tokens_per_s"], rss)
    print(f"model {Path(args.model).name}; {args.samples} samples × {args.seq} tokens from the start of the corpus; "
          f"{args.threads} threads; best of {args.rounds}")
    print(f"{'run':<22}{'tokens/s':>10}{'peak RSS':>12}")
    print(f"{'ckpt importance':<22}{best_imp[0]:>10.1f}{best_imp[1]:>9.0f} MiB")
    print(f"{'ckpt eval (anchor)':<22}{best_eval[0]:>10.1f}{best_eval[1]:>9.0f} MiB")
    print(f"hook overhead: {best_eval[0] / best_imp[0] - 1:+.1%} (importance takes {best_eval[0] / best_imp[0]:.2f}× eval's time per token)")


if __name__ == "__main__":
    main()
