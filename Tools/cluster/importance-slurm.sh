#!/usr/bin/env bash
# Calibration statistics as a Slurm job array: N shards run anywhere, then one merge.
#
#   sbatch --array=0-3 Tools/cluster/importance-slurm.sh MODEL CALIB.txt OUT_DIR
#   # when all four are done:
#   ckpt importance merge OUT_DIR/shard-*.imp -o OUT_DIR/stats.imp
#
# Every shard must see the same model, calibration file, --samples and --seq: the
# statistics record their fingerprints and `merge` refuses shards that differ. The
# merged file is bit-identical to one run over all samples (Formats/importance.md).
#SBATCH --job-name=ckpt-importance
#SBATCH --cpus-per-task=8
#SBATCH --mem=4G
#SBATCH --time=04:00:00
set -euo pipefail
model=$1 calib=$2 out=$3
shards=${SLURM_ARRAY_TASK_COUNT:?run with sbatch --array=0-(N-1)}
mkdir -p "$out"
ckpt importance --model "$model" --calib "$calib" --samples 1024 --seq 512 \
  --threads "${SLURM_CPUS_PER_TASK:-8}" --max-resident 2G \
  --shard "${SLURM_ARRAY_TASK_ID}/${shards}" -o "$out/shard-${SLURM_ARRAY_TASK_ID}.imp"
