#!/bin/sh
# Peak FMA GFLOP/s of one core at 256 and 512 bits (Tools/bench/fma_peak.c), the anchor
# for what the AVX-512 kernels can gain on this CPU.
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(mktemp -d)/fma_peak
trap 'rm -rf "$(dirname "$BIN")"' EXIT
${CC:-clang} -O3 "$REPO/Tools/bench/fma_peak.c" -o "$BIN"
echo "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
"$BIN" "$@"
