#!/bin/sh
# Builds Tools/bench/NAME.c against Sources/CKernels as SwiftPM builds them (clang -O3,
# -ffp-contract=off) and runs it with the remaining arguments, after naming the CPU.
#
#   Tools/bench/c_bench.sh NAME [ARGS...]
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
NAME=$1; shift
BIN=$(mktemp -d)/$NAME
trap 'rm -rf "$(dirname "$BIN")"' EXIT
${CC:-clang} ${CFLAGS:--O3} -ffp-contract=off -fno-math-errno -I "$REPO/Sources/CKernels/include" -I "$REPO/Tools/bench" \
    "$REPO/Tools/bench/$NAME.c" "$REPO"/Sources/CKernels/*.c -lm -lpthread -o "$BIN"
echo "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) CPUs"
"$BIN" "$@"
