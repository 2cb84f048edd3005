#!/usr/bin/env python3
"""Check `ckpt convert` GGUF -> HF safetensors against gguf-py, tensor by tensor.

Converts the GGUF (default: the SmolLM2 Q4_1 in .cache/models/) with `ckpt convert
--dtype f32` and `--dtype bf16`, then reads every output tensor with the `safetensors`
package and compares it with gguf-py's `quants.dequantize` of the source tensor, after
undoing llama.cpp's Q/K row permutation (llama/mistral): f32 must be bit-identical, bf16
must be the round-to-nearest-even of it. Also checks names, tied embeddings and the
config.json hyper-parameters, and that the rebuilt tokenizer.json, loaded by the
`tokenizers` library, gives llama.cpp's ids (Tests/Fixtures/tokenizer/, made by
make_tokenizer_fixtures.py) on the whole corpus and on awkward inputs.
Ends with `check_convert: N passed, M failed`.

    python3 Tools/reference/check_convert.py [--ckpt BIN] [--gguf FILE]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors import safe_open
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parents[2]

LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
GLOBAL_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                "output.weight": "lm_head.weight"}


def hf_name(name):
    if name in GLOBAL_NAMES:
        return GLOBAL_NAMES[name]
    _, layer, rest = name.split(".", 2)
    return f"model.layers.{layer}.{LAYER_NAMES[rest]}"


def unpermute(w, heads):
    """Inverse of llama.cpp's convert_hf_to_gguf permute()."""
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def bf16_rne(x):
    u = x.view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def check_tokenizer(path):
    """tokenizers' ids for the corpus and the awkward inputs against llama.cpp's (fixtures)."""
    fixtures = REPO / "Tests/Fixtures/tokenizer"
    tok = Tokenizer.from_file(str(path))
    text = (REPO / "Tests/Fixtures/corpus/train.txt").read_text(encoding="utf-8")  # the corpus, committed
    expected = np.frombuffer((fixtures / "smollm2-corpus.ids.u16").read_bytes(), dtype="<u2").tolist()
    got = tok.encode(text, add_special_tokens=False).ids
    if got != expected:
        k = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        return False, f"corpus ids differ from llama.cpp's at token {k} ({len(got)} vs {len(expected)} tokens)"
    cases = json.loads((fixtures / "smollm2-awkward.json").read_text())["cases"]
    checked = 0
    for case in cases:
        if not case["valid_utf8"]:
            continue  # str input only: invalid UTF-8 is for the engine's own tokenizer
        s = bytes.fromhex(case["bytes"]).decode()
        if "<|" in s:
            continue  # tokenizers always matches added tokens in text; llama.cpp with special=False does not
        ids = tok.encode(s, add_special_tokens=False).ids
        if ids != case["ids"]:
            return False, f"awkward input {s[:30]!r}: {ids[:8]} vs llama.cpp {case['ids'][:8]}"
        checked += 1
    return True, f"{len(expected)} corpus tokens and {checked} awkward inputs equal llama.cpp's ids"


def field(reader, key):
    return reader.fields[key].contents()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--gguf", default=str(REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = ap.parse_args()
    reader = GGUFReader(args.gguf)
    arch = field(reader, "general.architecture")
    heads = field(reader, f"{arch}.attention.head_count")
    kv_heads = field(reader, f"{arch}.attention.head_count_kv")
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="ckpt-check-convert-") as tmp:
        outputs = {}
        for dtype in ("f32", "bf16"):
            out = Path(tmp) / dtype
            subprocess.run([args.ckpt, "convert", args.gguf, str(out), "--dtype", dtype], check=True, stderr=subprocess.DEVNULL)
            outputs[dtype] = out
        config = json.loads((outputs["f32"] / "config.json").read_text())
        expected_config = {"num_hidden_layers": field(reader, f"{arch}.block_count"), "hidden_size": field(reader, f"{arch}.embedding_length"),
                           "num_attention_heads": heads, "num_key_value_heads": kv_heads,
                           "intermediate_size": field(reader, f"{arch}.feed_forward_length"),
                           "tie_word_embeddings": not any(t.name == "output.weight" for t in reader.tensors)}
        bad = {k: (config.get(k), v) for k, v in expected_config.items() if config.get(k) != v}
        print(f"{'OK' if not bad else 'MISMATCH':8} config.json {bad if bad else ''}")
        passed, failed = (passed + 1, failed) if not bad else (passed, failed + 1)
        f32 = safe_open(str(outputs["f32"] / "model.safetensors"), "numpy")
        problems = []
        for t in reader.tensors:
            ref = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(tuple(int(x) for x in reversed(t.shape)))
            if t.name.endswith("attn_q.weight"):
                ref = unpermute(ref, heads)
            elif t.name.endswith("attn_k.weight"):
                ref = unpermute(ref, kv_heads)
            name = hf_name(t.name)
            got32 = f32.get_tensor(name)
            if got32.shape != ref.shape or not np.array_equal(got32.view(np.uint32), ref.view(np.uint32)):
                problems.append(f"{name}: f32 differs from gguf-py")
        # bf16: numpy has no bfloat16; read the raw bytes from the file through the header.
        path = outputs["bf16"] / "model.safetensors"
        blob = path.read_bytes()
        n = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8:8 + n])
        for t in reader.tensors:
            name = hf_name(t.name)
            info = header[name]
            begin, end = info["data_offsets"]
            got = np.frombuffer(blob[8 + n + begin: 8 + n + end], dtype="<u2")
            ref = f32.get_tensor(name).reshape(-1)
            if info["dtype"] != "BF16" or not np.array_equal(got, bf16_rne(np.ascontiguousarray(ref))):
                problems.append(f"{name}: bf16 is not the round-to-nearest-even of f32")
        count = len(reader.tensors)
        print(f"{'OK' if not problems else 'MISMATCH':8} {count} tensors: f32 bit-identical to gguf-py dequantize (Q/K unpermuted), bf16 = RNE(f32)")
        for p in problems[:20]:
            print("   ", p)
        passed, failed = (passed + 1, failed) if not problems else (passed, failed + 1)

        ok, detail = check_tokenizer(outputs["f32"] / "tokenizer.json")
        print(f"{'OK' if ok else 'MISMATCH':8} tokenizer.json through the tokenizers library: {detail}")
        passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
    print(f"check_convert: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
