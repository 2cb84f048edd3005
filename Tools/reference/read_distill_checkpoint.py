#!/usr/bin/env python3
"""An independent reader of `ckpt distill` checkpoints (Formats/distill-checkpoint.md).

    read_distill_checkpoint.py DIR/step-00000012 [--compare STUDENT.gguf]

Checks every file's size and CRC-32C against state.json, decodes the optimizer state
(f32, or the 8-bit blockwise codes) and prints a summary; with --compare, requires the
weights to equal the tensors of a GGUF student stored as F32.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from read_logit_cache import crc32c  # noqa: E402

BLOCK = 256


class CheckpointError(Exception):
    pass


def read(path):
    """(state, arrays): state.json and every file as bytes, each checked."""
    path = Path(path)
    state = json.loads((path / "state.json").read_text())
    if state.get("format") != 1:
        raise CheckpointError(f"{path}: format {state.get('format')}, expected 1")
    arrays = {}
    for name, crc in state["crc32c"].items():
        data = (path / name).read_bytes()
        if crc32c(data) != crc:
            raise CheckpointError(f"{path / name}: CRC-32C {crc32c(data)} != {crc} in state.json")
        arrays[name] = data
    n = state["parameters"]
    if len(arrays["weights.f32"]) != 4 * n:
        raise CheckpointError(f"weights.f32 has {len(arrays['weights.f32'])} bytes for {n} parameters")
    end = 0
    for t in state["tensors"]:
        if t["offset"] != end or int(np.prod(t["shape"])) != t["count"]:
            raise CheckpointError(f"tensor {t['name']}: offset {t['offset']} / count {t['count']} do not tile the buffer")
        end += t["count"]
    if end != n:
        raise CheckpointError(f"tensors cover {end} of {n} parameters")
    return state, arrays


def moments(state, arrays):
    """AdamW's m and v as f32 arrays, decoding the 8-bit state blockwise."""
    n = state["parameters"]
    if state["optimizer_state"] == "f32":
        m = np.frombuffer(arrays["adam_m.f32"], "<f4")
        v = np.frombuffer(arrays["adam_v.f32"], "<f4")
        if len(m) != n or len(v) != n:
            raise CheckpointError("f32 moments are not one per parameter")
        return m, v
    mq = np.frombuffer(arrays["adam_m.q8"], np.uint8)
    vq = np.frombuffer(arrays["adam_v.q8"], np.uint8)
    ms = np.frombuffer(arrays["adam_m_scales.f32"], "<f4")
    vs = np.frombuffer(arrays["adam_v_scales.f32"], "<f4")
    blocks = sum((t["count"] + BLOCK - 1) // BLOCK for t in state["tensors"])
    if len(mq) != n or len(vq) != n or len(ms) != blocks or len(vs) != blocks:
        raise CheckpointError(f"8-bit state sizes: {len(mq)}, {len(vq)} codes, {len(ms)}, {len(vs)} scales; expected {n} and {blocks}")
    # The scale of every value: blocks restart at each tensor.
    scale_index = np.concatenate([b0 + np.arange(t["count"]) // BLOCK for t, b0 in
                                  zip(state["tensors"], np.cumsum([0] + [(t["count"] + BLOCK - 1) // BLOCK for t in state["tensors"]]))])
    q = (mq & 0x7F).astype(np.float32)
    m = np.where(q == 127, 0, ms[scale_index] * np.exp2(-q / 8)) * np.where(mq & 0x80, -1, 1)
    root = np.where(vq == 255, 0, vs[scale_index] * np.exp2(-vq.astype(np.float32) / 16))
    return m.astype(np.float32), (root * root).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--compare", help="a GGUF student whose F32 tensors the weights must equal")
    a = ap.parse_args()
    state, arrays = read(a.checkpoint)
    w = np.frombuffer(arrays["weights.f32"], "<f4")
    m, v = moments(state, arrays)
    if not (np.isfinite(w).all() and np.isfinite(m).all() and np.isfinite(v).all() and (v >= 0).all()):
        raise CheckpointError("weights or moments not finite, or v negative")
    print(f"{a.checkpoint}: step {state['step']}, {state['parameters']} parameters in {len(state['tensors'])} tensors, "
          f"{state['optimizer_state']} state (|m| max {np.abs(m).max():.3g}, v max {v.max():.3g}), every CRC-32C good")
    if a.compare:
        import gguf
        tensors = {t.name: t for t in gguf.GGUFReader(a.compare).tensors}
        for t in state["tensors"]:
            g = tensors[t["name"]]
            if g.tensor_type.name != "F32":
                raise CheckpointError(f"{a.compare}: {t['name']} is {g.tensor_type.name}, not F32")
            ours = w[t["offset"]:t["offset"] + t["count"]]
            if not np.array_equal(ours, np.asarray(g.data, dtype=np.float32).reshape(-1)):
                raise CheckpointError(f"{t['name']}: weights differ from {a.compare}")
        print(f"  weights equal {a.compare}'s tensors, value for value")


if __name__ == "__main__":
    try:
        main()
    except CheckpointError as e:
        sys.exit(f"error: {e}")
