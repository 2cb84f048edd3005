#!/bin/sh
# The engine's matmul on each kernel path (Tools/bench/matmul_paths.c): F32 weights on AVX2
# against AVX-512, BF16 weights on the f32 kernel against vdpbf16ps.
#
#   Tools/bench/matmul_paths.sh [THREADS [TOKENS [REPS]]]
exec "$(dirname "$0")/c_bench.sh" matmul_paths "$@"
