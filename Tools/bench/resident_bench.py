#!/usr/bin/env python3
"""Bounded memory with no flag: importance, eval and logits on a model larger than RAM.

Needs a filled 15B-shape checkpoint (Tools/make_big_checkpoint.py DIR --fill-all: bf16,
48 layers, hidden 5120, ~29.5 GB of real random weights, so no page is a hole).
SmolLM2's tokenizer is exported beside it (the synthetic set ships none). Runs, with
peak RSS measured from outside (GNU time) and none of them given --max-resident:

  1. ckpt importance --samples 2 --seq 16            target: peak RSS <= 2 GiB
  2. ckpt eval --ctx 16 --chunks 1, unlimited         the anchor for tokens/s
  3. the same eval inside a cgroup-v1 memory limit of half the model's size
     (Tools/bench/cgroup_run.sh): it must finish, without an OOM kill
  4. ckpt logits build of one 16-token sequence inside that limit

and prints each figure beside its anchor: RSS against the target, the limited run's
tokens/s against the unlimited run's.

    python3 Tools/bench/resident_bench.py DIR [--ckpt .build/release/ckpt]
"""

import argparse
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchlib import timed

REPO = Path(__file__).resolve().parents[2]
SMOLLM2 = REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--corpus", default=str(REPO / "Tests/Fixtures/corpus/train.txt"))
    args = ap.parse_args()
    size = sum(f.stat().st_size for f in args.model.glob("*.safetensors"))
    gib = 2**30
    limit = f"{int(size / 2 / gib)}G"
    if not (args.model / "tokenizer.json").exists():
        tmp = Path(tempfile.mkdtemp())
        subprocess.run([args.ckpt, "tokenize", "--model", SMOLLM2, "--export-hf", tmp / "tok"], check=True, capture_output=True)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(tmp / "tok" / f, args.model / f)
        shutil.rmtree(tmp)
    work = Path(tempfile.mkdtemp(dir=args.model.parent))
    text = work / "text.txt"
    text.write_bytes(Path(args.corpus).read_bytes()[:4000])
    try:
        _, rss_imp = timed([args.ckpt, "importance", "--model", args.model, "--calib", text, "--samples", "2",
                            "--seq", "16", "--batch", "2", "-o", work / "s.imp"])
        p, rss_eval = timed([args.ckpt, "eval", "--model", args.model, "--file", text, "--ctx", "16", "--chunks", "1", "--json"])
        free = json.loads(p.stdout)
        p, rss_cg = timed([REPO / "Tools/bench/cgroup_run.sh", limit, args.ckpt, "eval", "--model", args.model, "--file", text,
                           "--ctx", "16", "--chunks", "1", "--json"])
        limited = json.loads(p.stdout)
        cg_eval = next(l for l in p.stderr.splitlines() if l.startswith("cgroup limit"))
        p, rss_logits = timed([REPO / "Tools/bench/cgroup_run.sh", limit, args.ckpt, "logits", "build", "--model", args.model,
                               "--file", text, "--seq", "16", "--sequences", "1", "-o", work / "t.cache"])
        cg_logits = next(l for l in p.stderr.splitlines() if l.startswith("cgroup limit"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"model {args.model}: {size / 1e9:.1f} GB of bf16 shards; machine limit for the cgroup runs: {limit}; no --max-resident anywhere")
    print(f"importance 2 x 16 tokens:  peak RSS {rss_imp / 1024:.2f} GiB   target <= 2 GiB   ({rss_imp / 1024 / 2:.2f} of the target)")
    print(f"eval, unlimited:           peak RSS {rss_eval / 1024:.2f} GiB   {free['tokens_per_s']:.2f} tokens/s   streamed={free['streamed']}")
    print(f"eval in a {limit} cgroup:     peak RSS {rss_cg / 1024:.2f} GiB   {limited['tokens_per_s']:.2f} tokens/s   "
          f"= {limited['tokens_per_s'] / free['tokens_per_s']:.2f}x the unlimited run; ppl {limited['ppl']:.4g} vs {free['ppl']:.4g}")
    print(f"  {cg_eval}")
    print(f"logits in a {limit} cgroup:   peak RSS {rss_logits / 1024:.2f} GiB")
    print(f"  {cg_logits}")


if __name__ == "__main__":
    main()
