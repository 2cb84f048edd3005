#!/usr/bin/env python3
"""Write a sparse, sharded bf16 Hugging Face checkpoint shaped like a 15B Llama.

The checkpoint looks like what `transformers` `save_pretrained` writes for a
LlamaForCausalLM with hidden size 5120, 48 layers, 40 attention heads, 8 KV heads
(head_dim 128), FFN size 13824, vocabulary 152064 and an untied lm_head:

    OUTDIR/model-00001-of-0000N.safetensors ...  shards of at most 5 GB
    OUTDIR/model.safetensors.index.json          {"metadata": {"total_size"}, "weight_map"}
    OUTDIR/config.json

Tensors are assigned to shards greedily in state-dict order (embeddings, then layer
by layer, final norm, lm_head), as Hugging Face does. Each shard's header is written
by hand exactly as the `safetensors` package would write it, and the file is then
extended with truncate(), so the tensor data is a hole: about 29.5 GB apparent for
48 layers, a few MB on disk. `--fill-layers N` writes real random bf16 values
(normal, std 0.02) into the first N layers' tensors for benchmarks that read data.

At the end every shard is opened with `safetensors.safe_open` to check that it
lists the expected tensors with the expected shapes, and the apparent and on-disk
sizes are printed.

Usage:
    Tools/make_big_checkpoint.py OUTDIR [--layers 48] [--fill-layers 0]

OUTDIR is created if needed and must be empty.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from safetensors import safe_open

HIDDEN_SIZE = 5120
NUM_HEADS = 40
NUM_KV_HEADS = 8
HEAD_DIM = 128
INTERMEDIATE_SIZE = 13824
VOCAB_SIZE = 152064
DEFAULT_LAYERS = 48

BF16_BYTES = 2
MAX_SHARD_BYTES = 5 * 10**9
FILL_CHUNK_ELEMENTS = 1 << 23


def layer_tensors(i: int) -> list[tuple[str, list[int]]]:
    """One decoder layer's tensors, in the order LlamaDecoderLayer registers them."""
    p = f"model.layers.{i}"
    q_dim = NUM_HEADS * HEAD_DIM
    kv_dim = NUM_KV_HEADS * HEAD_DIM
    return [
        (f"{p}.self_attn.q_proj.weight", [q_dim, HIDDEN_SIZE]),
        (f"{p}.self_attn.k_proj.weight", [kv_dim, HIDDEN_SIZE]),
        (f"{p}.self_attn.v_proj.weight", [kv_dim, HIDDEN_SIZE]),
        (f"{p}.self_attn.o_proj.weight", [HIDDEN_SIZE, q_dim]),
        (f"{p}.mlp.gate_proj.weight", [INTERMEDIATE_SIZE, HIDDEN_SIZE]),
        (f"{p}.mlp.up_proj.weight", [INTERMEDIATE_SIZE, HIDDEN_SIZE]),
        (f"{p}.mlp.down_proj.weight", [HIDDEN_SIZE, INTERMEDIATE_SIZE]),
        (f"{p}.input_layernorm.weight", [HIDDEN_SIZE]),
        (f"{p}.post_attention_layernorm.weight", [HIDDEN_SIZE]),
    ]


def state_dict_shapes(layers: int) -> list[tuple[str, list[int]]]:
    """All tensors of the model, in state-dict order."""
    tensors = [("model.embed_tokens.weight", [VOCAB_SIZE, HIDDEN_SIZE])]
    for i in range(layers):
        tensors += layer_tensors(i)
    tensors += [
        ("model.norm.weight", [HIDDEN_SIZE]),
        ("lm_head.weight", [VOCAB_SIZE, HIDDEN_SIZE]),
    ]
    return tensors


def nbytes(shape: list[int]) -> int:
    return int(np.prod(shape)) * BF16_BYTES


def plan_shards(tensors: list[tuple[str, list[int]]]) -> list[list[tuple[str, list[int]]]]:
    """Hugging Face's greedy split: start a new shard when the next tensor would overflow."""
    shards: list[list[tuple[str, list[int]]]] = [[]]
    size = 0
    for name, shape in tensors:
        n = nbytes(shape)
        if shards[-1] and size + n > MAX_SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += n
    return shards


def shard_file_name(index: int, count: int) -> str:
    return f"model-{index + 1:05d}-of-{count:05d}.safetensors"


def safetensors_header(tensors: list[tuple[str, list[int]]]) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """The header the safetensors package writes: data ordered by name (all one dtype),
    `__metadata__` first, compact JSON padded with spaces to a multiple of 8 bytes.
    Returns the 8-byte length prefix plus JSON, and each tensor's data_offsets."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offsets: dict[str, tuple[int, int]] = {}
    cursor = 0
    for name, shape in sorted(tensors):
        end = cursor + nbytes(shape)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [cursor, end]}
        offsets[name] = (cursor, end)
        cursor = end
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text, offsets


def write_random_bf16(f, start: int, count: int, rng: np.random.Generator) -> None:
    """Write `count` random bf16 values (normal, std 0.02) at byte `start` of `f`."""
    f.seek(start)
    for done in range(0, count, FILL_CHUNK_ELEMENTS):
        n = min(FILL_CHUNK_ELEMENTS, count - done)
        values = rng.standard_normal(n, dtype=np.float32) * np.float32(0.02)
        f.write((values.view(np.uint32) >> 16).astype("<u2").tobytes())


def write_shard(path: Path, tensors: list[tuple[str, list[int]]], fill: set[str], rng: np.random.Generator) -> None:
    """Write the header, extend the file to its full size as a hole, fill the `fill` tensors."""
    header, offsets = safetensors_header(tensors)
    data_size = max(end for _, end in offsets.values())
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + data_size)
        for name, shape in tensors:
            if name in fill:
                write_random_bf16(f, len(header) + offsets[name][0], nbytes(shape) // BF16_BYTES, rng)


def write_index(outdir: Path, shards: list[list[tuple[str, list[int]]]], names: list[str]) -> None:
    weight_map = {t: names[i] for i, shard in enumerate(shards) for t, _ in shard}
    total = sum(nbytes(shape) for shard in shards for _, shape in shard)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    text = json.dumps(index, indent=2, sort_keys=True) + "\n"
    (outdir / "model.safetensors.index.json").write_text(text)


def write_config(outdir: Path, layers: int) -> None:
    config = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": HIDDEN_SIZE,
        "initializer_range": 0.02,
        "intermediate_size": INTERMEDIATE_SIZE,
        "max_position_embeddings": 32768,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": NUM_HEADS,
        "num_hidden_layers": layers,
        "num_key_value_heads": NUM_KV_HEADS,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": VOCAB_SIZE,
    }
    (outdir / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def verify(outdir: Path, shards: list[list[tuple[str, list[int]]]], names: list[str]) -> None:
    """Open every shard with the safetensors package and compare keys, shapes and dtypes."""
    for shard, name in zip(shards, names):
        expected = dict(shard)
        with safe_open(outdir / name, "numpy") as f:
            keys = set(f.keys())
            if keys != set(expected):
                missing = sorted(set(expected) - keys)
                extra = sorted(keys - set(expected))
                sys.exit(f"{name}: safe_open lists the wrong keys (missing {missing}, unexpected {extra})")
            for key in keys:
                s = f.get_slice(key)
                if s.get_shape() != expected[key] or s.get_dtype() != "BF16":
                    sys.exit(f"{name}: {key} is {s.get_dtype()} {s.get_shape()}, expected BF16 {expected[key]}")


def sizes(outdir: Path) -> tuple[int, int]:
    """Apparent and on-disk bytes of the files in `outdir`."""
    stats = [p.stat() for p in outdir.iterdir() if p.is_file()]
    return sum(s.st_size for s in stats), sum(s.st_blocks * 512 for s in stats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", type=Path, help="output directory (created; must be empty)")
    ap.add_argument("--layers", type=int, default=DEFAULT_LAYERS, help="decoder layers (default 48)")
    ap.add_argument("--fill-layers", type=int, default=0, metavar="N",
                    help="write random data into the first N layers' tensors (default 0: all sparse)")
    ap.add_argument("--fill-all", action="store_true",
                    help="also fill the embedding, final norm and LM head: no holes at all (for copy benchmarks)")
    args = ap.parse_args()
    if args.layers < 1:
        ap.error("--layers must be at least 1")
    if not 0 <= args.fill_layers <= args.layers:
        ap.error("--fill-layers must be between 0 and --layers")

    outdir: Path = args.outdir
    outdir.mkdir(parents=True, exist_ok=True)
    if any(outdir.iterdir()):
        sys.exit(f"{outdir} is not empty")

    shards = plan_shards(state_dict_shapes(args.layers))
    names = [shard_file_name(i, len(shards)) for i in range(len(shards))]
    fill = {name for i in range(args.fill_layers) for name, _ in layer_tensors(i)}
    if args.fill_all:
        fill = {name for shard in shards for name, _ in shard}
    rng = np.random.default_rng(0)
    for shard, name in zip(shards, names):
        write_shard(outdir / name, shard, fill, rng)
    write_index(outdir, shards, names)
    write_config(outdir, args.layers)
    verify(outdir, shards, names)

    tensor_count = sum(len(s) for s in shards)
    params = sum(int(np.prod(shape)) for s in shards for _, shape in s)
    apparent, on_disk = sizes(outdir)
    print(f"{outdir}: {len(shards)} shards, {tensor_count} tensors, {params / 1e9:.2f}B parameters "
          f"(bf16, {args.layers} layers, {'all' if args.fill_all else args.fill_layers} filled); safe_open verified every shard")
    print(f"apparent size {apparent / 1e9:.2f} GB ({apparent} bytes), on disk {on_disk / 1e6:.2f} MB ({on_disk} bytes)")


if __name__ == "__main__":
    main()
