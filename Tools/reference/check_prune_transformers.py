#!/usr/bin/env python3
"""Pruned safetensors checkpoints load in transformers and score as `ckpt eval` says.

Converts SmolLM2 (Q4_1 GGUF) to an HF f32 checkpoint with `ckpt convert`, measures
importance, prunes it with `ckpt prune` in safetensors (FFN 1024, 2 heads per group,
hidden 448, 24 layers, each alone), then for each output:

  * checks that config.json's sizes match the tensor shapes in the safetensors files;
  * loads it with transformers (AutoModelForCausalLM, float32, CPU) and computes the
    perplexity of --chunks chunks of 256 hold-out tokens the way `ckpt eval` does
    (second half of each chunk scored), on the token ids ckpt's tokenizer gives;
  * compares with `ckpt eval --f32-activations` on the same file (f32 throughout on
    both sides, so the two should agree closely).

Ends with `check_prune_transformers: N passed, M failed` (tolerance 0.5%).

    python3 Tools/reference/check_prune_transformers.py [--chunks 4]
"""

import argparse
import json
import math
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"


def sh(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True)


def shapes_match(d: Path):
    cfg = json.loads((d / "config.json").read_text())
    shapes = {}
    for f in d.glob("*.safetensors"):
        with safe_open(str(f), "np") as s:
            for k in s.keys():
                shapes[k] = s.get_slice(k).get_shape()
    h, f, nh, kv, hd, L = (cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"],
                           cfg["num_key_value_heads"], cfg["head_dim"], cfg["num_hidden_layers"])
    want = {"model.embed_tokens.weight": [cfg["vocab_size"], h], "model.norm.weight": [h]}
    for i in range(L):
        p = f"model.layers.{i}."
        want.update({p + "self_attn.q_proj.weight": [nh * hd, h], p + "self_attn.k_proj.weight": [kv * hd, h],
                     p + "self_attn.o_proj.weight": [h, nh * hd], p + "mlp.gate_proj.weight": [f, h],
                     p + "mlp.down_proj.weight": [h, f], p + "input_layernorm.weight": [h]})
    bad = [k for k, v in want.items() if shapes.get(k) != v]
    extra = [k for k in shapes if k.startswith("model.layers.") and int(k.split(".")[2]) >= L]
    return not bad and not extra, bad[:3] + extra[:3]


def hf_ppl(d: Path, tokens, ctx, chunks):
    m = AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32)
    m.eval()
    nll, n = 0.0, 0
    for c in range(chunks):
        ids = torch.tensor([tokens[c * ctx:(c + 1) * ctx]])
        with torch.no_grad():
            logits = m(ids).logits[0].double().numpy()
        for p in range(ctx // 2, ctx - 1):
            row = logits[p]
            mx = row.max()
            nll += mx + math.log(np.exp(row - mx).sum()) - row[tokens[c * ctx + p + 1]]
            n += 1
    return math.exp(nll / n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--corpus", default=str(REPO.parent / "shared/corpus/train.txt"))
    ap.add_argument("--chunks", type=int, default=4)
    args = ap.parse_args()
    ck, ctx = args.ckpt, 256
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="ckpt-prune-hf-") as tmp:
        tmp = Path(tmp)
        data = Path(args.corpus).read_bytes()
        start = data.find(b"\n\n", int(len(data) * 0.9)) + 2
        hold = tmp / "holdout.txt"
        hold.write_bytes(data[start:])
        hf = tmp / "hf"
        sh([ck, "convert", str(MODEL), str(hf), "--dtype", "f32"])
        stats = tmp / "s.imp"
        sh([ck, "importance", "--model", str(hf), "--calib", args.corpus, "--samples", "16", "--seq", "512", "-o", str(stats)])
        ids = json.loads(sh([ck, "tokenize", "--model", str(hf), "--file", str(hold), "--json"]).stdout)["ids"]
        configs = {"ffn 1024": ["--ffn", "1024"], "heads 2/group": ["--heads-per-group", "2"],
                   "hidden 432": ["--hidden", "432"], "layers 24": ["--layers", "24"]}
        print(f"{'pruned':<16}{'shapes':>8}{'ppl transformers':>18}{'ppl ckpt eval':>15}{'Δ':>9}")
        for name, extra in configs.items():
            out = tmp / name.replace(" ", "-").replace("/", "")
            sh([ck, "prune", "--model", str(hf), "--importance", str(stats), "-o", str(out)] + extra)
            ok, why = shapes_match(out)
            p_hf = hf_ppl(out, ids, ctx, args.chunks)
            r = json.loads(sh([ck, "eval", "--model", str(out), "--file", str(hold), "--ctx", str(ctx),
                               "--chunks", str(args.chunks), "--f32-activations", "--json"]).stdout)
            d = (r["ppl"] - p_hf) / p_hf
            good = ok and abs(d) < 0.005
            passed += good
            failed += not good
            print(f"{name:<16}{'ok' if ok else 'BAD ' + str(why):>8}{p_hf:>18.4f}{r['ppl']:>15.4f}{d * 100:>+8.3f}%")
    print(f"check_prune_transformers: {passed} passed, {failed} failed")


if __name__ == "__main__":
    main()
