#!/usr/bin/env python3
"""Kill `ckpt logits build` with SIGKILL at random moments, restart it, and check the result.

Makes a reference cache of SmolLM2 over the start of the corpus with one uninterrupted
build, then --runs times: starts the same build into a fresh path, kills it with
`kill -9` after a random delay, up to --kills times in a row, then lets it finish. Every
run must leave no file at the output path until the build completes, and must end with
a cache byte-identical to the reference. Ends with `crash_logits: N passed, M failed`.

    python3 Tools/crash_logits.py [--ckpt BIN] [--runs 10] [--kills 3]
"""

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default=str(REPO / ".build/release/ckpt"))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    model = REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    corpus = REPO.parent / "shared/corpus/train.txt"
    if not corpus.exists():
        corpus = REPO / "README.md"
    with tempfile.TemporaryDirectory(prefix="ckpt-crash-logits-") as tmp:
        def cmd(out):
            return [a.ckpt, "logits", "build", "--model", str(model), "--file", str(corpus), "--seq", "128", "--sequences", "24",
                    "--chunk-sequences", "2", "--draws", "64", "-o", str(out)]
        ref = Path(tmp) / "reference.cache"
        t0 = time.monotonic()
        subprocess.run(cmd(ref), check=True, capture_output=True)
        duration = time.monotonic() - t0
        want = ref.read_bytes()
        passed = failed = landed = 0
        for run in range(a.runs):
            out = Path(tmp) / f"run{run}.cache"
            ok = True
            for _ in range(a.kills):
                p = subprocess.Popen(cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(rng.uniform(0, duration * 0.8))
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                    p.wait()
                    landed += 1
                    if out.exists():
                        ok = False
                        print(f"run {run}: {out.name} exists after a kill mid-build")
                partial = Path(str(out) + ".partial")
                if partial.exists():
                    print(f"run {run}: killed with {partial.stat().st_size} bytes in {partial.name}")
            subprocess.run(cmd(out), check=True, capture_output=True)
            if out.read_bytes() != want:
                ok = False
                print(f"run {run}: the finished cache differs from the reference")
            passed += ok
            failed += not ok
        print(f"{landed} kills landed mid-build")
        print(f"crash_logits: {passed} passed, {failed} failed")
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
