"""The hub: turns recordings into jobs, hands chunks to nodes, collects results.

Threads, on purpose: paho's network thread delivers node status and results;
each handler decodes and updates the :class:`~hub.dispatcher.Dispatcher` under
one lock, then wakes the dispatch thread. The dispatch thread assigns queued
chunks and expires leases; it sleeps on a condition variable until the next
event or the next lease deadline, never on a fixed timer. Audio is cut into
WAV bytes only when a chunk is sent, so a job holds one copy of its audio.

A stream (:meth:`Hub.open_stream`, e.g. a microphone session, see :mod:`hub.listen`) is a job
that starts empty and grows: :meth:`Hub.append` adds one chunk at a time, with its own audio,
and the job finishes only after :meth:`Hub.close_stream`, once every chunk is done or failed.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

from pydub import AudioSegment

from hub.audio import SAMPLE_RATE, wav_bytes
from hub.chunking import ChunkingSettings, ChunkSpec, plan_chunks
from hub.dispatcher import Assignment, DispatchSettings, Dispatcher
from hub.jobs import ChunkState, ChunkWork, Job
from hub.recording import Recording
from hub.store import JobStore
from protocol.broker import BrokerAddress
from protocol.errors import ProtocolError
from protocol.messages import MAX_CHUNK_BYTES, Chunk, NodeState, NodeStatus, Result
from protocol.mqtt import MqttLink
from protocol.topics import Topics, check_id

_LOGGER = logging.getLogger(__name__)

Listener = Callable[[Job], None]
NodeListener = Callable[[NodeStatus], None]
_HEADER_ROOM = 64 * 1024  # WAV and JSON headers on top of the samples


class JobRunning(RuntimeError):
    """A job cannot be deleted while it is queued or running; the message is one line."""


class StreamClosed(RuntimeError):
    """A stream takes no more audio: it was closed, or it failed as a whole; the message is one line."""


def new_hub_id() -> str:
    return f"hub-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class HubSettings:
    broker: BrokerAddress
    topics: Topics = field(default_factory=Topics)
    hub_id: str = field(default_factory=new_hub_id)
    chunking: ChunkingSettings = field(default_factory=ChunkingSettings)
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    language: str = "en-US"
    store_dir: Path | None = None  #: durable jobs and a stable hub id; None keeps jobs in memory only
    session_expiry_s: int = 86_400  #: with a store: how long the broker keeps results for an absent hub

    def __post_init__(self) -> None:
        check_id(self.hub_id, "hub id")
        longest_s = self.chunking.longest_audio_s
        largest = int(longest_s * SAMPLE_RATE * 2) + _HEADER_ROOM
        if largest > MAX_CHUNK_BYTES:
            raise ValueError(
                f"chunks of up to {longest_s:.0f} s of audio would exceed the {MAX_CHUNK_BYTES} byte message limit"
            )


class Hub:
    def __init__(self, settings: HubSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._topics = settings.topics
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._dispatcher = Dispatcher(settings.dispatch)
        self._listeners: list[Listener] = []
        self._node_listeners: list[NodeListener] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="hub-dispatch", daemon=True)
        self.store = JobStore(settings.store_dir) if settings.store_dir is not None else None
        # With a store, the hub keeps its id and a persistent session across restarts: results that
        # nodes publish while it is away wait at the broker (QoS 1) until it is back.
        self.hub_id = self.store.hub_id() if self.store is not None else settings.hub_id
        self._link = MqttLink(
            settings.broker,
            client_id=self.hub_id,
            subscriptions={
                self._topics.all_node_status: self._on_status,
                self._topics.all_hub_results(self.hub_id): self._on_result,
            },
            clean_start=self.store is None,
            session_expiry_s=settings.session_expiry_s if self.store is not None else 0,
            on_connected=self._kick,
        )

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        if self.store is not None:
            resumed = self.store.unfinished()
            cut_off = [job for job in resumed if job.open]
            with self._lock:
                for job in resumed:
                    self._dispatcher.resume_job(job, self._clock())
                    if job.open:  # whatever fed it ended with the last hub: no more audio will come
                        self._dispatcher.close_job(job)
                    self._persist([job])
            for job in resumed:
                _LOGGER.info("resumed job %s (%s): %d of %d chunks done", job.id, job.name,
                             job.count(ChunkState.DONE), len(job.chunks))
            for job in cut_off:
                _LOGGER.warning("stream %s (%s) was cut off when the last hub stopped; closed with %d chunks",
                                job.id, job.name, len(job.chunks))
        self._thread.start()
        self._link.start()
        _LOGGER.info("hub %s using broker %s, topic prefix %s", self.hub_id, self.settings.broker, self._topics.prefix)

    def wait_connected(self, timeout: float) -> bool:
        return self._link.wait_connected(timeout)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._link.stop()
        if self.store is not None:
            self.store.close()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(job)`` (from a hub thread) whenever a job changes."""
        self._listeners.append(listener)

    def add_node_listener(self, listener: NodeListener) -> None:
        """Call ``listener(status)`` (from paho's thread) for every valid node status received."""
        self._node_listeners.append(listener)

    # -- jobs ------------------------------------------------------------------------------
    def submit(self, audio: AudioSegment | Recording, name: str = "recording", digest: str = "",
               keep_audio: bool = False) -> Job:
        """Cut ``audio`` (16 kHz mono 16-bit) into chunks and queue them.

        A :class:`~hub.recording.Recording` from :func:`hub.audio.load_recording` stays on disk: chunks
        are read from it when they are sent. An AudioSegment (:func:`hub.audio.load_audio`) is used in
        place. Either is dropped from memory when the job finishes; with a store and ``keep_audio``, the
        store keeps its WAV until the job is deleted (:meth:`audio_file`).
        """
        if isinstance(audio, AudioSegment):
            if audio.frame_rate != SAMPLE_RATE or audio.channels != 1 or audio.sample_width != 2:
                raise ValueError("audio must be 16 kHz mono 16-bit; load it with hub.audio.load_audio")
            audio = Recording.from_segment(audio)
        elif audio.frame_rate != SAMPLE_RATE:
            raise ValueError("audio must be 16 kHz mono 16-bit; load it with hub.audio.load_recording")
        specs = plan_chunks(audio, self.settings.chunking)
        chunks = [ChunkWork(i, s) for i, s in enumerate(specs)]
        job = Job(id=uuid.uuid4().hex[:16], name=name, audio=audio, chunks=chunks, language=self.settings.language)
        if self.store is not None:
            self.store.save_audio(job)  # outside the lock: a long recording takes a while to write
        with self._lock:
            if self.store is not None:
                self.store.add(job, digest, keep_audio)
            self._dispatcher.add_job(job)
            self._persist([job])
            self._wake.notify_all()
        _LOGGER.info("job %s (%s): %.1f s of audio in %d chunks", job.id, name, job.duration_s, len(job.chunks))
        self._notify([job])
        return job

    # -- streams -------------------------------------------------------------------------
    def open_stream(self, name: str = "stream", keep_audio: bool = False) -> Job:
        """A new, empty job that grows with :meth:`append` until :meth:`close_stream`; ``keep_audio``
        as for :meth:`submit`."""
        job = Job(id=uuid.uuid4().hex[:16], name=name, audio=None, chunks=[], language=self.settings.language, open=True)
        if self.store is not None:
            self.store.append_audio(job.id, 0, b"")
        with self._lock:
            if self.store is not None:
                self.store.add(job, keep_audio=keep_audio)
            self._dispatcher.add_job(job)
        _LOGGER.info("stream %s (%s) opened", job.id, name)
        self._notify([job])
        return job

    def append(self, job: Job, spec: ChunkSpec, audio: AudioSegment) -> ChunkWork:
        """Queue one more chunk of an open stream: ``spec`` in the stream's time, ``audio`` its sound.

        ``audio`` (16 kHz mono 16-bit) covers ``[spec.audio_start_ms, spec.audio_end_ms)``, overlap
        included; ``spec`` starts where the last chunk ended or later. A long utterance comes as
        several chunks that overlap at their cuts (``tail_ms``/``lead_ms``), which the transcript
        joins (:mod:`hub.merge`). With a store, the audio is written to the stream's file and synced
        first. Raises :class:`StreamClosed` if the stream takes no more, ValueError for bad input.
        """
        if audio.frame_rate != SAMPLE_RATE or audio.channels != 1 or audio.sample_width != 2:
            raise ValueError("audio must be 16 kHz mono 16-bit")
        expected = (spec.audio_end_ms - spec.audio_start_ms) * SAMPLE_RATE // 1000
        if int(audio.frame_count()) != expected:
            raise ValueError(f"the audio holds {int(audio.frame_count())} samples, the chunk's span {expected}")
        longest_ms = 1000 * self.settings.chunking.longest_audio_s
        if spec.audio_end_ms - spec.audio_start_ms > longest_ms:
            raise ValueError(f"a chunk of {spec.audio_end_ms - spec.audio_start_ms} ms is over the {longest_ms:.0f} ms limit")
        with self._lock:
            self._check_appendable(job, spec)
        if self.store is not None:  # outside the lock: syncing a file can take a while on an SD card
            self.store.append_audio(job.id, spec.audio_start_ms, audio.raw_data)
        with self._lock:
            self._check_appendable(job, spec)
            chunk = ChunkWork(len(job.chunks), spec, audio=audio)
            job.chunks.append(chunk)
            self._persist([job])
            self._wake.notify_all()
        _LOGGER.info("stream %s: chunk %d, %.1f-%.1f s", job.id, chunk.seq, spec.start_ms / 1000, spec.end_ms / 1000)
        self._notify([job])
        return chunk

    def close_stream(self, job: Job) -> None:
        """No more chunks: the stream finishes (``job.finished``) once every chunk is done or failed."""
        with self._lock:
            if not job.open:
                return
            self._dispatcher.close_job(job)
            self._persist([job])
            self._wake.notify_all()
        _LOGGER.info("stream %s closed with %d chunks", job.id, len(job.chunks))
        self._notify([job])

    def _check_appendable(self, job: Job, spec: ChunkSpec) -> None:
        if not job.open or self._dispatcher.jobs.get(job.id) is not job:
            reason = f": {job.error}" if job.error else ""
            raise StreamClosed(f"stream {job.id} takes no more audio ({job.state.value}{reason})")
        if job.chunks and spec.start_ms < job.chunks[-1].spec.end_ms:
            raise ValueError(f"a chunk from {spec.start_ms} ms starts before the last one ends ({job.chunks[-1].spec.end_ms} ms)")

    def nodes(self) -> list[NodeStatus]:
        with self._lock:
            return [v.status for v in self._dispatcher.nodes.values()]

    def online_nodes(self) -> int:
        return sum(1 for n in self.nodes() if n.state is NodeState.ONLINE)

    def assignments(self) -> dict[str, list[str]]:
        """Node id -> the chunks this hub has in flight on it now, as ``"<job id>/<seq>"``."""
        out: dict[str, list[str]] = {}
        with self._lock:
            for job in self._dispatcher.jobs.values():
                if job.is_finished:
                    continue
                for chunk in job.chunks:
                    if chunk.state is ChunkState.ASSIGNED and chunk.node_id:
                        out.setdefault(chunk.node_id, []).append(f"{job.id}/{chunk.seq}")
        return out

    # -- reading and deleting jobs, safe from any thread -------------------------------------
    def job(self, job_id: str) -> Job | None:
        """A copy of the job as it is now, without audio: from memory while this hub holds it, else from the store."""
        with self._lock:
            job = self._dispatcher.jobs.get(job_id)
            if job is not None:
                chunks = [dataclasses.replace(c, tried=set(c.tried), audio=None) for c in job.chunks]
                return dataclasses.replace(job, audio=None, chunks=chunks)
            return self.store.load(job_id) if self.store is not None else None

    def audio_file(self, job_id: str) -> Path | None:
        """The store's WAV of a job's audio (see :meth:`JobStore.audio_file`); None without one or without a store."""
        return self.store.audio_file(job_id) if self.store is not None else None

    def summaries(self) -> list[dict[str, object]]:
        """Every job in the store, newest first (see :meth:`JobStore.summaries`); empty without a store."""
        with self._lock:
            return self.store.summaries() if self.store is not None else []

    def delete(self, job_id: str) -> bool:
        """Forget a finished job, in memory and in the store. False if there is no such job.

        Raises :class:`JobRunning` if the job is still queued or running.
        """
        with self._lock:
            job = self._dispatcher.jobs.get(job_id)
            if job is not None and not job.is_finished:
                raise JobRunning(f"job {job_id} is still {job.state.value}; it can be deleted when it has finished")
            self._dispatcher.forget_job(job_id)
            stored = self.store.delete(job_id) if self.store is not None else False
        if job is not None or stored:
            _LOGGER.info("deleted job %s", job_id)
        return job is not None or stored

    # -- broker callbacks (paho thread) --------------------------------------------------
    def _on_status(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            node_id = self._topics.parse_node_status(topic)
            if not payload:
                return  # a cleared retained message
            status = NodeStatus.decode(payload)
            if status.node_id != node_id:
                raise ProtocolError(f"status of {status.node_id!r} published on the topic of {node_id!r}")
        except ProtocolError as exc:
            _LOGGER.warning("dropped a bad node status on %s: %s", topic, exc)
            return
        with self._lock:
            changed = self._dispatcher.node_status(status, self._clock(), retained)
            self._persist(changed)
            self._wake.notify_all()
        self._notify(changed)
        for listener in self._node_listeners:
            _call(listener, status)

    def _on_result(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            _, node_id = self._topics.parse_hub_results(topic)
            result = Result.decode(payload)
            if result.node_id != node_id:
                raise ProtocolError(f"result of {result.node_id!r} published on the topic of {node_id!r}")
        except ProtocolError as exc:
            _LOGGER.warning("dropped a bad result on %s: %s", topic, exc)
            return
        with self._lock:
            job = self._dispatcher.result(result, self._clock())
            if job is not None:
                self._persist([job])
            self._wake.notify_all()
        if job is not None:
            self._notify([job])

    def _kick(self) -> None:
        with self._lock:
            self._wake.notify_all()

    # -- dispatch thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                now = self._clock()
                changed = self._dispatcher.expire(now)
                assignments = self._dispatcher.assign(now) if self._link.connected.is_set() else []
                self._persist(changed + [a.job for a in assignments])
                if not assignments and not changed:
                    deadline = self._dispatcher.next_deadline(now)
                    wait = None if deadline is None else max(0.0, deadline - now)
                    self._wake.wait(wait)
                    continue
            for assignment in assignments:
                self._send(assignment)
            self._notify(changed + [a.job for a in assignments])

    def _send(self, a: Assignment) -> None:
        spec = a.chunk.spec
        audio = a.chunk.audio  # a stream's chunk carries its own; else cut from the job's recording
        if audio is None:
            recording = a.job.audio
            if recording is None:  # the job finished since the assignment (a late result): nothing to send
                return
            audio = recording[spec.audio_start_ms : spec.audio_end_ms]
        chunk = Chunk(
            job_id=a.job.id,
            seq=a.chunk.seq,
            hub_id=self.hub_id,
            attempt=a.attempt,
            offset_s=a.chunk.offset_s,
            duration_s=a.chunk.duration_s,
            sample_rate=SAMPLE_RATE,
            deadline=time.time() + a.lease_s,
            lease_s=round(a.lease_s, 3),
            audio=wav_bytes(audio),
            language=self.settings.language,
            context_s=spec.context_ms / 1000,
        )
        _LOGGER.info("chunk %s/%d (%.1f s) -> %s, attempt %d", a.job.id, a.chunk.seq, a.chunk.duration_s, a.node_id, a.attempt)
        self._link.publish(self._topics.node_chunks(a.node_id), chunk.encode())

    def _persist(self, jobs: list[Job]) -> None:
        """Write changed jobs to the store (called under the lock, before the message is acknowledged)."""
        if self.store is None:
            return
        for job in {j.id: j for j in jobs}.values():
            self.store.save(job)

    def _notify(self, jobs: list[Job]) -> None:
        seen = set()
        for job in jobs:
            if job.id in seen:
                continue
            seen.add(job.id)
            for listener in self._listeners:
                _call(listener, job)


def _call(listener: Callable[[Any], None], arg: object) -> None:
    try:
        listener(arg)
    except Exception:  # noqa: BLE001 - a listener must not stop the hub
        _LOGGER.exception("listener %r failed", listener)
