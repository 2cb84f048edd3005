#!/usr/bin/env python3
"""Layer streaming: `ckpt eval` on a model larger than the memory it may use.

Writes a synthetic llama-architecture GGUF with gguf-py (random F16 weights, default
24 layers of hidden 2048 / ffn 5632, about 2.5 GB; SmolLM2's tokenizer copied in so
`ckpt eval` can tokenize), then runs, on the corpus hold-out:

  * ckpt eval --max-resident CAP    (layers streamed: each layer's pages dropped after use)
  * ckpt eval                       (the whole model stays mapped: the anchor)
  * `cat MODEL > /dev/null`         (reading the file once from the page cache / disk)

and prints tokens/s and peak RSS (GNU time, from outside the process) of each, with
the ratio of peak RSS to the cap and to the model's size. The perplexity of random
weights means nothing; the memory and the speed do. The model is deleted afterwards.

    python3 Tools/bench/stream_bench.py [--layers 24] [--hidden 2048] [--ffn 5632] [--cap 512M] [--ctx 128] [--chunks 2]
"""

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFWriter, GGUFValueType

REPO = Path(__file__).resolve().parents[2]
SMOLLM2 = REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def write_model(path: Path, layers: int, hidden: int, ffn: int, heads: int, kv_heads: int):
    src = GGUFReader(str(SMOLLM2))
    tokens = src.fields["tokenizer.ggml.tokens"]
    vocab = len(tokens.data)
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(layers)
    w.add_context_length(2048)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(hidden // heads)
    # The tokenizer keys, copied as they are.
    for name, field in src.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        if vtype == GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == GGUFValueType.STRING:
                value = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            else:
                value = [field.parts[i][0].item() for i in field.data]
            w.add_array(name, value)
        elif vtype == GGUFValueType.STRING:
            w.add_string(name, bytes(field.parts[field.data[0]]).decode("utf-8"))
        elif vtype == GGUFValueType.BOOL:
            w.add_bool(name, bool(field.parts[field.data[0]][0]))
        else:
            w.add_uint32(name, int(field.parts[field.data[0]][0]))
    rng = np.random.default_rng(0)
    kv = hidden // heads * kv_heads

    def mat(rows, cols, scale):
        return (rng.standard_normal((rows, cols), dtype=np.float32) * scale).astype(np.float16)

    w.add_tensor("token_embd.weight", mat(vocab, hidden, 0.02))
    w.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
    for i in range(layers):
        s = 1 / np.sqrt(hidden)
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, dtype=np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", mat(hidden, hidden, s))
        w.add_tensor(f"blk.{i}.attn_k.weight", mat(kv, hidden, s))
        w.add_tensor(f"blk.{i}.attn_v.weight", mat(kv, hidden, s))
        w.add_tensor(f"blk.{i}.attn_output.weight", mat(hidden, hidden, s))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", mat(ffn, hidden, s))
        w.add_tensor(f"blk.{i}.ffn_up.weight", mat(ffn, hidden, s))
        w.add_tensor(f"blk.{i}.ffn_down.weight", mat(hidden, ffn, 1 / np.sqrt(ffn)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def timed(cmd):
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, check=True)
    rss = next(int(l.split()[-1]) * 1024 for l in p.stderr.splitlines() if "Maximum resident set size" in l)
    wall = next(l.split()[-1] for l in p.stderr.splitlines() if "Elapsed (wall clock)" in l)
    return p.stdout, rss, wall


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--corpus", default=str(REPO.parent / "shared/corpus/train.txt"))
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--ffn", type=int, default=5632)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--cap", default="512M")
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--chunks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    cap = int(float(args.cap[:-1]) * units[args.cap[-1].upper()]) if args.cap[-1].upper() in units else int(args.cap)

    with tempfile.TemporaryDirectory(prefix="ckpt-stream-", dir=REPO / ".cache") as tmp:
        tmp = Path(tmp)
        model = tmp / "synthetic.gguf"
        t0 = time.time()
        write_model(model, args.layers, args.hidden, args.ffn, args.heads, args.kv_heads)
        size = model.stat().st_size
        data = Path(args.corpus).read_bytes()
        start = data.find(b"\n\n", int(len(data) * 0.9)) + 2
        text = tmp / "holdout.txt"
        text.write_bytes(data[start:])
        print(f"model: synthetic llama, {args.layers} layers, hidden {args.hidden}, ffn {args.ffn}, F16: "
              f"{size / 2**30:.2f} GiB (written in {time.time() - t0:.0f} s); cap {args.cap} = {cap / size:.2f} of the model; "
              f"{args.chunks} chunks of {args.ctx} tokens, batch 1, {args.threads} threads")
        base = [args.ckpt, "eval", "--model", str(model), "--file", str(text), "--ctx", str(args.ctx),
                "--chunks", str(args.chunks), "--batch", "1", "--threads", str(args.threads), "--json"]
        rows = []
        out, rss, _ = timed(base + ["--max-resident", args.cap])
        streamed = json.loads(out.strip().splitlines()[-1])
        rows.append(("ckpt eval --max-resident " + args.cap, streamed["tokens_per_s"], rss))
        out, rss_full, _ = timed(base)
        full = json.loads(out.strip().splitlines()[-1])
        rows.append(("ckpt eval (model mapped whole)", full["tokens_per_s"], rss_full))
        t0 = time.time()
        subprocess.run(f"cat '{model}' > /dev/null", shell=True, check=True)
        cat_s = time.time() - t0
        print(f"\n{'run':<36}{'tokens/s':>10}{'peak RSS':>12}{'RSS / cap':>11}{'RSS / model':>13}")
        for name, tps, r in rows:
            print(f"{name:<36}{tps:>10.1f}{r / 2**20:>9.0f} MiB{r / cap:>10.2f}{r / size:>12.2f}")
        print(f"{'cat model > /dev/null':<36}{'':>10}{'':>12}   {cat_s:.2f} s to read the file once")
        print(f"\nstreamed: peak RSS {'under' if rss < cap else 'OVER'} the cap; speed {streamed['tokens_per_s'] / full['tokens_per_s']:.2f}× the fully mapped run.")


if __name__ == "__main__":
    main()
