"""How fast the system gets with more nodes, and what the hub itself costs.

    python -m bench.scale [--only real nodes hetero memory] [--nodes 1 2 4 8 16 32 64]
                          [--rtf 0.05] [--sim-audio 2400] [--slow 1 --fast 3 --slowdown 5]
                          [--memory-audio 7200] [--real-file WAV] [--engine sphinx] [--model M]
                          [--repeat 1] [--out bench/results/scale.json] [--plot PNG] [--quick]

Four parts, each a table on stdout; everything, with the machine and the git commit, goes as JSON
to ``--out``, and the speed-up plot (matplotlib) to ``--plot``:

- ``real``: a long recording (``--real-file``, default the corpus's 222 s LJSpeech one) through
  the real engine: ``python -m edge_node transcribe`` whole on one node, then
  ``python -m hub transcribe --local-nodes N`` for 1 and 2 nodes, each a timed subprocess
  (:mod:`bench.accuracy` runs them, so the WER comes along).
- ``nodes``: 1 to 64 local nodes running the ``simulated`` engine, which sleeps ``--rtf`` seconds per
  second of audio (a benchmark engine, enabled here with ``EDGESCRIBE_TEST_ENGINES=1``). The hub
  runs in this process, so that its CPU time and each of its steps can be measured; the nodes and
  the broker are real processes. Time to transcript, from submit (cutting included) to the
  finished job, against the ideal ``audio x RTF / N + one chunk``.
- ``hetero``: ``--fast`` nodes and ``--slow`` ones ``--slowdown`` times slower: the job must take
  about the ideal of the pool's summed capacity, not the slow node's pace.
- ``memory``: ``python -m hub transcribe`` of a ``--memory-audio`` long recording (default 2 h; the
  speech file looped) with simulated nodes; the hub process's peak RSS (VmHWM).

The recordings of ``nodes``, ``hetero`` and ``memory`` are ``--sim-file`` looped with ffmpeg to
the length asked, as 16 kHz mono WAV in a temporary folder. Runs are sequential. With
``--repeat`` > 1 the tables hold medians. ``--quick`` is a short CI-sized run: 1 and 4 nodes,
3 + 1 heterogeneous, 4 minutes of audio, a 10-minute memory run, no real engine; it writes
``bench/results/scale_quick.json`` and no plot unless asked.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench import scale_report as report
from bench.accuracy import DEFAULT_CORPUS, BenchError, CorpusFile, Engine, _child_env, bench_file, default_manifests
from bench.accuracy import summarise as summarise_real
from bench.accuracy import table as real_table
from edge_node.engines import TEST_ENGINES_ENV
from hub.audio import load_recording
from hub.broker import find_mosquitto
from hub.local import LocalCluster, NodeOptions
from hub.service import Hub, HubSettings
from hub.transcript import render
from protocol.errors import ProtocolError
from protocol.messages import Result

_LOGGER = logging.getLogger("bench.scale")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILE = DEFAULT_CORPUS / "long_lj001_0001-0032.wav"
DEFAULT_OUT = Path("bench/results/scale.json")
QUICK_OUT = Path("bench/results/scale_quick.json")
DEFAULT_PLOT = Path("docs/benchmarks-speedup.png")
PARTS = ("real", "nodes", "hetero", "memory")
DEFAULT_NODES = (1, 2, 4, 8, 16, 32, 64)
ONLINE_TIMEOUT_S = 120.0
JOB_TIMEOUT_S = 3600.0


class TimedHub(Hub):
    """The hub, with each step it takes timed: CPU (``thread_time``) and wall time, per step.

    Steps: ``publish`` (cut the chunk's WAV, encode, hand to paho), ``result`` (decode a result,
    update the dispatcher, notify), ``status`` (a node's status), ``assign`` and ``expire`` (the
    dispatcher's decisions). Also the round trip of each chunk at the hub, less the node's own time.
    """

    def __init__(self, settings: HubSettings) -> None:
        super().__init__(settings)
        self.steps: dict[str, dict[str, float]] = {}
        self._sent: dict[tuple[str, int, int], float] = {}
        self.overheads: list[float] = []
        self._steps_lock = threading.Lock()
        dispatcher = self._dispatcher
        dispatcher.assign = self._timed_call("assign", dispatcher.assign)  # type: ignore[method-assign]
        dispatcher.expire = self._timed_call("expire", dispatcher.expire)  # type: ignore[method-assign]

    def reset(self) -> None:
        with self._steps_lock:
            self.steps, self._sent, self.overheads = {}, {}, []

    @contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            yield
        finally:
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            with self._steps_lock:
                step = self.steps.setdefault(name, {"count": 0, "cpu_s": 0.0, "wall_s": 0.0})
                step["count"] += 1
                step["cpu_s"] += cpu
                step["wall_s"] += wall

    def _timed_call(self, name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self._timed(name):
                return call(*args, **kwargs)

        return timed

    def _send(self, a: Any) -> None:
        with self._steps_lock:
            self._sent[(a.job.id, a.chunk.seq, a.attempt)] = time.perf_counter()
        with self._timed("publish"):
            super()._send(a)

    def _on_status(self, topic: str, payload: bytes, retained: bool) -> None:
        with self._timed("status"):
            super()._on_status(topic, payload, retained)

    def _on_result(self, topic: str, payload: bytes, retained: bool) -> None:
        arrived = time.perf_counter()
        with self._timed("result"):
            super()._on_result(topic, payload, retained)
        try:
            result = Result.decode(payload)
        except ProtocolError:
            return
        with self._steps_lock:
            sent = self._sent.pop((result.job_id, result.seq, result.attempt), None)
            if sent is not None:
                self.overheads.append(arrived - sent - result.seconds)


# --- recordings -----------------------------------------------------------------------------


def looped(source: Path, seconds: float, folder: Path) -> Path:
    """``source`` repeated to ``seconds``, as 16 kHz mono 16-bit WAV in ``folder``."""
    out = folder / f"{source.stem}-{seconds:g}s.wav"
    if not out.exists():
        cmd = [
            "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-stream_loop", "-1", "-i", f"file:{source}",
            "-t", f"{seconds:.3f}", "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le", "-y", f"file:{out}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BenchError(f"ffmpeg could not loop {source}: {proc.stderr.strip()[-500:]}")
    return out


def corpus_file(path: Path) -> CorpusFile:
    """``path`` as a corpus entry, with its reference text when a corpus manifest lists it (else none)."""
    for manifest in default_manifests():
        if manifest.is_file():
            from bench.accuracy import read_manifest

            for f in read_manifest(manifest):
                if f.path.resolve() == path.resolve():
                    return f
    audio = load_recording(path)
    return CorpusFile(path.name, path, len(audio) / 1000, "")


# --- simulated pools ------------------------------------------------------------------------


@contextmanager
def simulated_pool(fast: int, slow: int, rtf: float, slowdown: float) -> Iterator[TimedHub]:
    """A private broker, ``fast`` + ``slow`` simulated node processes and a started hub that sees them all."""
    os.environ[TEST_ENGINES_ENV] = "1"  # the node processes inherit it: the simulated engine is allowed
    with ExitStack() as stack:
        options = NodeOptions(engine="simulated", model=f"{rtf:g}", log_level="WARNING", drain_s=1.0)
        first = LocalCluster(fast, None, options, name="fast")
        stack.callback(first.stop)
        first.start()
        if slow:
            slow_options = NodeOptions(engine="simulated", model=f"{rtf * slowdown:g}", log_level="WARNING", drain_s=1.0)
            second = LocalCluster(slow, first.address, slow_options, name="slow")
            stack.callback(second.stop)
            second.start()
        hub = TimedHub(HubSettings(broker=first.address))
        stack.callback(hub.stop)
        hub.start()
        deadline = time.monotonic() + ONLINE_TIMEOUT_S
        while hub.online_nodes() < fast + slow:
            if time.monotonic() > deadline:
                raise BenchError(f"only {hub.online_nodes()} of {fast + slow} nodes came online")
            time.sleep(0.1)
        yield hub


def run_job(hub: TimedHub, audio: Any, kind: str, repeat: int, rtf: float, nodes: int, slow: int,
            slowdown: float) -> report.SimRun:
    """Submit one recording, wait for its transcript; time it and the hub's work."""
    hub.reset()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    job = hub.submit(audio, f"{kind}-{nodes}-{repeat}")
    split_cpu = time.process_time() - cpu0
    if not job.finished.wait(JOB_TIMEOUT_S):
        raise BenchError(f"job on {nodes} nodes did not finish within {JOB_TIMEOUT_S:.0f} s")
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    assemble_cpu = time.thread_time()
    render(job, "json")
    assemble_cpu = time.thread_time() - assemble_cpu
    steps = {name: dict(step) for name, step in hub.steps.items()}
    steps["split"] = {"count": 1, "cpu_s": split_cpu, "wall_s": split_cpu}
    steps["assemble"] = {"count": 1, "cpu_s": assemble_cpu, "wall_s": assemble_cpu}
    chunk_s = [c.duration_s for c in job.chunks]
    audio_s = job.duration_s
    rtfs = [rtf] * (nodes - slow) + [rtf * slowdown] * slow
    return report.SimRun(
        kind=kind, nodes=nodes, slow=slow, slowdown=slowdown, repeat=repeat, audio_s=audio_s, rtf=rtf,
        chunks=len(job.chunks), longest_chunk_s=max(chunk_s), wall_s=wall,
        ideal_s=report.ideal_s(audio_s, rtf, max(chunk_s), nodes, slow, slowdown),
        schedule_s=report.schedule_s(chunk_s, rtfs), hub_cpu_s=cpu + assemble_cpu,
        failed_chunks=sum(1 for c in job.chunks if c.result is None), steps=steps,
        overhead_ms=1000 * statistics.median(hub.overheads) if hub.overheads else 0.0,
        per_node=dict(Counter(c.node_id or "-" for c in job.chunks)),
    )


def bench_pool(audio: Any, kind: str, fast: int, slow: int, rtf: float, slowdown: float, repeat: int) -> list[report.SimRun]:
    nodes = fast + slow
    runs = []
    with simulated_pool(fast, slow, rtf, slowdown) as hub:
        for i in range(repeat):
            _LOGGER.info("%s: %d node(s)%s (%d/%d)", kind, nodes, f", {slow} slow" if slow else "", i + 1, repeat)
            runs.append(run_job(hub, audio, kind, i, rtf, nodes, slow, slowdown))
            r = runs[-1]
            _LOGGER.info("  %.2f s wall, ideal %.2f s (%.0f %%), hub CPU %.2f ms/chunk, %d chunks",
                         r.wall_s, r.ideal_s, 100 * r.ideal_s / r.wall_s, 1000 * r.hub_cpu_s / r.chunks, r.chunks)
    return runs


# --- memory ---------------------------------------------------------------------------------


def _vm_hwm_mb(pid: int) -> float:
    """The peak resident memory (VmHWM) of a live process, in MiB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_memory(path: Path, audio_s: float, nodes: int, rtf: float, repeat: int) -> report.MemoryRun:
    """``python -m hub transcribe`` of ``path`` with simulated nodes; the hub process's own peak RSS.

    VmHWM is read from /proc while the hub runs (it only grows, and the hub stops its nodes and
    broker after its last allocation, so the last reading holds the peak). ``wait4``'s
    ``ru_maxrss`` would not do: Linux carries the parent's high-water mark into a child across
    ``exec``, so it reports at least this bench's own size.
    """
    cmd = [
        sys.executable, "-m", "hub", "transcribe", str(path), "--local-nodes", str(nodes),
        "--engine", "simulated", "--model", f"{rtf:g}", "--format", "json",
    ]
    env = {**_child_env(), TEST_ENGINES_ENV: "1"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, _vm_hwm_mb(proc.pid))
            time.sleep(0.02)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode not in (0, 1) or not stdout.strip():
        raise BenchError(f"exit code {proc.returncode}: {' '.join(cmd)}\n{stderr[-2000:]}")
    import json

    doc = json.loads(stdout)
    chunks = len({s["seq"] for s in doc["segments"]})
    return report.MemoryRun(audio_s=audio_s, nodes=nodes, repeat=repeat, wall_s=wall,
                            peak_rss_mb=peak, chunks=chunks, exit_code=proc.returncode)


# --- command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description="Speed-up with more nodes, and the hub's own cost.")
    p.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="parts to run (default all)")
    p.add_argument("--nodes", nargs="+", type=int, default=list(DEFAULT_NODES), metavar="N", help="simulated pool sizes")
    p.add_argument("--rtf", type=float, default=0.05, help="real-time factor of the simulated (fast) nodes (default 0.05)")
    p.add_argument("--sim-audio", type=float, default=2400.0, metavar="S", help="length of the simulated runs' recording, s")
    p.add_argument("--sim-file", type=Path, default=DEFAULT_FILE, help="speech looped to make the simulated runs' recordings")
    p.add_argument("--fast", type=int, default=3, help="fast nodes of the heterogeneous pool (default 3)")
    p.add_argument("--slow", type=int, default=1, help="slow nodes of the heterogeneous pool (default 1)")
    p.add_argument("--slowdown", type=float, default=5.0, help="how many times slower the slow nodes are (default 5)")
    p.add_argument("--memory-audio", type=float, default=report.TWO_HOURS_S, metavar="S", help="length of the memory run's recording, s")
    p.add_argument("--memory-nodes", type=int, default=4, help="simulated nodes of the memory run (default 4)")
    p.add_argument("--real-file", type=Path, default=DEFAULT_FILE, help="recording of the real-engine part")
    p.add_argument("--real-nodes", nargs="+", type=int, default=[1, 2], metavar="N", help="local nodes of the real-engine part")
    p.add_argument("--engine", default="whisper", help="real engine (default whisper, model tiny.en)")
    p.add_argument("--model", metavar="NAME_OR_DIR", help="model of the real engine")
    p.add_argument("--repeat", type=int, default=1, help="runs of each configuration; medians are reported")
    p.add_argument("--out", type=Path, help=f"JSON results (default {DEFAULT_OUT}; {QUICK_OUT} with --quick)")
    p.add_argument("--plot", type=Path, help=f"speed-up plot, PNG (default {DEFAULT_PLOT}; none with --quick)")
    p.add_argument("--quick", action="store_true", help="a short run: 1 and 4 nodes, 4 min of audio, 10 min memory run, no real engine")
    p.add_argument("--log-level", default="INFO", type=str.upper, help="progress on stderr (default INFO)")
    return p


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if any(n < 1 for n in args.nodes + args.real_nodes) or args.fast < 1 or args.slow < 0 or args.memory_nodes < 1:
        parser.error("node counts must be at least 1 (--slow at least 0)")
    if not (0 < args.rtf <= 1 and args.slowdown >= 1 and args.rtf * args.slowdown <= 10):
        parser.error("need 0 < --rtf <= 1, --slowdown >= 1 and --rtf x --slowdown <= 10")
    if min(args.sim_audio, args.memory_audio) < 10:
        parser.error("--sim-audio and --memory-audio must be at least 10 s")
    if args.quick:
        args.nodes, args.sim_audio, args.memory_audio = [1, 4], 240.0, 600.0
        if args.only == list(PARTS):
            args.only = ["nodes", "hetero", "memory"]
    args.out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    args.plot = args.plot or (None if args.quick else DEFAULT_PLOT)
    args.sim_file, args.real_file = args.sim_file.resolve(), args.real_file.resolve()
    if args.model and Path(args.model).exists():
        args.model = str(Path(args.model).resolve())


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    real_runs, sims, memory, durations = [], [], [], {}
    if "real" in args.only:
        real = corpus_file(args.real_file)
        durations[real.name] = real.duration_s
        real_runs = bench_file(real, args.real_nodes, Engine(args.engine, args.model), args.repeat)
    if "nodes" in args.only or "hetero" in args.only:
        audio = load_recording(looped(args.sim_file, args.sim_audio, tmp))
        if "nodes" in args.only:
            for n in args.nodes:
                sims += bench_pool(audio, "nodes", n, 0, args.rtf, 1.0, args.repeat)
        if "hetero" in args.only:
            sims += bench_pool(audio, "hetero", args.fast, args.slow, args.rtf, args.slowdown, args.repeat)
        del audio
    if "memory" in args.only:
        path = looped(args.sim_file, args.memory_audio, tmp)
        for i in range(args.repeat):
            _LOGGER.info("memory: %.0f s recording through python -m hub transcribe (%d/%d)", args.memory_audio, i + 1, args.repeat)
            memory.append(run_memory(path, args.memory_audio, args.memory_nodes, args.rtf / 10, i))
            _LOGGER.info("  peak RSS %.0f MB, %.1f s", memory[-1].peak_rss_mb, memory[-1].wall_s)
    return {"real": real_runs, "durations": durations, "sims": sims, "memory": memory}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check(args, parser)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("hub", "protocol"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    load_before = os.getloadavg()
    try:
        find_mosquitto()
        with tempfile.TemporaryDirectory(prefix="edgescribe-scale-") as tmp:
            results = run(args, Path(tmp))
    except (BenchError, RuntimeError) as exc:
        print(f"bench.scale: {exc}", file=sys.stderr)
        return 2
    real_rows = summarise_real(results["real"], results["durations"])
    sims, memory = results["sims"], results["memory"]
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    extra = {"load_average": {"before": load_before, "after": os.getloadavg()},
             "bench_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    doc = report.save(args.out, settings, results["real"], real_rows, sims, memory, extra)
    sections = []
    if real_rows:
        sections.append("Real engine:\n\n" + real_table(real_rows))
    rows = report.summarise(sims)
    if rows:
        sections.append("Simulated nodes:\n\n" + report.sim_table(rows))
        sections.append("Hub steps (pools of equal nodes):\n\n" + report.steps_table(doc["simulated"]["steps"]))
    if memory:
        sections.append("Memory:\n\n" + report.memory_table(memory))
    note = (" (--quick: a short run, for checking that the bench works; its few chunks carry each job's fixed"
            " costs, so judge the goals on a full run)" if args.quick else "")
    sections.append(f"Goals{note}:\n\n" + report.goals_table(doc["goals"]))
    print("\n\n".join(sections))
    if args.plot is not None and rows:
        if report.plot(rows, args.plot):
            _LOGGER.info("plot saved to %s", args.plot)
        else:
            _LOGGER.warning("no plot: matplotlib is missing (pip install -r requirements-dev.txt)")
    _LOGGER.info("results saved to %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
