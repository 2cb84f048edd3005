#!/bin/sh
# Does llama.cpp's own quantizer take ckpt's importance matrix, and does it help?
#
# SmolLM2 in f32 (ckpt convert), MLP pruned 1536 -> 1024 by ckpt, calibrated again on the
# pruned model (16 x 512 tokens from the start of the corpus), exported with
# `ckpt importance export --imatrix`; then llama-quantize makes Q2_K with and without
# `--imatrix`. Prints the hold-out perplexity (corpus from the first blank line after 90%,
# 8 x 512 tokens) of each in ckpt and in llama.cpp (llama-cpp-python).
#
# llama-quantize is not in the llama-cpp-python wheel; build it from its sdist's vendored
# llama.cpp (pip download --no-deps llama-cpp-python; pip install cmake ninja):
#   cmake -S llama_cpp_python-*/vendor/llama.cpp -B /tmp/lbuild -G Ninja -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
#   cmake --build /tmp/lbuild --target llama-quantize
#
#   LLAMA_QUANTIZE=/tmp/lbuild/bin/llama-quantize Tools/reference/check_imatrix_quantize.sh
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CK=${CKPT:-$REPO/.build/release/ckpt}
Q=${LLAMA_QUANTIZE:?set LLAMA_QUANTIZE to a llama-quantize binary}
M=$REPO/.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
C=$REPO/../shared/corpus/train.txt
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
python3 - "$C" "$T/holdout.txt" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
start = data.find(b"\n\n", int(len(data) * 0.9)) + 2
open(sys.argv[2], "wb").write(data[start:])
PY
"$CK" convert "$M" "$T/f32.gguf" --dtype f32 2>/dev/null
"$CK" importance --model "$T/f32.gguf" --calib "$C" --samples 8 --seq 512 -o "$T/s.imp" 2>/dev/null
"$CK" prune --model "$T/f32.gguf" --importance "$T/s.imp" --ffn 1024 -o "$T/pruned.gguf" 2>/dev/null
"$CK" importance --model "$T/pruned.gguf" --calib "$C" --samples 16 --seq 512 -o "$T/p.imp" 2>/dev/null
"$CK" importance export "$T/p.imp" --imatrix "$T/p.imatrix.gguf" 2>/dev/null
"$Q" "$T/pruned.gguf" "$T/q2k-plain.gguf" Q2_K 2 > "$T/plain.log" 2>&1
"$Q" --imatrix "$T/p.imatrix.gguf" "$T/pruned.gguf" "$T/q2k-imatrix.gguf" Q2_K 2 > "$T/imatrix.log" 2>&1
grep -E "loaded [0-9]+ importance matrix entries" "$T/imatrix.log" || { echo "llama-quantize did not load the imatrix" >&2; exit 1; }
printf '%-28s %12s %12s\n' model "ckpt ppl" "llama.cpp"
for m in pruned q2k-plain q2k-imatrix; do
    a=$("$CK" eval --model "$T/$m.gguf" --file "$T/holdout.txt" --chunks 8 --json 2>/dev/null | python3 -c "import json,sys; print('%.3f' % json.load(sys.stdin)['ppl'])")
    b=$(python3 "$REPO/Tools/reference/llama_perplexity.py" --model "$T/$m.gguf" --file "$T/holdout.txt" --ctx 512 --chunks 8 --json 2>/dev/null | tail -1 | python3 -c "import json,sys; print('%.3f' % json.load(sys.stdin)['ppl'])")
    printf '%-28s %12s %12s\n' "$m" "$a" "$b"
done
