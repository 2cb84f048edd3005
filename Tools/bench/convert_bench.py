#!/usr/bin/env python3
"""Benchmark `ckpt convert`: throughput against `cp`, peak memory, and the Python route.

Cases, each a whole command timed from start to exit (median of --runs, interleaved with
its anchor), peak RSS from GNU time (`/usr/bin/time -f %M`, measured from outside):

  1. reshard, same dtype: a 4-layer slice of the 15B Llama shape, every byte real
     (Tools/make_big_checkpoint.py --layers 4 --fill-all: 5.3 GB bf16 in 2 shards) to
     1 GB shards, against `cp -r` of the same files followed by `sync -f` on the output
     (ckpt fsyncs what it writes, so the copy is made durable too). Target: throughput
     >= 0.7x cp, peak RSS <= 512 MiB.
  2. the same slice bf16 -> f16 (decode and re-encode every value): throughput, RSS.
  3. SmolLM2-135M f32 safetensors -> Q8_0 GGUF: throughput, RSS.
  4. SmolLM2-135M Q4_1 GGUF -> f32 safetensors, against the Python route (gguf-py
     GGUFReader + quants.dequantize, then safetensors.numpy.save_file). Target: ckpt
     peak RSS <= 256 MiB.

    Tools/bench/convert_bench.py [--ckpt .build/release/ckpt] [--runs 3] [--work DIR]

--work holds the inputs and outputs (default: a new directory under /tmp, removed at the
end; it needs about 17 GB free). Exits 1 if a target fails.
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
GGUF = REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"

PYTHON_ROUTE = r"""
import sys
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import save_file
reader = GGUFReader(sys.argv[1])
tensors = {t.name: np.ascontiguousarray(dequantize(t.data, t.tensor_type).astype(np.float32).reshape(tuple(int(x) for x in reversed(t.shape))))
           for t in reader.tensors}
save_file(tensors, sys.argv[2])
"""


def log(message):
    print(message, file=sys.stderr, flush=True)


def run(argv, clean):
    """Time one run of argv (its output removed before and after); return (seconds, peak RSS MiB)."""
    clean()
    with tempfile.NamedTemporaryFile("r") as f:
        start = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", f.name, "sh", "-c", argv], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        rss = int(f.read().split()[-1]) / 1024
    return seconds, rss


def remover(*paths):
    def clean():
        for p in paths:
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    return clean


def measure(runs, ours, anchor=None):
    """Interleaved runs; each side is (shell command, cleanup)."""
    results = {"ours": [], "anchor": []}
    for i in range(runs):
        sides = [("ours", ours)] + ([("anchor", anchor)] if anchor else [])
        for key, (cmd, clean) in (sides if i % 2 == 0 else sides[::-1]):
            results[key].append(run(cmd, clean))
    for key, (cmd, clean) in [("ours", ours)] + ([("anchor", anchor)] if anchor else []):
        clean()

    def summary(samples):
        return {"median_s": statistics.median(s for s, _ in samples), "peak_rss_mib": max(r for _, r in samples)} if samples else None
    return summary(results["ours"]), summary(results["anchor"])


def size_of(path):
    return sum(p.stat().st_size for p in Path(path).glob("*.safetensors")) if Path(path).is_dir() else Path(path).stat().st_size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()
    ckpt = args.ckpt
    work = args.work or Path(tempfile.mkdtemp(prefix="ckpt-convert-bench-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    slice_dir = work / "slice"
    rows, ok = [], True
    try:
        if not (slice_dir / "model.safetensors.index.json").exists():
            log("making the 4-layer slice of the 15B shape (5.3 GB of real bf16) ...")
            subprocess.run([sys.executable, str(REPO / "Tools/make_big_checkpoint.py"), str(slice_dir), "--layers", "4", "--fill-all"],
                           check=True, stdout=sys.stderr)
        slice_bytes = size_of(slice_dir)
        smol_f32 = work / "smol-f32"
        if not smol_f32.exists():
            subprocess.run([ckpt, "convert", str(GGUF), str(smol_f32), "--dtype", "f32"], check=True, stderr=subprocess.DEVNULL)
        smol_f32_bytes = size_of(smol_f32)

        out, cp_out = work / "out", work / "cp-out"
        log("case 1: reshard vs cp ...")
        ours, anchor = measure(args.runs,
                               (f"{ckpt} convert {slice_dir} {out} --shard-size 1GB", remover(out)),
                               (f"cp -r {slice_dir} {cp_out} && sync -f {cp_out}/config.json", remover(cp_out)))
        ratio = (slice_bytes / ours["median_s"]) / (slice_bytes / anchor["median_s"])
        passed = ratio >= 0.7 and ours["peak_rss_mib"] <= 512
        ok &= passed
        rows.append(("reshard 5.3 GB bf16 -> 1 GB shards", ours, "cp -r + sync", anchor, slice_bytes,
                     f"throughput ratio {ratio:.2f} (target >= 0.7), RSS {ours['peak_rss_mib']:.0f} MiB (target <= 512)", passed))

        log("case 2: bf16 -> f16 ...")
        ours, _ = measure(args.runs, (f"{ckpt} convert {slice_dir} {out} --dtype f16", remover(out)))
        passed = ours["peak_rss_mib"] <= 512
        ok &= passed
        rows.append(("5.3 GB bf16 -> f16", ours, None, None, slice_bytes, f"RSS {ours['peak_rss_mib']:.0f} MiB (target <= 512)", passed))

        log("case 3: f32 -> Q8_0 GGUF ...")
        q8 = work / "q8.gguf"
        ours, _ = measure(args.runs, (f"{ckpt} convert {smol_f32} {q8} --dtype q8_0", remover(q8)))
        passed = ours["peak_rss_mib"] <= 512
        ok &= passed
        rows.append(("SmolLM2 f32 (538 MB) -> Q8_0 GGUF", ours, None, None, smol_f32_bytes, f"RSS {ours['peak_rss_mib']:.0f} MiB", passed))

        log("case 4: GGUF -> f32 safetensors vs the Python route ...")
        hf, py_out = work / "hf", work / "py.safetensors"
        ours, anchor = measure(args.runs,
                               (f"{ckpt} convert {GGUF} {hf} --dtype f32", remover(hf)),
                               (f"{sys.executable} -c '{PYTHON_ROUTE}' {GGUF} {py_out}", remover(py_out)))
        passed = ours["peak_rss_mib"] <= 256
        ok &= passed
        rows.append(("SmolLM2 Q4_1 GGUF -> f32 safetensors", ours, "gguf-py + safetensors.numpy", anchor, GGUF.stat().st_size,
                     f"time ratio {ours['median_s'] / anchor['median_s']:.2f}, RSS ratio {ours['peak_rss_mib'] / anchor['peak_rss_mib']:.2f}, "
                     f"RSS {ours['peak_rss_mib']:.0f} MiB (target <= 256)", passed))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    print(f"{'case':<40}{'tool':<30}{'median s':>9}{'MB/s':>8}{'peak RSS MiB':>14}")
    for name, ours, anchor_name, anchor, nbytes, verdict, passed in rows:
        print(f"{name:<40}{'ckpt convert':<30}{ours['median_s']:>9.2f}{nbytes / ours['median_s'] / 1e6:>8.0f}{ours['peak_rss_mib']:>14.1f}")
        if anchor:
            print(f"{'':<40}{anchor_name:<30}{anchor['median_s']:>9.2f}{nbytes / anchor['median_s'] / 1e6:>8.0f}{anchor['peak_rss_mib']:>14.1f}")
        print(f"  {verdict}  {'PASS' if passed else 'FAIL'}")
    print(f"MB/s is source bytes per second; {args.runs} runs each, interleaved with the anchor; RSS from GNU time.")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
