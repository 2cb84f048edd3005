#!/usr/bin/env python3
"""`ckpt eval` against llama.cpp on the same model, chunks and threads: perplexity and speed.

For each weight type (SmolLM2's own Q4_1 file, and Q8_0 and BF16 copies made with
`ckpt convert`), runs in alternation, --rounds times each:

  * ckpt eval --ctx C --chunks N --threads T --batch B --json      (peak RSS from GNU time)
  * Tools/reference/llama_perplexity.py, llama.cpp through llama-cpp-python's low-level
    API, computing perplexity exactly as llama-perplexity does (one chunk per decode,
    logits only for the scored half), with flash attention off and on; the faster of the
    two is the anchor.

and prints, per type: both perplexities and their relative difference, the best tokens/s
of each (chunks × ctx / forward seconds, loading and tokenizing excluded for both) and
the ratio ckpt / llama.cpp. The machine is shared and noisy: runs alternate, and the
best of each is kept. Text: the corpus hold-out (from the first blank line after 90%).

    python3 Tools/bench/eval_bench.py [--chunks 8] [--ctx 512] [--threads 2] [--rounds 3] [--types q4_1,q8_0,bf16]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def holdout(corpus: Path, out: Path):
    data = corpus.read_bytes()
    start = data.find(b"\n\n", int(len(data) * 0.9)) + 2
    out.write_bytes(data[start:])
    return start, len(data)


def run_ckpt(ckpt, model, text, args, batch):
    cmd = ["/usr/bin/time", "-v", ckpt, "eval", "--model", str(model), "--file", str(text), "--ctx", str(args.ctx),
           "--chunks", str(args.chunks), "--threads", str(args.threads), "--batch", str(batch), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    for line in p.stderr.splitlines():
        if "Maximum resident set size" in line:
            r["peak_rss_mib"] = int(line.split()[-1]) / 1024
    return r


def run_llama(model, text, args, flash):
    cmd = [sys.executable, str(REPO / "Tools/reference/llama_perplexity.py"), "--model", str(model), "--file", str(text),
           "--ctx", str(args.ctx), "--chunks", str(args.chunks), "--threads", str(args.threads),
           "--flash-attn", flash, "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--corpus", default=str(REPO.parent / "shared/corpus/train.txt"))
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--types", default="q4_1,q8_0,bf16")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="ckpt-eval-bench-") as tmp:
        tmp = Path(tmp)
        text = tmp / "holdout.txt"
        start, end = holdout(Path(args.corpus), text)
        print(f"text: {args.corpus} bytes {start}..{end} (hold-out); {args.chunks} chunks of {args.ctx} tokens; "
              f"{args.threads} threads; best of {args.rounds} alternating rounds")
        models = {}
        for t in args.types.split(","):
            if t == "q4_1":
                models[t] = MODEL
            else:
                out = tmp / f"smollm2-{t}.gguf"
                subprocess.run([args.ckpt, "convert", str(MODEL), str(out), "--dtype", t], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                models[t] = out
        rows = []
        for t, model in models.items():
            best = {"ckpt b1": None, "ckpt b4": None, "llama fa-off": None, "llama fa-on": None}
            for _ in range(args.rounds):
                for key in best:
                    if key.startswith("ckpt"):
                        r = run_ckpt(args.ckpt, model, text, args, batch=1 if key.endswith("b1") else 4)
                    else:
                        r = run_llama(model, text, args, "off" if key.endswith("off") else "on")
                    if best[key] is None or r["tokens_per_s"] > best[key]["tokens_per_s"]:
                        best[key] = r
            rows.append((t, best))

        print()
        print(f"{'weights':<8}{'ppl ckpt':>10}{'ppl llama':>11}{'Δppl':>8}"
              f"{'ckpt tok/s':>12}{'(batch 4)':>11}{'llama tok/s':>13}{'(fa on)':>9}{'ratio':>8}{'ckpt RSS':>10}")
        for t, b in rows:
            ck1, ck4, lo, lf = b["ckpt b1"], b["ckpt b4"], b["llama fa-off"], b["llama fa-on"]
            anchor = max(lo["tokens_per_s"], lf["tokens_per_s"])
            ours = max(ck1["tokens_per_s"], ck4["tokens_per_s"])
            dppl = (ck1["ppl"] - lo["ppl"]) / lo["ppl"] * 100
            print(f"{t:<8}{ck1['ppl']:>10.4f}{lo['ppl']:>11.4f}{dppl:>+7.2f}%"
                  f"{ck1['tokens_per_s']:>12.1f}{ck4['tokens_per_s']:>11.1f}{lo['tokens_per_s']:>13.1f}{lf['tokens_per_s']:>9.1f}"
                  f"{ours / anchor:>7.2f}×{ck1.get('peak_rss_mib', 0):>8.0f} MiB")
        print("\nratio = best ckpt tokens/s over best llama.cpp tokens/s (flash attention off or on), same chunks and threads.")


if __name__ == "__main__":
    main()
