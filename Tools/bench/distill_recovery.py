#!/usr/bin/env python3
"""How much of the pruning damage distillation repairs, against plain fine-tuning.

Prunes SmolLM2 by activation importance (16 calibration samples of 512 tokens from the
start of the corpus): its MLPs 1536 → --ffn (704 by default: about 91 M parameters),
and with --layers also its depth. Builds a teacher-logit cache over the first
--sequences sequences of 512 tokens (all inside the corpus's first 90%), then trains the
pruned student several ways on exactly the same tokens, steps and schedule:

- kd: distillation from the cache (forward KL);
- ce: cross-entropy on the tokens (fine-tuning, the baseline);
- kd8: kd with AdamW's state in 8 bits;
- kd-f32: kd with f32 matrix products instead of int8 (the default), to show int8 trains
  as well;
- hidden: kd plus the intermediate-state loss (cosine, learned projections) against a
  live teacher, for depth-pruned students.

The number of steps is --steps, or what fits --minutes of the kd run at the speed of a
short probe run. Prints the held-out perplexity (the corpus's last tenth, 8 × 512 tokens,
as llama-perplexity scores it) of teacher, pruned and each trained student, the share of
the teacher–pruned gap each recovers, wall time and peak RSS (GNU time) of each run.

    python3 Tools/bench/distill_recovery.py [--ffn 704] [--layers N] [--sequences 128]
        [--steps 64 | --minutes 30] [--batch 2] [--runs kd,ce] [--encoding sample|topk] [--keep DIR]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Tools/bench"))
from benchlib import run  # noqa: E402
MODEL = REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
RUNS = {
    "kd": ("distilled (forward KL)", []),
    "ce": ("fine-tuned (cross-entropy)", ["--ce-weight", "1"]),
    "kd8": ("distilled, 8-bit Adam state", ["--optimizer-state", "8bit"]),
    "kd-f32": ("distilled, f32 products", ["--matmul", "f32"]),
    "hidden": ("distilled + hidden-state loss", ["--hidden-loss", "cosine", "--teacher", MODEL]),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--corpus", default=str(REPO.parent / "shared/corpus/train.txt"))
    ap.add_argument("--ffn", type=int, default=704, help="MLP width to prune to (0: keep it)")
    ap.add_argument("--layers", type=int, help="also keep only this many layers (depth pruning)")
    ap.add_argument("--sequences", type=int, default=128)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--minutes", type=float, help="instead of --steps: as many steps as the kd run does in this time")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", default="3e-4")
    ap.add_argument("--encoding", default="sample")
    ap.add_argument("--runs", default="kd,ce", help="comma-separated: " + ", ".join(RUNS))
    ap.add_argument("--state8", action="store_true", help="same as adding kd8 to --runs")
    ap.add_argument("--keep")
    a = ap.parse_args()
    tmpctx = tempfile.TemporaryDirectory(prefix="ckpt-recovery-")
    tmp = Path(a.keep or tmpctx.name)
    tmp.mkdir(parents=True, exist_ok=True)
    ck = a.ckpt
    runs = a.runs.split(",") + (["kd8"] if a.state8 else [])

    # Hold-out: from the first blank line after 90% of the corpus (as Tools/demo).
    data = Path(a.corpus).read_bytes()
    tail = data[len(data) * 9 // 10:]
    holdout = tmp / "holdout.txt"
    holdout.write_bytes(tail[tail.index(b"\n\n") + 2:])

    shape = f"ffn{a.ffn}" + (f"-layers{a.layers}" if a.layers else "")
    student = tmp / f"pruned-{shape}.gguf"
    if not student.exists():
        imp = tmp / "s.imp"
        if not imp.exists():
            run([ck, "importance", "--model", MODEL, "--calib", a.corpus, "--samples", "16", "--seq", "512", "-o", imp])
        run([ck, "prune", "--model", MODEL, "--importance", imp] + (["--ffn", a.ffn] if a.ffn else []) + (["--layers", a.layers] if a.layers else [])
            + ["-o", student])
    cache = tmp / f"teacher-{a.encoding}-{a.sequences}.cache"
    if not cache.exists():
        run([ck, "logits", "build", "--model", MODEL, "--file", a.corpus, "--sequences", a.sequences, "--encoding", a.encoding, "-o", cache])

    def ppl(model):
        return json.loads(run([ck, "eval", "--model", model, "--file", holdout, "--chunks", "8", "--json"])[0].stdout)["ppl"]

    def params(model):
        return json.loads(run([ck, "inspect", model, "--json"])[0].stdout)["totals"]["parameters"]

    def distill(tag, steps, out, log=None):
        cmd = [ck, "distill", "--student", student, "--cache", cache, "--steps", steps, "--batch", a.batch, "--lr", a.lr,
               "--warmup", max(1, steps // 16), "--json", "--force", "-o", out] + RUNS[tag][1]
        return run(cmd + (["--log", log] if log else []), timed=True)

    steps = a.steps
    if a.minutes:
        # A probe of 4 kd steps; its steps 2–4 give the speed (step 1 warms up).
        log = tmp / "probe.csv"
        distill("kd", 4, tmp / "probe.gguf", log)
        lines = log.read_text().splitlines()
        recs = [dict(zip(lines[0].split(","), l.split(","))) for l in lines[2:]]
        seconds_per_step = sum(float(r["seconds"]) for r in recs) / len(recs)
        steps = max(4, int(a.minutes * 60 / seconds_per_step))
        print(f"probe: {seconds_per_step:.2f} s per step of {a.batch} × 512 tokens → {steps} steps for {a.minutes:g} minutes", flush=True)

    teacher, pruned = ppl(MODEL), ppl(student)
    rows = []
    for tag in runs:
        out = tmp / f"{tag}-{shape}-{steps}.gguf"
        p, rss = distill(tag, steps, out)
        r = json.loads(p.stdout)
        rows.append((RUNS[tag][0], ppl(out), r["seconds"], r["tokens"], rss))
        print(f"  {RUNS[tag][0]}: ppl {rows[-1][1]:.2f} in {r['seconds']:.0f} s", file=sys.stderr, flush=True)
    print(f"SmolLM2-135M Q4_1 teacher ({params(MODEL) / 1e6:.1f} M parameters); student pruned to "
          + ", ".join(([f"FFN {a.ffn}"] if a.ffn else []) + ([f"{a.layers} layers"] if a.layers else [])) + f" ({params(student) / 1e6:.1f} M); {steps} steps × {a.batch} × 512 tokens "
          f"({a.encoding} cache over the first {a.sequences} sequences); held-out: last tenth of {Path(a.corpus).name}, 8 × 512")
    print(f"{'model':<32}{'ppl':>9}{'gap recovered':>15}{'seconds':>9}{'tokens':>9}{'peak RSS':>11}")
    print(f"{'teacher':<32}{teacher:>9.2f}")
    print(f"{'pruned':<32}{pruned:>9.2f}{0:>14.0%}")
    for name, p_, sec, tok, rss in rows:
        print(f"{name:<32}{p_:>9.2f}{(pruned - p_) / (pruned - teacher):>14.0%} {sec:>8.0f}{tok:>9}{rss:>8.0f} MiB")


if __name__ == "__main__":
    main()
