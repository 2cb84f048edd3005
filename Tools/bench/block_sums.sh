#!/bin/sh
# What llama.cpp's Q4_1/Q5_1 block-sum term costs the engine's matmul (Tools/bench/block_sums.c):
# old path (round + matmul) against new (round with sums + matmul + block mins), same run.
#
#   Tools/bench/block_sums.sh [THREADS [TOKENS [REPS]]]
exec "$(dirname "$0")/c_bench.sh" block_sums "$@"
