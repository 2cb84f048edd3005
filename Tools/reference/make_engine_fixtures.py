#!/usr/bin/env python3
"""Write tiny random decoder models and their reference outputs to Tests/Fixtures/engine/.

For each architecture ARCH in llama, qwen2, qwen3, gemma2, gemma3, nemotron this script builds one
tiny model with random weights (numpy PCG64 generator seeded from the string "tiny-ARCH")
and writes:

  tiny-ARCH.gguf   the model as llama.cpp stores it, written by gguf-py's GGUFWriter: every
                   tensor F32, llama.cpp tensor names, llama Q/K rows permuted the way
                   convert_hf_to_gguf.py's LlamaModel.permute does (other archs unpermuted),
                   gemma norm weights stored as 1+w (the converter adds 1 to every tensor
                   whose HF name ends in "norm.weight", for gemma3 q_norm/k_norm too), and a
                   byte-level "gpt2" tokenizer of 256 tokens (token id == byte value, GPT-2
                   byte-to-unicode spelling, a single inert merge "Ġ t", add_bos_token
                   false).
  tiny-ARCH.json   {"arch", "config" (HF-style config dict), "tokens" (24 ids = the bytes
                   of "Hello, tiny engine test!"), "layer0_output" ([24, hidden]: the
                   residual stream leaving decoder layer 0), "logits" ([24, vocab]),
                   "llama_cpp_logits" ([24, vocab] or null), "max_abs_diff_transformers",
                   "max_abs_diff_llama_cpp"}. Floats are rounded to 6 significant digits.

and, for llama, qwen3 and nemotron only, tiny-ARCH-hf/{config.json, model.safetensors}: the same
weights in HF layout and HF tensor names (unpermuted, HF norm convention), so a loader's
safetensors path can be checked to give the same logits as the GGUF.

How the reference outputs were produced and checked:

  * "layer0_output" and "logits" come from the float64 numpy forward pass in this file
    (`forward`), written from the semantics of transformers' modeling_llama / qwen2 / qwen3
    / gemma2 / gemma3: gemma embedding scale sqrt(hidden); RMSNorm x*rsqrt(mean(x^2)+eps)*w
    (gemma: *(1+w)); per-head q/k RMSNorm before RoPE (qwen3, gemma3); rotate_half RoPE on
    the unpermuted weights; GQA; causal mask; sliding window (key j visible from query i
    iff 0 <= i-j < window) on gemma2 even layers and on gemma3 layers with (i+1)%6 != 0;
    gemma3 sliding layers use rope base 10000, global layers rope_theta; query scale
    query_pre_attn_scalar**-0.5 (gemma) or head_dim**-0.5; gemma2 attention and final
    tanh softcaps; SiLU (llama/qwen) or tanh-GELU (gemma) gated MLP; gemma post-attention
    and post-feedforward norms. nemotron (modeling_nemotron): LayerNorm1P
    ((x - mean)/sqrt(var + eps) * (1 + w) + b; GGUF stores 1 + w, as convert_hf_to_gguf.py's
    NemotronModel adds 1 to every "norm.weight"), biases on q/k/v/o and on up/down
    (attention_bias, mlp_bias), RoPE on the first int(head_dim * partial_rotary_factor)
    dims only (rotate_half, unpermuted in GGUF: llama.cpp runs nemotron as NEOX), head_dim
    24 where hidden/heads is 16, and an ungated relu(up)^2 MLP. Its GGUF rope.dimension_count
    is that rotary count (12); llama.cpp's converter writes int(factor * hidden) // heads,
    which equals it only when head_dim == hidden/heads.
  * max_abs_diff_transformers: the same weights loaded into the transformers model built
    from the config dict (eager attention, float64), compared with the numpy logits.
  * max_abs_diff_llama_cpp: llama-cpp-python (Llama(logits_all=True, n_ctx=64, one thread,
    default f16 KV cache) evaluating the token ids on tiny-ARCH.gguf, compared with the
    numpy logits; its logits are stored as "llama_cpp_logits".
  * For the -hf copies, transformers' from_pretrained on the directory is also run and
    compared (printed only).

Weight scales: embeddings N(0, 0.5^2), untied output N(0, 0.3^2), Q/K projections
N(0, 0.2^2) (gemma2 0.3^2), everything else N(0, 0.1^2), norm weights 1 + N(0, 0.1^2) in
effect. They are larger than N(0, 0.05^2) on purpose: attention is then clearly
non-uniform (so RoPE, masks and windows matter) and gemma2's softcaps change the numbers.
All weights are rounded to float32 first; the float64 reference uses exactly those values.
Norm weights are drawn so that the stored GGUF value g is a float32 and the HF value g-1 is
exact, so both conventions hold bit-exactly.

Output is deterministic (rerunning gives byte-identical files): seeded generators, fixed
thread counts, rounded floats. Existing other files in the output directory are left alone.

    python3 Tools/reference/make_engine_fixtures.py [--out DIR] [--only ARCH ...] [--skip-llama-cpp]

Needs numpy, gguf 0.19, safetensors, torch + transformers, llama-cpp-python.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import math
import zlib
from pathlib import Path

import numpy as np
import gguf
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "Tests/Fixtures/engine"

# "nemotron-headdim": head_dim 24 where hidden/heads is 16 (as Minitron-8B's 128 beside
# 4096/48). The llama.cpp of llama-cpp-python 0.3.36 refuses that shape (it sizes attn_q
# as hidden x hidden for nemotron; later llama.cpp sizes it head_dim·heads), so that file
# is checked against transformers only and plain "nemotron" (head_dim 16) against both.
ARCHS = ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "nemotron", "nemotron-headdim", "phi3"]
HF_COPIES = {"llama", "qwen3", "nemotron", "phi3"}
# phi3's LongRoPE: 6 rotary pairs (partial_rotary_factor 0.75 of 16), a context of 512 over
# an original 256 (attention factor sqrt(1 + ln 2 / ln 256)); 24 tokens use the short factors.
PHI3_SHORT = [1.0, 1.05, 1.2, 1.5, 2.0, 3.0]
PHI3_LONG = [1.0, 1.5, 2.5, 4.0, 6.0, 8.0]
TEXT = b"Hello, tiny engine test!"
TOKENS = list(TEXT)
assert len(TOKENS) == 24

HIDDEN, FFN, HEADS, KV_HEADS, VOCAB, CTX, EPS = 64, 128, 4, 2, 256, 256, 1e-6


# --------------------------------------------------------------------------- configs


def family(name):
    """The architecture of a fixture name ("nemotron-headdim" is a nemotron)."""
    return name.split("-")[0]


def make_config(name):
    """HF-style config dict (what the HF config.json / transformers would get)."""
    arch = family(name)
    head_dim = {"qwen3": 32, "gemma3": 32, "nemotron-headdim": 24}.get(name, HIDDEN // HEADS)
    layers = 6 if arch == "gemma3" else 2
    cfg = {
        "architectures": [],
        "model_type": arch,
        "hidden_size": HIDDEN,
        "intermediate_size": FFN,
        "num_hidden_layers": layers,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": head_dim,
        "vocab_size": VOCAB,
        "max_position_embeddings": CTX,
        "rms_norm_eps": EPS,
        "rope_theta": 10000.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    if arch == "nemotron":
        del cfg["rms_norm_eps"]
        cfg.update(architectures=["NemotronForCausalLM"], hidden_act="relu2", norm_eps=1e-5,
                   partial_rotary_factor=0.5, attention_bias=True, mlp_bias=True,
                   tie_word_embeddings=False)
    if arch == "phi3":
        cfg.update(architectures=["Phi3ForCausalLM"], hidden_act="silu", tie_word_embeddings=False,
                   partial_rotary_factor=0.75, max_position_embeddings=512,
                   original_max_position_embeddings=256, sliding_window=None, pad_token_id=0,
                   rope_scaling={"type": "longrope", "short_factor": PHI3_SHORT, "long_factor": PHI3_LONG})
    if arch == "llama":
        cfg.update(architectures=["LlamaForCausalLM"], hidden_act="silu", attention_bias=False,
                   mlp_bias=False, tie_word_embeddings=False)
    elif arch == "qwen2":
        cfg.update(architectures=["Qwen2ForCausalLM"], hidden_act="silu", tie_word_embeddings=False,
                   use_sliding_window=False, sliding_window=None)
    elif arch == "qwen3":
        cfg.update(architectures=["Qwen3ForCausalLM"], hidden_act="silu", attention_bias=False,
                   tie_word_embeddings=False, use_sliding_window=False, sliding_window=None)
    elif arch == "gemma2":
        cfg.update(architectures=["Gemma2ForCausalLM"], hidden_activation="gelu_pytorch_tanh",
                   tie_word_embeddings=True, attention_bias=False, query_pre_attn_scalar=head_dim,
                   sliding_window=8, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                   layer_types=["sliding_attention" if i % 2 == 0 else "full_attention"
                                for i in range(layers)])
    elif arch == "gemma3":
        cfg.update(architectures=["Gemma3ForCausalLM"], model_type="gemma3_text",
                   hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
                   attention_bias=False, query_pre_attn_scalar=head_dim, sliding_window=8,
                   attn_logit_softcapping=None, final_logit_softcapping=None,
                   rope_theta=1000000.0, rope_local_base_freq=10000.0,
                   layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                                for i in range(layers)])
    return cfg


def is_gemma(cfg):
    return cfg["model_type"].startswith("gemma")


def is_nemotron(cfg):
    return cfg["model_type"] == "nemotron"


def has_qk_norm(cfg):
    return cfg["model_type"] in ("qwen3", "gemma3_text")


# --------------------------------------------------------------------------- weights


def make_weights(name, cfg):
    """HF-named float64 arrays holding float32-representable values (HF conventions).

    Returns (hf, norm_gguf): hf maps HF names to arrays; norm_gguf maps the HF names of
    norm weights to the value stored in the GGUF (w for llama/qwen, 1+w for gemma).
    """
    rng = np.random.Generator(np.random.PCG64(zlib.crc32(f"tiny-{name}".encode())))
    arch = family(name)
    gemma = is_gemma(cfg)
    nemo = is_nemotron(cfg)
    H, F, hd = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    nq, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    qk_std = 0.3 if arch == "gemma2" else 0.2

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32).astype(np.float64)

    hf, norm_gguf = {}, {}

    def norm(name, n):
        # g is the effective scale (float32); HF stores g-1 for gemma (exact), g otherwise.
        g = (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32).astype(np.float64)
        hf[name] = g - 1.0 if (gemma or nemo) else g
        norm_gguf[name] = g
        if nemo:  # LayerNorm1P's bias
            hf[name[: -len("weight")] + "bias"] = normal((n,), 0.1)

    hf["model.embed_tokens.weight"] = normal((cfg["vocab_size"], H), 0.5)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        norm(p + "input_layernorm.weight", H)
        hf[p + "self_attn.q_proj.weight"] = normal((nq * hd, H), qk_std)
        hf[p + "self_attn.k_proj.weight"] = normal((nkv * hd, H), qk_std)
        hf[p + "self_attn.v_proj.weight"] = normal((nkv * hd, H), 0.1)
        if arch == "phi3":  # one fused projection: q rows, k rows, v rows
            hf[p + "self_attn.qkv_proj.weight"] = np.concatenate(
                [hf.pop(p + f"self_attn.{x}_proj.weight") for x in "qkv"], axis=0)
        if arch in ("qwen2", "nemotron"):
            hf[p + "self_attn.q_proj.bias"] = normal((nq * hd,), 0.1)
            hf[p + "self_attn.k_proj.bias"] = normal((nkv * hd,), 0.1)
            hf[p + "self_attn.v_proj.bias"] = normal((nkv * hd,), 0.1)
        if has_qk_norm(cfg):
            norm(p + "self_attn.q_norm.weight", hd)
            norm(p + "self_attn.k_norm.weight", hd)
        hf[p + "self_attn.o_proj.weight"] = normal((H, nq * hd), 0.1)
        if nemo:
            hf[p + "self_attn.o_proj.bias"] = normal((H,), 0.1)
        norm(p + "post_attention_layernorm.weight", H)
        if gemma:
            norm(p + "pre_feedforward_layernorm.weight", H)
            norm(p + "post_feedforward_layernorm.weight", H)
        if nemo:
            # relu(up)^2 squares: a larger up would make the MLP dwarf the residual.
            hf[p + "mlp.up_proj.weight"] = normal((F, H), 0.1)
            hf[p + "mlp.up_proj.bias"] = normal((F,), 0.1)
            hf[p + "mlp.down_proj.weight"] = normal((H, F), 0.1)
            hf[p + "mlp.down_proj.bias"] = normal((H,), 0.1)
        else:
            hf[p + "mlp.gate_proj.weight"] = normal((F, H), 0.1)
            hf[p + "mlp.up_proj.weight"] = normal((F, H), 0.1)
            hf[p + "mlp.down_proj.weight"] = normal((H, F), 0.1)
            if arch == "phi3":  # gate rows, then up rows
                hf[p + "mlp.gate_up_proj.weight"] = np.concatenate(
                    [hf.pop(p + "mlp.gate_proj.weight"), hf.pop(p + "mlp.up_proj.weight")], axis=0)
    norm("model.norm.weight", H)
    if not cfg["tie_word_embeddings"]:
        hf["lm_head.weight"] = normal((cfg["vocab_size"], H), 0.3)
    return hf, norm_gguf


# --------------------------------------------------------------------------- numpy reference


def rms_norm(x, w, eps, gemma):
    y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    return y * (1.0 + w) if gemma else y * w


def layer_norm_1p(x, w, b, eps):
    """nemotron's LayerNorm1P (w is HF's stored value; the scale is 1 + w)."""
    mu = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * (1.0 + w) + b


def rope(x, pos, base, dims=None, factors=None, attention=1.0):
    """HF rotate_half RoPE on the first `dims` dims of each head, frequencies divided by
    `factors` (LongRoPE), cos and sin times `attention`. x: [T, heads, head_dim]."""
    d = x.shape[-1] if dims is None else dims
    x, rest = x[..., :d], x[..., d:]
    inv_freq = 1.0 / base ** (np.arange(0, d, 2, dtype=np.float64) / d)
    if factors is not None:
        inv_freq = inv_freq / np.asarray(factors, dtype=np.float64)
    ang = pos[:, None] * inv_freq[None, :]  # [T, d/2]
    cos = attention * np.concatenate([np.cos(ang), np.cos(ang)], axis=-1)[:, None, :]
    sin = attention * np.concatenate([np.sin(ang), np.sin(ang)], axis=-1)[:, None, :]
    rot = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], axis=-1)
    return np.concatenate([x * cos + rot * sin, rest], axis=-1)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(cfg, W, tokens):
    """float64 forward pass; returns (residual stream after layer 0, logits)."""
    gemma = is_gemma(cfg)
    nemo = is_nemotron(cfg)
    eps, H = cfg.get("rms_norm_eps", cfg.get("norm_eps")), cfg["hidden_size"]
    rot_dims = int(cfg["head_dim"] * cfg.get("partial_rotary_factor", 1.0))
    factors, attention = None, 1.0
    if cfg.get("rope_scaling", {}) and cfg["rope_scaling"].get("type") == "longrope":
        factors = cfg["rope_scaling"]["short_factor"]
        scale = cfg["max_position_embeddings"] / cfg["original_max_position_embeddings"]
        attention = math.sqrt(1 + math.log(scale) / math.log(cfg["original_max_position_embeddings"]))
    nq, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    W = dict(W)
    for il in range(cfg["num_hidden_layers"]):  # phi3's fused projections, split
        p = f"model.layers.{il}."
        if p + "self_attn.qkv_proj.weight" in W:
            qkv = W[p + "self_attn.qkv_proj.weight"]
            W[p + "self_attn.q_proj.weight"] = qkv[: nq * hd]
            W[p + "self_attn.k_proj.weight"] = qkv[nq * hd: (nq + nkv) * hd]
            W[p + "self_attn.v_proj.weight"] = qkv[(nq + nkv) * hd:]
            gu = W[p + "mlp.gate_up_proj.weight"]
            W[p + "mlp.gate_proj.weight"], W[p + "mlp.up_proj.weight"] = gu[: len(gu) // 2], gu[len(gu) // 2:]
    nq, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    T = len(tokens)
    pos = np.arange(T, dtype=np.float64)
    layer_types = cfg.get("layer_types") or ["full_attention"] * cfg["num_hidden_layers"]
    scale = (cfg["query_pre_attn_scalar"] if gemma else hd) ** -0.5
    softcap = cfg.get("attn_logit_softcapping")
    act = gelu_tanh if gemma else silu

    def pre_norm(x, name):
        if nemo:
            return layer_norm_1p(x, W[name + ".weight"], W[name + ".bias"], eps)
        return rms_norm(x, W[name + ".weight"], eps, gemma)

    x = W["model.embed_tokens.weight"][tokens]
    if gemma:
        x = x * math.sqrt(H)
    i_idx, j_idx = np.arange(T)[:, None], np.arange(T)[None, :]
    layer0 = None
    for il in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{il}."
        sliding = layer_types[il] == "sliding_attention"
        base = cfg["rope_local_base_freq"] if (sliding and "rope_local_base_freq" in cfg) else cfg["rope_theta"]

        h = pre_norm(x, p + "input_layernorm")
        q = h @ W[p + "self_attn.q_proj.weight"].T
        k = h @ W[p + "self_attn.k_proj.weight"].T
        v = h @ W[p + "self_attn.v_proj.weight"].T
        if p + "self_attn.q_proj.bias" in W:
            q = q + W[p + "self_attn.q_proj.bias"]
            k = k + W[p + "self_attn.k_proj.bias"]
            v = v + W[p + "self_attn.v_proj.bias"]
        q, k, v = q.reshape(T, nq, hd), k.reshape(T, nkv, hd), v.reshape(T, nkv, hd)
        if has_qk_norm(cfg):
            q = rms_norm(q, W[p + "self_attn.q_norm.weight"], eps, gemma)
            k = rms_norm(k, W[p + "self_attn.k_norm.weight"], eps, gemma)
        q, k = rope(q, pos, base, rot_dims, factors, attention), rope(k, pos, base, rot_dims, factors, attention)

        allowed = j_idx <= i_idx
        if sliding:
            allowed &= (i_idx - j_idx) < cfg["sliding_window"]
        out = np.empty((T, nq, hd))
        for hh in range(nq):
            kv = hh // (nq // nkv)
            s = (q[:, hh, :] @ k[:, kv, :].T) * scale
            if softcap:
                s = np.tanh(s / softcap) * softcap
            s = np.where(allowed, s, -np.inf)
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            out[:, hh, :] = s @ v[:, kv, :]
        a = out.reshape(T, nq * hd) @ W[p + "self_attn.o_proj.weight"].T
        if p + "self_attn.o_proj.bias" in W:
            a = a + W[p + "self_attn.o_proj.bias"]

        if gemma:
            x = x + rms_norm(a, W[p + "post_attention_layernorm.weight"], eps, True)
            h = rms_norm(x, W[p + "pre_feedforward_layernorm.weight"], eps, True)
        else:
            x = x + a
            h = pre_norm(x, p + "post_attention_layernorm")
        if nemo:
            m = np.maximum(h @ W[p + "mlp.up_proj.weight"].T + W[p + "mlp.up_proj.bias"], 0.0) ** 2
            m = m @ W[p + "mlp.down_proj.weight"].T + W[p + "mlp.down_proj.bias"]
        else:
            m = (act(h @ W[p + "mlp.gate_proj.weight"].T) * (h @ W[p + "mlp.up_proj.weight"].T))
            m = m @ W[p + "mlp.down_proj.weight"].T
        if gemma:
            m = rms_norm(m, W[p + "post_feedforward_layernorm.weight"], eps, True)
        x = x + m
        if il == 0:
            layer0 = x.copy()

    h = pre_norm(x, "model.norm")
    out_w = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    logits = h @ out_w.T
    if cfg.get("final_logit_softcapping"):
        c = cfg["final_logit_softcapping"]
        logits = np.tanh(logits / c) * c
    return layer0, logits


# --------------------------------------------------------------------------- GGUF


def bytes_to_unicode():
    """GPT-2's byte -> printable unicode character table (as in its encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def permute_llama(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute (n_head already the kv count for K)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "self_attn.qkv_proj.weight": "attn_qkv.weight",
    "mlp.gate_up_proj.weight": "ffn_up.weight",
    "self_attn.o_proj.bias": "attn_output.bias",
    "mlp.up_proj.bias": "ffn_up.bias",
    "mlp.down_proj.bias": "ffn_down.bias",
    "input_layernorm.bias": "attn_norm.bias",
    # gemma2/3 only (llama/qwen map post_attention_layernorm to ffn_norm, below)
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
}


def gguf_tensors(arch, cfg, W, norm_gguf):
    nq, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    out = []
    for name, arr in W.items():
        val = norm_gguf.get(name, arr)
        if name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        elif name == "model.norm.bias":
            gname = "output_norm.bias"
        elif name == "lm_head.weight":
            gname = "output.weight"
        else:
            parts = name.split(".")
            bid, rest = int(parts[2]), ".".join(parts[3:])
            if rest.startswith("post_attention_layernorm.") and not is_gemma(cfg):
                gname = f"blk.{bid}.ffn_norm.{rest.split('.')[-1]}"
            else:
                gname = f"blk.{bid}.{GGUF_LAYER_NAMES[rest]}"
            if arch == "llama" and rest == "self_attn.q_proj.weight":
                val = permute_llama(val, nq)
            elif arch == "llama" and rest == "self_attn.k_proj.weight":
                val = permute_llama(val, nkv)
        out.append((gname, np.ascontiguousarray(val, dtype=np.float32)))
    return out


def add_byte_tokenizer(w, cfg):
    """The fixtures' vocabulary: one token a byte, GPT-2's byte-to-unicode spelling."""
    table = bytes_to_unicode()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([table[b] for b in range(256)])
    w.add_token_types([gguf.TokenType.NORMAL] * 256)
    # llama.cpp requires tokenizer.ggml.merges for "gpt2" and gguf-py refuses empty arrays:
    # one merge (GPT-2's first), whose result is not in the vocab, so it never applies.
    w.add_token_merges(["Ġ t"])
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)


def write_gguf(path, name, cfg, W, norm_gguf):
    arch = family(name)
    w = gguf.GGUFWriter(str(path), arch)
    # llama.cpp sets token attributes by general.name: a name with "phi3" in it looks up
    # Phi-3's "</s>" and "<s>", which this byte vocabulary lacks (unordered_map::at).
    w.add_name("tiny-phi-mini" if arch == "phi3" else f"tiny-{name}")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    if cfg["head_dim"] != cfg["hidden_size"] // cfg["num_attention_heads"]:
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
    if arch == "nemotron":
        w.add_layer_norm_eps(cfg["norm_eps"])
    else:
        w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg["rope_theta"])  # gemma3: the global layers' base
    w.add_rope_dimension_count(int(cfg["head_dim"] * cfg.get("partial_rotary_factor", 1.0)))
    w.add_vocab_size(cfg["vocab_size"])
    if arch in ("gemma2", "gemma3"):
        w.add_sliding_window(cfg["sliding_window"])
    if arch == "phi3":  # as convert_hf_to_gguf.py's Phi3MiniModel
        orig = cfg["original_max_position_embeddings"]
        w.add_rope_scaling_orig_ctx_len(orig)
        w.add_sliding_window(0)
        w.add_pad_token_id(cfg["pad_token_id"])  # transformers' Phi3Config defaults it to 32000
        w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(cfg["max_position_embeddings"] / orig) / math.log(orig)))
        w.add_tensor("rope_factors_long.weight", np.array(cfg["rope_scaling"]["long_factor"], dtype=np.float32))
        w.add_tensor("rope_factors_short.weight", np.array(cfg["rope_scaling"]["short_factor"], dtype=np.float32))
    if arch == "gemma2":
        w.add_attn_logit_softcapping(cfg["attn_logit_softcapping"])
        w.add_final_logit_softcapping(cfg["final_logit_softcapping"])

    add_byte_tokenizer(w, cfg)

    for gname, arr in gguf_tensors(arch, cfg, W, norm_gguf):  # arch: the family
        w.add_tensor(gname, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# --------------------------------------------------------------------------- HF copy / checks


def write_hf_copy(dirpath, cfg, W):
    dirpath.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in W.items()}
    save_file(tensors, str(dirpath / "model.safetensors"), metadata={"format": "pt"})
    conf = dict(cfg, torch_dtype="float32")
    (dirpath / "config.json").write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")


def hf_model(cfg, W):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kw = {k: v for k, v in cfg.items() if k not in ("model_type", "architectures")}
    config = AutoConfig.for_model(cfg["model_type"], **kw)
    config._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(config).to(torch.float64).eval()
    state = {k: torch.from_numpy(v.copy()) for k, v in W.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if m != "lm_head.weight" or not cfg["tie_word_embeddings"]]
    assert not missing and not unexpected, (missing, unexpected)
    if cfg["tie_word_embeddings"]:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    if cfg["model_type"] == "gemma3_text":
        rp = config.rope_parameters
        assert rp["full_attention"]["rope_theta"] == cfg["rope_theta"], rp
        assert rp["sliding_attention"]["rope_theta"] == cfg["rope_local_base_freq"], rp
    return model


def hf_logits(model, tokens):
    import torch

    with torch.no_grad():
        out = model(torch.tensor([tokens]), use_cache=False)
    return out.logits[0].double().numpy()


def hf_dir_logits(dirpath, tokens):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(dirpath), attn_implementation="eager")
    model = model.to(torch.float64).eval()
    return hf_logits(model, tokens)


def llama_cpp_logits(path, tokens):
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), logits_all=True, n_ctx=64, n_threads=1, n_threads_batch=1,
                verbose=False)
    llm.eval(tokens)
    logits = np.array(llm.scores[: len(tokens)], dtype=np.float64)
    llm.close()
    return logits


# --------------------------------------------------------------------------- output


def r6(x):
    return float(f"{x:.6g}")


def rounded(a):
    return [[r6(v) for v in row] for row in np.asarray(a).tolist()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--skip-llama-cpp", action="store_true")
    ap.add_argument("--only", nargs="+", choices=ARCHS, help="regenerate these families' files only")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import torch

    torch.set_num_threads(1)

    for arch in args.only or ARCHS:  # a fixture name
        cfg = make_config(arch)
        W, norm_gguf = make_weights(arch, cfg)
        layer0, logits = forward(cfg, W, TOKENS)

        gguf_path = args.out / f"tiny-{arch}.gguf"
        write_gguf(gguf_path, arch, cfg, W, norm_gguf)

        d_hf = float(np.max(np.abs(hf_logits(hf_model(cfg, W), TOKENS) - logits)))

        lc, d_lc = None, None
        if not args.skip_llama_cpp:
            try:
                lc = llama_cpp_logits(gguf_path, TOKENS)
                d_lc = float(np.max(np.abs(lc - logits)))
            except Exception as e:  # noqa: BLE001 - report and keep going
                print(f"{arch}: llama.cpp failed: {e}")

        if arch in HF_COPIES:
            hf_dir = args.out / f"tiny-{arch}-hf"
            write_hf_copy(hf_dir, cfg, W)
            d_dir = float(np.max(np.abs(hf_dir_logits(hf_dir, TOKENS) - logits)))
            print(f"{arch}: from_pretrained({hf_dir.name}) vs numpy max|d| = {d_dir:.3g}")

        doc = {
            "arch": family(arch),
            "config": cfg,
            "tokens": TOKENS,
            "layer0_output": rounded(layer0),
            "logits": rounded(logits),
            "llama_cpp_logits": rounded(lc) if lc is not None else None,
            "max_abs_diff_transformers": float(f"{d_hf:.2g}"),
            "max_abs_diff_llama_cpp": float(f"{d_lc:.3g}") if d_lc is not None else None,
        }
        json_path = args.out / f"tiny-{arch}.json"
        json_path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
        print(f"{arch}: numpy vs transformers {d_hf:.3g}, numpy vs llama.cpp "
              f"{'n/a' if d_lc is None else f'{d_lc:.3g}'}, |logits| max {np.abs(logits).max():.3g}, "
              f"gguf {gguf_path.stat().st_size} B, json {json_path.stat().st_size} B")


if __name__ == "__main__":
    main()
