#!/usr/bin/env bash
# Rebuilds the logit-cache test vectors (Formats/logit-cache.md): two small caches from
# the tiny llama fixture, and their records as decoded by the independent Python reader.
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --product ckpt >/dev/null
ckpt=.build/release/ckpt
out=Tests/Fixtures/logits
model=Tests/Fixtures/engine/tiny-llama.gguf
rm -f "$out"/tiny-*.cache "$out"/tiny-*.jsonl
"$ckpt" logits build --model "$model" --file "$out/text.txt" --seq 32 --encoding topk --k 8 --chunk-sequences 8 -o "$out/tiny-topk.cache"
"$ckpt" logits build --model "$model" --file "$out/text.txt" --seq 32 --encoding sample --draws 16 --seed 7 --codec lz4 --chunk-sequences 8 -o "$out/tiny-sample.cache"
for e in topk sample; do
    python3 Tools/reference/read_logit_cache.py "$out/tiny-$e.cache" --jsonl "$out/tiny-$e.jsonl"
done
