#!/usr/bin/env python3
"""Writes Tests/Fixtures/engine/rope-yarn.json: RoPE inverse frequencies and attention
factors from transformers' own _compute_yarn_parameters for a few YaRN configs (Qwen2.5
style, DeepSeek-style mscale ratio, no truncation, partial-factor defaults), so
`swift test` checks the engine's YaRN without transformers installed.

    python3 Tools/reference/make_rope_fixtures.py
"""
import json
from pathlib import Path

from transformers import Qwen2Config
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

REPO = Path(__file__).resolve().parents[2]
CASES = [
    ("qwen2.5 yarn x4", dict(hidden_size=1024, num_attention_heads=16, rope_theta=1_000_000.0, max_position_embeddings=131072,
                             rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768})),
    ("mscale ratio", dict(hidden_size=2048, num_attention_heads=16, rope_theta=10000.0, max_position_embeddings=163840,
                          rope_scaling={"rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
                                        "mscale": 0.707, "mscale_all_dim": 0.707, "beta_fast": 32, "beta_slow": 1})),
    ("no truncation, own betas", dict(hidden_size=512, num_attention_heads=8, rope_theta=500000.0, max_position_embeddings=65536,
                                      rope_scaling={"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 8192,
                                                    "beta_fast": 16, "beta_slow": 2, "truncate": False})),
    ("explicit attention factor", dict(hidden_size=768, num_attention_heads=12, rope_theta=10000.0, max_position_embeddings=16384,
                                       rope_scaling={"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 8192,
                                                     "attention_factor": 1.25})),
]


def main():
    out = []
    for name, kw in CASES:
        cfg = Qwen2Config(**kw)
        inv, attention = ROPE_INIT_FUNCTIONS["yarn"](cfg, "cpu")
        config = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "num_hidden_layers": 2, "intermediate_size": 64,
                  "vocab_size": 256, "num_key_value_heads": kw["num_attention_heads"], **kw}
        out.append({"name": name, "config_json": json.dumps(config), "inv_freq": [float(x) for x in inv], "attention_factor": float(attention)})
    path = REPO / "Tests/Fixtures/engine/rope-yarn.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}: {len(out)} cases")


if __name__ == "__main__":
    main()
