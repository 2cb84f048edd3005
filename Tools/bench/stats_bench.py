#!/usr/bin/env python3
"""Benchmark `ckpt inspect --stats`: time and peak memory of streamed per-tensor statistics.

Makes a 2-layer slice of the 15B Llama shape with Tools/make_big_checkpoint.py (layers
filled with real bf16 values; the 1.5 GiB embedding and the LM head stay sparse zeros),
then runs, as whole commands:

  * ckpt:   `ckpt inspect --stats --json DIR`
  * anchor: numpy over a memory map of each shard (the safetensors numpy loader has no
            bfloat16), chunked by 4M elements as a careful user would write it: widen
            bf16 to float32, then min, max, float64 mean, two-pass std, NaN/Inf counts.

It checks that both agree (min/max exactly, mean/std to 1e-6 relative), and prints wall
time (median of --runs, interleaved) and peak RSS (GNU time, from outside) with ratios.
Targets: ckpt's peak RSS stays under 64 MiB (one decode buffer, pages dropped behind it),
far below the largest tensor (1.5 GiB), and ckpt is not slower than numpy.

    Tools/bench/stats_bench.py [--ckpt .build/release/ckpt] [--runs 3] [--keep DIR]
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RSS_TARGET_MIB = 64

ANCHOR = r"""
import json, os, sys
import numpy as np
directory = sys.argv[1]
with open(os.path.join(directory, "model.safetensors.index.json")) as f:
    shards = sorted(set(json.load(f)["weight_map"].values()))
CHUNK = 1 << 22
out = {}
for shard in shards:
    path = os.path.join(directory, shard)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        bits = raw[8 + n + begin: 8 + n + end].view(np.uint16)
        # Chunked, as a careful numpy user would write it: bounded memory, float64 sums.
        count = nan = inf = 0
        total = 0.0
        lo, hi = np.inf, -np.inf
        chunks = []
        for start in range(0, bits.size, CHUNK):
            x = (bits[start:start + CHUNK].astype(np.uint32) << 16).view(np.float32)
            finite = np.isfinite(x)
            v = x[finite]
            nan += int(np.isnan(x).sum()); inf += int(np.isinf(x).sum())
            if v.size:
                lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
                total += float(v.sum(dtype=np.float64)); count += v.size
        mean = total / count if count else 0.0
        m2 = 0.0
        for start in range(0, bits.size, CHUNK):
            x = (bits[start:start + CHUNK].astype(np.uint32) << 16).view(np.float32)
            d = x[np.isfinite(x)].astype(np.float64) - mean
            m2 += float(np.dot(d, d))
        out[name] = {"min": lo, "max": hi, "mean": mean, "std": (m2 / count) ** 0.5 if count else 0.0, "nan": nan, "inf": inf}
print(json.dumps(out))
"""


def timed(argv):
    start = time.perf_counter()
    out = subprocess.run(argv, stdout=subprocess.PIPE, check=True).stdout
    return time.perf_counter() - start, out


def peak_rss_mib(argv):
    with tempfile.NamedTemporaryFile("r") as f:
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", f.name, *argv], stdout=subprocess.DEVNULL, check=True)
        return int(f.read().split()[-1]) / 1024


def compare(ckpt_json, anchor_json):
    ours = {t["name"]: t["stats"] for t in json.loads(ckpt_json)["tensors"]}
    theirs = json.loads(anchor_json)
    problems = []
    for name, ref in theirs.items():
        got = ours.get(name)
        if got is None:
            problems.append(f"{name}: no stats from ckpt")
            continue
        for key in ("min", "max", "nan", "inf"):
            if got[key] != ref[key]:
                problems.append(f"{name}: {key} {got[key]} vs {ref[key]}")
        for key in ("mean", "std"):
            if abs(got[key] - ref[key]) > 1e-6 * max(1e-3, abs(ref[key])):
                problems.append(f"{name}: {key} {got[key]} vs {ref[key]}")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", type=Path, default=REPO / ".build/release/ckpt")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="use (or create and keep) this checkpoint directory")
    args = ap.parse_args()

    scratch = None
    directory = args.keep
    if directory is None:
        scratch = Path(tempfile.mkdtemp(prefix="ckpt-stats-bench-", dir="/tmp"))
        directory = scratch / "slice"
    try:
        if not (directory / "model.safetensors.index.json").exists():
            subprocess.run([sys.executable, str(REPO / "Tools/make_big_checkpoint.py"), str(directory),
                            "--layers", "2", "--fill-layers", "2"], check=True, stdout=sys.stderr)
        ckpt = [str(args.ckpt), "inspect", "--stats", "--json", str(directory)]
        anchor = [sys.executable, "-c", ANCHOR, str(directory)]
        total = sum(t["nbytes"] for t in json.loads(subprocess.run(
            [str(args.ckpt), "inspect", "--json", str(directory)], stdout=subprocess.PIPE, check=True).stdout)["tensors"])
        largest = max(t["nbytes"] for t in json.loads(subprocess.run(
            [str(args.ckpt), "inspect", "--json", str(directory)], stdout=subprocess.PIPE, check=True).stdout)["tensors"])

        ckpt_times, anchor_times = [], []
        for i in range(args.runs):
            for argv, times in ([(ckpt, ckpt_times), (anchor, anchor_times)] if i % 2 == 0 else
                                [(anchor, anchor_times), (ckpt, ckpt_times)]):
                t, out = timed(argv)
                times.append(t)
                if argv is ckpt:
                    ckpt_out = out
                else:
                    anchor_out = out
        problems = compare(ckpt_out, anchor_out)
        ckpt_rss, anchor_rss = peak_rss_mib(ckpt), peak_rss_mib(anchor)
    finally:
        if scratch:
            shutil.rmtree(scratch)

    c, a = statistics.median(ckpt_times), statistics.median(anchor_times)
    gib = total / 2**30
    print(f"{'tool':<28}{'median s':>10}{'GiB/s':>8}{'peak RSS MiB':>14}")
    print(f"{'ckpt inspect --stats':<28}{c:>10.2f}{gib / c:>8.2f}{ckpt_rss:>14.1f}")
    print(f"{'numpy, chunked memmap':<28}{a:>10.2f}{gib / a:>8.2f}{anchor_rss:>14.1f}")
    print(f"data: {gib:.2f} GiB of bf16 in {len(json.loads(ckpt_out)['tensors'])} tensors; largest tensor {largest / 2**20:.0f} MiB")
    ok = not problems and ckpt_rss <= RSS_TARGET_MIB and c <= a
    print(f"time ratio ckpt/numpy {c / a:.3f} (target <= 1); RSS ratio {ckpt_rss / anchor_rss:.3f}; "
          f"ckpt RSS {ckpt_rss:.1f} MiB (target <= {RSS_TARGET_MIB} MiB); values agree: {'yes' if not problems else 'NO'}  "
          f"{'PASS' if ok else 'FAIL'}")
    for p in problems[:10]:
        print("  " + p)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
