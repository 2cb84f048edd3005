#!/usr/bin/env python3
"""Cross-checks `ckpt eval --model STUDENT --teacher T` against the same figures computed
from llama.cpp's logits of both models (llama-cpp-python, built with
CMAKE_ARGS=-DGGML_NATIVE=ON), as `llama-perplexity --kl-divergence` defines them.

The reference follows llama-perplexity's chunks (llama_perplexity.py's Engine: the text
tokenized once with BOS, non-overlapping chunks of --ctx with BOS replacing the first
token, one decode per chunk, logits of positions ctx/2 … ctx-2 scored), decodes every
chunk with the teacher and then the student, and computes in float64 from their float32
logits: KL(teacher ‖ student) per position, its mean, median, 99th percentile (numpy's
linear interpolation) and maximum, the share of positions where both rank the same token
first, the RMS of p_student − p_teacher of the token that came next, and both
perplexities. (llama-perplexity itself stores the teacher's log-probabilities as 16-bit
integers in its --kl-divergence-base file; here they stay float64, the exact figure.)

Students: every --student given, or by default three made here with ckpt from the
teacher, in .cache/kl-check (.cache/kl-check/<teacher> for another --teacher): a Q8_0
conversion (the "after convert" case), and the MLP pruned 1536 → 1024 by activation
importance and by weight magnitude.

Weights with 8-bit activations (Q4_1, Q8_0, …) make both engines' logits move with any
change of rounding, the single-position maximum most; an F16 conversion of the teacher
(`ckpt convert M.gguf M-f16.gguf --dtype f16`) as --teacher shows the agreement without it.

Each figure of ckpt's --json is compared with the reference's; the check passes when
every relative difference is within --tolerance (default 2%, issue 15's bar).

  python3 Tools/reference/check_kl.py [--chunks 8] [--student S.gguf ...] [--json OUT]
"""
import argparse, json, math, os, subprocess, sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_perplexity import Engine, chunk_tokens, read_text  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FIGURES = ["kl_mean", "kl_median", "kl_p99", "kl_max", "same_top", "rms_delta_p", "teacher_ppl", "ppl", "ppl_ratio"]


def log_softmax64(rows):
    rows = rows.astype(np.float64)
    m = rows.max(axis=1, keepdims=True)
    return rows - (np.log(np.exp(rows - m).sum(axis=1, keepdims=True)) + m)


def reference(teacher_path, student_path, tokens, ctx, n_chunk, threads):
    first = ctx // 2
    scored = ctx - 1 - first
    teacher = Engine(teacher_path, ctx, threads, "off", False)
    student = Engine(student_path, ctx, threads, "off", False)
    if teacher.n_vocab != student.n_vocab:
        sys.exit(f"vocabularies differ: {teacher.n_vocab} and {student.n_vocab}")
    kls, same, dp2, nll_t, nll_s = [], 0, 0.0, 0.0, 0.0
    for i in range(n_chunk):
        chunk = chunk_tokens(teacher, tokens, i)
        logp = []
        for eng in (teacher, student):
            eng.fill_batch(chunk)
            eng.decode()
            logp.append(log_softmax64(eng.output_logits()[:scored]))
        lt, ls = logp
        nxt = chunk[first + 1: ctx].astype(np.int64)
        kl = (np.exp(lt) * (lt - ls)).sum(axis=1)
        kls.extend(np.maximum(kl, 0).tolist())
        same += int((lt.argmax(axis=1) == ls.argmax(axis=1)).sum())
        rows = np.arange(scored)
        dp2 += float(((np.exp(ls[rows, nxt]) - np.exp(lt[rows, nxt])) ** 2).sum())
        nll_t -= float(lt[rows, nxt].sum())
        nll_s -= float(ls[rows, nxt].sum())
    n = len(kls)
    k = np.array(kls)
    r = dict(kl_mean=float(k.mean()), kl_median=float(np.quantile(k, 0.5)), kl_p99=float(np.quantile(k, 0.99)), kl_max=float(k.max()),
             same_top=same / n, rms_delta_p=math.sqrt(dp2 / n), teacher_ppl=math.exp(nll_t / n), ppl=math.exp(nll_s / n), tokens=n)
    r["ppl_ratio"] = r["ppl"] / r["teacher_ppl"]
    return r


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r.stdout


def default_students(ckpt, teacher, calib, work):
    work.mkdir(parents=True, exist_ok=True)
    q8 = work / "teacher-q8_0.gguf"
    if not q8.exists():
        run([ckpt, "convert", teacher, str(q8), "--dtype", "q8_0", "--force"])
    imp = work / "teacher.imp"
    if not imp.exists():
        run([ckpt, "importance", "--model", teacher, "--calib", calib, "--samples", "16", "--seq", "512", "-o", str(imp)])
    act = work / "ffn1024-activation.gguf"
    if not act.exists():
        run([ckpt, "prune", "--model", teacher, "--importance", str(imp), "--ffn", "1024", "-o", str(act), "--force"])
    mag = work / "ffn1024-magnitude.gguf"
    if not mag.exists():
        run([ckpt, "prune", "--model", teacher, "--method", "magnitude", "--ffn", "1024", "-o", str(mag), "--force"])
    return [str(q8), str(act), str(mag)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--teacher", default=str(REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--student", action="append", help="a student GGUF (repeatable); default: three made from the teacher")
    ap.add_argument("--file", default=str(REPO.parent / "shared/corpus/train.txt"), help="text; its hold-out (from the first blank line after 90%%) is scored")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tolerance", type=float, default=0.02)
    ap.add_argument("--json", metavar="OUT", help="write both sides' figures here")
    args = ap.parse_args()

    # Students made from another teacher (say an F16 conversion) get their own folder.
    default_teacher = ap.get_default("teacher")
    work = REPO / ".cache/kl-check" if args.teacher == default_teacher else REPO / ".cache/kl-check" / Path(args.teacher).stem
    work.mkdir(parents=True, exist_ok=True)
    # One text file both read: the hold-out without its trailing newline (llama.cpp's -f drops one).
    text, start, _ = read_text(Path(args.file), True, 0)
    holdout = work / "holdout.txt"
    holdout.write_bytes(text)
    students = args.student or default_students(args.ckpt, args.teacher, args.file, work)

    eng = Engine(args.teacher, args.ctx, args.threads, "off", False)
    tokens = eng.tokenize(text)
    eng.close()
    n_chunk = min(args.chunks, len(tokens) // args.ctx)
    version = subprocess.run([args.ckpt, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{version}; teacher {args.teacher}; {n_chunk} chunks of {args.ctx} from {args.file} byte {start} on "
          f"({n_chunk * (args.ctx - 1 - args.ctx // 2)} positions scored); tolerance {100 * args.tolerance:g}%")
    report, ok = [], True
    for s in students:
        ours = json.loads(run([args.ckpt, "eval", "--model", s, "--teacher", args.teacher, "--file", str(holdout),
                               "--ctx", str(args.ctx), "--chunks", str(n_chunk), "--threads", str(args.threads), "--json"]))
        ref = reference(args.teacher, s, tokens, args.ctx, n_chunk, args.threads)
        if ours["tokens"] != ref["tokens"]:
            sys.exit(f"{s}: ckpt scored {ours['tokens']} positions, the reference {ref['tokens']}")
        print(f"\n{os.path.basename(s)}")
        print(f"  {'figure':<12}{'ckpt':>14}{'llama.cpp':>14}{'rel. diff':>11}")
        worst = 0.0
        for f in FIGURES:
            rel = abs(ours[f] - ref[f]) / max(abs(ref[f]), 1e-12)
            worst = max(worst, rel)
            print(f"  {f:<12}{ours[f]:>14.6f}{ref[f]:>14.6f}{100 * rel:>10.3f}%")
        passed = worst <= args.tolerance
        ok &= passed
        print(f"  worst relative difference {100 * worst:.3f}%: {'pass' if passed else 'FAIL'}")
        report.append(dict(student=os.path.basename(s), ckpt={f: ours[f] for f in FIGURES}, reference={f: ref[f] for f in FIGURES},
                           worst_relative_difference=worst, passed=passed))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(teacher=os.path.basename(args.teacher), ctx=args.ctx, chunks=n_chunk, results=report), indent=1) + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
