#!/usr/bin/env bash
# Runs a command inside a fresh cgroup-v1 memory cgroup with a hard limit, then reports
# whether the kernel killed anything (memory.oom_control / failcnt) and the cgroup's peak
# usage (memory.max_usage_in_bytes, page cache included). Needs root and cgroup v1.
#
#   Tools/bench/cgroup_run.sh 4G ckpt importance --model … -o …
set -euo pipefail
limit=$1; shift
cg=/sys/fs/cgroup/memory/ckpt-bench-$$
mkdir "$cg"
trap 'rmdir "$cg" 2>/dev/null || true' EXIT
numfmt --from=iec "$limit" > "$cg/memory.limit_in_bytes"
status=0
( echo $BASHPID > "$cg/cgroup.procs"; exec "$@" ) || status=$?
echo "cgroup limit $limit: exit status $status, peak usage $(numfmt --to=iec < "$cg/memory.max_usage_in_bytes") (page cache included), limit hits $(cat "$cg/memory.failcnt"), $(grep oom_kill "$cg/memory.oom_control" || echo 'oom_kill 0')" >&2
exit $status
