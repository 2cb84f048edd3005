#!/usr/bin/env bash
# Header fuzzing at scale: mutates real GGUF and safetensors headers (byte flips,
# truncations, extreme length fields, insertions, deletions) for N cases (default
# 100,000) in a release build, and reports how many were accepted or refused.
# A crash (trap, segfault) fails the run. Seed with CKPT_FUZZ_SEED.
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT_FUZZ_CASES="${1:-100000}" swift test -c release --disable-swift-testing --filter FuzzTests 2>&1 | grep -E "fuzz:|Executed|error" | tail -n 3
