#!/usr/bin/env python3
"""Minitron's pruning ablation at small scale: SmolLM2-135M, no retraining.

1. `ckpt importance` on --samples × 512 tokens from the start of the corpus (the
   training part: it never reaches the hold-out).
2. For each configuration (FFN 1536→1024; 2 of 3 heads per KV group; hidden 576→448;
   depth 30→24; and a combined ~91M model: FFN 1024 + 2 heads per group + 26 layers)
   and each method, `ckpt prune` the Q4_1 GGUF and `ckpt eval` the result on the corpus
   hold-out (the first blank line after 90% of the file onward), --chunks × 512 tokens.
   Width methods: activation (head score: contribution), activation with Minitron's head
   output score, wanda, magnitude, random. Depth: Block Influence (top layers kept), the
   least influential contiguous block, the last layers, random.
3. The activation-pruned file of each configuration is also evaluated by llama.cpp
   (llama_perplexity.py): it must load and agree with ckpt eval within 0.5%.

Prints a Markdown table (and writes it with --write FILE).

    python3 Tools/reference/prune_ablation.py [--samples 64] [--chunks 8] [--write Tools/reference/prune_ablation.md]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def sh(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--corpus", default=str(REPO.parent / "shared/corpus/train.txt"))
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--write")
    args = ap.parse_args()
    ck = args.ckpt
    with tempfile.TemporaryDirectory(prefix="ckpt-ablation-") as tmp:
        tmp = Path(tmp)
        data = Path(args.corpus).read_bytes()
        start = data.find(b"\n\n", int(len(data) * 0.9)) + 2
        hold = tmp / "holdout.txt"
        hold.write_bytes(data[start:])
        stats = tmp / "smollm2.imp"
        sh([ck, "importance", "--model", str(MODEL), "--calib", args.corpus, "--samples", str(args.samples), "--seq", "512", "-o", str(stats)])

        def ev(path):
            r = sh([ck, "eval", "--model", str(path), "--file", str(hold), "--chunks", str(args.chunks), "--json"])
            return json.loads(r.stdout)["ppl"]

        def cpp(path):
            r = sh([sys.executable, str(REPO / "Tools/reference/llama_perplexity.py"), "--model", str(path), "--file", str(hold),
                    "--chunks", str(args.chunks), "--json"])
            return json.loads(r.stdout.strip().splitlines()[-1])["ppl"]

        base = ev(MODEL)
        rows = [("none (original Q4_1)", "—", base, None, "134.5 M")]

        def run(label, method, extra, check_cpp=False, method_name=None):
            out = tmp / "p.gguf"
            cmd = [ck, "prune", "--model", str(MODEL), "--importance", str(stats), "-o", str(out), "--force"] + extra
            if method:
                cmd += ["--method", method]
            r = sh(cmd)
            params = next(l for l in r.stderr.splitlines() if "parameters" in l).split("parameters")[1].split("→")[1].strip()
            p = ev(out)
            c = cpp(out) if check_cpp else None
            rows.append((label, method_name or method or "activation", p, c, params))

        width = {
            "FFN 1536→1024": ["--ffn", "1024"],
            "heads 3→2 per group": ["--heads-per-group", "2"],
            "hidden 576→448": ["--hidden", "448"],
            "FFN 1024 + heads 2/group + 26 layers (~91 M)": ["--ffn", "1024", "--heads-per-group", "2", "--layers", "26"],
        }
        for label, extra in width.items():
            run(label, "activation", extra, check_cpp=True, method_name="activation (head contribution)")
            if "--heads-per-group" in extra:
                run(label, "activation", extra + ["--head-metric", "output"], method_name="activation (Minitron head output)")
            for m in ["wanda", "magnitude", "random"]:
                run(label, m, extra)
        run("depth 30→24", "activation", ["--layers", "24"], check_cpp=True, method_name="Block Influence")
        block = json.loads(sh([ck, "importance", "show", str(stats), "--json"]).stdout)
        bi = [l["block_influence"] for l in block["layers"]]
        best = min(range(0, 25), key=lambda s: sum(bi[s:s + 6]))
        run("depth 30→24", None, ["--drop-layers", f"{best}-{best + 5}"], method_name=f"least influential block ({best}–{best + 5})")
        run("depth 30→24", None, ["--drop-layers", "24-29"], method_name="last 6 layers")
        run("depth 30→24", "random", ["--layers", "24"])

    lines = [f"SmolLM2-135M-Instruct Q4_1, no retraining. Importance: {args.samples} × 512 tokens from the start of the corpus. "
             f"Perplexity: corpus hold-out (bytes {start}–{len(data)}), {args.chunks} × 512 tokens, `ckpt eval`; llama.cpp column: "
             "the same file in llama.cpp (llama_perplexity.py).", "",
             "| configuration | method | ppl (ckpt eval) | ppl (llama.cpp) | parameters |", "|---|---|---|---|---|"]
    for label, method, p, c, params in rows:
        cs = "—" if c is None else f"{c:,.2f} ({(c - p) / p * 100:+.2f}%)"
        lines.append(f"| {label} | {method} | {p:,.2f} | {cs} | {params} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        Path(args.write).write_text(text)


if __name__ == "__main__":
    main()
