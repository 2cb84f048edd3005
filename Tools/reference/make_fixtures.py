#!/usr/bin/env python3
"""Write the reference test fixtures in Tests/Fixtures/ with the Python reference libraries.

Every fixture comes from the libraries ckpt must agree with, never from ckpt itself:

  all-dtypes.safetensors     one small tensor per dtype, written by `safetensors.serialize_file`
  all-dtypes.listing.json    that file as read back by `safetensors.safe_open`
  smollm2-q4_1.listing.json  the SmolLM2 GGUF as read by `gguf.GGUFReader`
  dequant/<TYPE>.blocks      random blocks of a GGML quantisation type (finite f16 scales)
  dequant/<TYPE>.f32         their decoding by `gguf.quants.dequantize`, float32 little-endian
  dequant/smollm2-sample.json  sums, extremes and sample values of three SmolLM2 tensors

The layouts are described in Tests/Fixtures/README.md. Output is deterministic: every
random draw comes from a numpy generator seeded from the fixture's name.

Run from anywhere (needs safetensors 0.8, gguf 0.19, numpy and the model in .cache/models/):

    python3 Tools/reference/make_fixtures.py [--model PATH] [--out DIR]
"""

import argparse
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import safetensors
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUT = REPO / "Tests/Fixtures"

SAFETENSORS_METADATA = {"format": "pt", "note": "ckpt test vector"}
MAX_WRITES = 64  # attempts at a sorted __metadata__ (each succeeds with probability 1/2)

# (tensor name, TensorSpec dtype, shape passed to TensorSpec, numpy storage dtype, value kind).
# The name is the dtype code the file will record. F4 is packed two values per byte: its
# spec shape is the storage shape in bytes and the package doubles the last dimension.
# F6_E2M3 and F6_E3M2 are absent: safetensors 0.8's TensorSpec rejects every name for them.
SAFETENSORS_TENSORS = [
    ("BOOL", "bool", [5], np.uint8, "bool"),
    ("U8", "uint8", [2, 3], np.uint8, "int"),
    ("I8", "int8", [7], np.int8, "int"),
    ("I16", "int16", [0, 3], np.int16, "int"),
    ("U16", "uint16", [3, 2], np.uint16, "int"),
    ("F16", "float16", [2, 2, 2], np.float16, "float"),
    ("BF16", "bfloat16", [4, 3], np.uint16, "bf16"),
    ("I32", "int32", [], np.int32, "int"),
    ("U32", "uint32", [3], np.uint32, "int"),
    ("F32", "float32", [2, 3, 4], np.float32, "float"),
    ("C64", "complex64", [2], np.complex64, "complex"),
    ("F64", "float64", [], np.float64, "float"),
    ("I64", "int64", [1, 2], np.int64, "int"),
    ("U64", "uint64", [0], np.uint64, "int"),
    ("F8_E4M3", "float8_e4m3fn", [3, 5], np.uint8, "bits"),
    ("F8_E5M2", "float8_e5m2", [2, 2, 3], np.uint8, "bits"),
    ("F8_E8M0", "float8_e8m0fnu", [4], np.uint8, "bits"),
    ("F8_E4M3FNUZ", "float8_e4m3fnuz", [1, 1, 4], np.uint8, "bits"),
    ("F8_E5M2FNUZ", "float8_e5m2fnuz", [6], np.uint8, "bits"),
    ("F4", "float4_e2m1fn_x2", [2, 3], np.uint8, "bits"),
]

# Quantisation types with test vectors, and how many blocks of each.
DEQUANT_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
BLOCKS_PER_TYPE = {32: 8, 256: 4}

# Byte offsets of the f16 scale fields (d, and dmin/m where present) inside one block,
# from the block structs in ggml-common.h.
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "IQ4_NL": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
}

# SmolLM2 tensors summarised in dequant/smollm2-sample.json, and values kept per row.
SAMPLE_TENSORS = ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_norm.weight"]
SAMPLE_VALUES = 16


def rng_for(name):
    """A generator seeded from a fixture's name, so fixtures do not perturb each other."""
    return np.random.default_rng(zlib.crc32(name.encode()))


def random_values(rng, kind, count, storage):
    """`count` deterministic values of one kind, as a flat array of the storage dtype."""
    if kind == "bool":
        return rng.integers(0, 2, count).astype(storage)
    if kind == "int":
        info = np.iinfo(storage)
        return rng.integers(info.min, info.max, count, dtype=storage, endpoint=True)
    if kind == "float":
        return rng.standard_normal(count).astype(storage)
    if kind == "bf16":
        return (rng.standard_normal(count).astype(np.float32).view(np.uint32) >> 16).astype(storage)
    if kind == "complex":
        return (rng.standard_normal(count) + 1j * rng.standard_normal(count)).astype(storage)
    return rng.integers(0, 256, count, dtype=np.uint8)


def safetensors_header(path):
    """The JSON header of a safetensors file and the absolute offset its data starts at."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(length)), 8 + length


def write_all_dtypes(path):
    """Writes one tensor per dtype through `safetensors.serialize_file`.

    The package keeps `__metadata__` in a Rust HashMap, so each call writes its keys in a
    random order. Writing again until they come out sorted makes the file reproducible."""
    arrays = []  # the specs hold raw pointers: keep the buffers alive until written
    specs = {}
    for name, spec_dtype, shape, storage, kind in SAFETENSORS_TENSORS:
        array = random_values(rng_for(name), kind, int(np.prod(shape)), storage)
        arrays.append(array)
        specs[name] = safetensors.TensorSpec(
            dtype=spec_dtype, shape=shape, data_ptr=array.ctypes.data, data_len=array.nbytes
        )
    for _ in range(MAX_WRITES):
        safetensors.serialize_file(specs, str(path), metadata=SAFETENSORS_METADATA)
        written = list(safetensors_header(path)[0]["__metadata__"])
        if written == sorted(written):
            return
    raise RuntimeError(f"{path}: __metadata__ keys never came out sorted in {MAX_WRITES} writes")


def safetensors_listing(path):
    """The listing of a safetensors file: names, dtypes and shapes from `safe_open`,
    absolute offsets and sizes from the raw header, in file order: by data offsets, then
    name. (`safe_open.offset_keys()` leaves zero-size tensors that share an offset in
    HashMap order, which changes from run to run.)"""
    header, data_start = safetensors_header(path)
    tensors = []
    with safetensors.safe_open(str(path), framework="numpy") as f:
        for name in sorted(f.keys(), key=lambda n: (*header[n]["data_offsets"], n)):
            view = f.get_slice(name)
            begin, end = header[name]["data_offsets"]
            tensors.append({
                "name": name,
                "dtype": view.get_dtype(),
                "shape": view.get_shape(),
                "offset": data_start + begin,
                "nbytes": end - begin,
            })
        metadata = dict(sorted((f.metadata() or {}).items()))
    return {"metadata": metadata, "tensors": tensors}


def gguf_metadata(reader):
    """The key/values of a GGUF file in file order: scalars and strings by value, arrays as
    their element type and count. gguf-py's pseudo-fields (`GGUF.version`, …) are left out."""
    metadata = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if field.types[0] == GGUFValueType.ARRAY:
            metadata[key] = {"type": field.types[-1].name.lower(), "count": len(field.data)}
        else:
            metadata[key] = field.contents()
    return metadata


def gguf_tensors(reader):
    """The tensors of a GGUF file as gguf-py reads them, in tensor-info order. gguf-py's
    `shape` is ggml's ne[] (innermost first); listings are outermost-first."""
    return [
        {
            "name": t.name,
            "dtype": t.tensor_type.name,
            "shape": [int(n) for n in reversed(t.shape.tolist())],
            "offset": t.data_offset,
            "nbytes": t.n_bytes,
        }
        for t in reader.tensors
    ]


def gguf_listing(reader):
    """The listing of a GGUF file as gguf-py reads it."""
    return {
        "version": reader.fields["GGUF.version"].contents(),
        "tensor_count": len(reader.tensors),
        "metadata": gguf_metadata(reader),
        "tensors": gguf_tensors(reader),
    }


def compact_json(listing):
    """JSON with one line per top-level key, per metadata entry and per tensor."""
    def line(value):
        return json.dumps(value, ensure_ascii=False)

    parts = []
    for key, value in listing.items():
        if isinstance(value, dict) and value:
            items = ",\n".join(f"  {line(k)}: {line(v)}" for k, v in value.items())
            parts.append(f"{line(key)}: {{\n{items}\n}}")
        elif isinstance(value, list) and value:
            items = ",\n".join(f"  {line(v)}" for v in value)
            parts.append(f"{line(key)}: [\n{items}\n]")
        else:
            parts.append(f"{line(key)}: {line(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def random_blocks(type_name):
    """Random blocks of one quantisation type whose f16 scale fields hold finite values
    of magnitude 1e-3 to 2 (log-uniform) and random sign."""
    qtype = GGMLQuantizationType[type_name]
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    count = BLOCKS_PER_TYPE[block_size]
    rng = rng_for(type_name)
    blocks = rng.integers(0, 256, (count, type_size), dtype=np.uint8)
    for offset in F16_FIELDS[type_name]:
        magnitude = np.exp(rng.uniform(np.log(1e-3), np.log(2.0), count))
        sign = rng.choice([-1.0, 1.0], count)
        blocks[:, offset:offset + 2] = (sign * magnitude).astype("<f2").view(np.uint8).reshape(count, 2)
    return blocks.tobytes()


def write_dequant_vectors(directory):
    """Writes <TYPE>.blocks and their gguf-py decoding <TYPE>.f32 for every test type."""
    for type_name in DEQUANT_TYPES:
        blocks = random_blocks(type_name)
        values = dequantize(np.frombuffer(blocks, dtype=np.uint8), GGMLQuantizationType[type_name])
        if not np.all(np.isfinite(values)):
            raise RuntimeError(f"{type_name}: test vector decodes to non-finite values")
        (directory / f"{type_name}.blocks").write_bytes(blocks)
        (directory / f"{type_name}.f32").write_bytes(values.astype("<f4").tobytes())


QUANT_TYPES = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]


def quant_inputs():
    """Float32 inputs for the quantizers: 64 blocks of 32 with awkward cases first."""
    rng = rng_for("quant")
    blocks = [
        np.zeros(32),                                   # all zero: scale 0, no division
        np.full(32, 0.5),                               # constant: max == min
        np.linspace(-1, 1, 32),                         # symmetric ramp
        (np.arange(32) - 15.5) / 2,                     # values landing on .5 after scaling
        np.r_[np.full(31, 1e-3), 7.0],                  # one outlier
        np.r_[[-7.0], np.full(31, 3.0)],                # the negative extreme decides the sign of d
        np.full(32, 70000.0),                           # beyond f16 range: d overflows to inf
        np.r_[np.full(16, 1e-8), np.full(16, -2e-8)],   # f16-subnormal scales
    ]
    blocks += [rng.standard_normal(32) * 10 ** rng.uniform(-3, 1) for _ in range(56)]
    return np.concatenate(blocks).astype(np.float32)


def write_quant_vectors(directory):
    """Writes the shared input quant/input.f32 and gguf-py's encoding of it, <TYPE>.bin."""
    values = quant_inputs()
    (directory / "input.f32").write_bytes(values.astype("<f4").tobytes())
    for type_name in QUANT_TYPES:
        encoded = quantize(values.reshape(1, -1), GGMLQuantizationType[type_name])
        (directory / f"{type_name}.bin").write_bytes(np.ascontiguousarray(encoded).view(np.uint8).tobytes())


def float_bits(values):
    """float32 values as hex bit patterns: "0x3f800000" for 1.0."""
    return [f"0x{bits:08x}" for bits in np.asarray(values, dtype="<f4").view("<u4").tolist()]


def tensor_sample(tensor):
    """Sum (float64), min, max of a tensor's full dequantization by gguf-py, and the first
    values of its first and last rows (a row runs along the innermost dimension)."""
    values = dequantize(tensor.data, tensor.tensor_type).astype(np.float32, copy=False)
    rows = values.reshape(-1, int(tensor.shape[0]))
    return {
        "name": tensor.name,
        "dtype": tensor.tensor_type.name,
        "shape": [int(n) for n in reversed(tensor.shape.tolist())],
        "sum": float(np.sum(values, dtype=np.float64)),
        "min": float(values.min()),
        "max": float(values.max()),
        "row_first": float_bits(rows[0, :SAMPLE_VALUES]),
        "row_last": float_bits(rows[-1, :SAMPLE_VALUES]),
    }


def model_sample(reader):
    """The sample record of SAMPLE_TENSORS, in that order."""
    by_name = {t.name: t for t in reader.tensors}
    return {"tensors": [tensor_sample(by_name[name]) for name in SAMPLE_TENSORS]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the SmolLM2 Q4_1 GGUF")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the fixtures directory")
    args = parser.parse_args()

    dequant_dir = args.out / "dequant"
    dequant_dir.mkdir(parents=True, exist_ok=True)

    safetensors_path = args.out / "all-dtypes.safetensors"
    write_all_dtypes(safetensors_path)
    (args.out / "all-dtypes.listing.json").write_text(compact_json(safetensors_listing(safetensors_path)))

    reader = GGUFReader(args.model)
    (args.out / "smollm2-q4_1.listing.json").write_text(compact_json(gguf_listing(reader)))

    write_dequant_vectors(dequant_dir)
    (dequant_dir / "smollm2-sample.json").write_text(compact_json(model_sample(reader)))
    quant_dir = args.out / "quant"
    quant_dir.mkdir(exist_ok=True)
    write_quant_vectors(quant_dir)


if __name__ == "__main__":
    main()
