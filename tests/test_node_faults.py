"""A node frozen (SIGSTOP) or cut off from the broker mid-chunk: its chunk moves on, and its late answer
changes nothing.

Real node processes, the real broker; a node is cut off through a forwarder (:mod:`tests.netcut`).
PocketSphinx gives the same text for the same chunk every time, so the transcript must equal the
per-chunk transcription of a run without faults, word for word.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass

import pytest
from pydub import AudioSegment

from edge_node.engines import NoSpeech, create_engine
from hub.chunking import ChunkSpec, plan_chunks
from hub.jobs import ChunkState, Job, JobState
from hub.service import Hub
from hub.transcript import to_text
from protocol.messages import NodeState, NodeStatus
from tests.chainkit import TEST_CHUNKING, finished, speech, start_hub, start_nodes, unique_prefix, wait_online, wait_until
from tests.netcut import CUTS, CuttableLink

SHORT = ["ps_librivox_0870", "ps_librivox_0880", "ps_librivox_0890"]
KEEPALIVE_BOUND_S = 20.0  #: node keepalive 5 s; the broker gives up on a silent client after 1.5-2.5x that
RESET_BOUND_S = 3.0  #: a closed connection: the broker publishes the Will at once
BACK_BOUND_S = 45.0  #: a node that was cut off is online again this long after the link is back
CHUNKING = TEST_CHUNKING  #: the chunking of tests.chainkit.start_hub


@dataclass(frozen=True)
class Reference:
    audio: AudioSegment
    plan: list[ChunkSpec]
    texts: list[str]  #: each chunk transcribed on its own, with no fault

    @property
    def text(self) -> str:
        return " ".join(t for t in self.texts if t)


@pytest.fixture
def echo_link():
    """A CuttableLink in front of an echo server."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(4096):
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    link = CuttableLink(server.getsockname()).start()
    try:
        yield link
    finally:
        link.close()
        server.close()


def test_the_link_cuts_and_restores(echo_link):
    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", echo_link.port), timeout=5)
        sock.sendall(b"ping")
        assert sock.recv(16) == b"ping"
        return sock

    before = connect()
    echo_link.cut("reset")
    assert before.recv(16) == b"", "a reset cut closes the connection"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", echo_link.port), timeout=5)
    echo_link.restore()
    held = connect()
    echo_link.cut("silent")
    held.sendall(b"held")
    assert select.select([held], [], [], 0.3)[0] == [], "nothing moves during a silent cut"
    echo_link.restore()
    assert held.recv(16) == b"held", "what was held back flows after the cut"
    assert echo_link.connections == 2


@pytest.fixture(scope="module")
def reference(corpus) -> Reference:
    """The hub's chunks of SHORT, transcribed here one by one (no hub running: PocketSphinx holds the GIL)."""
    import speech_recognition as sr

    audio, _ = speech(corpus, SHORT)
    plan = plan_chunks(audio, CHUNKING)
    engine = create_engine("sphinx")
    texts = []
    for spec in plan:
        try:
            texts.append(engine.transcribe(sr.AudioData(audio[spec.start_ms : spec.end_ms].raw_data, 16000, 2)))
        except NoSpeech:
            texts.append("")
    return Reference(audio, plan, texts)


class Watch:
    """Follows one node through the hub's listeners: the chunk it holds, where that chunk goes, its statuses."""

    def __init__(self, hub: Hub, victim: str) -> None:
        self.victim = victim
        self.changed = threading.Event()
        self.job: Job | None = None
        self.seq: int | None = None  #: the chunk the victim held when the fault began
        self.fault_at: float | None = None
        self.moved_at: float | None = None  #: when the hub took that chunk off the victim
        self.elsewhere: str | None = None  #: the node it went to next
        self._statuses: list[tuple[float, NodeStatus]] = []
        self._lock = threading.Lock()
        hub.add_listener(self._on_job)
        hub.add_node_listener(self._on_status)

    def _on_job(self, job: Job) -> None:
        with self._lock:
            self.job = job
            if self.seq is not None:
                chunk = job.chunks[self.seq]
                if self.moved_at is None and (chunk.state is not ChunkState.ASSIGNED or chunk.node_id != self.victim):
                    self.moved_at = time.monotonic()
                if self.elsewhere is None and chunk.state is ChunkState.ASSIGNED and chunk.node_id != self.victim:
                    self.elsewhere = chunk.node_id
        self.changed.set()

    def _on_status(self, status: NodeStatus) -> None:
        if status.node_id == self.victim:
            with self._lock:
                self._statuses.append((time.monotonic(), status))
        self.changed.set()

    def held(self) -> int | None:
        """The chunk the victim holds now (it said so in its status), if any."""
        with self._lock:
            if self.job is None or not self._statuses or self._statuses[-1][1].active < 1:
                return None
            for chunk in self.job.chunks:
                if chunk.state is ChunkState.ASSIGNED and chunk.node_id == self.victim:
                    return chunk.seq
        return None

    def fault(self, seq: int) -> None:
        with self._lock:
            self.seq, self.fault_at = seq, time.monotonic()

    def online_since(self, since: float, idle: bool = False) -> float | None:
        """When the victim first said ``online`` (with nothing in hand, if ``idle``) after ``since``."""
        with self._lock:
            for at, status in self._statuses:
                if at >= since and status.state is NodeState.ONLINE and (status.active == 0 or not idle):
                    return at
        return None


def wait_for_chunk_in_hand(watch: Watch) -> int:
    wait_until(lambda: watch.held() is not None, watch.changed, 60, f"{watch.victim} holding a chunk")
    seq = watch.held()
    assert seq is not None
    return seq


def check_transcript(job: Job, reference: Reference, seq: int, victim: str) -> None:
    assert len(reference.plan) >= 2
    assert job.state is JobState.DONE, [(c.state, c.reason) for c in job.chunks]
    assert [c.spec for c in job.chunks] == reference.plan
    assert [c.result.text for c in job.chunks] == reference.texts
    assert to_text(job) == reference.text, "words lost or doubled"
    moved = job.chunks[seq]
    assert moved.failures == 1 and victim in moved.tried and len(moved.tried) == 2
    winner = "the late result of " + victim if moved.result.node_id == victim else "the other node"
    print(f"chunk {seq}: answer taken from {winner}")


def test_a_frozen_node_loses_its_chunk_within_the_keepalive_bound(broker, reference):
    prefix = unique_prefix()
    nodes = start_nodes(broker.url, prefix, 2)
    hub = start_hub(broker.url, prefix)
    victim = "n-node1"
    group = nodes.nodes[victim].pid  # its own session: the node and its engine process
    watch = Watch(hub, victim)
    frozen = False
    try:
        wait_online(hub, 2)
        job = hub.submit(reference.audio, "freeze")
        seq = wait_for_chunk_in_hand(watch)
        watch.fault(seq)
        os.killpg(group, signal.SIGSTOP)  # its TCP connection stays open; only keepalive can tell
        frozen = True
        wait_until(lambda: watch.moved_at is not None, watch.changed, 40, "the frozen node's chunk to move on")
        took = watch.moved_at - watch.fault_at
        print(f"SIGSTOP -> chunk {seq} requeued in {took:.1f} s")
        assert took < KEEPALIVE_BOUND_S
        wait_until(lambda: watch.elsewhere, watch.changed, 30, "the chunk on the other node")
        woke = time.monotonic()
        os.killpg(group, signal.SIGCONT)
        frozen = False
        finished(job, 60)
        # awake again, it reconnects, sends its late result and then says it is idle
        wait_until(lambda: watch.online_since(woke, idle=True), watch.changed, BACK_BOUND_S, "the node idle again")
        print(f"SIGCONT -> idle and online again in {watch.online_since(woke, idle=True) - woke:.1f} s")
        assert not nodes.dead_nodes()
    finally:
        if frozen:
            os.killpg(group, signal.SIGCONT)
        hub.stop()
        nodes.stop()
    check_transcript(job, reference, seq, victim)


@pytest.mark.parametrize("how", CUTS)
def test_a_node_cut_off_mid_chunk_loses_it_and_comes_back(broker, reference, how):
    link = CuttableLink(("127.0.0.1", broker.port)).start()
    prefix = unique_prefix()
    cut_off = start_nodes(link.url, prefix, 1, name="cut")
    other = start_nodes(broker.url, prefix, 1, name="ok")
    hub = start_hub(broker.url, prefix)
    victim = "cut-node1"
    watch = Watch(hub, victim)
    try:
        wait_online(hub, 2)
        job = hub.submit(reference.audio, f"cut-{how}")
        seq = wait_for_chunk_in_hand(watch)
        watch.fault(seq)
        link.cut(how)
        wait_until(lambda: watch.moved_at is not None, watch.changed, 40, "the cut-off node's chunk to move on")
        took = watch.moved_at - watch.fault_at
        print(f"{how} cut -> chunk {seq} requeued in {took:.1f} s")
        assert took < (RESET_BOUND_S if how == "reset" else KEEPALIVE_BOUND_S)
        # the link stays cut until the other node has the chunk (it may still be busy with its own)
        wait_until(lambda: watch.elsewhere, watch.changed, 30, "the chunk on the other node")
        restored = time.monotonic()
        print(f"link cut for {restored - watch.fault_at:.1f} s")
        link.restore()
        finished(job, 60)
        wait_until(lambda: watch.online_since(restored), watch.changed, BACK_BOUND_S, "the cut-off node online again")
        print(f"link restored -> node online again in {watch.online_since(restored) - restored:.1f} s")
        wait_until(lambda: watch.online_since(restored, idle=True), watch.changed, 30, "the cut-off node idle")
        assert link.connections >= 2, "the node should have reconnected through the link"
        assert not cut_off.dead_nodes()
    finally:
        hub.stop()
        cut_off.stop()
        other.stop()
        link.close()
    check_transcript(job, reference, seq, victim)


def test_a_node_cuts_a_chunks_trailing_context_off_for_engines_that_do_not_use_it():
    import io
    import wave

    from edge_node.engines import CONTEXT_ENGINES
    from edge_node.node import chunk_pcm
    from protocol.messages import Chunk

    pcm = bytes(range(256)) * 250  # 2 s at 16 kHz, 16-bit
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(pcm)
    chunk = Chunk("j", 0, "hub-a", 1, 0.0, 2.0, 16000, 0.0, 60.0, out.getvalue(), context_s=0.5)
    assert chunk_pcm(chunk) == (pcm, 16000, 2)
    assert chunk_pcm(chunk, context=False) == (pcm[: 48000], 16000, 2)  # the first 1.5 s
    assert CONTEXT_ENGINES == {"whisper"}


def test_a_nodes_real_time_factor_counts_only_the_audio_its_engine_decoded(broker, corpus, monkeypatch):
    """The simulated engine takes 0.2 s per second of audio it is given; the node cuts the context off
    for it, so its real-time factor stays 0.2 rather than falling by the share of context (which the
    hub sends only when asked: --chunk-window)."""
    monkeypatch.setenv("EDGESCRIBE_TEST_ENGINES", "1")
    audio, _ = speech(corpus, ["jfk", "ps_librivox_0870", "picovoice_test", "lhotse_2412-153948-0000"])
    prefix = unique_prefix()
    nodes = start_nodes(broker.url, prefix, 1, engine="simulated", model="0.2")
    hub = start_hub(broker.url, prefix, chunking=dataclasses.replace(CHUNKING, window_s=30.0))
    try:
        wait_online(hub, 1)
        job = finished(hub.submit(audio, "rtf"), 120)
        assert sum(c.spec.context_ms for c in job.chunks) > len(audio)  # the chunks carried much context
        changed = threading.Event()
        hub.add_node_listener(lambda status: changed.set())
        wait_until(lambda: all(n.rtf is not None for n in hub.nodes()), changed, 30, "a measured real-time factor")
        (node,) = hub.nodes()
        assert 0.17 <= node.rtf <= 0.5, node  # with the context counted it would be about 0.06
        assert node.reads_context is False  # so the hub's leases cover the chunks without their context
    finally:
        hub.stop()
        nodes.stop()
