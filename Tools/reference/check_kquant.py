#!/usr/bin/env python3
"""Compare ckpt's K-quant encoders with llama.cpp's own quantizer on real tensors.

Writes SmolLM2 as an f32 GGUF with `ckpt convert`, then for each of Q4_K, Q5_K and Q6_K:
llama.cpp quantizes it (`llama_cpp.llama_model_quantize`, `pure` so every tensor gets the
one type, with llama.cpp's fallbacks for rows that are not a multiple of 256) and ckpt
quantizes it (`ckpt convert --dtype q4_k` …). For every tensor both stored in that type,
the RMS error against the f32 source is computed from gguf-py's dequantization.
Passes when ckpt's error is no worse than llama.cpp's: per type, the summed squared
error ratio ckpt/llama.cpp <= 1.0001 and no tensor above 1.001. Also reports how many
tensors came out byte-identical. Ends with `check_kquant: N passed, M failed`.

`--write-fixtures` also stores llama.cpp's encoding of the first 16 rows of
blk.0.ffn_down.weight in each type under Tests/Fixtures/kquant/, so `swift test` checks
the encoders byte for byte without llama.cpp.

Needs llama-cpp-python (CMAKE_ARGS=-DGGML_NATIVE=ON pip install llama-cpp-python).

    python3 Tools/reference/check_kquant.py [--ckpt BIN] [--write-fixtures]
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import llama_cpp
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

REPO = Path(__file__).resolve().parents[2]
FIXTURE_TENSOR = "blk.0.ffn_down.weight"
FIXTURE_ROWS = 16
TYPES = {"Q4_K": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_S, "Q5_K": llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_S,
         "Q6_K": llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K}


def llama_quantize(src, dst, ftype):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.pure = True
    params.nthread = 2
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params) != 0:
        sys.exit(f"llama.cpp could not quantize {src}")


def tensors(path):
    return {t.name: t for t in GGUFReader(str(path)).tensors}


def values(t):
    return dequantize(t.data, t.tensor_type).astype(np.float64).reshape(-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--gguf", default=str(REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--write-fixtures", action="store_true")
    args = ap.parse_args()
    fixtures = REPO / "Tests/Fixtures/kquant"
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="ckpt-kquant-") as tmp:
        tmp = Path(tmp)
        f32 = tmp / "f32.gguf"
        subprocess.run([args.ckpt, "convert", args.gguf, str(f32), "--dtype", "f32"], check=True, stderr=subprocess.DEVNULL)
        source = {name: values(t) for name, t in tensors(f32).items()}
        print(f"{'type':<6}{'tensors':>8}{'identical':>10}{'rms ckpt':>12}{'rms llama.cpp':>15}{'sq-err ratio':>14}{'worst tensor':>14}")
        for name, ftype in TYPES.items():
            theirs_path, ours_path = tmp / f"llama-{name}.gguf", tmp / f"ckpt-{name}.gguf"
            llama_quantize(f32, theirs_path, ftype)
            subprocess.run([args.ckpt, "convert", str(f32), str(ours_path), "--dtype", name.lower()], check=True, stderr=subprocess.DEVNULL)
            theirs, ours = tensors(theirs_path), tensors(ours_path)
            if args.write_fixtures:
                fixtures.mkdir(parents=True, exist_ok=True)
                rows = np.asarray(theirs[FIXTURE_TENSOR].data)[:FIXTURE_ROWS]
                (fixtures / f"{FIXTURE_TENSOR}.rows0-{FIXTURE_ROWS}.{name}").write_bytes(rows.tobytes())
            err_ours = err_theirs = 0.0
            count = identical = elements = 0
            worst = 0.0
            for tname, t in theirs.items():
                o = ours.get(tname)
                if t.tensor_type.name != name or o is None or o.tensor_type.name != name:
                    continue
                ref = source[tname]
                e_ours = float(np.sum((values(o) - ref) ** 2))
                e_theirs = float(np.sum((values(t) - ref) ** 2))
                err_ours += e_ours
                err_theirs += e_theirs
                elements += ref.size
                count += 1
                identical += int(np.array_equal(np.asarray(o.data), np.asarray(t.data)))
                if e_theirs > 0:
                    worst = max(worst, e_ours / e_theirs)
            if count == 0:
                print(f"{name:<6} no tensor stored as {name} by both")
                failed += 1
                continue
            ratio = err_ours / err_theirs if err_theirs else 1.0
            ok = ratio <= 1.0001 and worst <= 1.001
            passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
            print(f"{name:<6}{count:>8}{identical:>10}{(err_ours / elements) ** 0.5:>12.3e}{(err_theirs / elements) ** 0.5:>15.3e}"
                  f"{ratio:>14.6f}{worst:>14.6f}  {'PASS' if ok else 'FAIL'}")
    print(f"check_kquant: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
