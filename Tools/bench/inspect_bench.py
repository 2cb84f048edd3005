#!/usr/bin/env python3
"""Benchmark `ckpt inspect --json` against Python anchors, as whole commands.

Two cases, each timed from process start to exit:

  * a sparse 15B-shaped sharded bf16 safetensors checkpoint (made with
    Tools/make_big_checkpoint.py in a temporary directory under /tmp unless --big
    is given, and deleted afterwards): `ckpt inspect --json DIR` versus a
    `python3 -c` script that opens every shard of the index with
    `safetensors.safe_open(f, "numpy")` and lists every key with
    `get_slice(k).get_shape()`;
  * the SmolLM2-135M Q4_1 GGUF: `ckpt inspect --json FILE` versus a `python3 -c`
    script that builds `gguf.GGUFReader(FILE)` and lists every tensor's name,
    type, shape and offset.

ckpt and anchor runs are interleaved (2 warm-ups, then --runs timed runs of each,
alternating which goes first) so they share the machine's noise; output goes to
/dev/null. Afterwards each case checks that ckpt lists the same tensors (names,
shapes; for GGUF also types and offsets) as its anchor, and fails if not. Wall time is time.perf_counter() around Popen ... os.wait4(); peak
RSS is measured from outside by GNU time (`/usr/bin/time -f %M`) in separate runs.

Why GNU time and not this script's own os.wait4(): on Linux a child's ru_maxrss also
counts its parent's resident set at the moment of exec, so every child of this Python
process would report at least Python's ~16 MiB. GNU time is a small C program, so the
floor it adds is small; the "spawn floor" line reports it (`/usr/bin/time true`).

Targets: safetensors wall ratio ckpt/anchor <= 0.5, GGUF wall ratio <= 0.05, ckpt
peak RSS <= 32 MiB in both cases. Exits 1 if any target fails.

Usage:
    Tools/bench/inspect_bench.py [--ckpt .build/release/ckpt] [--big DIR]
                                 [--gguf FILE] [--runs 15] [--json]

--json prints the figures as one JSON object on stdout instead of the table.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CKPT = REPO_ROOT / ".build/release/ckpt"
DEFAULT_GGUF = REPO_ROOT / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
MAKE_BIG = REPO_ROOT / "Tools/make_big_checkpoint.py"
WARMUP_RUNS = 2
FLOOR_RUNS = 5
RSS_RUNS = 3
GNU_TIME = "/usr/bin/time"
RSS_TARGET_MIB = 32.0

# Each anchor prints one tab-separated line per tensor; check_listing compares them to ckpt's JSON.
SAFETENSORS_ANCHOR = """
import json, os, sys
from safetensors import safe_open
index_path = sys.argv[1]
directory = os.path.dirname(index_path)
with open(index_path) as f:
    shards = sorted(set(json.load(f)["weight_map"].values()))
for shard in shards:
    with safe_open(os.path.join(directory, shard), "numpy") as f:
        for k in f.keys():
            print(k, ",".join(map(str, f.get_slice(k).get_shape())), sep="\\t")
"""

GGUF_ANCHOR = """
import sys
import gguf
reader = gguf.GGUFReader(sys.argv[1])
for t in reader.tensors:
    print(t.name, t.tensor_type.name, ",".join(map(str, t.shape.tolist())), t.data_offset, sep="\\t")
"""


@dataclass
class Tool:
    label: str
    argv: list[str]


@dataclass
class Case:
    name: str
    ckpt: Tool
    anchor: Tool
    ratio_target: float
    # The anchor's fields for one tensor of ckpt's JSON, as the anchor prints them.
    ckpt_fields: Callable[[dict], list[str]]


@dataclass
class Sample:
    wall_ms: float


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_once(argv: list[str]) -> Sample:
    """Run argv with stdout to /dev/null; wall time and the child's peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, _ = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"command failed with exit code {proc.returncode}: {' '.join(argv)}")
    return Sample(wall * 1000)


def run_output(argv: list[str]) -> str:
    result = subprocess.run(argv, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        sys.exit(f"command failed with exit code {result.returncode}: {' '.join(argv)}")
    return result.stdout


def anchor_listing(tool: Tool) -> list[list[str]]:
    return [line.split("\t") for line in run_output(tool.argv).splitlines()]


def ckpt_tensors(tool: Tool) -> list[dict]:
    return json.loads(run_output(tool.argv))["tensors"]


def check_listing(case: Case) -> list[str]:
    """Differences between ckpt's tensor list and the anchor's (empty if they agree)."""
    ours = {t["name"]: case.ckpt_fields(t) for t in ckpt_tensors(case.ckpt)}
    theirs = {name: fields for name, *fields in anchor_listing(case.anchor)}
    problems = [f"{case.name}: {n} missing from ckpt" for n in sorted(theirs.keys() - ours.keys())]
    problems += [f"{case.name}: {n} listed by ckpt only" for n in sorted(ours.keys() - theirs.keys())]
    problems += [f"{case.name}: {n}: ckpt {ours[n]} vs anchor {theirs[n]}"
                 for n in sorted(ours.keys() & theirs.keys()) if ours[n] != theirs[n]]
    return problems


def measure(case: Case, runs: int) -> tuple[list[Sample], list[Sample]]:
    """Interleaved runs of ckpt and anchor, alternating which goes first; warm-ups dropped."""
    ckpt: list[Sample] = []
    anchor: list[Sample] = []
    for i in range(WARMUP_RUNS + runs):
        pair = [(case.ckpt, ckpt), (case.anchor, anchor)]
        for tool, samples in (pair if i % 2 == 0 else pair[::-1]):
            sample = run_once(tool.argv)
            if i >= WARMUP_RUNS:
                samples.append(sample)
    return ckpt, anchor


def summary(samples: list[Sample]) -> dict:
    walls = [s.wall_ms for s in samples]
    return {
        "median_ms": round(statistics.median(walls), 2),
        "min_ms": round(min(walls), 2),
    }


def evaluate(case: Case, ckpt: list[Sample], anchor: list[Sample]) -> dict:
    c, a = summary(ckpt), summary(anchor)
    c["peak_rss_mib"] = round(max(peak_rss_kib(case.ckpt.argv) for _ in range(RSS_RUNS)) / 1024, 2)
    a["peak_rss_mib"] = round(max(peak_rss_kib(case.anchor.argv) for _ in range(RSS_RUNS)) / 1024, 2)
    ratio = c["median_ms"] / a["median_ms"]
    return {
        "case": case.name,
        "ckpt": {"tool": case.ckpt.label, **c},
        "anchor": {"tool": case.anchor.label, **a},
        "wall_ratio": round(ratio, 4),
        "wall_ratio_target": case.ratio_target,
        "rss_target_mib": RSS_TARGET_MIB,
        "pass": ratio <= case.ratio_target and c["peak_rss_mib"] <= RSS_TARGET_MIB,
    }


def peak_rss_kib(argv: list[str]) -> int:
    """Peak RSS of one run of argv, as GNU time reports it (KiB)."""
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run([GNU_TIME, "-f", "%M", "-o", out.name, *argv], stdout=subprocess.DEVNULL, check=True)
        return int(out.read().split()[-1])


def spawn_floor_mib() -> float:
    """Peak RSS of /bin/true under GNU time: what the measuring method itself adds."""
    return round(max(peak_rss_kib(["/bin/true"]) for _ in range(FLOOR_RUNS)) / 1024, 2)


def render_table(results: list[dict], floor_mib: float, runs: int) -> str:
    def rss(mib: float) -> str:
        return f"<={mib:.1f}" if mib <= floor_mib else f"{mib:.1f}"

    lines = [f"{'case':<25}{'tool':<21}{'median ms':>10}{'min ms':>9}{'peak RSS MiB':>15}"]
    for r in results:
        for side in ("ckpt", "anchor"):
            s = r[side]
            lines.append(f"{r['case']:<25}{s['tool']:<21}{s['median_ms']:>10.1f}{s['min_ms']:>9.1f}{rss(s['peak_rss_mib']):>15}")
        verdict = "PASS" if r["pass"] else "FAIL"
        lines.append(f"  ratio ckpt/anchor: {r['wall_ratio']:.3f} (target <= {r['wall_ratio_target']})   "
                     f"RSS {rss(r['ckpt']['peak_rss_mib'])} MiB (target <= {RSS_TARGET_MIB:.0f} MiB)  {verdict}")
    lines.append("")
    lines.append(f"{runs} timed runs each after {WARMUP_RUNS} warm-ups, interleaved; ratio of medians.")
    lines.append(f"peak RSS: max of {RSS_RUNS} runs under GNU time; /bin/true measured the same way = {floor_mib:.1f} MiB "
                 "('<=' marks figures at that floor)")
    return "\n".join(lines)


def make_big_checkpoint(parent: Path) -> Path:
    directory = parent / "big"
    log(f"creating the sparse 15B checkpoint in {directory} ...")
    subprocess.run([sys.executable, str(MAKE_BIG), str(directory)], check=True, stdout=sys.stderr)
    return directory


def dims(shape: list[int]) -> str:
    return ",".join(map(str, shape))


def build_cases(ckpt: Path, big: Path, gguf: Path) -> list[Case]:
    index = big / "model.safetensors.index.json"
    if not index.is_file():
        sys.exit(f"{big} has no model.safetensors.index.json")
    python = sys.executable
    return [
        Case("15B sharded safetensors",
             Tool("ckpt inspect --json", [str(ckpt), "inspect", "--json", str(big)]),
             Tool("python safe_open", [python, "-c", SAFETENSORS_ANCHOR, str(index)]),
             ratio_target=0.5,
             ckpt_fields=lambda t: [dims(t["shape"])]),
        # GGUFReader gives shapes in ne[] order (innermost first); ckpt outermost first.
        Case("SmolLM2-135M Q4_1 GGUF",
             Tool("ckpt inspect --json", [str(ckpt), "inspect", "--json", str(gguf)]),
             Tool("python GGUFReader", [python, "-c", GGUF_ANCHOR, str(gguf)]),
             ratio_target=0.05,
             ckpt_fields=lambda t: [t["dtype"], dims(t["shape"][::-1]), str(t["offset"])]),
    ]


def run_benchmark(args: argparse.Namespace, big: Path) -> tuple[list[dict], float]:
    """Time every case, then check the listings: parsing their output grows this
    process, and its peak RSS is part of every later child's ru_maxrss."""
    cases = build_cases(args.ckpt, big, args.gguf)
    results = []
    for case in cases:
        log(f"timing {case.name}: {WARMUP_RUNS} warm-ups + {args.runs} runs of each tool ...")
        results.append(evaluate(case, *measure(case, args.runs)))
    floor_mib = spawn_floor_mib()
    log("checking that ckpt lists the same tensors as the anchors ...")
    problems = [p for case in cases for p in check_listing(case)]
    if problems:
        sys.exit("ckpt's listing differs from the anchor's:\n  " + "\n  ".join(problems[:20]))
    return results, floor_mib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", type=Path, default=DEFAULT_CKPT, help="ckpt binary (default: .build/release/ckpt)")
    ap.add_argument("--big", type=Path, help="existing big checkpoint directory (default: make one under /tmp)")
    ap.add_argument("--gguf", type=Path, default=DEFAULT_GGUF, help="GGUF file (default: the SmolLM2-135M Q4_1)")
    ap.add_argument("--runs", type=int, default=15, help="timed runs per tool (default 15)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object instead of a table")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if not os.access(args.ckpt, os.X_OK):
        sys.exit(f"{args.ckpt} is not an executable; build it with `swift build -c release`")
    if not args.gguf.is_file():
        sys.exit(f"{args.gguf} does not exist")

    scratch = None if args.big else Path(tempfile.mkdtemp(prefix="ckpt-inspect-bench-", dir="/tmp"))
    try:
        big = args.big or make_big_checkpoint(scratch)
        results, floor_mib = run_benchmark(args, big)
    finally:
        if scratch:
            shutil.rmtree(scratch)

    passed = all(r["pass"] for r in results)
    if args.json:
        print(json.dumps({"runs": args.runs, "warmup_runs": WARMUP_RUNS, "spawn_floor_rss_mib": floor_mib,
                          "cases": results, "pass": passed}, indent=2))
    else:
        print(render_table(results, floor_mib, args.runs))
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
