"""What the benchmark scripts share: running a command, and measuring its peak memory
from outside the process with GNU time."""

import subprocess
import sys


def run(cmd, timed=False):
    """Runs cmd (any items, turned into strings), capturing its output; exits with its
    stderr if it fails. With timed, runs it under /usr/bin/time -v and also returns its
    peak resident set size in MiB (else None)."""
    cmd = [str(c) for c in cmd]
    if timed:
        cmd = ["/usr/bin/time", "-v"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    rss = None
    if timed:
        rss = next(int(l.split()[-1]) for l in p.stderr.splitlines() if "Maximum resident set size" in l) / 1024
    return p, rss


def timed(cmd):
    """run(cmd, timed=True): the finished process and its peak RSS in MiB."""
    return run(cmd, timed=True)
