#!/usr/bin/env python3
"""Kill `ckpt convert --in-place` with SIGKILL at random moments and check recovery.

Builds a sharded bf16 copy of SmolLM2 (50 MB shards, 6 files), makes the reference by
an uninterrupted in-place rewrite to f16, then N times: a fresh copy, the rewrite started
and killed with `kill -9` after a random delay, then `ckpt inspect` on it (which finishes
any interrupted rewrite). Every run must end with files byte-identical to either the original (a kill before the
journal existed) or the reference (the rewrite finished, by the run or by recovery).
Prints how many kills landed mid-rewrite and ends with `crash_inplace: N passed, M failed`.

    python3 Tools/crash_inplace.py [--ckpt BIN] [--runs 30]
"""

import argparse
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def digests(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(directory).iterdir())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    gguf = REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    with tempfile.TemporaryDirectory(prefix="ckpt-crash-") as tmp:
        tmp = Path(tmp)
        base = tmp / "base"
        subprocess.run([args.ckpt, "convert", str(gguf), str(base), "--dtype", "bf16", "--shard-size", "50MB"], check=True,
                       stderr=subprocess.DEVNULL)
        reference = tmp / "reference"
        shutil.copytree(base, reference)
        start = time.perf_counter()
        subprocess.run([args.ckpt, "convert", str(reference), "--in-place", "--dtype", "f16"], check=True, stderr=subprocess.DEVNULL)
        full = time.perf_counter() - start
        expected = digests(reference)
        original = digests(base)
        passed = failed = interrupted = untouched = 0
        for i in range(args.runs):
            work = tmp / f"run{i}"
            shutil.copytree(base, work)
            proc = subprocess.Popen([args.ckpt, "convert", str(work), "--in-place", "--dtype", "f16"], stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0, full * 1.1))
            proc.send_signal(signal.SIGKILL)
            code = proc.wait()
            if code == -signal.SIGKILL:
                interrupted += 1
            subprocess.run([args.ckpt, "inspect", str(work), "--json"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            got = digests(work)
            if got == expected:
                passed += 1
            elif got == original:
                passed += 1
                untouched += 1
            else:
                failed += 1
                print(f"run {i}: files differ from the reference: {sorted(set(got.items()) ^ set(expected.items()))[:4]}")
            shutil.rmtree(work)
        print(f"uninterrupted rewrite: {full:.2f} s; {interrupted} of {args.runs} kills landed before the rewrite ended; "
              f"{untouched} left the original (killed before the journal), the rest ended as the reference")
        print(f"crash_inplace: {passed} passed, {failed} failed")
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
