#!/usr/bin/env python3
"""The teacher-logit cache on SmolLM2: size, fidelity, build overhead, and anchors.

For topk with k in {8, 16, 32, 64} and sample with draws in {16, 64}, over the first
--sequences sequences of 512 tokens of the corpus (one 32k-token chunk by default):

- bytes per token on disk, beside a DistillKit-style encoding of the same top-k
  (32-bit ids and 16-bit log-probabilities from llama.cpp's logits, compressed with the
  same codec and level, in chunks of the same size);
- from `ckpt logits verify --teacher --student`: mean teacher mass on the stored ids,
  KL(teacher ‖ reconstruction with the tail spread uniformly) for topk, and the error
  of the distillation loss (cross-entropy, same gradient as forward KL) and its
  gradient for a real student (SmolLM2 pruned to FFN 1024 by `ckpt prune`): bias and
  spread over --positions positions;
- build tokens/s against `ckpt eval --all-positions` (the same forward pass with logits
  at every position, no cache) on the same sequences, alternating, best of --rounds;
- against llama-cpp-python's full logits (logits_all=True) for the topk k=32 cache: mean
  overlap of the id sets, top-1 agreement, mean |log-prob error|.

    python3 Tools/bench/logit_cache_bench.py [--sequences 64] [--positions 1024] [--rounds 2]
"""

import argparse
import json
import re
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import zstandard

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Tools/bench"))
from benchlib import run  # noqa: E402
MODEL = REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
CONFIGS = [("topk", 8), ("topk", 16), ("topk", 32), ("topk", 64), ("sample", 16), ("sample", 64)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--model", default=str(MODEL))
    ap.add_argument("--corpus", default=str(REPO.parent / "shared/corpus/train.txt"))
    ap.add_argument("--sequences", type=int, default=64)
    ap.add_argument("--positions", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--keep", help="directory to keep the caches and student in")
    ap.add_argument("--overhead-only", action="store_true", help="only the build-time overhead (topk 32, sample 64 and the eval anchor)")
    a = ap.parse_args()
    seq = 512
    tmpctx = tempfile.TemporaryDirectory(prefix="ckpt-logits-bench-")
    tmp = Path(a.keep or tmpctx.name)
    tmp.mkdir(parents=True, exist_ok=True)
    ck, model, threads = a.ckpt, a.model, str(a.threads)

    # A real student: SmolLM2 with its MLPs pruned 1536 → 1024 by activation importance.
    student = tmp / "student-ffn1024.gguf"
    if not student.exists():
        run([ck, "importance", "--model", model, "--calib", a.corpus, "--samples", "16", "--seq", "512", "--threads", threads,
             "-o", tmp / "stats.imp"])
        run([ck, "prune", "--model", model, "--importance", tmp / "stats.imp", "--ffn", "1024", "-o", student])

    results = {}
    build_rate, eval_rate, peak = {}, [], {}
    configs = [("topk", 32), ("sample", 64)] if a.overhead_only else CONFIGS
    for name, n in configs:
        cache = tmp / f"{name}{n}.cache"
        opt = ["--encoding", "topk", "--k", str(n)] if name == "topk" else ["--encoding", "sample", "--draws", str(n)]
        anchored = (name, n) in (("topk", 32), ("sample", 64))
        rounds = a.rounds if anchored else 1
        for _ in range(rounds):
            if cache.exists():
                cache.unlink()
            p, rss = run([ck, "logits", "build", "--model", model, "--file", a.corpus, "--seq", seq, "--sequences", a.sequences,
                          "--threads", threads, "--level", a.level, "--json", "-o", cache] + opt, timed=True)
            r = json.loads(p.stdout)
            build_rate[(name, n)] = max(build_rate.get((name, n), 0), r["tokens_per_s"])
            peak[(name, n)] = rss
            if anchored:
                p, _ = run([ck, "eval", "--model", model, "--file", a.corpus, "--ctx", seq, "--chunks", a.sequences,
                            "--threads", threads, "--all-positions", "--json"])
                eval_rate.append(json.loads(p.stdout)["tokens_per_s"])
        if a.overhead_only:
            continue
        info = json.loads(run([ck, "logits", "inspect", cache, "--json"])[0].stdout)
        v = json.loads(run([ck, "logits", "verify", cache, "--teacher", model, "--student", student, "--positions", a.positions,
                            "--threads", threads, "--json"])[0].stdout)
        results[(name, n)] = (info, v["teacher"])

    # llama.cpp's full logits over the same sequences: the reference top-k and the anchor.
    ref = None
    try:
        if a.overhead_only:
            raise ImportError
        import llama_cpp
        llm = llama_cpp.Llama(model_path=str(model), n_ctx=seq, n_batch=seq, logits_all=True, verbose=False, n_threads=a.threads)
        dump = run([ck, "logits", "dump", tmp / "topk32.cache", "--jsonl"])[0].stdout.splitlines()
        recs = [json.loads(l) for l in dump]
        by_seq = {}
        for r in recs:
            by_seq.setdefault(r["seq"], []).append(r)
        overlap, top1, lperr, nlp = [], [], 0.0, 0
        anchor = {k: [] for k in (8, 16, 32, 64)}
        for s, rs in sorted(by_seq.items()):
            toks = [r["token"] for r in rs]
            llm.reset()
            llm.eval(toks)
            L = np.array(llm.scores[:len(toks)], dtype=np.float64)
            L = L - L.max(1, keepdims=True)
            LP = L - np.log(np.exp(L).sum(1, keepdims=True))
            order = np.argsort(-LP, axis=1, kind="stable")
            for i, r in enumerate(rs):
                refk = order[i, :32]
                overlap.append(len(set(refk.tolist()) & set(r["ids"])) / 32)
                # Quantization can tie the top ids: agreement when llama.cpp's top id holds the top value.
                tied = [i2 for i2, lp in zip(r["ids"], r["logprobs"]) if lp == r["logprobs"][0]]
                top1.append(int(refk[0] in tied))
                lperr += float(np.abs(LP[i, r["ids"]] - np.array(r["logprobs"])).sum())
                nlp += len(r["ids"])
            for k in anchor:
                ids = order[:, :k].astype("<i4")
                lps = np.take_along_axis(LP, order[:, :k], 1).astype("<f2")
                rec = np.empty((len(toks), k), dtype=[("id", "<i4"), ("lp", "<f2")])
                rec["id"], rec["lp"] = ids, lps
                anchor[k].append(rec.tobytes())
        cctx = zstandard.ZstdCompressor(level=a.level)
        tokens = len(recs)
        per_chunk = 32768 // seq
        anchor_bpt = {}
        for k, parts in anchor.items():
            total = sum(len(cctx.compress(b"".join(parts[i:i + per_chunk]))) for i in range(0, len(parts), per_chunk))
            anchor_bpt[k] = total / tokens
        ref = (np.mean(overlap), np.mean(top1), lperr / nlp, anchor_bpt, tokens)
    except ImportError:
        if not a.overhead_only:
            print("llama-cpp-python is not installed: no llama.cpp reference or DistillKit anchor (pip install llama-cpp-python)")

    print(f"SmolLM2-135M Q4_1 teacher; first {a.sequences} sequences of {seq} tokens of {Path(a.corpus).name}; zstd level {a.level}; "
          f"{a.threads} threads; fidelity over {a.positions} positions; student: FFN pruned to 1024")
    if not a.overhead_only:
        print_table(results, ref, build_rate)
    best_eval = max(eval_rate)
    for key in (("topk", 32), ("sample", 64)):
        print(f"build {key[0]} {key[1]}: {build_rate[key]:.1f} tokens/s vs ckpt eval --all-positions {best_eval:.1f} tokens/s "
              f"(anchor, same sequences): overhead {100 * (best_eval / build_rate[key] - 1):+.1f}%; peak RSS {peak[key]:.0f} MiB")
    if ref:
        print(f"topk 32 vs llama.cpp full logits ({ref[4]} positions): id-set overlap {ref[0]:.3f}, top-1 agreement {100 * ref[1]:.1f}%, "
              f"mean |log-prob error| {ref[2]:.3f} nats")


def print_table(results, ref, build_rate):
    print(f"{'encoding':<12}{'B/token':>8}{'anchor':>8}{'mass':>7}{'KL':>8}{'loss bias':>11}{'spread':>8}"
          f"{'grad rel':>10}{'cos':>7}{'proj':>8}{'build tok/s':>13}")
    for (name, n), (info, v) in results.items():
        anc = f"{ref[3][n]:.1f}" if ref and name == "topk" else "-"
        kl = f"{v['kl_mean']:.4f}" if "kl_mean" in v else "-"
        print(f"{name + ' ' + str(n):<12}{info['bytes_per_token']:>8.1f}{anc:>8}{v['covered_mass']:>7.3f}{kl:>8}"
              f"{v['loss_bias']:>+11.4f}{v['loss_spread']:>8.4f}{v['grad_relative_error']:>10.3f}{v['grad_cosine']:>7.3f}"
              f"{v['grad_projection_bias']:>+8.3f}{build_rate[(name, n)]:>13.1f}")


if __name__ == "__main__":
    main()
