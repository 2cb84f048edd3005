#!/bin/sh
# Int8 against f32 linear products on the CPU, as a training step uses them.
#
# Compiles Tools/bench/gemm_q8_bench.c with clang -O3 (as SwiftPM builds them) against the C kernels of
# Sources/CKernels (the same sources SwiftPM builds; -ffp-contract=off as Package.swift
# sets), then times on THREADS threads (default 2), for T tokens (default 512):
#   forward:  ckpt_linear_forward (f32)  vs ckpt_linear_forward_q8 (activations quantized inside the timing)
#   dx:       ckpt_linear_backward with dw = NULL (f32) vs ckpt_linear_backward_input_q8
# and prints GFLOP/s (2·T·in·out / time) of both with the ratio, the relative Frobenius
# error of the int8 results against f32, and the one-off time to quantize W both ways.
# On a CPU with AVX-512 VNNI the int8 products also run on the AVX2 path (capped with
# ckpt_set_kernel_level in the same loop): its GFLOP/s, the VNNI/AVX2 ratios and whether
# both paths gave the same bits come last. Tile sizes can be tried with
# CFLAGS="-O2 -DQ8_ZMM_VECS=4 -DQ8_ZMM_TOKENS=2" (see gemm_q8.c).
#
#   Tools/bench/gemm_q8_bench.sh [THREADS [TOKENS [REPS]]]
#   CC=gcc CFLAGS=-O2 Tools/bench/gemm_q8_bench.sh        # another compiler or flags
#   SHAPES="576,576 4096,4096" Tools/bench/gemm_q8_bench.sh
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
THREADS=${1:-2}
TOKENS=${2:-512}
REPS=${3:-7}
CC=${CC:-clang}   # as SwiftPM builds CKernels (clang -O3); gcc -O2 does not unroll the f32 tiles
CFLAGS=${CFLAGS:--O3}
SHAPES=${SHAPES:-"576,576 576,192 576,1024 1024,576 576,49152"}
BIN=$(mktemp -d)/gemm_q8_bench
trap 'rm -rf "$(dirname "$BIN")"' EXIT
$CC $CFLAGS -ffp-contract=off -fno-math-errno -I "$REPO/Sources/CKernels/include" \
    "$REPO/Tools/bench/gemm_q8_bench.c" "$REPO"/Sources/CKernels/*.c -lm -lpthread -o "$BIN"
echo "$CC $CFLAGS; $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) CPUs"
# shellcheck disable=SC2086
"$BIN" "$THREADS" "$TOKENS" "$REPS" $SHAPES
