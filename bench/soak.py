"""Chaos soak: a real Mosquitto, several edge nodes, a durable hub, and random faults for a set time.

    python -m bench.soak [--duration 600] [--nodes 3] [--corpus ../shared/corpus] [--manifest-files manifest.tsv]
                         [--seed 1] [--fault-every 8] [--jobs-every 4] [--out bench/results/soak.json]
                         [--drain-timeout 300] [--keep]

Every process is real and listens on 127.0.0.1 only: one :class:`~hub.broker.LocalBroker` (its port and
data directory stay the same across restarts), ``--nodes`` ``python -m edge_node`` processes and one
``python -m hub serve`` with a store in a work directory. Jobs go in through the hub's inbox (written to
a dot-name, then renamed) and come out as ``store/done/<name>.json``.

1. **Baseline.** Each distinct clip is transcribed once, with no fault. PocketSphinx is deterministic for
   a given chunk and the chunking is deterministic, so under faults every job must give exactly its
   clip's baseline text: words missing from it are *lost*, words added are *duplicated*.
2. **Chaos** for ``--duration`` seconds: a job every ``--jobs-every`` s, and about every ``--fault-every``
   s (jittered) one fault. Categories (node, broker, hub) come in shuffled rounds, so each appears within
   the first three faults; kinds alternate within a category: node ``kill -9`` (restarted 1-4 s later)
   or SIGSTOP of its process group for 3-15 s; broker SIGTERM or SIGKILL, then start again; hub SIGKILL
   or SIGTERM, then start again. The broker and the hub are never down together, and at least one node
   is always neither killed nor frozen.
3. **Drain.** Whatever is down is brought back, then the soak waits (``--drain-timeout``) for an output
   of every job, and stops hub, nodes and broker with SIGTERM.

Time to recover from a fault: from its injection to the first increase of the store's count of done
chunks after the system is whole again (sampled every 0.2 s, read-only). Every process started here
carries ``EDGESCRIBE_SOAK_TAG`` in its environment, inherited by its own children (the nodes' engine
processes), so the ones left behind are found in ``/proc`` and killed.

A process that exits on its own (a crash) is started again and listed as an anomaly, with the tail
of its log. A Markdown table goes to stdout, progress to stderr, and everything (per job, per fault,
anomalies, the store's attempt counts, machine info) to ``--out`` as JSON. Exit code 0 when every
job completed as ``done`` with exactly its baseline text (no word lost, duplicated or changed) and no
process was left behind (anomalies alone do not change it); 1 otherwise; 2 when the soak could not run.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import logging
import math
import os
import random
import select
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.accuracy import ENV_PREFIX, ROOT, CorpusFile, hypothesis, machine_info, read_manifest
from bench.wer import normalise, word_errors
from hub.broker import LocalBroker
from hub.procs import log_tail, processes_with_env, spawn, wait_gone

_LOGGER = logging.getLogger("bench.soak")

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus"
DEFAULT_OUT = Path("bench/results/soak.json")
TAG_VAR = "EDGESCRIBE_SOAK_TAG"
SHORT_MAX_S = 15.0  #: clips up to this long are the jobs' bread and butter
LONG_FILE = "long_lj001_0001-0032.wav"
LONG_EVERY_S = 300.0  #: the long file joins the jobs once per this much chaos time ...
LONG_MAX = 2  #: ... at most this often
NODE_DRAIN_S = 2.0
HUB_ARGS = ("--max-chunk", "12", "--lease", "10", "--no-node-timeout", "600",
            "--max-attempts", "10", "--log-level", "INFO")
SAMPLE_EVERY_S = 0.2
PROC_SAMPLE_TICKS = 5  #: count tagged processes every this many sampler ticks
HUB_STOP_TIMEOUT_S = 30.0
NODE_STOP_TIMEOUT_S = NODE_DRAIN_S + 10.0
GONE_TIMEOUT_S = 15.0
RETRY_S = 1.0  #: when no fault is allowed right now, or a restart failed, try again this much later
KINDS: dict[str, tuple[str, ...]] = {
    "node": ("node-kill", "node-freeze"),
    "broker": ("broker-term", "broker-kill"),
    "hub": ("hub-kill", "hub-term"),
}
NODE_RESTART_S = (1.0, 4.0)
FREEZE_S = (3.0, 15.0)
SYSTEM_DOWN_S = (0.5, 3.0)  #: broker or hub down time before it is started again
LOG_LINES_PER_JOB = 60


class SoakError(Exception):
    """The soak could not be set up or run; the message is for the user."""


class Interrupted(Exception):
    pass


# --- settings and results ---------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    duration_s: float
    nodes: int
    corpus: Path
    manifest_files: tuple[str, ...]
    seed: int
    fault_every_s: float
    jobs_every_s: float
    out: Path
    drain_timeout_s: float
    keep: bool


@dataclass(frozen=True)
class PlannedJob:
    name: str
    clip: CorpusFile
    phase: str  #: "baseline" or "chaos"
    at_s: float  #: planned submission, seconds after the phase started


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str
    at_s: float  #: injection, seconds since the soak started
    whole_s: float | None  #: when the target was running again (None: the soak ended first)
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FaultResult:
    kind: str
    target: str
    at_s: float
    whole_s: float | None
    progress_s: float | None  #: first increase of done chunks after ``whole_s``
    recovery_s: float | None  #: ``progress_s - at_s``
    pending_at_whole: int | None  #: chunks queued or assigned when whole again (0: recovery waited for work)
    detail: dict[str, Any]


@dataclass(frozen=True)
class JobResult:
    name: str
    clip: str
    phase: str
    submitted_s: float | None
    output_s: float | None  #: when its output appeared in done/ (seconds since the soak started)
    state: str  #: done, partial, failed (from the output), refused (failed/), missing (no output)
    exact: bool  #: its text is its clip's baseline text, word for word
    words: int  #: words in the baseline text
    lost: int
    duplicated: int
    changed: int
    reference_words: int
    reference_errors: int
    segments_differing: tuple[int, ...]
    text: str
    job_id: str = ""
    error: str = ""


@dataclass(frozen=True)
class Sample:
    t: float
    done: int
    pending: int


@dataclass(frozen=True)
class Anomaly:
    t: float
    what: str
    detail: str


# --- corpus and plan --------------------------------------------------------------------


def load_clips(corpus: Path, manifest_files: tuple[str, ...]) -> list[CorpusFile]:
    files: list[CorpusFile] = []
    for name in manifest_files:
        path = corpus / name
        if not path.is_file():
            raise SoakError(f"manifest not found: {path} (pass --corpus DIR or --manifest-files)")
        files.extend(read_manifest(path))
    missing = [str(f.path) for f in files if not f.path.is_file()]
    if missing:
        raise SoakError(f"clips listed but missing: {', '.join(missing[:5])}")
    return files


def plan_jobs(clips: list[CorpusFile], settings: Settings, rng: random.Random) -> list[PlannedJob]:
    """Short clips in shuffled rounds, one every ``jobs_every_s``; the long file once per 300 s, at most twice."""
    short = [c for c in clips if c.duration_s <= SHORT_MAX_S]
    if not short:
        raise SoakError(f"no clip of at most {SHORT_MAX_S:.0f} s in the manifests")
    long = next((c for c in clips if c.name == LONG_FILE), None)
    count = max(1, math.ceil(settings.duration_s / settings.jobs_every_s))
    order: list[CorpusFile] = []
    while len(order) < count:
        order.extend(rng.sample(short, len(short)))
    order = order[:count]
    n_long = min(LONG_MAX, int(settings.duration_s // LONG_EVERY_S)) if long is not None else 0
    for i in range(n_long):
        order[int(count * (0.1 + 0.8 * i / n_long))] = long
    return [
        PlannedJob(f"j{i + 1:04d}-{Path(c.name).stem}.wav", c, "chaos", i * settings.jobs_every_s)
        for i, c in enumerate(order)
    ]


# --- processes ------------------------------------------------------------------------


def tagged_pids(tag: str) -> dict[int, str]:
    """Live processes whose environment carries the soak's tag, with their command."""
    return processes_with_env(TAG_VAR, tag)


def child_env(tag: str) -> dict[str, str]:
    """This environment without EDGESCRIBE_* settings, with the repository importable and the soak's tag."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env[TAG_VAR] = tag
    return env


class Cluster:
    """The broker, the nodes and the hub of one soak, and what is expected of each (up or down)."""

    def __init__(self, workdir: Path, nodes: int, tag: str, clock: Callable[[], float]) -> None:
        self.workdir = workdir
        self.store = workdir / "store"
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = child_env(tag)
        self.broker = LocalBroker(workdir / "broker")
        self.node_ids = [f"soak-node{i}" for i in range(1, nodes + 1)]
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.hub: subprocess.Popen[bytes] | None = None
        self.frozen: set[str] = set()
        self.hub_stopping = False  #: sent SIGTERM, not reaped yet: its exit is expected
        self.anomalies: list[Anomaly] = []
        self._clock = clock

    @property
    def hub_log(self) -> Path:
        return self.logs / "hub.log"

    def node_log(self, node_id: str) -> Path:
        return self.logs / f"{node_id}.log"

    # -- starting ------------------------------------------------------------------------
    def start_broker(self) -> None:
        if not self.broker.running:
            self.broker.start()  # the soak's own environment carries the tag (see run())

    def start_node(self, node_id: str) -> None:
        cmd = [
            sys.executable, "-m", "edge_node", "--broker", self.broker.url, "--node-id", node_id,
            "--drain-timeout", str(NODE_DRAIN_S), "--log-level", "INFO",
        ]
        self.nodes[node_id] = spawn(cmd, self.node_log(node_id), env=self.env, cwd=ROOT)
        _LOGGER.debug("node %s started (pid %d)", node_id, self.nodes[node_id].pid)

    def start_hub(self) -> None:
        cmd = [sys.executable, "-m", "hub", "serve", "--store", str(self.store), "--broker", self.broker.url, *HUB_ARGS]
        self.hub = spawn(cmd, self.hub_log, env=self.env, cwd=ROOT)
        _LOGGER.debug("hub started (pid %d)", self.hub.pid)

    # -- faults ----------------------------------------------------------------------------
    def kill_node(self, node_id: str) -> None:
        proc = self.nodes.pop(node_id)
        proc.kill()
        proc.wait()

    def freeze_node(self, node_id: str) -> None:
        os.killpg(self.nodes[node_id].pid, signal.SIGSTOP)  # the node and its engine process: a frozen machine
        self.frozen.add(node_id)

    def thaw_node(self, node_id: str) -> None:
        self.frozen.discard(node_id)
        proc = self.nodes.get(node_id)
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def kill_hub(self) -> None:
        assert self.hub is not None
        self.hub.kill()
        self.hub.wait()
        self.hub = None

    def term_hub(self) -> None:
        assert self.hub is not None
        self.hub_stopping = True
        self.hub.send_signal(signal.SIGTERM)

    def reap_hub(self) -> int | None:
        """Wait (bounded) for a hub sent SIGTERM; kill it if it does not stop. Returns its exit code."""
        assert self.hub is not None
        try:
            code: int | None = self.hub.wait(HUB_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.anomaly("hub ignored SIGTERM", f"pid {self.hub.pid} still running after {HUB_STOP_TIMEOUT_S:.0f} s; killed")
            self.hub.kill()
            self.hub.wait()
            code = None
        self.hub = None
        self.hub_stopping = False
        return code

    # -- watching ------------------------------------------------------------------------
    def anomaly(self, what: str, detail: str) -> None:
        _LOGGER.warning("t=%.1f %s: %s", self._clock(), what, detail)
        self.anomalies.append(Anomaly(round(self._clock(), 2), what, detail))

    def wait_exit(self, timeout: float) -> None:
        """Bounded wait that ends early when a process expected to run exits (pidfds)."""
        pids = [p.pid for p in self.nodes.values()] + ([self.hub.pid] if self.hub and not self.hub_stopping else [])
        if self.broker.pid is not None:
            pids.append(self.broker.pid)
        fds = []
        for pid in pids:
            try:
                fds.append(os.pidfd_open(pid))
            except ProcessLookupError:
                pass
        try:
            select.select(fds, [], [], max(0.0, timeout))
        finally:
            for fd in fds:
                os.close(fd)

    def unexpected_exits(self) -> list[str]:
        """Processes that should run but exited on their own (recorded as anomalies): "broker", "hub", node ids."""
        gone = []
        for node_id, proc in list(self.nodes.items()):
            if proc.poll() is not None:
                del self.nodes[node_id]
                self.frozen.discard(node_id)
                self.anomaly(f"node {node_id} exited", f"exit code {proc.returncode}\n{log_tail(self.node_log(node_id))}")
                gone.append(node_id)
        if self.hub is not None and not self.hub_stopping and self.hub.poll() is not None:
            self.anomaly("hub exited", f"exit code {self.hub.returncode}\n{log_tail(self.hub_log)}")
            self.hub = None
            gone.append("hub")
        return gone

    # -- teardown --------------------------------------------------------------------------
    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM hub, then nodes (together), then broker; SIGKILL what outlives its timeout. Exit codes."""
        codes: dict[str, int | None] = {}
        for node_id in list(self.frozen):
            self.thaw_node(node_id)
        self.unexpected_exits()  # anything that died on its own since the last look is an anomaly, not a clean stop
        if self.hub is not None:
            self.term_hub()
            codes["hub"] = self.reap_hub()
        for proc in self.nodes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + NODE_STOP_TIMEOUT_S
        for node_id, proc in self.nodes.items():
            try:
                codes[node_id] = proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.anomaly(f"node {node_id} ignored SIGTERM", f"still running after {NODE_STOP_TIMEOUT_S:.0f} s; killed")
                proc.kill()
                codes[node_id] = proc.wait()
        self.nodes.clear()
        if self.broker.pid is not None:
            self.broker.stop()
            codes["broker"] = 0
        for name, code in codes.items():
            # -SIGTERM: the signal came before the program installed its handler (it was still starting)
            if code not in (0, -signal.SIGTERM):
                self.anomaly(f"{name} stopped badly", f"exit code {code} after SIGTERM")
        return codes


# --- sampling -------------------------------------------------------------------------


class Sampler(threading.Thread):
    """Every 0.2 s: done and pending chunks from the store (read-only), outputs in done/; processes every 1 s."""

    def __init__(self, store: Path, tag: str, clock: Callable[[], float]) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self._uri = (store / "hub.sqlite3").as_uri() + "?mode=ro"
        self._done_dir = store / "done"
        self._failed_dir = store / "failed"
        self._tag = tag
        self._clock = clock
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.changed = threading.Event()  #: set when a new output appears
        self.samples: list[Sample] = []  #: one per change of (done, pending)
        self.outputs: dict[str, float] = {}  #: job name -> when its output (done/ or failed/) was first seen
        self.peak_processes = 0
        self.read_errors = 0

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def seen(self, names: list[str]) -> set[str]:
        with self._lock:
            return {n for n in names if n in self.outputs}

    def run(self) -> None:
        for tick in itertools.count():
            self._sample_store()
            self._sample_outputs()
            if tick % PROC_SAMPLE_TICKS == 0:
                self.peak_processes = max(self.peak_processes, len(tagged_pids(self._tag)))
            if self._halt.wait(SAMPLE_EVERY_S):
                return

    def _sample_store(self) -> None:
        try:
            db = sqlite3.connect(self._uri, uri=True, timeout=0)
            try:
                rows = dict(db.execute("SELECT state, count(*) FROM chunks GROUP BY state").fetchall())
            finally:
                db.close()
        except sqlite3.Error as exc:  # not created yet, locked, or no -shm while the hub is down: next tick
            self.read_errors += 1
            _LOGGER.debug("store not readable: %s", exc)
            return
        done, pending = rows.get("done", 0), rows.get("queued", 0) + rows.get("assigned", 0)
        with self._lock:
            if not self.samples or (self.samples[-1].done, self.samples[-1].pending) != (done, pending):
                self.samples.append(Sample(round(self._clock(), 2), done, pending))

    def _sample_outputs(self) -> None:
        now = round(self._clock(), 2)
        new = []
        for folder, suffix in ((self._done_dir, ".json"), (self._failed_dir, ".txt")):
            try:
                names = [e.name for e in os.scandir(folder) if e.name.endswith(suffix) and not e.name.startswith(".")]
            except OSError:
                continue
            new += [n[: -len(suffix)] for n in names]
        with self._lock:
            fresh = [n for n in new if n not in self.outputs]
            for name in fresh:
                self.outputs[name] = now
        if fresh:
            self.changed.set()


# --- faults -----------------------------------------------------------------------------


class Injector:
    """Chooses and injects faults, and brings each target back on a schedule (run from the main loop)."""

    def __init__(self, cluster: Cluster, rng: random.Random, clock: Callable[[], float]) -> None:
        self._cluster = cluster
        self._rng = rng
        self._clock = clock
        self._actions: list[tuple[float, int, str, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._round: list[str] = []
        self._kinds: dict[str, list[str]] = {c: [] for c in KINDS}
        self._numbers = itertools.count(1)
        self.down_nodes: set[str] = set()  #: killed or frozen, until restarted or thawed
        self.system_down: str | None = None  #: "broker" or "hub" while one of them is down
        self.faults: list[Fault] = []

    # -- schedule ------------------------------------------------------------------------
    def next_action_at(self) -> float | None:
        return self._actions[0][0] if self._actions else None

    def run_due(self, now: float) -> None:
        while self._actions and self._actions[0][0] <= now:
            _, _, what, action = heapq.heappop(self._actions)
            self._run(what, action)

    def restore_all(self) -> None:
        """Bring back everything that is down now, in schedule order."""
        while self._actions:
            _, _, what, action = heapq.heappop(self._actions)
            self._run(what, action)

    def _run(self, what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except RuntimeError as exc:  # the broker did not start: try again shortly
            self._cluster.anomaly(f"{what} failed", str(exc))
            self._later(RETRY_S, what, action)

    def _later(self, delay: float, what: str, action: Callable[[], None]) -> None:
        heapq.heappush(self._actions, (self._clock() + delay, next(self._seq), what, action))

    # -- choice ----------------------------------------------------------------------------
    def _healthy_nodes(self) -> list[str]:
        return sorted(n for n in self._cluster.nodes if n not in self.down_nodes)

    def _allowed(self, category: str) -> bool:
        if category == "node":
            return len(self._healthy_nodes()) >= 2
        if category == "broker":
            return self.system_down is None and self._cluster.broker.running
        return self.system_down is None and self._cluster.hub is not None

    def inject(self) -> bool:
        """Inject one fault; False when none is allowed right now."""
        if not self._round:
            self._round = self._rng.sample(list(KINDS), len(KINDS))
        category = next((c for c in self._round if self._allowed(c)), None)
        if category is None:
            return False
        self._round.remove(category)
        if not self._kinds[category]:
            self._kinds[category] = self._rng.sample(list(KINDS[category]), len(KINDS[category]))
        kind = self._kinds[category].pop(0)
        getattr(self, "_" + kind.replace("-", "_"))()
        return True

    def _record(self, kind: str, target: str, at: float, **detail: Any) -> None:
        whole = round(self._clock(), 2)
        self.faults.append(Fault(kind, target, round(at, 2), whole, detail))
        _LOGGER.info("t=%.1f %s on %s: whole again after %.1f s", whole, kind, target, whole - at)

    def _log(self, at: float, kind: str, target: str, note: str) -> None:
        _LOGGER.info("t=%.1f fault %d: %s on %s (%s)", at, next(self._numbers), kind, target, note)

    # -- the six faults ------------------------------------------------------------------
    def _node_kill(self) -> None:
        node_id = self._rng.choice(self._healthy_nodes())
        at, down = self._clock(), self._rng.uniform(*NODE_RESTART_S)
        self._log(at, "node-kill", node_id, f"SIGKILL, restart in {down:.1f} s")
        self._cluster.kill_node(node_id)
        self.down_nodes.add(node_id)

        def restart() -> None:
            self._cluster.start_node(node_id)
            self.down_nodes.discard(node_id)
            self._record("node-kill", node_id, at, down_s=round(down, 2))

        self._later(down, f"restart of {node_id}", restart)

    def _node_freeze(self) -> None:
        node_id = self._rng.choice(self._healthy_nodes())
        at, frozen = self._clock(), self._rng.uniform(*FREEZE_S)
        self._log(at, "node-freeze", node_id, f"SIGSTOP for {frozen:.1f} s")
        self._cluster.freeze_node(node_id)
        self.down_nodes.add(node_id)

        def thaw() -> None:
            self._cluster.thaw_node(node_id)
            self.down_nodes.discard(node_id)
            self._record("node-freeze", node_id, at, frozen_s=round(frozen, 2))

        self._later(frozen, f"thaw of {node_id}", thaw)

    def _broker_fault(self, kind: str) -> None:
        at, down = self._clock(), self._rng.uniform(*SYSTEM_DOWN_S)
        self._log(at, kind, "broker", f"{'SIGTERM' if kind == 'broker-term' else 'SIGKILL'}, start in {down:.1f} s")
        if kind == "broker-term":
            self._cluster.broker.stop()
        else:
            self._cluster.broker.kill()
        self.system_down = "broker"

        def start() -> None:
            self._cluster.start_broker()
            self.system_down = None
            self._record(kind, "broker", at, down_s=round(down, 2))

        self._later(down, "start of the broker", start)

    def _broker_term(self) -> None:
        self._broker_fault("broker-term")

    def _broker_kill(self) -> None:
        self._broker_fault("broker-kill")

    def _hub_kill(self) -> None:
        at, down = self._clock(), self._rng.uniform(*SYSTEM_DOWN_S)
        self._log(at, "hub-kill", "hub", f"SIGKILL, restart in {down:.1f} s")
        self._cluster.kill_hub()
        self.system_down = "hub"

        def restart() -> None:
            self._cluster.start_hub()
            self.system_down = None
            self._record("hub-kill", "hub", at, down_s=round(down, 2))

        self._later(down, "restart of the hub", restart)

    def _hub_term(self) -> None:
        at, down = self._clock(), self._rng.uniform(*SYSTEM_DOWN_S)
        self._log(at, "hub-term", "hub", f"SIGTERM, restart in {down:.1f} s")
        self._cluster.term_hub()
        self.system_down = "hub"

        def restart() -> None:
            code = self._cluster.reap_hub()
            stopped = self._clock() - at
            self._cluster.start_hub()
            self.system_down = None
            self._record("hub-term", "hub", at, down_s=round(down, 2), exit_code=code, stopped_after_s=round(stopped, 2))

        self._later(down, "restart of the hub", restart)

    # -- processes that died on their own ----------------------------------------------
    def restart_unexpected(self, gone: list[str]) -> None:
        for name in gone:
            if name == "hub":
                self._cluster.start_hub()
            else:
                self._cluster.start_node(name)

    def check_broker(self) -> None:
        if self.system_down != "broker" and not self._cluster.broker.running:
            self._cluster.anomaly("broker exited", log_tail(self._cluster.broker.log_path))
            self._run("start of the broker", self._cluster.start_broker)


# --- the soak ---------------------------------------------------------------------------


class Soak:
    def __init__(self, settings: Settings, workdir: Path, tag: str) -> None:
        self.settings = settings
        self.tag = tag
        self.t0 = time.monotonic()
        self.rng = random.Random(settings.seed)
        self.cluster = Cluster(workdir, settings.nodes, tag, self.clock)
        self.injector = Injector(self.cluster, self.rng, self.clock)
        self.sampler = Sampler(self.cluster.store, tag, self.clock)
        self.submitted: dict[str, float] = {}
        self.phases: dict[str, float] = {}

    def clock(self) -> float:
        return time.monotonic() - self.t0

    # -- phases ----------------------------------------------------------------------------
    def start(self) -> None:
        self.cluster.start_broker()
        _LOGGER.info("broker at %s; starting %d node(s) and the hub", self.cluster.broker.url, self.settings.nodes)
        for node_id in self.cluster.node_ids:
            self.cluster.start_node(node_id)
        self.cluster.start_hub()
        (self.cluster.store / "inbox").mkdir(parents=True, exist_ok=True)
        self.sampler.start()

    def submit(self, job: PlannedJob) -> None:
        inbox = self.cluster.store / "inbox"
        tmp = inbox / f".{job.name}"
        tmp.write_bytes(job.clip.path.read_bytes())  # the inbox keys jobs by name and digest: names are unique
        os.replace(tmp, inbox / job.name)
        self.submitted[job.name] = round(self.clock(), 2)
        _LOGGER.debug("t=%.1f submitted %s", self.clock(), job.name)

    def wait_outputs(self, names: list[str], timeout: float, what: str) -> set[str]:
        """Wait (bounded) until every named job has an output, restarting processes that die; returns the missing."""
        deadline = time.monotonic() + timeout
        reported = 0.0
        while True:
            self._watch()
            missing = set(names) - self.sampler.seen(names)
            left = deadline - time.monotonic()
            if not missing or left <= 0:
                return missing
            if time.monotonic() - reported >= 15:
                _LOGGER.info("%s: %d of %d outputs, waiting", what, len(names) - len(missing), len(names))
                reported = time.monotonic()
            self.sampler.changed.clear()
            self.sampler.changed.wait(min(left, 1.0))  # also a tick for _watch()

    def baseline(self, jobs: list[PlannedJob]) -> set[str]:
        self.phases["baseline_start_s"] = round(self.clock(), 2)
        for job in jobs:
            self.submit(job)
        missing = self.wait_outputs([j.name for j in jobs], self.settings.drain_timeout_s, "baseline")
        self.phases["baseline_end_s"] = round(self.clock(), 2)
        _LOGGER.info("baseline: %d clip(s) in %.1f s", len(jobs), self.phases["baseline_end_s"] - self.phases["baseline_start_s"])
        if missing:
            raise SoakError(f"baseline incomplete after {self.settings.drain_timeout_s:.0f} s: {', '.join(sorted(missing))}")
        bad = [f"{j.name}: {state}" for j in jobs if (state := _read_output(self.cluster.store, j.name)[0]) != "done"]
        if bad:
            raise SoakError(f"baseline jobs not done with no fault: {', '.join(bad)}")
        return missing

    def chaos(self, jobs: list[PlannedJob]) -> None:
        start = self.clock()
        self.phases["chaos_start_s"] = round(start, 2)
        end = start + self.settings.duration_s
        queue = list(jobs)
        next_fault = start + self.settings.fault_every_s * self.rng.uniform(0.5, 1.5)
        _LOGGER.info("chaos for %.0f s: %d job(s), a fault about every %.0f s", self.settings.duration_s, len(jobs),
                     self.settings.fault_every_s)
        while (now := self.clock()) < end:
            self.injector.run_due(now)
            while queue and start + queue[0].at_s <= now:
                self.submit(queue.pop(0))
            if now >= next_fault:
                if self.injector.inject():
                    next_fault = now + self.settings.fault_every_s * self.rng.uniform(0.5, 1.5)
                else:
                    next_fault = now + RETRY_S
            self._watch()
            wake = [end, next_fault] + ([start + queue[0].at_s] if queue else [])
            if (action := self.injector.next_action_at()) is not None:
                wake.append(action)
            self.cluster.wait_exit(min(wake) - self.clock())
        for job in queue:  # none unless the loop ran late at the very end
            self.submit(job)
        self.phases["chaos_end_s"] = round(self.clock(), 2)

    def drain(self, names: list[str]) -> set[str]:
        _LOGGER.info("t=%.1f chaos over: bringing back whatever is down, then waiting for %d job(s)",
                     self.clock(), len(names))
        self.injector.restore_all()
        missing = self.wait_outputs(names, self.settings.drain_timeout_s, "drain")
        self.phases["drain_end_s"] = round(self.clock(), 2)
        return missing

    def _watch(self) -> None:
        self.injector.check_broker()
        self.injector.restart_unexpected(self.cluster.unexpected_exits())

    def teardown(self) -> dict[str, Any]:
        self.injector.restore_all()  # nothing frozen or half-restarted is left to the teardown
        codes = self.cluster.stop_all()
        if self.sampler.is_alive():
            self.sampler.stop()
        self.phases["teardown_end_s"] = round(self.clock(), 2)
        return {"exit_codes": codes}


# --- results -----------------------------------------------------------------------------


def _errors(reference: str, text: str) -> tuple[int, int, int, int]:
    """(substitutions, deletions, insertions, reference words) after normalising both."""
    ref, hyp = normalise(reference), normalise(text)
    if not ref or not hyp:
        return 0, len(ref.split()), len(hyp.split()), len(ref.split())
    e = word_errors(reference, text)
    return e["substitutions"], e["deletions"], e["insertions"], e["words"]


def _read_output(store: Path, name: str) -> tuple[str, dict[str, Any] | None]:
    done = store / "done" / f"{name}.json"
    if done.is_file():
        doc = json.loads(done.read_text(encoding="utf-8"))
        return doc["state"], doc
    refused = store / "failed" / f"{name}.txt"
    if refused.is_file():
        return "refused", {"error": refused.read_text(encoding="utf-8").strip(), "segments": [], "id": ""}
    return "missing", None


def _segment_texts(doc: dict[str, Any] | None) -> dict[int, str]:
    if doc is None:
        return {}
    return {s["seq"]: s["text"] if s["status"] == "ok" else "" for s in doc["segments"]}


def score_jobs(store: Path, jobs: list[PlannedJob], baselines: dict[str, dict[str, Any]], soak: Soak) -> list[JobResult]:
    results = []
    for job in jobs:
        state, doc = _read_output(store, job.name)
        text = hypothesis(doc) if doc is not None and doc.get("segments") else ""
        base_doc = baselines.get(job.clip.name)
        base = hypothesis(base_doc) if base_doc is not None else ""
        sub, lost, dup, words = _errors(base, text)
        rsub, rdel, rins, rwords = _errors(job.clip.reference, text)
        mine, theirs = _segment_texts(doc), _segment_texts(base_doc)
        differing = tuple(sorted(s for s in set(mine) | set(theirs) if mine.get(s) != theirs.get(s)))
        results.append(JobResult(
            name=job.name, clip=job.clip.name, phase=job.phase, submitted_s=soak.submitted.get(job.name),
            output_s=soak.sampler.outputs.get(job.name), state=state,
            exact=state == "done" and normalise(text) == normalise(base) and not differing,
            words=words, lost=lost, duplicated=dup, changed=sub, reference_words=rwords,
            reference_errors=rsub + rdel + rins, segments_differing=differing, text=text,
            job_id=str(doc.get("id", "")) if doc else "", error=str(doc.get("error", "")) if doc else "",
        ))
    return results


def score_faults(faults: list[Fault], samples: list[Sample]) -> list[FaultResult]:
    out = []
    for f in faults:
        progress = pending = None
        if f.whole_s is not None:
            before = [s for s in samples if s.t <= f.whole_s]
            base_done = before[-1].done if before else 0
            pending = before[-1].pending if before else None
            progress = next((s.t for s in samples if s.t > f.whole_s and s.done > base_done), None)
        out.append(FaultResult(
            kind=f.kind, target=f.target, at_s=f.at_s, whole_s=f.whole_s, progress_s=progress,
            recovery_s=None if progress is None else round(progress - f.at_s, 2),
            pending_at_whole=pending, detail=f.detail,
        ))
    return out


def store_report(store: Path) -> dict[str, Any]:
    """After the hub stopped: jobs per name (a name twice is a job taken twice) and per-chunk attempts."""
    try:
        db = sqlite3.connect((store / "hub.sqlite3").as_uri() + "?mode=ro", uri=True)
        try:
            jobs = db.execute("SELECT id, name, state, error FROM jobs").fetchall()
            chunks = db.execute(
                "SELECT job_id, seq, state, node_id, attempt, failures, rejections, reason FROM chunks"
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return {"error": str(exc)}
    names = Counter(name for _, name, _, _ in jobs)
    by_job: dict[str, list[dict[str, Any]]] = {}
    for job_id, seq, state, node, attempt, failures, rejections, reason in chunks:
        by_job.setdefault(job_id, []).append({"seq": seq, "state": state, "node": node, "attempt": attempt,
                                              "failures": failures, "rejections": rejections, "reason": reason})
    return {
        "jobs": len(jobs),
        "names_taken_twice": sorted(n for n, c in names.items() if c > 1),
        "chunks": len(chunks),
        "attempts": sum(c[4] for c in chunks),
        "failures": sum(c[5] for c in chunks),
        "rejections": sum(c[6] for c in chunks),
        "ids": {name: job_id for job_id, name, _, _ in jobs},
        "chunks_by_job": by_job,
    }


def log_lines(logs: Path, needle: str, limit: int = LOG_LINES_PER_JOB) -> list[str]:
    """Lines mentioning ``needle`` in every log of the soak (hub and nodes), file by file."""
    out: list[str] = []
    if not needle:
        return out
    for path in sorted(logs.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if needle in line:
                out.append(f"{path.stem}: {line}")
    return out[-limit:]


def _median_max(values: list[float]) -> tuple[float | None, float | None]:
    return (statistics.median(values), max(values)) if values else (None, None)


def summarise(jobs: list[JobResult], faults: list[FaultResult], processes: dict[str, Any],
              phases: dict[str, float], wall_s: float, anomalies: list[str]) -> dict[str, Any]:
    chaos = [j for j in jobs if j.phase == "chaos"]
    states = Counter(j.state for j in chaos)
    recovery: dict[str, dict[str, Any]] = {}
    for kind in [k for ks in KINDS.values() for k in ks]:
        mine = [f for f in faults if f.kind == kind]
        times = [f.recovery_s for f in mine if f.recovery_s is not None]
        med, top = _median_max(times)
        recovery[kind] = {"count": len(mine), "measured": len(times), "median_s": med, "max_s": top}
    latencies = [j.output_s - j.submitted_s for j in chaos if j.output_s is not None and j.submitted_s is not None]
    ref_words = sum(j.reference_words for j in chaos)
    base_jobs = [j for j in jobs if j.phase == "baseline"]
    base_ref_words = sum(j.reference_words for j in base_jobs)
    return {
        "jobs_submitted": len(chaos),
        "baseline_jobs": len(base_jobs),
        "baseline_complete": all(j.state == "done" for j in base_jobs),
        "completed_done": states.get("done", 0),
        "completed_partial": states.get("partial", 0),
        "completed_failed": states.get("failed", 0),
        "refused": states.get("refused", 0),
        "missing": states.get("missing", 0),
        "exact": sum(1 for j in chaos if j.exact),
        "words_baseline": sum(j.words for j in chaos),
        "words_lost": sum(j.lost for j in chaos),
        "words_duplicated": sum(j.duplicated for j in chaos),
        "words_changed": sum(j.changed for j in chaos),
        "wer_reference": sum(j.reference_errors for j in chaos) / ref_words if ref_words else None,
        "wer_reference_baseline": sum(j.reference_errors for j in base_jobs) / base_ref_words if base_ref_words else None,
        "faults": {k: v["count"] for k, v in recovery.items()},
        "faults_total": len(faults),
        "recovery": recovery,
        "latency_median_s": _median_max(latencies)[0],
        "latency_max_s": _median_max(latencies)[1],
        "processes_before": processes["before"],
        "processes_peak": processes["peak"],
        "processes_after": processes["after"],
        "anomalies": anomalies,
        "wall_s": round(wall_s, 1),
        "chaos_s": round(phases.get("chaos_end_s", 0) - phases.get("chaos_start_s", 0), 1),
        "drain_s": round(phases.get("drain_end_s", 0) - phases.get("chaos_end_s", 0), 1),
    }


def passed(summary: dict[str, Any]) -> bool:
    return (
        summary["baseline_complete"]
        and summary["jobs_submitted"] > 0
        and summary["completed_done"] == summary["jobs_submitted"]
        and summary["exact"] == summary["jobs_submitted"]
        and summary["words_lost"] == 0
        and summary["words_duplicated"] == 0
        and summary["words_changed"] == 0
        and summary["processes_after"] == 0
    )


def _s(value: float | None, spec: str = ".1f", suffix: str = " s") -> str:
    return "—" if value is None else format(value, spec) + suffix


def table(summary: dict[str, Any]) -> str:
    s = summary
    pct = 100 * s["completed_done"] / s["jobs_submitted"] if s["jobs_submitted"] else 0.0
    rows = [
        ("jobs submitted (chaos phase)", f"{s['jobs_submitted']} (plus {s['baseline_jobs']} baseline)"),
        ("completed: done / partial / failed / missing",
         f"{s['completed_done']} / {s['completed_partial']} / {s['completed_failed']} / {s['missing'] + s['refused']}"
         f" ({pct:.1f} % done)"),
        ("jobs with exactly the baseline text", f"{s['exact']} of {s['jobs_submitted']}"),
        ("words in baseline texts", str(s["words_baseline"])),
        ("words lost", str(s["words_lost"])),
        ("words duplicated", str(s["words_duplicated"])),
        ("words changed", str(s["words_changed"])),
        ("WER vs reference (chaos jobs / baseline)",
         f"{_s(None if s['wer_reference'] is None else 100 * s['wer_reference'], '.1f', ' %')} / "
         f"{_s(None if s['wer_reference_baseline'] is None else 100 * s['wer_reference_baseline'], '.1f', ' %')}"),
        ("faults injected", f"{s['faults_total']}: " + ", ".join(f"{k} {v}" for k, v in s["faults"].items())),
    ]
    for kind, r in s["recovery"].items():
        unmeasured = r["count"] - r["measured"]
        note = f", {unmeasured} without progress after" if unmeasured else ""
        rows.append((f"recovery {kind}: median / max", f"{_s(r['median_s'])} / {_s(r['max_s'])} (n={r['count']}{note})"))
    rows += [
        ("job latency: median / max", f"{_s(s['latency_median_s'])} / {_s(s['latency_max_s'])}"),
        ("processes that exited on their own, or other anomalies",
         f"{len(s['anomalies'])}" + (": " + "; ".join(s["anomalies"]) if s["anomalies"] else "")),
        ("processes before / peak / after", f"{s['processes_before']} / {s['processes_peak']} / {s['processes_after']}"),
        ("wall time", f"{s['wall_s']:.0f} s (chaos {s['chaos_s']:.0f} s, drain {s['drain_s']:.0f} s)"),
    ]
    lines = ["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def save(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


# --- running ------------------------------------------------------------------------------


def _raise_interrupted(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Interrupted()


def run(settings: Settings) -> int:
    clips = load_clips(settings.corpus, settings.manifest_files)
    rng_plan = random.Random(settings.seed)
    chaos_jobs = plan_jobs(clips, settings, rng_plan)
    distinct = list({j.clip.name: j.clip for j in chaos_jobs}.values())
    base_jobs = [PlannedJob(f"base-{Path(c.name).stem}.wav", c, "baseline", 0.0) for c in distinct]
    tag = uuid.uuid4().hex
    before = tagged_pids(tag)
    workdir = Path(tempfile.mkdtemp(prefix="edgescribe-soak-"))
    _LOGGER.info("work dir %s, tag %s=%s", workdir, TAG_VAR, tag)
    os.environ[TAG_VAR] = tag  # the broker inherits this process's environment
    soak = Soak(settings, workdir, tag)
    codes: dict[str, Any] = {}
    error = ""
    try:
        soak.start()
        soak.baseline(base_jobs)
        soak.chaos(chaos_jobs)
        soak.drain([j.name for j in chaos_jobs])
    except (SoakError, Interrupted, RuntimeError) as exc:
        error = str(exc) or type(exc).__name__
        _LOGGER.error("soak stopped early: %s", error)
    finally:
        peak = soak.sampler.peak_processes
        codes = soak.teardown()
        os.environ.pop(TAG_VAR, None)
    left = tagged_pids(tag)
    gone_slowly = wait_gone(set(left), GONE_TIMEOUT_S)
    leftovers = {pid: cmd for pid, cmd in left.items() if pid in gone_slowly}
    for pid, cmd in leftovers.items():
        _LOGGER.error("left behind: pid %d: %s; killing it", pid, cmd)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_gone(set(leftovers), GONE_TIMEOUT_S)
    processes = {
        "before": len(before), "peak": max(peak, len(left)), "after": len(leftovers),
        "slow_to_exit": {str(p): c for p, c in left.items() if p not in leftovers},
        "leftovers": {str(p): c for p, c in leftovers.items()},
        **codes,
    }

    store = soak.cluster.store
    baselines = {}
    for job in base_jobs:
        state, doc = _read_output(store, job.name)
        if state == "done" and doc is not None:
            baselines[job.clip.name] = doc
    jobs = score_jobs(store, base_jobs + chaos_jobs, baselines, soak)
    faults = score_faults(soak.injector.faults, soak.sampler.samples)
    stored = store_report(store)
    anomalies = [f"{a.what} (t={a.t:.0f})" for a in soak.cluster.anomalies]
    summary = summarise(jobs, faults, processes, soak.phases, soak.clock(), anomalies)
    ok = passed(summary) and not error
    problems = {}
    for j in jobs:
        if j.phase == "chaos" and not j.exact:
            job_id = j.job_id or stored.get("ids", {}).get(j.name, "")
            problems[j.name] = {
                "job_id": job_id,
                "chunks": stored.get("chunks_by_job", {}).get(job_id, []),
                "log": log_lines(soak.cluster.logs, job_id) if job_id else log_lines(soak.cluster.logs, j.name),
            }
    doc = {
        "machine": machine_info(),
        "settings": {**asdict(settings), "hub_args": list(HUB_ARGS), "node_drain_s": NODE_DRAIN_S},
        "passed": ok,
        "error": error,
        "summary": summary,
        "phases": soak.phases,
        "processes": processes,
        "store": {k: v for k, v in stored.items() if k not in ("ids", "chunks_by_job")},
        "anomalies": [asdict(a) for a in soak.cluster.anomalies],
        "faults": [asdict(f) for f in faults],
        "jobs": [asdict(j) for j in jobs],
        "baselines": {name: hypothesis(d) for name, d in baselines.items()},
        "problems": problems,
        "samples": [[s.t, s.done, s.pending] for s in soak.sampler.samples],
        "sampler_read_errors": soak.sampler.read_errors,
        "workdir": str(workdir) if settings.keep or not ok else None,
    }
    save(settings.out, doc)
    print(table(summary))
    for name, p in problems.items():
        _LOGGER.error("job %s (%s) not as the baseline: %s", name, p["job_id"], next(
            (f"{j.state}, lost {j.lost}, duplicated {j.duplicated}, changed {j.changed}, segments {list(j.segments_differing)}"
             for j in jobs if j.name == name), ""))
    for a in soak.cluster.anomalies:
        _LOGGER.warning("anomaly at t=%.1f: %s", a.t, a.what)
    if settings.keep or not ok:
        _LOGGER.info("logs and store kept in %s", workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    _LOGGER.info("results saved to %s; %s", settings.out, "PASSED" if ok else "FAILED")
    if error:
        return 2
    return 0 if ok else 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Chaos soak: real broker, nodes and hub; random kills, freezes and restarts; words lost and duplicated.",
    )
    p.add_argument("--duration", type=float, default=600.0, help="seconds of chaos (default 600)")
    p.add_argument("--nodes", type=int, default=3, help="edge node processes (default 3)")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help=f"corpus folder (default {DEFAULT_CORPUS})")
    p.add_argument("--manifest-files", nargs="+", default=["manifest.tsv"], metavar="TSV",
                   help="manifests inside the corpus folder (default manifest.tsv)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fault-every", type=float, default=8.0, help="mean seconds between faults (default 8)")
    p.add_argument("--jobs-every", type=float, default=4.0, help="seconds between jobs (default 4)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    p.add_argument("--drain-timeout", type=float, default=300.0,
                   help="seconds to wait for every job's output, for the baseline and after the chaos (default 300)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, store); it is kept anyway on failure")
    p.add_argument("--log-level", default="INFO", type=str.upper, help="progress on stderr (default INFO)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.fault_every <= 0 or args.jobs_every <= 0 or args.drain_timeout <= 0:
        parser.error("--duration, --fault-every, --jobs-every and --drain-timeout must be positive")
    if args.nodes < 2:
        parser.error("--nodes must be at least 2 (one node always stays up while another is down)")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    settings = Settings(
        duration_s=args.duration, nodes=args.nodes, corpus=args.corpus.resolve(),
        manifest_files=tuple(args.manifest_files), seed=args.seed, fault_every_s=args.fault_every,
        jobs_every_s=args.jobs_every, out=args.out, drain_timeout_s=args.drain_timeout, keep=args.keep,
    )
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)
    try:
        return run(settings)
    except SoakError as exc:
        print(f"bench.soak: {exc}", file=sys.stderr)
        return 2
    except Interrupted:
        print("bench.soak: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
