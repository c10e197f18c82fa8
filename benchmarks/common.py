"""What the benchmark scripts (run.py, bench_streaming.py) share: the result rows, the
context handed to each benchmark, progress lines, number formatting, the markdown table,
the command line, the run loop and the final report.

The scripts are run as files (``python benchmarks/run.py``), so their own directory is on
``sys.path`` and they import this module as ``common``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import io
import json
import operator
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
DEFAULT_WORKDIR = HERE / ".scratch"
clock = time.perf_counter

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}


# --------------------------------------------------------------------------- results


@dataclass
class Metric:
    """One row of the table: a value per run, summarised by its median. ``target_op`` says
    how the median must compare with ``target``: ">=" (higher is better), "<=" or "<"
    (lower is better); with no target (None) the row is a diagnostic."""

    bench: str
    case: str
    unit: str
    values: list[float] = field(default_factory=list)
    target: float | None = None
    target_op: str = ">="

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def meets(self) -> bool | None:
        if self.target is None or not self.values:
            return None
        return _COMPARE[self.target_op](self.median, self.target)

    def target_json(self) -> dict[str, Any]:
        """The target's entries of :meth:`to_json` (a subclass may write them otherwise)."""
        return {"target": None if self.target is None else f"{self.target_op} {self.target}"}

    def to_json(self) -> dict[str, Any]:
        return {
            "bench": self.bench,
            "case": self.case,
            "unit": self.unit,
            "values": self.values,
            "median": self.median if self.values else None,
            "min": min(self.values) if self.values else None,
            "max": max(self.values) if self.values else None,
            **self.target_json(),
            "meets_target": self.meets,
        }


@dataclass
class Ctx:
    """What a benchmark gets: the runs, the sizes (each script's own ``Sizes``), where its
    data goes, and the notes it adds below the table."""

    runs: int
    sizes: Any
    workdir: Path
    quick: bool = False
    profile: bool = False
    notes: list[str] = field(default_factory=list)

    def dir(self, name: str) -> Path:
        path = self.workdir / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path


Benchmark = Callable[[Ctx], list[Metric]]


def progress(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values)) - 1))
    return float(sorted_values[k])


def render(metrics: list[Metric], runs: int) -> str:
    lines = [
        f"| benchmark | case | median of {runs} | min | max | unit | target | "
        "median / target | meets |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for m in metrics:
        if m.target is None:
            target = ratio = meets = ""
        else:
            target = f"{m.target_op} {fmt(m.target)}"
            ratio = f"{m.median / m.target:.2f}"
            meets = "yes" if m.meets else "**NO**"
        lines.append(
            f"| {m.bench} | {m.case} | {fmt(m.median)} | {fmt(min(m.values))} | "
            f"{fmt(max(m.values))} | {m.unit} | {target} | {ratio} | {meets} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


@contextmanager
def quiesced() -> Iterator[None]:
    """Start a timed region from a clean state: no dirty pages, no pending garbage."""
    os.sync()
    gc.collect()
    yield


def print_profile(prof: cProfile.Profile | str, name: str, top: int = 18) -> None:
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    print(f"--- profile of {name} (tottime) ---\n{out.getvalue()}", file=sys.stderr, flush=True)


def cpu_and_memory() -> dict[str, Any]:
    """``{"cpu": model name, "memory_gb": RAM}`` from /proc (what of them it can read)."""
    info: dict[str, Any] = {}
    with suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["memory_gb"] = round(int(f.readline().split()[1]) / 1e6, 1)
    return info


def git_commit(repo: Path) -> str:
    """The commit of the work tree at ``repo``, with "-dirty" if its logstore/ has
    uncommitted changes, or "unknown" (not a git work tree, no git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "logstore"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


# --------------------------------------------------------------------------- main


def parse_args(
    doc: str, benchmarks: dict[str, Benchmark], argv: list[str] | None
) -> tuple[argparse.Namespace, list[str]]:
    """The options both scripts take (see their docstrings); returns them and the names of
    the benchmarks to run."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per benchmark (default 3)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", default="", metavar="NAME",
                        help=f"comma-separated subset of: {', '.join(benchmarks)}")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR),
                        help="scratch directory (default benchmarks/.scratch)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile each benchmark (inflates timings) and print the top")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(benchmarks)
    unknown = [n for n in names if n not in benchmarks]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (known: {', '.join(benchmarks)})")
    return args, names


def run_benchmarks(
    ctx: Ctx, names: list[str], benchmarks: dict[str, Benchmark], command: str,
    profile_each: bool = False,
) -> tuple[list[Metric], float]:
    """Run the named benchmarks in turn (``profile_each``: each under cProfile, its top
    functions to stderr), then delete ``ctx.workdir``; returns the rows and the seconds."""
    progress(f"{command}: {', '.join(names)}; {ctx.runs} run(s); data in {ctx.workdir}")
    metrics: list[Metric] = []
    t_all = clock()
    try:
        for name in names:
            t = clock()
            if profile_each:
                prof = cProfile.Profile()
                got = prof.runcall(benchmarks[name], ctx)
                print_profile(prof, name, top=15)
            else:
                got = benchmarks[name](ctx)
            metrics += got
            progress(f"{name} done in {clock() - t:.1f} s")
    finally:
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    return metrics, clock() - t_all


def report(
    title: str, where: str, metrics: list[Metric], ctx: Ctx, args: argparse.Namespace,
    command: str, started: datetime.datetime, elapsed: float, info: dict[str, Any],
) -> None:
    """Print the heading (``title``; ``where``: which code ran), the machine (``info``:
    "python" and "cpus", and "cpu" and "memory_gb" if there), the table and the notes, and
    write the JSON file if ``--json`` asked for it."""
    print(f"## {title}, {started:%Y-%m-%d %H:%M %Z}\n")
    print(f"`{command}` {where}: {args.runs} run(s) each"
          f"{' (QUICK sizes)' if args.quick else ''}, "
          f"{elapsed:.0f} s in all; Python {info['python']}, {info['cpus']} CPUs"
          f"{', ' + info['cpu'] if 'cpu' in info else ''}"
          f"{', ' + str(info['memory_gb']) + ' GB RAM' if 'memory_gb' in info else ''}.\n")
    print(render(metrics, args.runs))
    if ctx.notes:
        print()
        for note in ctx.notes:
            print(f"- {note}")
    if args.profile:
        print("\n(profiled run: timings are inflated by cProfile)")
    if args.json:
        doc = {
            "date": started.isoformat(timespec="seconds"),
            "command": command,
            "runs": args.runs,
            "quick": args.quick,
            "seconds": round(elapsed, 1),
            "machine": info,
            "notes": ctx.notes,
            "results": [m.to_json() for m in metrics],
        }
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")


class Children:
    """Child processes of a benchmark (its own file re-executed with ``prefix`` and the
    arguments of each ``start``): each prints "ready" after its setup, starts on "go",
    ends with a JSON line, and exits when its stdin closes; :meth:`close` kills any still
    alive. ``what`` names them in errors ("worker", "client")."""

    def __init__(self, directory: Path, script: str, prefix: str, what: str) -> None:
        self.directory = directory
        self.command = [sys.executable, str(Path(script).resolve()), prefix]
        self.what = what
        self.procs: list[tuple[str, subprocess.Popen[str], IO[str]]] = []

    def start(self, name: str, args: Sequence[str], timeout: float) -> subprocess.Popen[str]:
        """Start child ``name`` with ``args`` and wait for its "ready"."""
        err = (self.directory / f"{name}.stderr").open("w")
        proc = subprocess.Popen(
            [*self.command, *args],
            stdin=subprocess.PIPE,  # the child exits when this closes (parent gone)
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        self.procs.append((name, proc, err))
        line = self.readline(name, proc, timeout)
        if line != "ready":
            raise RuntimeError(
                f"{self.what} {name} did not start: {line!r}\n{self.stderr(name)}"
            )
        return proc

    @staticmethod
    def go(*procs: subprocess.Popen[str]) -> None:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()

    def readline(self, name: str, proc: subprocess.Popen[str], timeout: float) -> str:
        stdout = proc.stdout
        assert stdout is not None
        got: list[str] = []
        reader = threading.Thread(target=lambda: got.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not got:
            raise RuntimeError(
                f"{self.what} {name}: no answer in {timeout} s\n{self.stderr(name)}"
            )
        return got[0].strip()

    def stderr(self, name: str) -> str:
        try:
            return (self.directory / f"{name}.stderr").read_text()[-3000:]
        except OSError:
            return ""

    def finish(self, name: str, proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
        """Wait for the child's last line (a JSON summary) and its exit."""
        line = self.readline(name, proc, timeout)
        rc = proc.wait(timeout=30)
        if rc != 0 or not line.startswith("{"):
            raise RuntimeError(f"{self.what} {name} failed (exit {rc}, {line!r}):\n"
                               f"{self.stderr(name)}")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
        for _, proc, err in self.procs:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with suppress(OSError):
                        pipe.close()
            err.close()
        self.procs.clear()
