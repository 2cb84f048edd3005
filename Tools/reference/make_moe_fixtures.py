#!/usr/bin/env python3
"""Tiny random mixture-of-experts models (Mixtral, Qwen2-MoE, Qwen3-MoE) in both forms,
with their reference logits, for Tests/Fixtures/engine/.

For each family, transformers builds the model from a tiny config of the family's real
layout, its weights are redrawn at scales that make routing vary from token to token
(the default init routes almost uniformly), and `save_pretrained` writes the HF directory
`tiny-{family}-hf` (one tensor an expert, as the hub's checkpoints are). The GGUF
`tiny-{family}.gguf` is written from that directory's tensors with llama.cpp's
conventions (convert_hf_to_gguf.py): experts stacked into `ffn_{gate,up,down}_exps`
([experts, rows, cols]), the router as `ffn_gate_inp`, qwen2moe's shared expert as
`ffn_*_shexp` with its gate `ffn_gate_inp_shexp`; Mixtral as architecture `llama` with
Q and K rows permuted. The byte-level vocabulary is make_engine_fixtures.py's.

`tiny-{family}.json` holds the token ids, transformers' float64 output of layer 0 and
logits (from the HF directory), and llama.cpp's logits of the GGUF, in the layout
ModelsTests/TinyModelTests reads.

    python3 Tools/reference/make_moe_fixtures.py [--only FAMILY ...] [--skip-llama-cpp]

Needs torch, transformers, gguf, safetensors and (for the llama.cpp logits) llama-cpp-python.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_engine_fixtures as base  # noqa: E402

import gguf  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

OUT = base.DEFAULT_OUT
COMMON = dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=10000.0, bos_token_id=1, eos_token_id=2,
              pad_token_id=0, tie_word_embeddings=False)
CONFIGS = {
    # Mixtral: every expert as wide as intermediate_size, weights renormalised over the top 2.
    "mixtral": dict(COMMON, model_type="mixtral", intermediate_size=32, num_local_experts=4, num_experts_per_tok=2),
    # Qwen3-MoE: explicit head_dim (24, not 64/4), q/k norms, 6 experts of moe_intermediate_size.
    "qwen3moe": dict(COMMON, model_type="qwen3_moe", head_dim=24, intermediate_size=128, moe_intermediate_size=32,
                     num_experts=6, num_experts_per_tok=2, norm_topk_prob=True),
    # Qwen2-MoE: qkv biases, weights not renormalised, a shared expert behind a sigmoid gate.
    "qwen2moe": dict(COMMON, model_type="qwen2_moe", intermediate_size=128, moe_intermediate_size=32,
                     shared_expert_intermediate_size=48, num_experts=4, num_experts_per_tok=2, norm_topk_prob=False),
}
GGUF_ARCH = {"mixtral": "llama", "qwen3moe": "qwen3moe", "qwen2moe": "qwen2moe"}


def build(family, seed):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = CONFIGS[family]
    kw = {k: v for k, v in cfg.items() if k != "model_type"}
    config = AutoConfig.for_model(cfg["model_type"], **kw)
    model = AutoModelForCausalLM.from_config(config).to(torch.float32).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("embed_tokens.weight"):
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                # Rows of dot products with unit-scale inputs; routers a little sharper.
                k = 3.0 if name.endswith("mlp.gate.weight") or name.endswith("moe.gate.weight") else 1.0
                p.copy_(k * torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
    return model


def gguf_tensors(family, cfg, W):
    """(name, array) in llama.cpp's layout from the HF state dict W (numpy float32)."""
    L, E = cfg["num_hidden_layers"], cfg.get("num_local_experts") or cfg["num_experts"]
    out = [("token_embd.weight", W["model.embed_tokens.weight"]), ("output_norm.weight", W["model.norm.weight"]),
           ("output.weight", W["lm_head.weight"])]
    for i in range(L):
        p = f"model.layers.{i}."
        q, k = W[p + "self_attn.q_proj.weight"], W[p + "self_attn.k_proj.weight"]
        if family == "mixtral":
            q, k = base.permute_llama(q, cfg["num_attention_heads"]), base.permute_llama(k, cfg["num_key_value_heads"])
        t = {"attn_norm.weight": W[p + "input_layernorm.weight"], "attn_q.weight": q, "attn_k.weight": k,
             "attn_v.weight": W[p + "self_attn.v_proj.weight"], "attn_output.weight": W[p + "self_attn.o_proj.weight"],
             "ffn_norm.weight": W[p + "post_attention_layernorm.weight"]}
        if family == "qwen2moe":
            for x in "qkv":
                t[f"attn_{x}.bias"] = W[p + f"self_attn.{x}_proj.bias"]
        if family == "qwen3moe":
            t["attn_q_norm.weight"] = W[p + "self_attn.q_norm.weight"]
            t["attn_k_norm.weight"] = W[p + "self_attn.k_norm.weight"]
        if family == "mixtral":
            m, names = p + "block_sparse_moe.", {"gate": "w1", "up": "w3", "down": "w2"}
            t["ffn_gate_inp.weight"] = W[m + "gate.weight"]
            experts = m + "experts."
        else:
            m, names = p + "mlp.", {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
            t["ffn_gate_inp.weight"] = W[m + "gate.weight"]
            experts = m + "experts."
        for part, hf in names.items():
            t[f"ffn_{part}_exps.weight"] = np.stack([W[f"{experts}{e}.{hf}.weight"] for e in range(E)])
        if family == "qwen2moe":
            for part in ("gate", "up", "down"):
                t[f"ffn_{part}_shexp.weight"] = W[m + f"shared_expert.{part}_proj.weight"]
            t["ffn_gate_inp_shexp.weight"] = W[m + "shared_expert_gate.weight"].reshape(-1)
        out += [(f"blk.{i}.{n}", a) for n, a in t.items()]
    return out


def write_gguf(path, family, cfg, W):
    arch = GGUF_ARCH[family]
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"tiny-{family}")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    head_dim = cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    if head_dim != cfg["hidden_size"] // cfg["num_attention_heads"]:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_rope_dimension_count(head_dim)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_expert_count(cfg.get("num_local_experts") or cfg["num_experts"])
    w.add_expert_used_count(cfg["num_experts_per_tok"])
    if "moe_intermediate_size" in cfg:
        w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])
    if "shared_expert_intermediate_size" in cfg:
        w.add_expert_shared_feed_forward_length(cfg["shared_expert_intermediate_size"])
    base.add_byte_tokenizer(w, cfg)
    for name, a in gguf_tensors(family, cfg, W):
        w.add_tensor(name, np.ascontiguousarray(a, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def reference(hf_dir, tokens):
    """transformers' float64 layer-0 output and logits of the saved directory."""
    import torch
    from transformers import AutoModelForCausalLM

    # The grouped-matmul experts have no float64 kernel: the per-expert loop does.
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), attn_implementation="eager", experts_implementation="eager")
    model = model.to(torch.float64).eval()
    with torch.no_grad():
        out = model(torch.tensor([tokens]), use_cache=False, output_hidden_states=True)
    return out.hidden_states[1][0].numpy(), out.logits[0].numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--only", nargs="+", choices=list(CONFIGS))
    ap.add_argument("--skip-llama-cpp", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    for family in args.only or CONFIGS:
        cfg = CONFIGS[family]
        hf_dir = args.out / f"tiny-{family}-hf"
        # The seed follows the family, not its place in --only: a rerun remakes the same files.
        build(family, seed=1000 + list(CONFIGS).index(family)).save_pretrained(str(hf_dir), safe_serialization=True)
        (hf_dir / "generation_config.json").unlink(missing_ok=True)
        W = load_file(str(hf_dir / "model.safetensors"))
        gguf_path = args.out / f"tiny-{family}.gguf"
        write_gguf(gguf_path, family, cfg, W)
        layer0, logits = reference(hf_dir, base.TOKENS)
        lc = d_lc = None
        if not args.skip_llama_cpp:
            lc = base.llama_cpp_logits(gguf_path, base.TOKENS)
            d_lc = float(np.max(np.abs(lc - logits)))
        doc = {"arch": GGUF_ARCH[family], "config": cfg, "tokens": base.TOKENS, "layer0_output": base.rounded(layer0),
               "logits": base.rounded(logits), "llama_cpp_logits": base.rounded(lc) if lc is not None else None,
               "max_abs_diff_llama_cpp": float(f"{d_lc:.3g}") if d_lc is not None else None}
        (args.out / f"tiny-{family}.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
        print(f"{family}: transformers vs llama.cpp max|d| {'n/a' if d_lc is None else f'{d_lc:.3g}'}, "
              f"|logits| max {np.abs(logits).max():.3g}, gguf {gguf_path.stat().st_size} B")


if __name__ == "__main__":
    main()
