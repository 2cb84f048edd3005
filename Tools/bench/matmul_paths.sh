#!/bin/sh
# The engine's matmul on each kernel path (Tools/bench/matmul_paths.c): F32 weights on AVX2
# against AVX-512, BF16 weights on the f32 kernel against vdpbf16ps. Compiled with clang -O3
# against Sources/CKernels, as SwiftPM builds it.
#
#   Tools/bench/matmul_paths.sh [THREADS [TOKENS [REPS]]]
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$(mktemp -d)/matmul_paths
trap 'rm -rf "$(dirname "$BIN")"' EXIT
${CC:-clang} ${CFLAGS:--O3} -ffp-contract=off -fno-math-errno -I "$REPO/Sources/CKernels/include" \
    "$REPO/Tools/bench/matmul_paths.c" "$REPO"/Sources/CKernels/*.c -lm -lpthread -o "$BIN"
echo "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) CPUs"
"$BIN" "$@"
