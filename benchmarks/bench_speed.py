#!/usr/bin/env python3
"""Issue 14's acceptance figures in one session: logstore with its compiled record codec,
logstore with its pure-Python codec, and Apache Kafka (confluent-kafka) on the same
workloads, as medians of several rounds.

    .venv/bin/python benchmarks/bench_speed.py                    # 3 rounds (~12-15 min, estimated)
    .venv/bin/python benchmarks/bench_speed.py --quick --rounds 1  # smoke run (~30 s)

Each round runs five child processes, one after the other, each ``--runs 1 --json``:

1. ``run.py --only append,append_1mib``, compiled codec;
2. the same with ``LOGSTORE_NO_EXTENSIONS=1`` (the pure-Python codec);
3. ``bench_streaming.py --only producer,consumer,latency``, compiled codec;
4. the same, pure-Python;
5. ``bench_peers.py --only producer,bulk,consumer,latency,append_1mib`` (Kafka).

The order is reversed every other round (1-5, then 5-1, ...), so that no child always
runs first, nor always right after the Kafka broker. The compiled children run with
``LOGSTORE_NO_EXTENSIONS`` removed from their environment; before each logstore child, a
probe in the same environment checks which codec ``logstore.records.accel`` picks, and a
child whose codec is not the intended one is reported below the table. The children's
progress goes to stderr as it comes; their JSON and their own markdown tables (stdout)
are kept in ``benchmarks/.scratch/speed-<pid>/`` (printed at the start and in the
report); nothing else is deleted or kept. Each child's scratch data goes in a
sub-directory there, which the child deletes.

Then one markdown table goes to stdout (and to ``--out FILE``): per figure, issue 14's
target, logstore compiled (median over the rounds, min-max), logstore pure-Python
(median), Kafka (median, with the case and its JSON key), compiled / pure (ratio of the
medians: for the ms rows below 1 means the compiled codec is faster) and whether the
compiled median meets the target. The targets are issue 14's, not the children's own
(their tables still carry older ones). Above the table: the date, the commit, the
machine, the load average before and after, and the command; below it, each child's
time, exit status and JSON file, and anything the JSON files lacked.

Options::

    --rounds N        rounds (default 3); each child runs once per round
    --quick           pass --quick to every child: a smoke run whose numbers mean little
    --skip-peers      do not run bench_peers.py (the Kafka column stays empty)
    --broker MODE     bench_peers.py's --broker: private (default here: a broker of its own
                      that no test session can stop mid-run) or shared (./dev kafka's)
    --out FILE        also write the report to FILE

The exit status is 0 when every child succeeded (met targets or not), 1 otherwise (the
table is printed all the same, with what was measured).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import DEFAULT_WORKDIR, cpu_and_memory, fmt, git_commit, progress

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
NO_EXT = "LOGSTORE_NO_EXTENSIONS"
PEERS = "peers"

# --------------------------------------------------------------------------- the children


@dataclass(frozen=True)
class Step:
    name: str  # "run", "streaming" or "peers": which JSON the figures read
    codec: str | None  # "compiled", "pure", or None (Kafka: logstore not involved)
    argv: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.name}-{self.codec}" if self.codec else self.name


RUN_ARGS = ("benchmarks/run.py", "--only", "append,append_1mib")
STREAMING_ARGS = ("benchmarks/bench_streaming.py", "--only", "producer,consumer,latency")
PEERS_ARGS = ("benchmarks/bench_peers.py", "--only",
              "producer,bulk,consumer,latency,append_1mib")

STEPS = (
    Step("run", "compiled", RUN_ARGS),
    Step("run", "pure", RUN_ARGS),
    Step("streaming", "compiled", STREAMING_ARGS),
    Step("streaming", "pure", STREAMING_ARGS),
    Step(PEERS, None, PEERS_ARGS),
)

PROBE = ("import logstore.records.accel as a; c = a.codec; "
         "print('none' if c is None else 'compiled ' + c.__file__)")


@dataclass
class ChildRun:
    round: int
    step: Step
    json_path: Path
    seconds: float = 0.0
    returncode: int | None = None
    load_before: float = 0.0
    codec_seen: str = ""  # what the probe printed
    doc: dict[str, Any] | None = None


def child_env(step: Step) -> dict[str, str]:
    env = dict(os.environ)
    env.pop(NO_EXT, None)
    if step.codec == "pure":
        env[NO_EXT] = "1"
    return env


def probe_codec(env: dict[str, str]) -> str:
    got = subprocess.run([PYTHON, "-c", PROBE], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=False)
    lines = got.stdout.strip().splitlines()
    return lines[-1] if got.returncode == 0 and lines else f"probe failed: {got.stderr.strip()}"


def run_child(run: ChildRun, args: argparse.Namespace, workdir: Path) -> None:
    step = run.step
    env = child_env(step)
    if step.codec is not None:
        run.codec_seen = probe_codec(env)
    argv = [PYTHON, *step.argv, "--runs", "1", "--json", str(run.json_path),
            "--workdir", str(workdir)]
    if args.quick:
        argv.append("--quick")
    if step.name == PEERS:
        argv += ["--broker", args.broker]
    shown = ("LOGSTORE_NO_EXTENSIONS=1 " if step.codec == "pure" else "") + " ".join(
        [".venv/bin/python", *(shlex.quote(a) for a in argv[1:])])
    run.load_before = os.getloadavg()[0]
    progress(f"round {run.round}: {step.label}: {shown}"
             + (f" (codec: {run.codec_seen})" if run.codec_seen else ""))
    table = run.json_path.with_suffix(".md")
    start = time.monotonic()
    with table.open("w") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=None)
        try:
            run.returncode = proc.wait()
        except BaseException:
            proc.terminate()  # the children clean up on SIGTERM (workers, broker, data)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    run.seconds = time.monotonic() - start
    if run.returncode == 0:
        with suppress(OSError, ValueError):
            run.doc = json.loads(run.json_path.read_text())
    progress(f"round {run.round}: {step.label} done in {run.seconds:.1f} s, exit status "
             f"{run.returncode}" + ("" if run.doc else ", NO JSON"))


# --------------------------------------------------------------------------- the figures


@dataclass(frozen=True)
class Match:
    """A row of a logstore child's JSON (they have no stable key): bench, unit, and a
    regular expression searched in the case text."""

    source: str  # "run" or "streaming"
    bench: str
    unit: str
    case: str


@dataclass(frozen=True)
class Figure:
    label: str
    unit: str
    ours: Match
    target: float | None = None
    op: str = ">="  # ">=" higher is better, "<=" lower is better
    peer: tuple[tuple[str, str], ...] = ()  # (JSON key, what the case is)


@dataclass
class Collected:
    """Values found across the rounds, and what was missing or ambiguous."""

    children: list[ChildRun]
    problems: list[str] = field(default_factory=list)

    def _docs(self, name: str, codec: str | None) -> list[tuple[int, dict[str, Any]]]:
        return [(c.round, c.doc) for c in self.children
                if c.step.name == name and c.step.codec == codec and c.doc is not None]

    def ours(self, match: Match, codec: str) -> list[float]:
        values: list[float] = []
        pattern = re.compile(match.case)
        for rnd, doc in self._docs(match.source, codec):
            rows = [r for r in doc.get("results", [])
                    if r.get("bench") == match.bench and r.get("unit") == match.unit
                    and pattern.search(str(r.get("case", "")))]
            if len(rows) != 1:
                self.problems.append(
                    f"round {rnd}, {match.source}-{codec}: {len(rows)} rows match bench "
                    f"{match.bench!r}, unit {match.unit!r}, case /{match.case}/ (expected 1)")
            if rows:
                values += [float(v) for v in rows[0].get("values", [])]
        return values

    def peer(self, key: str) -> list[float]:
        values: list[float] = []
        for rnd, doc in self._docs(PEERS, None):
            rows = [r for r in doc.get("results", []) if r.get("key") == key]
            if len(rows) != 1:
                self.problems.append(f"round {rnd}, peers: {len(rows)} rows with key {key!r}")
            if rows:
                values += [float(v) for v in rows[0].get("values", [])]
        return values

    def batch_sizes(self) -> list[int]:
        sizes: set[int] = set()
        for codec in ("compiled", "pure"):
            for _, doc in self._docs("run", codec):
                for r in doc.get("results", []):
                    m = re.fullmatch(r"batches of (\d+)", str(r.get("case", "")))
                    if r.get("bench") == "append" and m:
                        sizes.add(int(m.group(1)))
        return sorted(sizes, reverse=True)


def producer(parts: int, linger: int) -> Match:
    what = "default linger_ms=5" if linger else "linger_ms=0"
    plural = "s" if parts > 1 else ""
    return Match("streaming", "producer", "records/s",
                 rf"\b{parts} partition{plural}, {re.escape(what)}\b")


def latency(pct: str, policy: str) -> Match:
    return Match("streaming", "latency", "ms", rf'^{re.escape(pct)}, flush="{policy}"')


def figures(col: Collected) -> list[Figure]:
    """Issue 14's acceptance figures, in the table's order (batch sizes from the JSON)."""
    out = [
        Figure("send()+flush(), 1 partition, linger_ms=5 (default)", "records/s",
               producer(1, 5), 1_000_000, ">=",
               (("kafka.producer.p1.default", "librdkafka defaults, linger.ms=5"),)),
        Figure("send()+flush(), 4 partitions, linger_ms=5 (default)", "records/s",
               producer(4, 5), 800_000, ">=",
               (("kafka.producer.p4.default", "librdkafka defaults, linger.ms=5"),)),
        Figure("send()+flush(), 1 partition, linger_ms=0", "records/s", producer(1, 0),
               peer=(("kafka.producer.p1.linger0", "linger.ms=0"),)),
        Figure("send()+flush(), 4 partitions, linger_ms=0", "records/s", producer(4, 0),
               peer=(("kafka.producer.p4.linger0", "linger.ms=0"),)),
    ]
    sizes = col.batch_sizes()
    scratch = Collected(col.children)  # its problems are found again by table()
    compiled = {n: scratch.ours(append_match(n), "compiled") for n in sizes}
    ranked = sorted(sizes, key=lambda n: statistics.median(compiled[n]) if compiled[n] else -1,
                    reverse=True)
    for i, n in enumerate(ranked):
        if i == 0:
            out.append(Figure(
                f"batch append (encode + append_records), best batch size: batches of {n:,}",
                "records/s", append_match(n), 2_000_000, ">=",
                (("kafka.bulk.p1", "nearest, not the same API: bulk producer, linger.ms=100, "
                  "1 MiB batches"),)))
        else:
            out.append(Figure(f"batch append, batches of {n:,}", "records/s",
                              append_match(n)))
    out += [
        Figure("consumer poll(max_records=500)", "records/s",
               Match("streaming", "consumer", "records/s", r"^poll\(max_records=500\)"),
               1_500_000, ">=", (("kafka.consumer.consume500", "consume(num_messages=500)"),)),
        Figure("consumer poll(max_records=10,000)", "records/s",
               Match("streaming", "consumer", "records/s", r"^poll\(max_records=10,000\)"),
               peer=(("kafka.consumer.consume10000", "consume(num_messages=10000)"),)),
        Figure("consumer iteration (for record in consumer)", "records/s",
               Match("streaming", "consumer", "records/s", r"^for record in consumer \("),
               1_000_000, ">=", (("kafka.consumer.poll1", "poll() one record a call"),)),
    ]
    for policy, targets in (("always", (0.5, 3.0)), ("interval", (None, None)),
                            ("never", (None, None))):
        default = " (default)" if policy == "always" else ""
        for pct, target in zip(("p50", "p99"), targets, strict=True):
            out.append(Figure(
                f'e2e latency {pct}, flush="{policy}"{default}, 10,000 records/s', "ms",
                latency(pct, policy), target, "<=",
                ((f"kafka.latency.linger0.{pct}", "linger.ms=0, the same workload"),
                 (f"kafka.latency.linger1.{pct}", "linger.ms=1"))))
    out += [
        Figure("1 MiB append / raw os.write, no fsync", "x",
               Match("run", "append_1mib", "x", r"^ratio logstore/raw, no fsync$"),
               0.8, ">=", (("kafka.append_1mib.ratio", "Kafka / raw os.write, no fsync"),)),
        Figure("1 MiB append / raw os.write, final fsync included", "x",
               Match("run", "append_1mib", "x", r"^ratio logstore/raw, final fsync included$")),
    ]
    return out


def append_match(n: int) -> Match:
    return Match("run", "append", "records/s", rf"^batches of {n}$")


# --------------------------------------------------------------------------- the report


def cell_range(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})"


def table(col: Collected, skip_peers: bool) -> str:
    lines = [
        "| figure | unit | target | logstore compiled (median, min-max) | "
        "logstore pure-Python (median) | Kafka peer (median, which case) | compiled/pure | "
        "met? |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for fig in figures(col):
        comp = col.ours(fig.ours, "compiled")
        pure = col.ours(fig.ours, "pure")
        peers = []
        for key, what in fig.peer:
            got = [] if skip_peers else col.peer(key)
            if got:
                peers.append(f"{fmt(statistics.median(got))} ({what}, `{key}`)")
        if skip_peers:
            peer_cell = "(skipped)"
        else:
            peer_cell = "<br>".join(peers) or "—"
        ratio = (f"{statistics.median(comp) / statistics.median(pure):.2f}"
                 if comp and pure and statistics.median(pure) else "—")
        if fig.target is None:
            target = met = ""
        else:
            target = f"{'≥' if fig.op == '>=' else '≤'} {fmt(fig.target)}"
            if comp:
                med = statistics.median(comp)
                ok = med >= fig.target if fig.op == ">=" else med <= fig.target
                met = "yes" if ok else "**NO**"
            else:
                met = "—"
        lines.append(
            f"| {fig.label} | {fig.unit} | {target} | {cell_range(comp)} | "
            f"{fmt(statistics.median(pure)) if pure else '—'} | {peer_cell} | {ratio} | {met} |"
        )
    return "\n".join(lines)


def machine() -> str:
    found = cpu_and_memory()
    cpu = f", {found['cpu']}" if "cpu" in found else ""
    mem = f", {found['memory_gb']:.1f} GB RAM" if "memory_gb" in found else ""
    return (f"{os.cpu_count()} CPUs{cpu}{mem}, Python {platform.python_version()}, "
            f"{platform.platform()}")


def loadavg() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def report(args: argparse.Namespace, command: str, started: datetime.datetime,
           elapsed: float, commits: tuple[str, str], loads: tuple[str, str],
           children: list[ChildRun], workdir: Path) -> str:
    col = Collected(children)
    body = table(col, args.skip_peers)
    steps = [s for s in STEPS if not (args.skip_peers and s.name == PEERS)]
    out = [
        f"## logstore speed (issue 14): compiled codec, pure-Python codec, Apache Kafka; "
        f"{started:%Y-%m-%d %H:%M %Z}",
        "",
        f"`{command}` at commit {commits[0]}"
        + (f" (**{commits[1]} at the end**)" if commits[1] != commits[0] else "")
        + f": {args.rounds} round(s)"
        + (" (QUICK sizes: the numbers mean little)" if args.quick else "")
        + f", {elapsed:.0f} s in all. Each round ran, each child once (`--runs 1`), in "
        f"alternating order ({', '.join(s.label for s in steps)}; reversed every other "
        "round).",
        "",
        f"Machine: {machine()}. Load average (1 / 5 / 15 min): {loads[0]} before, "
        f"{loads[1]} after.",
        "",
    ]
    peer_docs = [c.doc for c in children if c.step.name == PEERS and c.doc]
    if peer_docs:
        m = peer_docs[0].get("machine", {})
        out += [f"Kafka: Apache Kafka {m.get('kafka', '?')}, confluent-kafka "
                f"{m.get('confluent_kafka', '?')} / librdkafka {m.get('librdkafka', '?')}, "
                f"broker {m.get('broker', '?')}; Kafka does not fsync.", ""]
    out += [
        body,
        "",
        f"- Every cell is the median over the rounds ({args.rounds} value(s) each; one run "
        "per child per round); min-max across the rounds for the compiled codec. "
        "compiled/pure is the ratio of the medians (for ms rows, below 1 means the compiled "
        "codec is faster). met? compares the compiled median with issue 14's target.",
        "- The children's own JSON carries older targets (run.py: append batches of 1000 "
        "≥ 800,000; bench_streaming.py: producer ≥ 400,000, consumer ≥ 1,000,000, latency "
        "for every flush policy): ignored here.",
        "- logstore latency: producer linger_ms=0, one partition. Kafka's linger.ms=0 is the "
        "same workload (one request per record or two, which the broker queues here); "
        "linger.ms=1 is the usable Kafka setting; neither fsyncs.",
    ]
    commits_seen = sorted({str(c.doc.get("machine", {}).get("commit")) for c in children
                           if c.doc})
    if len(commits_seen) > 1:
        out.append(f"- **The children reported different commits: {', '.join(commits_seen)}**")
    for c in children:
        for note in (c.doc or {}).get("notes", []):
            if "WARNING" in note:
                out.append(f"- round {c.round}, {c.step.label}: {note}")
    codec_want = {"compiled": "compiled ", "pure": "none"}
    for c in children:
        if c.step.codec and not c.codec_seen.startswith(codec_want[c.step.codec]):
            out.append(f"- **round {c.round}, {c.step.label}: the codec probe said "
                       f"{c.codec_seen!r}**")
    for problem in col.problems:
        out.append(f"- missing in the JSON: {problem}")
    out += ["", "Children (round, child, seconds, exit status, 1-min load before, codec, "
            f"JSON); all files in `{workdir}`:", ""]
    for c in children:
        codec = f", codec {c.codec_seen}" if c.codec_seen else ""
        out.append(f"- {c.round} {c.step.label}: {c.seconds:.1f} s, exit {c.returncode}, "
                   f"load {c.load_before:.2f}{codec}, `{c.json_path.name}`"
                   + ("" if c.doc else " (**no JSON**)"))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # stop the running child (its finally blocks clean up)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--quick", action="store_true", help="pass --quick to every child")
    parser.add_argument("--skip-peers", action="store_true", help="do not run bench_peers.py")
    parser.add_argument("--broker", choices=("private", "shared"), default="private",
                        help="bench_peers.py's --broker (default private)")
    parser.add_argument("--out", metavar="FILE", help="also write the report here")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    signal.signal(signal.SIGTERM, _terminate)

    command = " ".join([".venv/bin/python benchmarks/bench_speed.py",
                        *(shlex.quote(a) for a in argv)])
    started = datetime.datetime.now().astimezone()
    commit_before = git_commit(ROOT)
    load_before = loadavg()
    workdir = DEFAULT_WORKDIR / f"speed-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    progress(f"{command}: {args.rounds} round(s); JSON and tables kept in {workdir}")
    steps = [s for s in STEPS if not (args.skip_peers and s.name == PEERS)]
    children: list[ChildRun] = []
    t0 = time.monotonic()
    for rnd in range(1, args.rounds + 1):
        order = steps if rnd % 2 else steps[::-1]
        for i, step in enumerate(order, 1):
            run = ChildRun(rnd, step, workdir / f"r{rnd}-{i}-{step.label}.json")
            children.append(run)
            run_child(run, args, workdir)
    elapsed = time.monotonic() - t0

    text = report(args, command, started, elapsed, (commit_before, git_commit(ROOT)),
                  (load_before, loadavg()), children, workdir)
    print(text, end="", flush=True)
    if args.out:
        Path(args.out).write_text(text)
    progress(f"done in {elapsed:.0f} s; JSON in {workdir}")
    return 0 if all(c.returncode == 0 and c.doc for c in children) else 1


if __name__ == "__main__":
    sys.exit(main())
