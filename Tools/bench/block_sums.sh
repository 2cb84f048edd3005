#!/bin/sh
# What llama.cpp's Q4_1/Q5_1 block-sum term costs the engine's matmul: Tools/bench/block_sums.c,
# compiled with clang -O3 against Sources/CKernels as SwiftPM builds it, old path (round +
# matmul) against new (round with sums + matmul + block mins) in the same run.
#
#   Tools/bench/block_sums.sh [THREADS [TOKENS [REPS]]]
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(mktemp -d)/block_sums
trap 'rm -rf "$(dirname "$BIN")"' EXIT
${CC:-clang} ${CFLAGS:--O3} -ffp-contract=off -fno-math-errno -I "$REPO/Sources/CKernels/include" \
    "$REPO/Tools/bench/block_sums.c" "$REPO"/Sources/CKernels/*.c -lm -lpthread -o "$BIN"
echo "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) CPUs"
"$BIN" "$@"
