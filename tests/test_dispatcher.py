"""Dispatch rules with a hand-driven clock: capacity, leases, failover, retries, de-duplication."""

from __future__ import annotations

import pytest
from pydub import AudioSegment

from hub.chunking import ChunkSpec
from hub.dispatcher import DispatchSettings, Dispatcher
from hub.jobs import ChunkState, ChunkWork, Job, JobState
from protocol.messages import NodeState, NodeStatus, Result, ResultStatus


def job(n: int = 4, seconds: int = 10, job_id: str = "j1", context_ms: int = 0) -> Job:
    audio = AudioSegment.silent(duration=n * seconds * 1000, frame_rate=16000)
    chunks = [
        ChunkWork(i, ChunkSpec(i * seconds * 1000, (i + 1) * seconds * 1000, context_ms=context_ms)) for i in range(n)
    ]
    return Job(id=job_id, name=job_id, audio=audio, chunks=chunks)


def node(
    node_id: str, capacity: int = 1, active: int = 0, rtf: float | None = None, online: bool = True, reads_context: bool = True,
) -> NodeStatus:
    state = NodeState.ONLINE if online else NodeState.OFFLINE
    return NodeStatus(node_id=node_id, state=state, capacity=capacity, active=active, rtf=rtf, reads_context=reads_context)


def answer(a, status=ResultStatus.OK, text="words", node_id=None) -> Result:
    return Result(job_id=a.job.id, seq=a.chunk.seq, attempt=a.attempt, node_id=node_id or a.node_id, status=status, text=text)


SETTINGS = DispatchSettings(lease_base_s=10, lease_factor=2, max_attempts=3, no_node_timeout_s=30)


def test_assigns_only_free_capacity_and_fastest_first():
    d = Dispatcher(SETTINGS)
    d.node_status(node("slow", rtf=0.9), 0)
    d.node_status(node("fast", capacity=2, rtf=0.2), 0)
    d.add_job(job(5))
    got = d.assign(0)
    assert [a.node_id for a in got] == ["fast", "fast", "slow"]
    assert [a.chunk.seq for a in got] == [0, 1, 2]
    assert d.assign(0) == []  # everyone is full
    assert got[0].lease_s == pytest.approx(10 + 2 * 10 * 0.2)


def test_a_lease_covers_the_audio_the_node_decodes():
    """A chunk with 10 s of its own and 8 s of trailing context: a node that decodes the context
    (Whisper) gets a lease for 18 s of audio, one that cuts it off (PocketSphinx) for 10 s."""
    d = Dispatcher(SETTINGS)
    d.node_status(node("whisper", rtf=0.2, reads_context=True), 0)
    d.node_status(node("sphinx", rtf=0.2, reads_context=False), 0)
    d.add_job(job(2, context_ms=8_000))
    leases = {a.node_id: a.lease_s for a in d.assign(0)}
    assert leases == {"whisper": pytest.approx(10 + 2 * 18 * 0.2), "sphinx": pytest.approx(10 + 2 * 10 * 0.2)}


def test_capacity_counts_other_hubs_work():
    d = Dispatcher(SETTINGS)
    d.node_status(node("n", capacity=2, active=2), 0)  # busy with another hub's chunks
    d.add_job(job(2))
    assert d.assign(0) == []
    d.node_status(node("n", capacity=2, active=1), 1)
    assert len(d.assign(1)) == 1


def test_results_assemble_and_duplicates_are_dropped():
    d = Dispatcher(SETTINGS)
    d.node_status(node("a", capacity=4), 0)
    j = job(3)
    d.add_job(j)
    assigned = d.assign(0)
    for a in reversed(assigned):
        assert d.result(answer(a, text=f"t{a.chunk.seq}"), 1) is j
    assert j.state is JobState.DONE and j.finished.is_set()
    assert d.result(answer(assigned[0], text="again"), 2) is None
    assert [c.result.text for c in j.chunks] == ["t0", "t1", "t2"]


def test_lease_expiry_moves_the_chunk_and_a_late_answer_is_not_doubled():
    d = Dispatcher(SETTINGS)
    d.node_status(node("hung"), 0)
    j = job(1)
    d.add_job(j)
    (first,) = d.assign(0)
    assert d.next_deadline(0) == pytest.approx(first.lease_s)
    assert d.expire(first.lease_s - 0.01) == []
    assert d.expire(first.lease_s) == [j]
    assert j.chunks[0].state is ChunkState.QUEUED
    d.node_status(node("other"), 21)
    (second,) = d.assign(21)
    assert second.node_id == "other" and second.attempt == 2
    assert d.result(answer(first, text="late but right"), 22) is j  # first answer wins
    assert d.result(answer(second, text="second"), 23) is None
    assert j.chunks[0].result.text == "late but right" and j.state is JobState.DONE


def test_security_a_result_from_a_node_never_sent_the_chunk_is_dropped():
    """A node with an account can only publish results under its own id; it still must not answer
    for a chunk the hub sent elsewhere."""
    d = Dispatcher(SETTINGS)
    d.node_status(node("a"), 0)
    d.node_status(node("b"), 0)
    j = job(1)
    d.add_job(j)
    (first,) = d.assign(0)
    intruder = "b" if first.node_id == "a" else "a"
    assert d.result(answer(first, text="forged", node_id=intruder), 1) is None
    assert j.chunks[0].state is ChunkState.ASSIGNED and j.chunks[0].result is None
    assert d.result(answer(first, text="real"), 2) is j
    assert j.chunks[0].result.text == "real"


def test_node_offline_requeues_its_chunks_at_once():
    d = Dispatcher(SETTINGS)
    d.node_status(node("a", capacity=2), 0)
    d.node_status(node("b"), 0)
    j = job(3)
    d.add_job(j)
    d.assign(0)
    changed = d.node_status(node("a", online=False), 1)
    assert changed == [j]
    assert [c.state for c in j.chunks].count(ChunkState.QUEUED) == 2
    d.node_status(node("b", active=0), 1)


def test_rejection_requeues_without_counting_a_failure():
    d = Dispatcher(SETTINGS)
    d.node_status(node("a"), 0)
    d.node_status(node("b", rtf=2.0), 0)
    j = job(1)
    d.add_job(j)
    (a,) = d.assign(0)
    assert a.node_id == "a"
    d.result(answer(a, status=ResultStatus.REJECTED), 0.1)
    assert j.chunks[0].failures == 0 and j.chunks[0].state is ChunkState.QUEUED
    (b,) = d.assign(0.2)  # a rests for busy_backoff_s
    assert b.node_id == "b"


def test_poison_chunk_fails_after_max_attempts_on_different_nodes():
    d = Dispatcher(SETTINGS)
    for n in ("a", "b", "c"):
        d.node_status(node(n), 0)
    j = job(2)
    d.add_job(j)
    tried = []
    now = 0.0
    while not j.is_finished:
        for a in d.assign(now):
            if a.chunk.seq == 0:
                tried.append(a.node_id)
                d.result(answer(a, status=ResultStatus.ERROR), now)
            else:
                d.result(answer(a), now)
        now += 1
    assert sorted(tried) == ["a", "b", "c"]
    assert j.state is JobState.PARTIAL
    assert j.chunks[0].state is ChunkState.FAILED
    assert j.chunks[0].reason.startswith(tried[-1] + ":")
    assert j.chunks[1].state is ChunkState.DONE


def test_a_retry_waits_for_a_busy_node_that_has_not_had_the_chunk():
    d = Dispatcher(SETTINGS)
    d.node_status(node("a"), 0)
    d.node_status(node("b"), 0)
    j = job(3)
    d.add_job(j)
    first = {a.chunk.seq: a for a in d.assign(0)}
    assert (first[0].node_id, first[1].node_id) == ("a", "b")
    d.result(answer(first[0], status=ResultStatus.ERROR), 1)  # fails fast on a
    (later,) = d.assign(1)  # a is free: it takes chunk 2, not chunk 0 again
    assert (later.chunk.seq, later.node_id) == (2, "a")
    d.result(answer(first[1]), 2)
    (retry,) = d.assign(2)
    assert (retry.chunk.seq, retry.node_id) == (0, "b")


def test_stale_error_from_an_old_attempt_is_ignored():
    d = Dispatcher(SETTINGS)
    d.node_status(node("a"), 0)
    j = job(1)
    d.add_job(j)
    (a,) = d.assign(0)
    d.expire(a.lease_s)
    assert d.assign(a.lease_s) == []  # the node is suspect until it speaks again
    d.node_status(node("a"), a.lease_s)
    (b,) = d.assign(a.lease_s)
    assert d.result(answer(a, status=ResultStatus.ERROR), a.lease_s + 1) is None
    assert j.chunks[0].state is ChunkState.ASSIGNED and j.chunks[0].attempt == b.attempt


def test_results_for_unknown_jobs_or_sequences_are_dropped():
    d = Dispatcher(SETTINGS)
    d.node_status(node("a"), 0)
    j = job(1)
    d.add_job(j)
    (a,) = d.assign(0)
    assert d.result(Result(job_id="nope", seq=0, attempt=1, node_id="a", status=ResultStatus.OK), 1) is None
    assert d.result(Result(job_id=j.id, seq=7, attempt=1, node_id="a", status=ResultStatus.OK), 1) is None
    assert j.chunks[0].state is ChunkState.ASSIGNED


def test_job_fails_when_no_node_is_online_for_the_timeout():
    d = Dispatcher(SETTINGS)
    j = job(2)
    d.add_job(j)
    assert d.assign(0) == [] and d.expire(0) == []
    assert d.next_deadline(0) == pytest.approx(30)
    assert d.expire(29) == []
    assert d.expire(30) == [j]
    assert j.state is JobState.FAILED and "no edge node" in j.error and j.finished.is_set()


def test_a_node_appearing_in_time_saves_the_job():
    d = Dispatcher(SETTINGS)
    j = job(1)
    d.add_job(j)
    d.expire(0)
    d.node_status(node("late"), 20)
    assert len(d.assign(20)) == 1
    assert d.expire(40) == [] and not j.is_finished


def test_empty_job_is_done_at_once():
    d = Dispatcher(SETTINGS)
    j = job(0)
    d.add_job(j)
    assert j.finished.is_set() and j.state is JobState.DONE


def test_rejections_back_off_exponentially_and_past_rests_do_not_spin():
    d = Dispatcher(DispatchSettings(busy_backoff_s=1, max_backoff_s=4, max_rejections=100))
    d.node_status(node("a"), 0)
    j = job(1)
    d.add_job(j)
    now, rests = 0.0, []
    for _ in range(5):
        (a,) = d.assign(now)
        d.result(answer(a, status=ResultStatus.REJECTED), now)
        rests.append(d.nodes["a"].rested_until - now)
        assert d.assign(now) == []
        now = d.next_deadline(now)
    assert rests == [1, 2, 4, 4, 4]
    # once the rest is over it is no longer a deadline: nothing to wake up for
    d.nodes["a"].rested_until = now - 1
    assert d.next_deadline(now) is None or d.next_deadline(now) > now


def test_a_node_that_rejects_everything_cannot_keep_a_chunk_alive_forever():
    d = Dispatcher(DispatchSettings(max_attempts=2, max_rejections=3, busy_backoff_s=0.5, max_backoff_s=0.5))
    d.node_status(node("skewed"), 0)
    j = job(1)
    d.add_job(j)
    now = 0.0
    while not j.is_finished:
        for a in d.assign(now):
            d.result(answer(a, status=ResultStatus.REJECTED), now)
        now += 1
        assert now < 100
    assert j.state is JobState.PARTIAL and "rejected 3 times" in j.chunks[0].reason


def test_suspect_node_gets_nothing_until_it_speaks_again():
    d = Dispatcher(SETTINGS)
    d.node_status(node("ghost"), 0)  # a stale retained 'online' of a dead node
    j = job(2)
    d.add_job(j)
    first = d.assign(0)
    assert len(first) == 1
    d.expire(first[0].lease_s)
    assert d.assign(first[0].lease_s) == []
    d.node_status(node("ghost"), first[0].lease_s + 1)
    assert len(d.assign(first[0].lease_s + 1)) == 1


def test_draining_node_keeps_its_chunks_but_gets_no_new_ones():
    d = Dispatcher(SETTINGS)
    d.node_status(node("a", capacity=2), 0)
    j = job(3)
    d.add_job(j)
    assert len(d.assign(0)) == 2
    draining = NodeStatus(node_id="a", state=NodeState.DRAINING, capacity=2, active=2)
    assert d.node_status(draining, 1) == []
    assert j.count(ChunkState.ASSIGNED) == 2
    assert d.assign(1) == []


def test_only_nodes_of_the_jobs_language_are_used():
    d = Dispatcher(SETTINGS)
    d.node_status(NodeStatus(node_id="fr", state=NodeState.ONLINE, language="fr-FR", rtf=0.1), 0)
    d.node_status(NodeStatus(node_id="en", state=NodeState.ONLINE, language="en", rtf=0.9), 0)
    j = job(2)
    d.add_job(j)  # language en-US
    got = d.assign(0)
    assert [a.node_id for a in got] == ["en"]


def test_a_retained_status_does_not_clear_a_suspect_mark():
    d = Dispatcher(SETTINGS)
    d.node_status(node("ghost"), 0)
    j = job(1)
    d.add_job(j)
    (a,) = d.assign(0)
    d.expire(a.lease_s)
    d.node_status(node("ghost"), a.lease_s + 1, retained=True)  # the broker's old copy, after a reconnect
    assert d.assign(a.lease_s + 1) == []


def test_a_job_times_out_when_only_unusable_nodes_are_online():
    d = Dispatcher(SETTINGS)
    d.node_status(NodeStatus(node_id="fr", state=NodeState.ONLINE, language="fr"), 0)
    j = job(1)
    d.add_job(j)
    assert d.assign(0) == [] and d.expire(0) == []
    assert d.expire(30) == [j] and j.state is JobState.FAILED


def test_preferred_engine_and_model_go_first_and_the_others_still_help():
    d = Dispatcher(DispatchSettings(prefer_engine="whisper", prefer_model="base"))
    d.node_status(NodeStatus(node_id="sphinx-fast", state=NodeState.ONLINE, engine="sphinx", rtf=0.1), 0)
    d.node_status(NodeStatus(node_id="whisper-tiny", state=NodeState.ONLINE, engine="whisper", model="tiny.en", rtf=0.1), 0)
    d.node_status(NodeStatus(node_id="whisper-base", state=NodeState.ONLINE, engine="whisper", model="base", rtf=0.5), 0)
    d.add_job(job(4))
    assert [a.node_id for a in d.assign(0)] == ["whisper-base", "whisper-tiny", "sphinx-fast"]
