"""Who gets which chunk: capacity-aware dispatch with leases, retries and de-duplication.

Mosquitto does not balance load or fail over (a shared subscription is strict
round robin), so the hub decides. This class is pure bookkeeping: no I/O, no
threads, a clock passed in. :class:`hub.service.Hub` calls it under one lock
and does the publishing.

Rules:
- A node's free capacity is ``capacity - max(active it reports, chunks this hub
  has in flight on it)``. Its report counts every hub's chunks; our own count
  covers the moments before its report catches up. Races between hubs end in a
  ``rejected`` result, and the chunk is queued again at once.
- Only nodes whose language matches the job's (same primary subtag: ``en``
  serves ``en-US``) are used. Free nodes are taken fastest first (lowest
  measured real-time factor), after any ``prefer_engine``/``prefer_model``
  nodes that are free (the others still take work when those are busy), and
  a retry avoids the nodes that already failed that chunk.
- Each assignment has a lease: ``lease_base_s + lease_factor * duration * rtf``,
  where ``duration`` is the audio the node decodes: without the chunk's trailing
  context when the node says it cuts that off (``NodeStatus.reads_context``).
  When it runs out, or the node goes offline, the chunk is queued again. A node
  whose lease ran out gets no more chunks until it publishes a status again
  (it may be dead with a stale retained ``online``). A ``draining`` node gets
  no new chunks but keeps the ones it has.
- ``error`` results, lease expiries and a node going offline count as
  failures; after ``max_attempts`` the chunk is marked failed and the job
  finishes with a gap.
- A ``rejected`` chunk is queued again at once and costs no attempt, but that
  node rests (``busy_backoff_s``, doubling with each rejection in a row up to
  ``max_backoff_s``); after ``max_rejections`` rejections a chunk loses an
  attempt, so a node that rejects everything cannot keep a job alive forever.
- Results are keyed by (job id, sequence id): the first ``ok``/``no-speech``
  answer wins, later ones (a slow node that comes back) are dropped.
- A stream (``Job.open``) gains chunks while it is open and cannot finish
  until :meth:`Dispatcher.close_job`; with nothing queued it waits for
  speech, not for a node, so the no-node timeout does not run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hub.jobs import ChunkState, ChunkWork, Job, JobState
from protocol.messages import NodeState, NodeStatus, Result, ResultStatus, same_language

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class DispatchSettings:
    lease_base_s: float = 15.0  #: fixed part of a lease, covers transfer and engine start
    lease_factor: float = 3.0  #: times the expected processing time
    default_rtf: float = 1.0  #: assumed real-time factor of a node that has not reported one
    max_attempts: int = 3  #: failures (errors, expired leases) before a chunk is given up
    no_node_timeout_s: float = 120.0  #: a job that waits this long with no usable node (online, of its language) fails
    busy_backoff_s: float = 1.0  #: after a ``rejected``, leave that node alone for this long
    max_backoff_s: float = 10.0  #: the longest rest after rejections in a row
    max_rejections: int = 10  #: rejections of one chunk that count as one failed attempt
    prefer_engine: str = ""  #: free nodes with this engine are taken before any other (others still help)
    prefer_model: str = ""  #: and, among those, nodes with this model

    def __post_init__(self) -> None:
        if self.lease_base_s <= 0 or self.lease_factor <= 0 or self.default_rtf <= 0:
            raise ValueError("lease settings must be positive")
        if self.max_attempts < 1 or self.max_rejections < 1:
            raise ValueError("max_attempts and max_rejections must be at least 1")
        if not 0 < self.busy_backoff_s <= self.max_backoff_s:
            raise ValueError("need 0 < busy_backoff_s <= max_backoff_s")
        if self.no_node_timeout_s <= 0:
            raise ValueError("no_node_timeout_s must be positive")


@dataclass
class NodeView:
    status: NodeStatus
    mine: int = 0  #: chunks of this hub in flight on the node
    rested_until: float = 0.0  #: monotonic; set after a rejection
    rejections: int = 0  #: rejections in a row
    suspect: bool = False  #: a lease on it ran out; cleared by its next status message

    def free(self, now: float) -> int:
        if self.status.state is not NodeState.ONLINE or self.suspect or now < self.rested_until:
            return 0
        return self.status.capacity - max(self.status.active, self.mine)


@dataclass(frozen=True)
class Assignment:
    job: Job
    chunk: ChunkWork
    node_id: str
    attempt: int
    lease_s: float


class Dispatcher:
    def __init__(self, settings: DispatchSettings | None = None) -> None:
        self.settings = settings or DispatchSettings()
        self.jobs: dict[str, Job] = {}
        self.nodes: dict[str, NodeView] = {}

    # -- inputs ------------------------------------------------------------------
    def add_job(self, job: Job) -> None:
        self.jobs[job.id] = job
        if not job.chunks and not job.open:
            self._finish(job)

    def close_job(self, job: Job) -> None:
        """A stream gets no more chunks: it finishes once every chunk it has is done or failed."""
        job.open = False
        self._check_finished(job)

    def resume_job(self, job: Job, now: float) -> None:
        """Take back a job from the store after a restart.

        Chunks that were assigned stay assigned, with a fresh lease: their node may still be working,
        and its result may be waiting at the broker for this hub's persistent session. Their node is
        known as offline until its status arrives (a retained ``offline`` requeues them at once).
        """
        self.jobs[job.id] = job
        for chunk in job.chunks:
            if chunk.state is ChunkState.ASSIGNED and chunk.node_id:
                view = self.nodes.setdefault(chunk.node_id, NodeView(NodeStatus(chunk.node_id, NodeState.OFFLINE)))
                view.mine += 1
                chunk.lease_deadline = now + self._lease_s(view, chunk)
            elif chunk.state is ChunkState.ASSIGNED:
                chunk.state = ChunkState.QUEUED
        self._check_finished(job)

    def forget_job(self, job_id: str) -> None:
        job = self.jobs.pop(job_id, None)
        if job is not None:
            for chunk in job.chunks:
                self._release(chunk)

    def node_status(self, status: NodeStatus, now: float, retained: bool = False) -> list[Job]:
        """Record a node's status; requeue our chunks on it if it went offline. Returns changed jobs.

        ``retained`` marks a copy the broker kept (sent on subscribe): it proves nothing about the
        node being alive now, so it does not clear a suspect mark.
        """
        view = self.nodes.get(status.node_id)
        if view is None:
            view = self.nodes[status.node_id] = NodeView(status)
        was_offline = view.status.state is NodeState.OFFLINE
        view.status = status
        if not retained:
            view.suspect = False
        if status.state is NodeState.OFFLINE and (not was_offline or view.mine):
            return self._requeue_node(status.node_id, "node went offline", now)
        return []

    def result(self, result: Result, now: float) -> Job | None:
        """Apply a node's result. Returns the job if it changed, None if the result was dropped."""
        job = self.jobs.get(result.job_id)
        if job is None or job.is_finished:
            _LOGGER.info("dropped result for unknown or finished job %s", result.job_id)
            return None
        if result.seq >= len(job.chunks):
            _LOGGER.warning("dropped result with sequence %d outside job %s", result.seq, job.id)
            return None
        chunk = job.chunks[result.seq]
        if chunk.state in (ChunkState.DONE, ChunkState.FAILED):
            _LOGGER.info("dropped duplicate result for %s/%d from %s", job.id, result.seq, result.node_id)
            return None
        if result.node_id not in chunk.tried:
            _LOGGER.warning("dropped result for %s/%d from %s, which was never sent it", job.id, result.seq, result.node_id)
            return None
        current = chunk.state is ChunkState.ASSIGNED and chunk.node_id == result.node_id and chunk.attempt == result.attempt
        view = self.nodes.get(result.node_id)
        if result.status in (ResultStatus.OK, ResultStatus.NO_SPEECH):
            if view is not None:
                view.rejections = 0
            if not current:
                _LOGGER.info("late result for %s/%d from %s accepted (first answer wins)", job.id, result.seq, result.node_id)
            self._release(chunk)
            chunk.state = ChunkState.DONE
            chunk.result = result
            chunk.audio = None
            chunk.node_id = result.node_id
            self._check_finished(job)
            return job
        if not current:
            _LOGGER.info("ignored stale %s for %s/%d from %s", result.status.value, job.id, result.seq, result.node_id)
            return None
        self._release(chunk)
        if result.status is ResultStatus.REJECTED:
            if view is not None:
                view.rejections += 1
                rest = self.settings.busy_backoff_s * 2 ** min(view.rejections - 1, 16)
                view.rested_until = now + min(rest, self.settings.max_backoff_s)
            chunk.rejections += 1
            if chunk.rejections >= self.settings.max_rejections:
                chunk.rejections = 0
                self._fail_attempt(job, chunk, f"{result.node_id}: rejected {self.settings.max_rejections} times: {result.reason}")
            else:
                chunk.state = ChunkState.QUEUED
                chunk.node_id = None
            return job
        _LOGGER.warning("chunk %s/%d failed on %s: %s", job.id, result.seq, result.node_id, result.reason)
        self._fail_attempt(job, chunk, f"{result.node_id}: {result.reason}")
        return job

    # -- decisions ---------------------------------------------------------------------
    def assign(self, now: float) -> list[Assignment]:
        """Give queued chunks (oldest job first) to nodes with free capacity."""
        out: list[Assignment] = []
        free = {nid: v.free(now) for nid, v in self.nodes.items()}
        for job in sorted(self.jobs.values(), key=lambda j: j.created_mono):
            if job.is_finished:
                continue
            for chunk in job.chunks:
                if chunk.state is not ChunkState.QUEUED:
                    continue
                if not any(n > 0 for n in free.values()):
                    return out
                node_id = self._pick(free, chunk, job.language)
                if node_id is None:
                    continue
                free[node_id] -= 1
                view = self.nodes[node_id]
                view.mine += 1
                lease = self._lease_s(view, chunk)
                chunk.state = ChunkState.ASSIGNED
                chunk.node_id = node_id
                chunk.attempt += 1
                chunk.lease_deadline = now + lease
                chunk.tried.add(node_id)
                job.state = JobState.RUNNING
                out.append(Assignment(job, chunk, node_id, chunk.attempt, lease))
        return out

    def expire(self, now: float) -> list[Job]:
        """Requeue chunks whose lease ran out; fail jobs that found no node in time."""
        changed = []
        for job in list(self.jobs.values()):
            if job.is_finished:
                continue
            # an open stream with nothing queued waits for speech, not for a node
            waiting = (job.count(ChunkState.ASSIGNED) == 0 and job.count(ChunkState.QUEUED) > 0
                       and not self._usable_node(job.language))
            if not waiting:
                job.idle_since = None
            elif job.idle_since is None:
                job.idle_since = now
            elif now - job.idle_since >= self.settings.no_node_timeout_s:
                job.state = JobState.FAILED
                job.error = f"no edge node online for {self.settings.no_node_timeout_s:.0f} s"
                self._finish(job)
                changed.append(job)
                continue
            for chunk in job.chunks:
                if chunk.state is ChunkState.ASSIGNED and now >= chunk.lease_deadline:
                    _LOGGER.warning("lease of %s/%d on %s expired", job.id, chunk.seq, chunk.node_id)
                    node = chunk.node_id
                    if node in self.nodes:
                        self.nodes[node].suspect = True
                    self._release(chunk)
                    self._fail_attempt(job, chunk, f"{node}: no answer before the lease ran out")
                    if job not in changed:
                        changed.append(job)
        return changed

    def next_deadline(self, now: float) -> float | None:
        """The earliest monotonic time after ``now`` at which :meth:`expire` or :meth:`assign` has something to do."""
        times = []
        for job in self.jobs.values():
            if job.is_finished:
                continue
            if job.idle_since is not None:
                times.append(job.idle_since + self.settings.no_node_timeout_s)
            times.extend(c.lease_deadline for c in job.chunks if c.state is ChunkState.ASSIGNED)
        rests = [v.rested_until for v in self.nodes.values() if v.rested_until > now]
        return min(times + rests) if times or rests else None

    # -- helpers -----------------------------------------------------------------
    def _pick(self, free: dict[str, int], chunk: ChunkWork, language: str) -> str | None:
        candidates = [
            nid for nid, n in free.items() if n > 0 and same_language(self.nodes[nid].status.language, language)
        ]
        if not candidates:
            return None
        if not chunk.failures:
            pool = candidates
        else:
            # A retry waits for a usable node that has not had the chunk yet, even a busy one: a chunk
            # that fails fast would otherwise use up every attempt on the one node that happens to be free.
            fresh = [nid for nid in candidates if nid not in chunk.tried]
            pool = fresh if fresh or self._usable_node(language, exclude=chunk.tried) else candidates
            if not pool:
                return None

        def rank(nid: str) -> tuple[bool, bool, float, int, str]:
            status = self.nodes[nid].status
            other_engine = bool(self.settings.prefer_engine) and status.engine != self.settings.prefer_engine
            other_model = bool(self.settings.prefer_model) and status.model != self.settings.prefer_model
            return (other_engine, other_model, status.rtf or self.settings.default_rtf, self.nodes[nid].mine, nid)

        return min(pool, key=rank)

    def _usable_node(self, language: str, exclude: set[str] | frozenset[str] = frozenset()) -> bool:
        """Is any node outside ``exclude`` online, not suspect and of this language (busy or not)?"""
        return any(
            nid not in exclude
            and v.status.state is NodeState.ONLINE and not v.suspect and same_language(v.status.language, language)
            for nid, v in self.nodes.items()
        )

    def _lease_s(self, view: NodeView, chunk: ChunkWork) -> float:
        """How long ``view``'s node may take over ``chunk`` before it goes to another node."""
        rtf = view.status.rtf or self.settings.default_rtf
        decoded_s = chunk.duration_s if view.status.reads_context else chunk.heard_s
        return self.settings.lease_base_s + self.settings.lease_factor * decoded_s * rtf

    def _release(self, chunk: ChunkWork) -> None:
        if chunk.state is ChunkState.ASSIGNED and chunk.node_id in self.nodes:
            view = self.nodes[chunk.node_id]
            view.mine = max(0, view.mine - 1)

    def _requeue_node(self, node_id: str, why: str, now: float) -> list[Job]:
        changed = []
        for job in self.jobs.values():
            for chunk in job.chunks:
                if chunk.state is ChunkState.ASSIGNED and chunk.node_id == node_id:
                    _LOGGER.warning("requeueing %s/%d: %s %s", job.id, chunk.seq, node_id, why)
                    self._release(chunk)
                    self._fail_attempt(job, chunk, f"{node_id}: {why}")
                    if job not in changed:
                        changed.append(job)
        return changed

    def _fail_attempt(self, job: Job, chunk: ChunkWork, reason: str) -> None:
        chunk.failures += 1
        chunk.node_id = None
        if chunk.failures >= self.settings.max_attempts:
            chunk.state = ChunkState.FAILED
            chunk.reason = reason
            chunk.audio = None
            _LOGGER.error("chunk %s/%d failed %d times, giving up: %s", job.id, chunk.seq, chunk.failures, reason)
            self._check_finished(job)
        else:
            chunk.state = ChunkState.QUEUED

    def _check_finished(self, job: Job) -> None:
        if job.open:
            return
        if all(c.state in (ChunkState.DONE, ChunkState.FAILED) for c in job.chunks):
            job.state = JobState.PARTIAL if job.count(ChunkState.FAILED) else JobState.DONE
            self._finish(job)

    @staticmethod
    def _finish(job: Job) -> None:
        job.open = False  # a stream that fails as a whole takes no more chunks
        job.audio = None  # only the results matter now: a long recording must not stay in memory
        if not job.chunks and not job.is_finished:
            job.state = JobState.DONE
        job.finished.set()
