#!/usr/bin/env python3
"""Cross-check `ckpt inspect --json` against the reference Python readers.

For each file, runs `ckpt inspect FILE --json` and reads the same file live with gguf-py
(`gguf.GGUFReader`) or the safetensors package (`safe_open`, offsets from the raw header;
the readers are make_fixtures.py's, so fixtures and checks cannot drift apart),
then compares every tensor's name, dtype, shape (outermost-first), file, absolute data
offset and byte size, and the tensor order. GGUF files also have their version and every
metadata key compared (key order, scalar and string values at their stored precision,
arrays by element type and count, or element by element when ckpt prints them in full);
safetensors files their `__metadata__`.

Prints one line per file, `OK` or `MISMATCH` with the differences indented below it, then
`crosscheck: N passed, M failed`. Exits 1 if any file failed.

    python3 Tools/reference/crosscheck_inspect.py [--ckpt BIN] [FILES...]

FILES are single .gguf or .safetensors files (default: the SmolLM2 Q4_1 GGUF in
.cache/models/ and Tests/Fixtures/all-dtypes.safetensors). BIN defaults to
.build/release/ckpt if it exists, else .build/debug/ckpt.
"""

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFValueType

from make_fixtures import gguf_tensors, safetensors_listing

REPO = Path(__file__).resolve().parents[2]
DEFAULT_FILES = [
    REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf",
    REPO / "Tests/Fixtures/all-dtypes.safetensors",
]
ARRAY_SUMMARY_LIMIT = 64  # ckpt summarises longer metadata arrays unless --full
MAX_DETAILS = 20  # differences printed per file

INTEGER_TYPES = {
    GGUFValueType.UINT8, GGUFValueType.INT8, GGUFValueType.UINT16, GGUFValueType.INT16,
    GGUFValueType.UINT32, GGUFValueType.INT32, GGUFValueType.UINT64, GGUFValueType.INT64,
}
FLOAT_TYPES = {GGUFValueType.FLOAT32: np.float32, GGUFValueType.FLOAT64: np.float64}


class CkptFailed(Exception):
    """ckpt did not produce a JSON listing."""


def default_ckpt():
    release = REPO / ".build/release/ckpt"
    return release if release.exists() else REPO / ".build/debug/ckpt"


def run_ckpt(binary, path):
    """The parsed output of `ckpt inspect PATH --json`."""
    result = subprocess.run([str(binary), "inspect", str(path), "--json"], capture_output=True, text=True)
    if result.returncode != 0:
        raise CkptFailed(f"ckpt exited with {result.returncode}: {result.stderr.strip()}")
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as e:
        raise CkptFailed(f"ckpt printed invalid JSON: {e}") from e


def is_gguf(path):
    """Whether a file starts with the GGUF magic (otherwise it is taken as safetensors)."""
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def compare_tensors(path, ours, reference):
    """Differences between ckpt's tensor list and the reference one."""
    problems = []
    our_names = [t["name"] for t in ours]
    ref_names = [t["name"] for t in reference]
    if len(ours) != len(reference):
        problems.append(f"tensor count: ckpt {len(ours)}, reference {len(reference)}")
    missing = sorted(set(ref_names) - set(our_names))
    extra = sorted(set(our_names) - set(ref_names))
    if missing:
        problems.append(f"tensors missing from ckpt: {missing}")
    if extra:
        problems.append(f"tensors only in ckpt: {extra}")
    if not missing and not extra and our_names != ref_names:
        i = next(i for i, (a, b) in enumerate(zip(our_names, ref_names)) if a != b)
        problems.append(f"tensor order differs from index {i}: ckpt {our_names[i:i + 3]}…, reference {ref_names[i:i + 3]}…")

    by_name = {t["name"]: t for t in ours}
    for ref in reference:
        mine = by_name.get(ref["name"])
        if mine is None:
            continue
        for key in ("dtype", "shape", "offset", "nbytes"):
            if mine.get(key) != ref[key]:
                problems.append(f"{ref['name']}: {key} ckpt {mine.get(key)!r}, reference {ref[key]!r}")
        if not os.path.exists(mine.get("file", "")) or not os.path.samefile(mine["file"], path):
            problems.append(f"{ref['name']}: file ckpt {mine.get('file')!r} is not {str(path)!r}")
    return problems


def same_scalar(ours, value_type, value):
    """Whether ckpt's JSON value equals a GGUF scalar of the given stored type."""
    if value_type == GGUFValueType.STRING:
        return isinstance(ours, str) and ours == value
    if value_type == GGUFValueType.BOOL:
        return isinstance(ours, bool) and ours == value
    if value_type in INTEGER_TYPES:
        return isinstance(ours, int) and not isinstance(ours, bool) and ours == value
    if value_type in FLOAT_TYPES:
        if ours is None:  # ckpt writes non-finite floats as null
            return not math.isfinite(value)
        precision = FLOAT_TYPES[value_type]
        return isinstance(ours, (int, float)) and not isinstance(ours, bool) and precision(ours) == precision(value)
    return False


def compare_gguf_value(key, ours, field):
    """Differences between ckpt's value of one metadata key and gguf-py's field."""
    main_type = field.types[0]
    if main_type != GGUFValueType.ARRAY:
        value = field.contents()
        if same_scalar(ours, main_type, value):
            return []
        return [f"metadata {key} ({main_type.name.lower()}): ckpt {ours!r}, reference {value!r}"]

    element_type = field.types[-1]
    count = len(field.data)
    if count > ARRAY_SUMMARY_LIMIT:
        summary = {"type": element_type.name.lower(), "count": count}
        return [] if ours == summary else [f"metadata {key}: ckpt {ours!r}, reference {summary!r}"]
    if not isinstance(ours, list) or len(ours) != count:
        shown = f"{len(ours)} elements" if isinstance(ours, list) else repr(ours)
        return [f"metadata {key}: ckpt {shown}, reference an array of {count} {element_type.name.lower()}"]
    if element_type == GGUFValueType.ARRAY:  # gguf-py cannot read nested arrays' elements
        return []
    return [
        f"metadata {key}[{i}] ({element_type.name.lower()}): ckpt {mine!r}, reference {value!r}"
        for i, (mine, value) in enumerate(zip(ours, field.contents()))
        if not same_scalar(mine, element_type, value)
    ]


def compare_gguf_metadata(ours, fields):
    """Differences between ckpt's metadata object and gguf-py's key/value fields."""
    problems = []
    if list(ours) != list(fields):
        missing = [k for k in fields if k not in ours]
        extra = [k for k in ours if k not in fields]
        if missing or extra:
            problems.append(f"metadata keys missing from ckpt: {missing}; only in ckpt: {extra}")
        else:
            problems.append("metadata keys are not in file order")
    for key, field in fields.items():
        if key in ours:
            problems += compare_gguf_value(key, ours[key], field)
    return problems


def check_gguf(path, listing):
    """Tensor count, key count and differences of one GGUF file. gguf-py's pseudo-fields
    `GGUF.version`, `GGUF.tensor_count` and `GGUF.kv_count` are not key/values."""
    reader = GGUFReader(path)
    fields = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    problems = []
    if listing.get("format") != "gguf":
        problems.append(f"format: ckpt {listing.get('format')!r}, expected 'gguf'")
    version = reader.fields["GGUF.version"].contents()
    if listing.get("version") != version:
        problems.append(f"version: ckpt {listing.get('version')!r}, reference {version}")
    problems += compare_gguf_metadata(listing.get("metadata", {}), fields)
    problems += compare_tensors(path, listing.get("tensors", []), gguf_tensors(reader))
    return len(reader.tensors), len(fields), problems


def check_safetensors(path, listing):
    """Tensor count, key count and differences of one safetensors file."""
    reference = safetensors_listing(path)
    tensors, metadata = reference["tensors"], reference["metadata"]
    problems = []
    if listing.get("format") != "safetensors":
        problems.append(f"format: ckpt {listing.get('format')!r}, expected 'safetensors'")
    ours = listing.get("metadata", {})
    if ours != metadata:
        problems.append(f"metadata: ckpt {ours!r}, reference {metadata!r}")
    problems += compare_tensors(path, listing.get("tensors", []), tensors)
    return len(tensors), len(metadata), problems


def check_file(binary, path):
    """Prints the result line for one file; returns whether it passed."""
    try:
        listing = run_ckpt(binary, path)
    except CkptFailed as e:
        print(f"MISMATCH {path}: {e}")
        return False
    check = check_gguf if is_gguf(path) else check_safetensors
    try:
        tensor_count, key_count, problems = check(path, listing)
    except Exception as e:  # a file ckpt reads but the reference rejects is a result, not a crash
        print(f"MISMATCH {path}: the reference reader failed: {type(e).__name__}: {e}")
        return False
    summary = f"{path}: {tensor_count} tensors, {key_count} metadata keys compared"
    if not problems:
        print(f"OK       {summary}")
        return True
    print(f"MISMATCH {summary}, {len(problems)} differences")
    for problem in problems[:MAX_DETAILS]:
        print(f"    {problem}")
    if len(problems) > MAX_DETAILS:
        print(f"    … and {len(problems) - MAX_DETAILS} more")
    return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, default=default_ckpt(), help="the ckpt binary")
    parser.add_argument("files", nargs="*", type=Path, default=DEFAULT_FILES, help=".gguf or .safetensors files")
    args = parser.parse_args()
    if not args.ckpt.exists():
        parser.error(f"no ckpt binary at {args.ckpt} (run `swift build`)")
    binary = args.ckpt.absolute()  # a bare name would otherwise be looked up in PATH

    results = [check_file(binary, path) for path in args.files]
    passed = sum(results)
    print(f"crosscheck: {passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
