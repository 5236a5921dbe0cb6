"""What the hub's store costs per result as a job grows: one save after each chunk's result.

    python -m bench.store [--chunks 60 360 1440] [--repeat 3] [--out bench/results/store.json]

A job of N chunks (20 s each: 60 is 20 minutes, 360 is 2 hours, 1440 is 8 hours) gets a result of 60
timed words for every chunk in turn, and the store saves the job after each, as the hub does under
its lock before it acknowledges the result. Printed: the median and the last tenth's median time
per save, and the total. Each row is the median of ``--repeat`` runs in a fresh store directory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.accuracy import machine_info
from hub.chunking import ChunkSpec
from hub.jobs import ChunkState, ChunkWork, Job, JobState
from hub.store import JobStore
from protocol.messages import Result, ResultStatus, Span, Word

RESULTS = Path(__file__).resolve().parent / "results" / "store.json"
CHUNK_MS = 20_000


def one_run(chunks: int) -> list[float]:
    """Seconds of each save over a job's life, in a fresh store."""
    words = tuple(Word(k * 0.3, k * 0.3 + 0.25, f"word{k}") for k in range(60))
    text = " ".join(w.text for w in words)
    with tempfile.TemporaryDirectory(prefix="edgescribe-store-") as tmp:
        store = JobStore(Path(tmp))
        job = Job(id="bench", name="bench", audio=None,
                  chunks=[ChunkWork(i, ChunkSpec(i * CHUNK_MS, (i + 1) * CHUNK_MS)) for i in range(chunks)])
        job.state = JobState.RUNNING
        store.add(job)
        times = []
        for c in job.chunks:
            c.state, c.node_id, c.attempt = ChunkState.DONE, "node1", 1
            c.tried.add("node1")
            c.result = Result("bench", c.seq, 1, "node1", ResultStatus.OK, text=text, spans=(Span(0.0, 18.0, text, words),))
            start = time.perf_counter()
            store.save(job)
            times.append(time.perf_counter() - start)
        store.close()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[60, 360, 1440], help="job sizes, in 20 s chunks")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; medians are reported")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output (default %(default)s)")
    args = parser.parse_args(argv)
    rows = []
    print(f"{'chunks':>7} {'audio':>7} {'median ms/save':>15} {'last 10% ms/save':>17} {'total s':>8}")
    for n in args.chunks:
        runs = [one_run(n) for _ in range(args.repeat)]
        row = {
            "chunks": n,
            "audio_h": round(n * CHUNK_MS / 3_600_000, 2),
            "median_ms_per_save": round(statistics.median(statistics.median(r) for r in runs) * 1000, 3),
            "last_tenth_ms_per_save": round(statistics.median(
                statistics.median(r[-max(1, n // 10):]) for r in runs) * 1000, 3),
            "total_s": round(statistics.median(sum(r) for r in runs), 3),
        }
        rows.append(row)
        print(f"{n:>7} {row['audio_h']:>6}h {row['median_ms_per_save']:>15} {row['last_tenth_ms_per_save']:>17} "
              f"{row['total_s']:>8}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine_info(), "repeat": args.repeat, "rows": rows}, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
