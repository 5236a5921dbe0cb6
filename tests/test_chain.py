"""The whole chain against a real Mosquitto, real edge node processes and real speech."""

from __future__ import annotations

import contextlib
import threading

import pytest

from bench.wer import wer
from edge_node.engines import create_engine
from hub.jobs import ChunkState, JobState
from hub.transcript import segments, to_text
from protocol.messages import NodeState, NodeStatus, Result, ResultStatus
from protocol.topics import Topics
from tests.chainkit import RawClient, finished, run_job, speech, start_hub, start_nodes, unique_prefix, wait_online, wait_until

LONG = ["ps_librivox_0870", "ps_librivox_0880", "ps_librivox_0890", "ps_librivox_0920", "ps_librivox_0930", "jfk"]
SHORT = ["ps_librivox_0870", "ps_librivox_0880", "ps_librivox_0890"]


def whole_file_text(audio) -> str:
    """The one-machine baseline: the same engine on the whole recording, in this process."""
    import speech_recognition as sr

    return create_engine("sphinx").transcribe(sr.AudioData(audio.raw_data, 16000, 2))


def test_distributed_transcript_is_as_accurate_as_one_machine(broker, corpus):
    audio, reference = speech(corpus, LONG)
    prefix = unique_prefix()
    nodes = start_nodes(broker.url, prefix, 2)
    hub = start_hub(broker.url, prefix)
    try:
        job = finished(hub.submit(audio, "long"), 240)
    finally:
        hub.stop()
        nodes.stop()
    baseline = whole_file_text(audio)  # in-process PocketSphinx holds the GIL: only after the hub stopped
    assert job.state is JobState.DONE
    assert len(job.chunks) >= 4
    spans = [c.spec for c in job.chunks]  # the chunks tile the recording: nothing lost, nothing twice
    assert spans[0].start_ms == 0 and all(a.end_ms == b.start_ms for a, b in zip(spans, spans[1:]))
    assert spans[-1].end_ms == len(audio)
    segs = segments(job)
    assert {s.seq for s in segs} == set(range(len(job.chunks))), "every chunk has text"
    # timed segments and words are in order, inside their chunk, in recording time
    times = [t for s in segs for t in (s.start_s, *[x for w in s.words for x in (w.start_s, w.end_s)], s.end_s)]
    assert times == sorted(times) and times[-1] <= len(audio) / 1000
    for s in segs:
        chunk = job.chunks[s.seq]
        assert chunk.offset_s <= s.start_s <= s.end_s <= chunk.offset_s + chunk.duration_s
    assert sum(len(s.words) for s in segs) >= len(to_text(job).split()) * 0.9, "PocketSphinx times its words"
    assert {s.node_id for s in segs} == {"n-node1", "n-node2"}, "both nodes should have worked"
    distributed, whole = wer(reference, to_text(job)), wer(reference, baseline)
    print(f"WER whole {whole:.3f}, distributed {distributed:.3f}")
    assert distributed < 0.35, "far worse than PocketSphinx does on this speech"
    assert distributed <= whole + 0.03


def test_a_node_killed_mid_job_loses_nothing(broker, corpus):
    audio, reference = speech(corpus, SHORT + ["jfk"])
    prefix = unique_prefix()
    nodes = start_nodes(broker.url, prefix, 2)
    hub = start_hub(broker.url, prefix)
    victim = nodes.nodes["n-node1"]
    killed = threading.Event()

    def kill_when_busy(job):
        if not killed.is_set() and any(c.node_id == "n-node1" and c.state is ChunkState.ASSIGNED for c in job.chunks):
            killed.set()
            victim.kill()  # SIGKILL: no goodbye, only the Last Will

    hub.add_listener(kill_when_busy)
    job = run_job(hub, nodes, audio, "kill", online=2, timeout=240)
    assert killed.is_set()
    assert job.state is JobState.DONE, [c.reason for c in job.chunks]
    assert all(c.result is not None and c.result.node_id == "n-node2" for c in job.chunks if c.failures)
    assert any(c.failures for c in job.chunks), "the killed node's chunk should have been reassigned"
    assert wer(reference, to_text(job)) < 0.35


GARBAGE = [
    b"",
    b"not json at all",
    b"\xff\xfe\x00garbage",
    b'{"v": 99, "type": "result"}',
    b'{"v": 1, "type": "result", "job_id": "../../x", "seq": 0}',
    b'{"v": 1, "type": "node-status", "node_id": "x", "state": "online", "capacity": -5}',
    b"[" * 50_000,
    b"{" + b" " * 2_000_000 + b"}",
]


def test_garbage_on_result_and_status_topics_leaves_the_hub_working(broker, corpus):
    audio, reference = speech(corpus, SHORT)
    prefix = unique_prefix()
    topics = Topics(prefix)
    nodes = start_nodes(broker.url, prefix, 1)
    hub = start_hub(broker.url, prefix)
    raw = RawClient(broker.port)
    try:
        wait_online(hub, 1)
        results = topics.hub_results(hub.hub_id, "evil")
        for payload in GARBAGE:
            raw.publish(results, payload)
            raw.publish(topics.node_status("evil"), payload, retain=True)
            raw.publish(f"{prefix}/node/evil/status/extra", payload)
        # a well-formed status whose node id does not match its topic
        raw.publish(topics.node_status("evil"), NodeStatus("n-node1", NodeState.OFFLINE).encode(), retain=True)
        job = hub.submit(audio, "after-garbage")
        # answers for a job, a sequence and an attempt that do not exist, before the real ones
        for fake in (
            Result("nojob", 0, 1, "evil", ResultStatus.OK, text="injected"),
            Result(job.id, 999, 1, "evil", ResultStatus.OK, text="injected"),
            Result(job.id, 0, 7, "evil", ResultStatus.ERROR, reason="injected"),
            # a real chunk, answered by a node it was never sent to
            Result(job.id, 0, 1, "evil", ResultStatus.OK, text="injected"),
            # a real chunk, in the name of the node that has it, on another node's topic
            Result(job.id, 0, 1, "n-node1", ResultStatus.OK, text="injected"),
        ):
            raw.publish(results, fake.encode())
        finished(job, 180)
        # a flood of duplicates after the job is done changes nothing
        for _ in range(200):
            raw.publish(results, Result(job.id, 0, 1, "evil", ResultStatus.OK, text="late injected").encode())
        assert hub._thread.is_alive()
    finally:
        raw.publish(topics.node_status("evil"), b"", retain=True)  # clear the retained garbage
        raw.close()
        hub.stop()
        nodes.stop()
    assert job.state is JobState.DONE
    text = to_text(job)
    assert "injected" not in text
    assert wer(reference, text) < 0.35
    assert {c.result.node_id for c in job.chunks} == {"n-node1"}
    assert hub.online_nodes() == 1, "garbage must not have changed what the hub knows of the nodes"


def test_a_busy_node_rejects_extra_chunks_and_stops_cleanly(broker, corpus):
    """Capacity 1: a second chunk is answered 'rejected' at once; SIGTERM drains and goes offline."""
    from hub.audio import wav_bytes
    from protocol.messages import Chunk

    audio, _ = speech(corpus, ["jfk"])
    with node_and_raw_hub(broker, drain_s=60) as (nodes, raw, topics):
        for seq in (0, 1):
            chunk = Chunk("job1", seq, "rawhub", 1, 0.0, 11.0, 16000, 4e9, 120.0, wav_bytes(audio))
            raw.publish(topics.node_chunks("n-node1"), chunk.encode())
        wait_until(lambda: len(_results(raw, topics)) >= 1, raw.got, 30, "the rejection")
        first = _results(raw, topics)[0]
        assert (first.seq, first.status) == (1, ResultStatus.REJECTED) and "busy" in first.reason
        proc = nodes.nodes["n-node1"]
        proc.terminate()  # SIGTERM while chunk 0 is in hand: it finishes it, then goes offline
        assert proc.wait(60) == 0
        results = _results(raw, topics)
        assert [(r.seq, r.status) for r in results] == [(1, ResultStatus.REJECTED), (0, ResultStatus.OK)]
        assert "country" in results[1].text
        assert _states(raw, topics)[-2:] == [NodeState.DRAINING, NodeState.OFFLINE]


@contextlib.contextmanager
def node_and_raw_hub(broker, drain_s: float):
    """One real node, and a bare client that plays a hub called 'rawhub' and watches the node's status."""
    prefix = unique_prefix()
    topics = Topics(prefix)
    nodes = start_nodes(broker.url, prefix, 1, drain_s=drain_s)
    raw = RawClient(broker.port)
    try:
        raw.subscribe(topics.all_hub_results("rawhub"))
        raw.subscribe(topics.node_status("n-node1"))
        wait_until(lambda: _last_status(raw, topics) is NodeState.ONLINE, raw.got, 60, "node online")
        yield nodes, raw, topics
    finally:
        raw.publish(topics.node_status("n-node1"), b"", retain=True)
        raw.close()
        nodes.stop()


def _results(raw: RawClient, topics: Topics) -> list[Result]:
    return [Result.decode(p) for t, p in list(raw.messages) if t == topics.hub_results("rawhub", "n-node1")]


def _states(raw: RawClient, topics: Topics) -> list[NodeState]:
    return [NodeStatus.decode(p).state for t, p in list(raw.messages) if t == topics.node_status("n-node1") and p]


def _last_status(raw: RawClient, topics: Topics) -> NodeState | None:
    states = _states(raw, topics)
    return states[-1] if states else None


def test_two_hubs_share_one_pool_without_mixing_work(broker, corpus):
    audio_a, ref_a = speech(corpus, SHORT)
    audio_b, ref_b = speech(corpus, ["lhotse_2412-153948-0000", "picovoice_test"])
    prefix = unique_prefix()
    nodes = start_nodes(broker.url, prefix, 2)
    hub_a = start_hub(broker.url, prefix)
    hub_b = start_hub(broker.url, prefix)
    try:
        wait_online(hub_a, 2)
        wait_online(hub_b, 2)
        job_a = hub_a.submit(audio_a, "a")
        job_b = hub_b.submit(audio_b, "b")
        finished(job_a, 240)
        finished(job_b, 240)
    finally:
        hub_a.stop()
        hub_b.stop()
        nodes.stop()
    assert job_a.state is JobState.DONE and job_b.state is JobState.DONE
    assert wer(ref_a, to_text(job_a)) < 0.35
    assert wer(ref_b, to_text(job_b)) < 0.35
    assert "gospel" in to_text(job_b) and "gospel" not in to_text(job_a)
    assert "dashwood" in to_text(job_a) and "dashwood" not in to_text(job_b)


def test_a_job_with_no_nodes_fails_with_a_clear_reason(broker, corpus):
    audio, _ = speech(corpus, ["ps_goforward"])
    hub = start_hub(broker.url, unique_prefix(), no_node_timeout_s=1.5)
    try:
        job = finished(hub.submit(audio, "lonely"), 30)
    finally:
        hub.stop()
    assert job.state is JobState.FAILED
    assert "no edge node" in job.error


def test_a_stopping_node_hands_back_what_it_cannot_finish(broker, corpus):
    from hub.audio import wav_bytes
    from protocol.messages import Chunk

    audio, _ = speech(corpus, ["lhotse_2412-153948-0000"])
    with node_and_raw_hub(broker, drain_s=0) as (nodes, raw, topics):
        chunk = Chunk("job1", 0, "rawhub", 1, 0.0, 11.7, 16000, 4e9, 120.0, wav_bytes(audio))
        raw.publish(topics.node_chunks("n-node1"), chunk.encode())
        in_hand = lambda: any(NodeStatus.decode(p).active == 1 for t, p in list(raw.messages) if t.endswith("/status") and p)  # noqa: E731
        wait_until(in_hand, raw.got, 30, "the chunk in hand")
        proc = nodes.nodes["n-node1"]
        proc.terminate()
        assert proc.wait(30) == 0
        (result,) = _results(raw, topics)
        assert result.status is ResultStatus.REJECTED and "stopped before finishing" in result.reason
        assert _last_status(raw, topics) is NodeState.OFFLINE


def test_hub_and_nodes_reconnect_after_a_broker_restart(fresh_broker, corpus):
    """Reconnect with backoff and re-subscribe on every connect: work flows again after a restart."""
    audio, reference = speech(corpus, ["picovoice_test"])
    prefix = unique_prefix()
    nodes = start_nodes(fresh_broker.url, prefix, 1)
    hub = start_hub(fresh_broker.url, prefix)
    try:
        wait_online(hub, 1)
        fresh_broker.kill()
        fresh_broker.start()
        # the job is published whenever the hub is back; it completes only if the node re-subscribed
        job = finished(hub.submit(audio, "after-restart"), 120)
    finally:
        hub.stop()
        nodes.stop()
    assert job.state is JobState.DONE
    assert wer(reference, to_text(job)) < 0.35


def test_garbage_on_a_nodes_chunk_topic_leaves_it_working(broker, corpus):
    from hub.audio import wav_bytes
    from protocol.messages import MAX_CHUNK_BYTES, Chunk

    audio, _ = speech(corpus, ["picovoice_test"])
    good = Chunk("job1", 0, "rawhub", 1, 0.0, 5.9, 16000, 4e9, 120.0, wav_bytes(audio))
    head, _, wav = good.encode().partition(b"\n")
    with node_and_raw_hub(broker, drain_s=0) as (nodes, raw, topics):
        chunks = topics.node_chunks("n-node1")
        for payload in GARBAGE + [
            head + b"\n" + wav[:1000],  # truncated audio
            head.replace(b'"v":1', b'"v":2') + b"\n" + wav,  # another protocol version
            head + b"\n" + b"RIFF" + b"\0" * (len(wav) - 4),  # not a WAV behind a valid header
            b"\n" * 100 + wav,
            head + b"\n" + b"\0" * (MAX_CHUNK_BYTES + 1),  # over the size limit (the broker allows 16 MiB)
        ]:
            raw.publish(chunks, payload)
        for _ in range(20):  # a flood of the same valid chunk: taken once while in hand, the rest rejected
            raw.publish(chunks, good.encode())
        wait_until(lambda: any(r.status is ResultStatus.OK for r in _results(raw, topics)), raw.got, 60, "a result")
        assert nodes.nodes["n-node1"].poll() is None, "the node died"
        results = _results(raw, topics)
        assert [r.status for r in results].count(ResultStatus.OK) == 1
        assert all(r.status is ResultStatus.REJECTED and "busy" in r.reason for r in results if r.status is not ResultStatus.OK)
        assert "gospel" in next(r.text for r in results if r.status is ResultStatus.OK)


def test_a_job_waits_visibly_for_a_node_and_starts_when_one_appears(broker, corpus):
    audio, reference = speech(corpus, ["picovoice_test"])
    prefix = unique_prefix()
    hub = start_hub(broker.url, prefix)
    nodes = None
    try:
        job = hub.submit(audio, "early")
        assert not job.finished.wait(2)
        assert job.state is JobState.QUEUED and job.count(ChunkState.QUEUED) == len(job.chunks)
        nodes = start_nodes(broker.url, prefix, 1)
        finished(job, 120)
    finally:
        hub.stop()
        if nodes is not None:
            nodes.stop()
    assert job.state is JobState.DONE and wer(reference, to_text(job)) < 0.35


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_a_broker_restart_mid_job_loses_nothing(fresh_broker, corpus, tmp_path, how):
    audio, reference = speech(corpus, SHORT + ["picovoice_test"])
    prefix = unique_prefix()
    nodes = start_nodes(fresh_broker.url, prefix, 2)
    hub = start_hub(fresh_broker.url, prefix, store_dir=tmp_path / "store", lease_base_s=8)
    restarted = threading.Event()

    def restart_when_busy(job):
        if not restarted.is_set() and job.count(ChunkState.DONE) >= 1 and job.count(ChunkState.ASSIGNED) >= 1:
            restarted.set()
            threading.Thread(target=_bounce, args=(fresh_broker, how)).start()

    hub.add_listener(restart_when_busy)
    job = run_job(hub, nodes, audio, "bounce", online=2, timeout=240)
    assert restarted.is_set()
    assert job.state is JobState.DONE
    assert wer(reference, to_text(job)) < 0.35


def _bounce(broker, how: str) -> None:
    broker.stop() if how == "sigterm" else broker.kill()
    broker.start()
