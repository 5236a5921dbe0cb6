"""Poison audio: a chunk that crashes, hangs or fails the engine becomes a gap, and the job still ends.

The nodes are real processes running the ``chaos`` test engine (sphinx, except on chunks that a
1234 Hz marker tone dominates, where it aborts, hangs or raises), on the real broker.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
from pydub import AudioSegment
from pydub.generators import Sine

from bench.wer import wer
from edge_node.engines import EngineUnavailable, create_engine
from edge_node.engines.chaos import MARKER_HZ, has_marker, marker_ratio
from hub.chunking import plan_chunks
from hub.jobs import ChunkState, JobState
from hub.transcript import to_text
from tests.chainkit import finished, speech, start_hub, start_nodes, unique_prefix, wait_online, wait_until

BEFORE, AFTER = "ps_librivox_0870", "ps_librivox_0920"
MIDDLE = "ps_librivox_0870"  #: 7 s of speech where the tone was, for the job after the poison (3 chunks of at most 10 s)
PAUSE_MS, TONE_MS = 800, 3000
RATE = 16000


def tone(ms: int, dbfs: float = -20.0, hz: float = MARKER_HZ) -> AudioSegment:
    return Sine(hz, sample_rate=RATE, bit_depth=16).to_audio_segment(ms, volume=dbfs)


@dataclass(frozen=True)
class Poisoned:
    audio: AudioSegment
    tone_ms: tuple[int, int]  #: where the marker tone is, in the recording
    refs: tuple[str, str]  #: references of the speech before and after it


def poisoned(corpus) -> Poisoned:
    """Speech, a pause, 3 s of marker tone, a pause, speech."""
    before, ref_before = speech(corpus, [BEFORE])
    after, ref_after = speech(corpus, [AFTER])
    pause = AudioSegment.silent(PAUSE_MS, frame_rate=RATE)
    start = len(before) + PAUSE_MS
    return Poisoned(before + pause + tone(TONE_MS) + pause + after, (start, start + TONE_MS), (ref_before, ref_after))


def mmss(ms: int) -> str:
    return f"{ms // 60000:02d}:{ms // 1000 % 60:02d}"


# -- the detector --------------------------------------------------------------------------


def test_marker_tone_is_found_alone_or_between_pauses():
    pause = AudioSegment.silent(PAUSE_MS, frame_rate=RATE)
    for audio in (tone(TONE_MS), pause + tone(TONE_MS) + pause, tone(30_000, dbfs=-40)):
        share, _ = marker_ratio(audio.raw_data, RATE)
        assert share > 0.95
        assert has_marker(audio.raw_data, RATE)


def test_no_marker_in_silence_speech_or_other_tones(corpus):
    assert not has_marker(AudioSegment.silent(5000, frame_rate=RATE).raw_data, RATE)
    assert not has_marker(b"", RATE)
    for name in corpus:
        clip, _ = speech(corpus, [name])
        assert marker_ratio(clip.raw_data, RATE)[0] < 0.05, name
    for hz in (1000.0, 1300.0, 440.0):  # a tone, but not the marker
        assert not has_marker(tone(TONE_MS, hz=hz).raw_data, RATE), hz
    assert not has_marker(tone(TONE_MS, dbfs=-75).raw_data, RATE), "far too quiet to be a marker"


def test_marker_under_speech_at_a_low_level_does_not_count(corpus):
    clip, _ = speech(corpus, ["jfk"])
    for below_db in (10, 20, 30):
        mixed = clip.overlay(tone(len(clip), dbfs=clip.dBFS - below_db))
        assert not has_marker(mixed.raw_data, RATE), below_db
    # a marker as loud as the speech is still no marker: it must dominate the chunk
    assert not has_marker(clip.overlay(tone(len(clip), dbfs=clip.dBFS)).raw_data, RATE)


def test_chaos_engine_is_only_for_tests(monkeypatch):
    monkeypatch.delenv("EDGESCRIBE_TEST_ENGINES", raising=False)
    with pytest.raises(EngineUnavailable, match="for tests: set EDGESCRIBE_TEST_ENGINES=1"):
        create_engine("chaos", "crash")
    monkeypatch.setenv("EDGESCRIBE_TEST_ENGINES", "1")
    with pytest.raises(EngineUnavailable, match="crash | hang | error"):
        create_engine("chaos", "explode")
    engine = create_engine("chaos", "error")
    assert (engine.name, engine.model) == ("chaos", "error")


def test_only_a_test_environment_offers_engine_chaos(monkeypatch, capsys):
    from edge_node.__main__ import main
    from edge_node.engines import ENGINES, TEST_ENGINES

    monkeypatch.delenv("EDGESCRIBE_TEST_ENGINES", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["--broker", "mqtt://127.0.0.1:1", "--engine", "chaos"])
    assert exc.value.code == 2 and "invalid choice: 'chaos'" in capsys.readouterr().err
    monkeypatch.setenv("EDGESCRIBE_ENGINE", "chaos")  # a default from the environment skips argparse's check
    with pytest.raises(SystemExit) as exc:
        main(["--broker", "mqtt://127.0.0.1:1"])
    assert exc.value.code == 2 and f"unknown engine 'chaos'; choose one of: {', '.join(ENGINES)}\n" in capsys.readouterr().err
    monkeypatch.setenv("EDGESCRIBE_TEST_ENGINES", "1")
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "{" + ",".join((*ENGINES, *TEST_ENGINES)) + "}" in capsys.readouterr().out


def test_chaos_engine_faults_only_on_marked_audio(monkeypatch, corpus):
    import speech_recognition as sr

    monkeypatch.setenv("EDGESCRIBE_TEST_ENGINES", "1")
    engine = create_engine("chaos", "error")
    clip, _ = speech(corpus, ["ps_goforward"])
    assert "forward" in engine.transcribe(sr.AudioData(clip.raw_data, RATE, 2))
    marked = AudioSegment.silent(500, frame_rate=RATE) + tone(2000)
    with pytest.raises(RuntimeError, match="injected"):
        engine.transcribe(sr.AudioData(marked.raw_data, RATE, 2))


# -- poison chunks on real nodes -------------------------------------------------------------

FAULTS = {
    # fault: (hub dispatch settings, words expected in the gap's reason)
    "crash": ({"max_attempts": 2}, "engine process died (exit code -6)"),
    "error": ({"max_attempts": 2}, "RuntimeError: chaos engine: injected failure"),
    # short leases, so that a hang is given up quickly; still 12 s for a 7 s speech chunk (3-4 s of work)
    "hang": ({"max_attempts": 2, "lease_base_s": 5.0, "lease_factor": 1.0}, "no answer before the lease ran out"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_poison_chunk_becomes_a_gap_and_the_nodes_survive(broker, corpus, monkeypatch, fault):
    dispatch, reason = FAULTS[fault]
    rec = poisoned(corpus)
    pause = AudioSegment.silent(PAUSE_MS, frame_rate=RATE)
    monkeypatch.setenv("EDGESCRIBE_TEST_ENGINES", "1")
    prefix = unique_prefix()
    nodes = start_nodes(broker.url, prefix, 3, name="p", engine="chaos", model=fault)
    hub = start_hub(broker.url, prefix, **dispatch)
    try:
        # the tone gets a chunk of its own, with at most a pause's worth of anything else
        plan = plan_chunks(rec.audio, hub.settings.chunking)
        t0, t1 = rec.tone_ms
        (poison,) = [i for i, c in enumerate(plan) if c.start_ms < t1 and c.end_ms > t0]
        assert plan[poison].start_ms >= t0 - PAUSE_MS - 300 and plan[poison].end_ms <= t1 + PAUSE_MS + 300
        assert len(plan) == 3 and poison == 1
        wait_online(hub, 3)
        started = time.monotonic()
        job = finished(hub.submit(rec.audio, f"poison-{fault}"), 60)
        took = time.monotonic() - started

        assert job.state is JobState.PARTIAL, [(c.state, c.reason) for c in job.chunks]
        assert [c.spec for c in job.chunks] == plan
        bad = job.chunks[poison]
        assert bad.state is ChunkState.FAILED and bad.failures == 2
        assert reason in bad.reason
        print(f"{fault}: job done in {took:.1f} s; poison chunk tried on {sorted(bad.tried)}; reason: {bad.reason}")
        if fault == "hang":  # the retry comes after the lease, when the other nodes are free again
            assert len(bad.tried) == 2, f"retried on the same node: {bad.tried}"
        for i, ref in zip((0, 2), rec.refs):
            chunk = job.chunks[i]
            assert chunk.state is ChunkState.DONE
            assert wer(ref, chunk.result.text) < 0.35, chunk.result.text
        text = to_text(job)
        assert f"[gap {mmss(plan[poison].start_ms)}-{mmss(plan[poison].end_ms)}: " in text, text
        assert text.count("[gap ") == 1

        # every node is back (a hung engine is killed at lease + 5 s) and does normal work again
        changed = threading.Event()
        hub.add_node_listener(lambda status: changed.set())
        idle = lambda: sum(n.state.value == "online" and n.active == 0 for n in hub.nodes()) == 3  # noqa: E731
        wait_until(idle, changed, 30, "three idle nodes")
        assert not nodes.dead_nodes()
        # a chunk that failed fast must not make its node look fast (or one that hung, slow)
        worked = {c.result.node_id for c in job.chunks if c.state is ChunkState.DONE}
        assert all(n.rtf is None for n in hub.nodes() if n.node_id not in worked), hub.nodes()
        # speech where the tone was: three speech chunks, one for each idle node
        middle, ref_middle = speech(corpus, [MIDDLE])
        clean = rec.audio[: t0 - PAUSE_MS] + pause + middle + pause + rec.audio[t1 + PAUSE_MS :]
        assert len(plan_chunks(clean, hub.settings.chunking)) == 3
        again = finished(hub.submit(clean, f"after-{fault}"), 60)
    finally:
        hub.stop()
        nodes.stop()
    assert again.state is JobState.DONE, [(c.state, c.reason) for c in again.chunks]
    assert {c.result.node_id for c in again.chunks} == set(nodes.nodes), "a node did no work after the poison"
    assert wer(" ".join([rec.refs[0], ref_middle, rec.refs[1]]), to_text(again)) < 0.35
    assert len(bad.tried) == 2, f"the poison chunk should have been tried on two different nodes: {bad.tried}"
