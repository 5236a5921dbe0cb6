"""What the benches share: the corpus manifests, the engine flags, scoring, the child environment, machine info.

A manifest is a tab-separated file with the columns ``file``, ``duration_s`` and ``reference``;
audio paths are relative to the manifest's folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Hashable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from bench.wer import wer, word_errors

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
ENV_PREFIX = "EDGESCRIBE_"


T = TypeVar("T")


class BenchError(Exception):
    """A run or the set-up failed; the message is for the user."""


@dataclass(frozen=True)
class Engine:
    """The engine and model of both the baseline and the local nodes; no model means the engine's default."""

    name: str
    model: str | None = None

    def flags(self) -> list[str]:
        return ["--engine", self.name, *(["--model", self.model] if self.model else [])]


@dataclass(frozen=True)
class CorpusFile:
    name: str
    path: Path
    duration_s: float
    reference: str


# --- corpus -------------------------------------------------------------------------------


def read_manifest(path: Path) -> list[CorpusFile]:
    """Rows of one tab-separated manifest; file paths are relative to the manifest's folder."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [
        CorpusFile(row["file"], path.parent / row["file"], float(row["duration_s"]), row["reference"])
        for row in rows
    ]


def default_manifests(corpus: Path = DEFAULT_CORPUS) -> list[Path]:
    """The corpus's manifest, and its text-to-speech manifest when there is one."""
    tts = corpus / "tts" / "manifest.tsv"
    return [corpus / "manifest.tsv", *([tts] if tts.is_file() else [])]


def load_manifests(paths: list[Path]) -> list[CorpusFile]:
    """Every row of the manifests, in the order given."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise BenchError(f"manifest not found: {', '.join(missing)} (pass --manifest PATH)")
    return [f for path in paths for f in read_manifest(path)]


def select_files(corpus: list[CorpusFile], names: list[str] | None, min_duration_s: float) -> list[CorpusFile]:
    """The long recordings (at least ``min_duration_s``): those named, in the order given, or all."""
    if not names:
        return [f for f in corpus if f.duration_s >= min_duration_s]
    by_name = {f.name: f for f in corpus}
    missing = [n for n in names if Path(n).name not in by_name]
    if missing:
        raise BenchError(f"not in the manifests: {', '.join(missing)}")
    chosen = [by_name[Path(n).name] for n in names]
    short = [f"{f.name} ({f.duration_s:g} s)" for f in chosen if f.duration_s < min_duration_s]
    if short:
        raise BenchError(f"shorter than --min-duration {min_duration_s:g}: {', '.join(short)}")
    return chosen


def add_corpus_args(parser: argparse.ArgumentParser, min_duration_s: float) -> None:
    """--manifest, --min-duration and --files: which long recordings a bench runs on."""
    parser.add_argument(
        "--manifest", type=Path, action="append", metavar="PATH",
        help="manifest TSV (file, duration_s, reference), may be repeated "
        f"(default {DEFAULT_CORPUS / 'manifest.tsv'} and tts/manifest.tsv beside it if present)",
    )
    parser.add_argument(
        "--min-duration", type=float, default=min_duration_s, metavar="S",
        help=f"a long recording lasts at least this many seconds (default {min_duration_s:g})",
    )
    parser.add_argument("--files", nargs="+", metavar="NAME", help="only these long recordings (default: all of them)")


def long_recordings(manifests: list[Path], names: list[str] | None, min_duration_s: float) -> list[CorpusFile]:
    """:func:`select_files` of the manifests; BenchError if there is none."""
    files = select_files(load_manifests(manifests), names, min_duration_s)
    if not files:
        raise BenchError(f"no recording of at least {min_duration_s:g} s in {', '.join(map(str, manifests))}")
    return files


def check_present(files: list[CorpusFile]) -> list[CorpusFile]:
    """``files``, or BenchError naming those listed in a manifest but not on disk."""
    missing = [str(f.path) for f in files if not f.path.is_file()]
    if missing:
        raise BenchError(f"listed in a manifest but missing: {', '.join(missing)}")
    return files


# --- runs and scoring ---------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """This environment without EDGESCRIBE_* settings, so that every run uses a private broker."""
    return {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}


def scored(file: CorpusFile, text: str) -> dict[str, Any]:
    """WER, error counts, reference words and the text itself, for a run's record."""
    counts = word_errors(file.reference, text)
    return {"wer": wer(file.reference, text), **counts, "text": text}


def hypothesis(doc: dict[str, Any]) -> str:
    """The transcript of ``hub transcribe --format json`` without gap markers: failed chunks count as deleted words."""
    return " ".join(s["text"] for s in doc["segments"] if s["status"] == "ok" and s["text"])


# --- machine info and output -------------------------------------------------------------------------


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def _nproc() -> int | None:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def machine_info() -> dict[str, Any]:
    return {
        "nproc": _nproc(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
    }


def save_results(path: Path, settings: dict[str, Any], runs: list[Any], rows: list[Any]) -> None:
    """Machine, settings, summary rows and raw runs (dataclasses) as JSON."""
    doc = {
        "machine": machine_info(),
        "settings": settings,
        "summary": [asdict(r) for r in rows],
        "runs": [asdict(r) for r in runs],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# -- summaries --------------------------------------------------------------------------------------
def group_by(items: Iterable[T], key: Callable[[T], Hashable]) -> dict[Any, list[T]]:
    """The items grouped by ``key``, groups and items in first-seen order."""
    groups: dict[Any, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def median_of(runs: list[Any], attr: str) -> float:
    """The median of attribute ``attr`` over repeated runs of one configuration."""
    return statistics.median(getattr(r, attr) for r in runs)


def fmt(value: float | None, spec: str, signed: bool = False, suffix: str = "") -> str:
    """A table cell: ``value`` formatted with ``spec`` (and a sign), or a dash when there is none."""
    if value is None:
        return "—"
    return format(value, ("+" if signed else "") + spec) + suffix
