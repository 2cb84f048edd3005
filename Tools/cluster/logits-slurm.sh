#!/usr/bin/env bash
# Teacher logits as a Slurm job array: N shards run anywhere, then one merge.
#
#   sbatch --array=0-3 Tools/cluster/logits-slurm.sh TEACHER TEXT.txt OUT_DIR
#   # when all four are done:
#   ckpt logits merge OUT_DIR/shard-*.cache -o OUT_DIR/teacher.cache
#
# Every shard must see the same teacher, text and settings: the caches record them and
# `merge` refuses shards that differ. Shards are whole chunks of the unsharded build, so
# the merged file is the one a single run would write (Formats/logit-cache.md). A shard
# that is preempted or killed resumes from its last complete chunk when requeued: the
# same command finds OUT_DIR/shard-i.cache.partial and goes on.
#SBATCH --job-name=ckpt-logits
#SBATCH --cpus-per-task=8
#SBATCH --mem=8G
#SBATCH --time=24:00:00
#SBATCH --requeue
set -euo pipefail
teacher=$1 text=$2 out=$3
shards=${SLURM_ARRAY_TASK_COUNT:?run with sbatch --array=0-(N-1)}
mkdir -p "$out"
ckpt logits build --model "$teacher" --file "$text" --seq 512 --encoding sample --draws 64 \
  --threads "${SLURM_CPUS_PER_TASK:-8}" --max-resident 4G \
  --shard "${SLURM_ARRAY_TASK_ID}/${shards}" -o "$out/shard-${SLURM_ARRAY_TASK_ID}.cache"
