#!/usr/bin/env python3
"""Per-expert importance of the tiny mixtures of experts, computed independently of ckpt:
transformers runs each fixture (float64, eager) and gives every layer's MLP input (a hook
on post_attention_layernorm); numpy then routes it as the family does (softmax of the
router's logits, the top k, renormalised where the config says) and runs each expert's
gated MLP on the tokens routed to it, with the weights read from the HF safetensors.

Per layer and calibration sample it takes the means over the sample's tokens that ckpt's
statistics are made of (Formats/importance.md): of the routing weight each expert gets
(0 where not chosen), of whether it was chosen, of weight × ‖expert output‖, and of
|act(gate) × up| for every neuron of every expert (0 on tokens routed elsewhere), then
aggregates them over samples as `ckpt prune` does: l2 = √Σ m², mean = Σ m / n.

Writes Tests/Fixtures/engine/moe-importance.json, which PruningTests/ExpertImportanceTests
replays: ckpt's Calibration on the same token samples must give the same scores.

    python3 Tools/reference/make_moe_importance.py [--samples 3] [--seq 24]

Needs torch, transformers and safetensors (not part of CI).
"""

import argparse
import glob
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "Tests/Fixtures/engine"
FAMILIES = ["mixtral", "qwen3moe", "qwen2moe"]


def expert_names(cfg, layer, e):
    if cfg["model_type"] == "mixtral":
        p = f"model.layers.{layer}.block_sparse_moe"
        return f"{p}.gate.weight", f"{p}.experts.{e}.w1.weight", f"{p}.experts.{e}.w3.weight", f"{p}.experts.{e}.w2.weight"
    p = f"model.layers.{layer}.mlp"
    return f"{p}.gate.weight", f"{p}.experts.{e}.gate_proj.weight", f"{p}.experts.{e}.up_proj.weight", f"{p}.experts.{e}.down_proj.weight"


def silu(x):
    return x / (1 + np.exp(-x))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--seq", type=int, default=24)
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM

    text = (REPO / "Tests/Fixtures/corpus/train.txt").read_bytes()
    # The fixtures' vocabulary is one token per byte (no BOS added): ids are the bytes.
    ids = list(text[: args.samples * args.seq])
    samples = [ids[i * args.seq:(i + 1) * args.seq] for i in range(args.samples)]
    out = {"samples": samples, "families": {}}
    for fam in FAMILIES:
        hf = ENGINE / f"tiny-{fam}-hf"
        cfg = json.loads((hf / "config.json").read_text())
        weights = {k: v.astype(np.float64) for k, v in load_file(glob.glob(str(hf / "*.safetensors"))[0]).items()}
        # experts_implementation: the grouped-matmul experts have no float64 kernel.
        model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float64, attn_implementation="eager",
                                                     experts_implementation="eager").eval()
        L = cfg["num_hidden_layers"]
        E = cfg.get("num_local_experts") or cfg["num_experts"]
        K = cfg["num_experts_per_tok"]
        renorm = cfg.get("norm_topk_prob", cfg["model_type"] == "mixtral")
        captured = {}
        hooks = [model.model.layers[i].post_attention_layernorm.register_forward_hook(
            lambda mod, inp, outp, i=i: captured.__setitem__(i, outp[0].detach().numpy())) for i in range(L)]
        per = {k: [[] for _ in range(L)] for k in ["routing", "selected", "output", "neurons"]}
        for s in samples:
            with torch.no_grad():
                model(torch.tensor([s]))
            for i in range(L):
                x = captured[i]
                T = x.shape[0]
                logits = x @ weights[expert_names(cfg, i, 0)[0]].T
                p = np.exp(logits - logits.max(axis=1, keepdims=True))
                p /= p.sum(axis=1, keepdims=True)
                w = np.zeros((T, E))
                for t in range(T):
                    top = sorted(range(E), key=lambda e: (-p[t, e], e))[:K]
                    kept = sum(p[t, e] for e in top)
                    for e in top:
                        w[t, e] = p[t, e] / kept if renorm else p[t, e]
                out_norm = np.zeros((T, E))
                F = weights[expert_names(cfg, i, 0)[1]].shape[0]
                neurons = np.zeros((T, E * F))
                for e in range(E):
                    _, g, u, d = (weights[n] for n in expert_names(cfg, i, e))
                    rows = np.nonzero(w[:, e] > 0)[0]
                    if len(rows) == 0:
                        continue
                    act = silu(x[rows] @ g.T) * (x[rows] @ u.T)
                    y = act @ d.T
                    out_norm[rows, e] = w[rows, e] * np.linalg.norm(y, axis=1)
                    neurons[np.ix_(rows, range(e * F, (e + 1) * F))] = act
                per["routing"][i].append(w.mean(axis=0))
                per["selected"][i].append((w > 0).mean(axis=0))
                per["output"][i].append(out_norm.mean(axis=0))
                per["neurons"][i].append(np.abs(neurons).mean(axis=0))
        for h in hooks:
            h.remove()
        fam_out = {"experts": E, "layers": []}
        for i in range(L):
            layer = {}
            for k, ms in per.items():
                m = np.array(ms[i])
                layer[f"{k}_l2"] = np.sqrt((m ** 2).sum(axis=0)).tolist()
                layer[f"{k}_mean"] = (m.sum(axis=0) / len(samples)).tolist()
            fam_out["layers"].append(layer)
        out["families"][fam] = fam_out
        print(f"{fam}: {E} experts, top {K}, renormalised {renorm}; layer 0 routing l2 "
              + " ".join(f"{v:.4f}" for v in fam_out["layers"][0]["routing_l2"]))
    (ENGINE / "moe-importance.json").write_text(json.dumps(out) + "\n")
    print(f"wrote {ENGINE / 'moe-importance.json'}")


if __name__ == "__main__":
    main()
