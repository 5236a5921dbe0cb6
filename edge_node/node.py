"""The node service: receive chunks, transcribe them on worker threads, publish results.

Threads, on purpose: paho's network thread decodes each chunk and only
enqueues it; ``concurrency`` worker threads each drive one engine process
(:mod:`edge_node.runner`; the nodes one process hosts may share one engine process), so a decode
never blocks the network thread. A node never holds more chunks
than its capacity: an extra chunk, from any hub, is answered at once with a
``rejected`` result so that its hub assigns it elsewhere. The retained status
message is re-published whenever the number of chunks in hand changes.
"""

from __future__ import annotations

import io
import logging
import queue
import socket
import threading
import time
import wave
from collections.abc import Sequence

from edge_node import __version__
from edge_node.engines import CONTEXT_ENGINES
from edge_node.runner import Engine, EngineSpec, Outcome, make_engine
from edge_node.settings import NodeSettings
from protocol.errors import ProtocolError
from protocol.messages import Chunk, NodeState, NodeStatus, Result, ResultStatus, Span, same_language
from protocol.mqtt import MqttLink, Will

_LOGGER = logging.getLogger(__name__)
_RTF_WEIGHT = 0.3  # weight of the newest chunk in the moving average of the real-time factor
_CLOCK_SLACK_S = 5.0  # a deadline passed by more than this on arrival is worth a warning


def chunk_pcm(chunk: Chunk, context: bool = True) -> tuple[bytes, int, int]:
    """The chunk's WAV bytes as (PCM frames, sample rate, sample width); without its trailing
    context (``chunk.context_s``) unless ``context``."""
    with wave.open(io.BytesIO(chunk.audio), "rb") as w:
        frames = w.getnframes()
        if not context:
            frames = max(0, frames - round(chunk.context_s * w.getframerate()))
        return w.readframes(frames), w.getframerate(), w.getsampwidth()


class EdgeNode:
    def __init__(self, settings: NodeSettings, engines: Sequence[Engine] | None = None) -> None:
        """``engines``: one per worker (``settings.concurrency``), made by the caller (for instance clients
        of one :class:`~edge_node.runner.SharedEngine` for several nodes); else the node makes its own."""
        self.settings = settings
        if engines is None:
            spec = EngineSpec(settings.engine, settings.model, settings.language)
            engines = [make_engine(spec) for _ in range(settings.concurrency)]
        if len(engines) != settings.concurrency:
            raise ValueError(f"a node of capacity {settings.concurrency} needs as many engines, not {len(engines)}")
        self._engines = list(engines)
        self.engine = self._engines[0]
        self._context = settings.engine in CONTEXT_ENGINES  # does the engine decode a chunk's trailing context?
        self._topics = settings.topics
        self._lock = threading.Lock()
        self._work: queue.Queue[Chunk | None] = queue.Queue()
        self._in_hand: dict[tuple[str, str, int], Chunk] = {}
        self._idle = threading.Condition(self._lock)
        self._accepting = True
        self._done = 0
        self._rtf: float | None = None
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        self._heartbeat_thread = threading.Thread(target=self._heartbeat, name="status-heartbeat", daemon=True)
        self._link = MqttLink(
            settings.broker,
            client_id=f"node-{settings.node_id}",
            subscriptions={self._topics.node_chunks(settings.node_id): self._on_chunk},
            keepalive_s=settings.keepalive_s,
            will=Will(self._topics.node_status(settings.node_id), self._status(NodeState.OFFLINE).encode()),
            on_connected=self._publish_status,
        )

    # -- life cycle ---------------------------------------------------------------
    def start(self) -> None:
        """Load the engines (raises :class:`~edge_node.runner.EngineStartError`), then connect."""
        for engine in self._engines:
            engine.start()
        for i, engine in enumerate(self._engines):
            thread = threading.Thread(target=self._worker, args=(engine,), name=f"engine-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._heartbeat_thread.start()
        self._link.start()
        _LOGGER.info(
            "node %s: engine %s (%s), capacity %d, broker %s",
            self.settings.node_id,
            self.engine.name,
            self.engine.model,
            self.settings.concurrency,
            self.settings.broker,
        )

    def wait_connected(self, timeout: float) -> bool:
        return self._link.wait_connected(timeout)

    def stop(self) -> None:
        """Stop taking work, finish the chunks in hand (up to ``drain_s``), hand back the rest, go offline."""
        with self._lock:
            self._accepting = False
        self._publish_status()  # draining: hubs send nothing new but keep waiting for what is in hand
        with self._lock:
            deadline = time.monotonic() + self.settings.drain_s
            while self._in_hand and self._idle.wait(max(0.0, deadline - time.monotonic())):
                pass
            left = list(self._in_hand.values())
            self._in_hand.clear()
        for chunk in left:
            _LOGGER.warning("handing back chunk %s/%d: not finished within %.0f s", chunk.job_id, chunk.seq, self.settings.drain_s)
            self._reply(chunk, ResultStatus.REJECTED, reason="node stopped before finishing")
        self._stopped.set()
        self._heartbeat_thread.join(timeout=5)  # its last 'draining' must not land after our 'offline'
        for _ in self._threads:
            self._work.put(None)
        for engine in self._engines:
            engine.close(grace=1.0)
        self._link.publish_and_wait(
            self._topics.node_status(self.settings.node_id), self._status(NodeState.OFFLINE).encode(), retain=True
        )
        self._link.stop()
        _LOGGER.info("node %s stopped after %d chunks", self.settings.node_id, self._done)

    # -- status -------------------------------------------------------------------
    def _status(self, state: NodeState = NodeState.ONLINE) -> NodeStatus:
        return NodeStatus(
            node_id=self.settings.node_id,
            state=state,
            engine=self.engine.name,
            model=self.engine.model,
            language=self.engine.language,
            capacity=self.settings.concurrency,
            active=len(self._in_hand),
            done=self._done,
            rtf=None if self._rtf is None else round(self._rtf, 4),
            hostname=socket.gethostname()[:256],
            software=f"edgescribe-node/{__version__}",
            reads_context=self._context,
        )

    def _publish_status(self) -> None:
        with self._lock:
            status = self._status(NodeState.ONLINE if self._accepting else NodeState.DRAINING)
        self._link.publish(self._topics.node_status(self.settings.node_id), status.encode(), retain=True)

    def _heartbeat(self) -> None:
        """A live status now and then: hubs take it as proof of life (a retained copy proves nothing)."""
        while not self._stopped.wait(self.settings.status_interval_s):
            if self._link.connected.is_set():
                self._publish_status()

    # -- receiving (paho thread) -----------------------------------------------------
    def _on_chunk(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            chunk = Chunk.decode(payload)
        except ProtocolError as exc:
            _LOGGER.warning("dropped a bad chunk message on %s: %s", topic, exc)
            return
        key = (chunk.hub_id, chunk.job_id, chunk.seq)
        with self._lock:
            if not self._accepting:
                reason = "node is stopping"
            elif key in self._in_hand:
                _LOGGER.info("chunk %s/%d already in hand; duplicate ignored", chunk.job_id, chunk.seq)
                return
            elif len(self._in_hand) >= self.settings.concurrency:
                reason = f"node busy ({len(self._in_hand)}/{self.settings.concurrency})"
            elif not same_language(chunk.language, self.engine.language):
                reason = f"language {chunk.language} not served (this node: {self.engine.language})"
            else:
                reason = ""
                self._in_hand[key] = chunk
        if not reason and chunk.deadline < time.time() - _CLOCK_SLACK_S:
            _LOGGER.warning("chunk %s/%d arrived after its deadline: is this node's clock ahead of the hub's?",
                            chunk.job_id, chunk.seq)
        if reason:
            _LOGGER.info("rejecting chunk %s/%d from hub %s: %s", chunk.job_id, chunk.seq, chunk.hub_id, reason)
            self._reply(chunk, ResultStatus.REJECTED, reason=reason)
            return
        self._work.put(chunk)
        self._publish_status()

    # -- working (engine threads) ------------------------------------------------------
    def _worker(self, engine: Engine) -> None:
        while (chunk := self._work.get()) is not None:
            started = time.monotonic()
            # No point working past the hub's lease (it reassigns then), nor past this node's own limit.
            own_limit = self.settings.engine_timeout_s + self.settings.engine_timeout_factor * chunk.duration_s
            timeout = min(own_limit, chunk.lease_s + _CLOCK_SLACK_S)
            decoded_s = 0.0  # seconds of audio the engine was given
            try:
                context_s = chunk.context_s if self._context else 0.0  # else cut off here
                pcm, rate, width = chunk_pcm(chunk, self._context)
                decoded_s = len(pcm) / (rate * width)
                outcome = engine.transcribe(pcm, rate, width, timeout=timeout, context_s=context_s)
            except Exception as exc:  # noqa: BLE001 - a worker must survive anything a chunk does
                _LOGGER.exception("chunk %s/%d failed", chunk.job_id, chunk.seq)
                outcome = Outcome(ResultStatus.ERROR, reason=f"{type(exc).__name__}: {exc}")
            status, text, reason = outcome.status, outcome.text, outcome.reason
            spent = time.monotonic() - started
            key = (chunk.hub_id, chunk.job_id, chunk.seq)
            with self._lock:
                if self._in_hand.pop(key, None) is None:
                    continue  # already handed back by stop()
                self._done += 1
                # Only real transcriptions measure speed: an engine that crashes at once must not make
                # this node look fastest (hubs would send it every chunk first), nor a hang make it look slow.
                if decoded_s > 0 and status in (ResultStatus.OK, ResultStatus.NO_SPEECH):
                    rtf = spent / decoded_s  # per second of audio the engine was given
                    self._rtf = rtf if self._rtf is None else (1 - _RTF_WEIGHT) * self._rtf + _RTF_WEIGHT * rtf
                self._idle.notify_all()
            _LOGGER.info(
                "chunk %s/%d (%.1f s audio) -> %s in %.2f s", chunk.job_id, chunk.seq, chunk.duration_s, status.value, spent
            )
            self._reply(chunk, status, text=text, reason=reason, seconds=spent, spans=outcome.spans)
            self._publish_status()

    def _reply(
        self, chunk: Chunk, status: ResultStatus, text: str = "", reason: str = "", seconds: float = 0.0,
        spans: tuple[Span, ...] = (),
    ) -> None:
        result = Result(
            job_id=chunk.job_id,
            seq=chunk.seq,
            attempt=chunk.attempt,
            node_id=self.settings.node_id,
            status=status,
            text=text,
            reason=reason,
            engine=self.engine.name,
            model=self.engine.model,
            seconds=round(seconds, 3),
            spans=spans,
        )
        self._link.publish(self._topics.hub_results(chunk.hub_id, result.node_id), result.encode())
