#!/usr/bin/env python3
"""`ckpt distill` under memory budgets: tokens/s and peak RSS per budget, and a run
inside a cgroup whose hard limit is slightly above the smallest budget.

The same run as Tools/bench/distill_bench.py (SmolLM2 with its MLPs pruned to 1024 by
`ckpt prune`, 108 M parameters; sequences of 512 tokens from a top-32 logit cache;
batch 1; 2 threads; f32 weights and AdamW) with --memory-budget none, 1G, 512M and 256M.
Tokens/s is over steps 2…N of each run, from the per-step times of --log (warm-up,
loading and writing excluded). Peak RSS comes from GNU time, outside the process. The anchor is the
unbudgeted run of the same binary in the same invocation: ratios are against it. Every
budget must write the same student, byte for byte (the plans change memory, not numbers);
the script checks it.

The cgroup run uses Tools/bench/cgroup_run.sh (cgroup v1, root): its limit counts the
page cache too, so the mapped state files must be written back and re-read under it.

    python3 Tools/bench/distill_memory_bench.py [--steps 4] [--cgroup-limit 300M] [--keep DIR]
"""

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Tools/bench"))
from benchlib import timed  # noqa: E402
MODEL = REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--corpus", default=str(REPO.parent / "shared/corpus/train.txt"))
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--budgets", default="none,1G,512M,256M")
    ap.add_argument("--cgroup-limit", default="300M", help="hard limit for the cgroup run of the smallest budget ('' to skip)")
    ap.add_argument("--keep")
    a = ap.parse_args()
    tmpctx = tempfile.TemporaryDirectory(prefix="ckpt-distill-memory-")
    tmp = Path(a.keep or tmpctx.name)
    tmp.mkdir(parents=True, exist_ok=True)
    ck = a.ckpt
    student = tmp / "student.gguf"
    if not student.exists():
        subprocess.run([ck, "importance", "--model", MODEL, "--calib", a.corpus, "--samples", "8", "--seq", "512", "-o", tmp / "s.imp"],
                       check=True, capture_output=True)
        subprocess.run([ck, "prune", "--model", MODEL, "--importance", tmp / "s.imp", "--ffn", "1024", "-o", student], check=True, capture_output=True)
    cache = tmp / "teacher.cache"
    if not cache.exists():
        subprocess.run([ck, "logits", "build", "--model", MODEL, "--file", a.corpus, "--sequences", str(a.steps), "--encoding", "topk",
                        "--k", "32", "-o", cache], check=True, capture_output=True)

    def distill(budget, steps, wrapper=()):
        out, log = tmp / f"out-{budget}.gguf", tmp / f"log-{budget}.csv"
        cmd = list(wrapper) + [ck, "distill", "--student", student, "--cache", cache, "--steps", steps, "--batch", "1", "--threads", "2",
                               "--json", "--force", "--log", log, "-o", out]
        if budget != "none":
            cmd += ["--memory-budget", budget]
        p, rss = timed(cmd)
        lines = log.read_text().splitlines()
        records = [dict(zip(lines[0].split(","), l.split(","))) for l in lines[2:]]  # step 1 is warm-up
        tps = sum(int(r["tokens"]) for r in records) / sum(float(r["seconds"]) for r in records)
        return json.loads(p.stdout), rss, out, p.stderr, tps

    rows = []
    for budget in a.budgets.split(","):
        full, rss, out, _, tps = distill(budget, a.steps)
        plan = ("streamed state" if full["streamed_state"] else "state in memory") + (", recompute" if full["recomputed_activations"] else "")
        rows.append((budget, tps, rss, full["planned_bytes"] / 2**20, plan, digest(out)))

    base = rows[0]
    print(f"SmolLM2 pruned to FFN 1024, 108 M parameters ({a.steps} steps of 1 × 512 tokens, 2 threads, f32 AdamW; first step excluded)")
    print(f"{'budget':<8}{'plan':<30}{'planned':>10}{'peak RSS':>11}{'tokens/s':>10}{'vs none':>9}  same student")
    for budget, tps, rss, planned, plan, h in rows:
        print(f"{budget:<8}{plan:<30}{planned:>6.0f} MiB{rss:>7.0f} MiB{tps:>10.1f}{tps / base[1]:>8.2f}×  {'yes' if h == base[5] else 'NO'}")
    if any(r[5] != base[5] for r in rows):
        sys.exit("a budget changed the trained student")
    for budget, _, rss, _, _, _ in rows:
        if budget != "none" and rss > int(budget[:-1]) * (1024 if budget[-1] == "G" else 1):
            sys.exit(f"peak RSS {rss:.0f} MiB is over the budget {budget}")

    if a.cgroup_limit:
        smallest = rows[-1][0]
        full, rss, out, err, tps = distill(smallest, a.steps, wrapper=[REPO / "Tools/bench/cgroup_run.sh", a.cgroup_limit])
        line = next((l for l in err.splitlines() if l.startswith("cgroup limit")), "")
        print(f"--memory-budget {smallest} in a cgroup limited to {a.cgroup_limit}: {tps:.1f} tokens/s, "
              f"peak RSS {rss:.0f} MiB, same student: {'yes' if digest(out) == rows[-1][5] else 'NO'}")
        print(f"  {line}")


if __name__ == "__main__":
    main()
