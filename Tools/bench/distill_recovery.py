#!/usr/bin/env python3
"""How much of the pruning damage distillation repairs, against plain fine-tuning.

Prunes SmolLM2's MLPs 1536 → 1024 by activation importance (16 calibration samples from
the start of the corpus), builds a teacher-logit cache over the first --sequences
sequences of 512 tokens, then trains the pruned student two ways on exactly the same
tokens, steps and schedule: distillation from the cache (forward KL) and cross-entropy
on the tokens. Prints the held-out perplexity (the corpus's last tenth, 8 × 512 tokens,
as llama-perplexity scores it) of teacher, pruned, distilled and fine-tuned models, the
share of the teacher–pruned gap each recovers, wall time and peak RSS of each run.

    python3 Tools/bench/distill_recovery.py [--sequences 128] [--steps 64] [--batch 2] [--encoding sample|topk] [--state8]
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--corpus", default=str(REPO.parent / "shared/corpus/train.txt"))
    ap.add_argument("--sequences", type=int, default=128)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", default="3e-4")
    ap.add_argument("--encoding", default="sample")
    ap.add_argument("--state8", action="store_true", help="also distill with AdamW's state in 8 bits")
    ap.add_argument("--keep")
    a = ap.parse_args()
    tmpctx = tempfile.TemporaryDirectory(prefix="ckpt-recovery-")
    tmp = Path(a.keep or tmpctx.name)
    tmp.mkdir(parents=True, exist_ok=True)
    ck = a.ckpt

    # Hold-out: from the first blank line after 90% of the corpus (as Tools/demo).
    data = Path(a.corpus).read_bytes()
    tail = data[len(data) * 9 // 10:]
    holdout = tmp / "holdout.txt"
    holdout.write_bytes(tail[tail.index(b"\n\n") + 2:])

    student = tmp / "pruned.gguf"
    if not student.exists():
        run([ck, "importance", "--model", MODEL, "--calib", a.corpus, "--samples", "16", "--seq", "512", "-o", tmp / "s.imp"])
        run([ck, "prune", "--model", MODEL, "--importance", tmp / "s.imp", "--ffn", "1024", "-o", student])
    cache = tmp / f"teacher-{a.encoding}.cache"
    if not cache.exists():
        run([ck, "logits", "build", "--model", MODEL, "--file", a.corpus, "--sequences", a.sequences, "--encoding", a.encoding, "-o", cache])

    def ppl(model):
        return json.loads(run([ck, "eval", "--model", model, "--file", holdout, "--chunks", "8", "--json"])[0].stdout)["ppl"]

    teacher, pruned = ppl(MODEL), ppl(student)
    rows = []
    runs = [("distilled (forward KL)", [], "kd"), ("fine-tuned (cross-entropy)", ["--ce-weight", "1"], "ce")]
    if a.state8:
        runs.append(("distilled, 8-bit Adam state", ["--optimizer-state", "8bit"], "kd8"))
    for name, extra, tag in runs:
        out = tmp / f"{tag}.gguf"
        p, rss = run([ck, "distill", "--student", student, "--cache", cache, "--steps", a.steps, "--batch", a.batch, "--lr", a.lr,
                      "--warmup", max(1, a.steps // 16), "--json", "--force", "-o", out] + extra, timed=True)
        r = json.loads(p.stdout)
        rows.append((name, ppl(out), r["seconds"], r["tokens"], rss))
    print(f"SmolLM2-135M Q4_1 teacher; student pruned FFN 1536 → 1024; {a.steps} steps × {a.batch} × 512 tokens "
          f"({a.encoding} cache over the first {a.sequences} sequences); held-out: last tenth of {Path(a.corpus).name}, 8 × 512")
    print(f"{'model':<30}{'ppl':>9}{'gap recovered':>15}{'seconds':>9}{'tokens':>9}{'peak RSS':>11}")
    print(f"{'teacher':<30}{teacher:>9.2f}")
    print(f"{'pruned':<30}{pruned:>9.2f}{0:>14.0%}")
    for name, p_, sec, tok, rss in rows:
        print(f"{name:<30}{p_:>9.2f}{(pruned - p_) / (pruned - teacher):>14.0%} {sec:>8.0f}{tok:>9}{rss:>8.0f} MiB")


if __name__ == "__main__":
    main()
