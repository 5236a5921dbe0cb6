"""The node's speech gate (edge_node.speech): silence and steady noise never reach an engine, speech always does.

Non-speech is generated in memory; speech is the real clips of tests/data, whole and cut into the chunks
the hub would send. The end-to-end tests run a silent recording through a hub and real nodes.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from pydub import AudioSegment

from edge_node import speech
from edge_node.runner import _answer
from hub.audio import load_audio
from hub.chunking import ChunkingSettings, plan_chunks
from hub.jobs import JobState
from hub.transcript import to_text
from protocol.messages import ResultStatus
from tests.chainkit import TEST_CHUNKING, run_job, start_hub, start_nodes, unique_prefix
from tests.test_whisper import model_dir
from tests.test_whisper import pytestmark as needs_whisper  # skips without faster-whisper or tiny.en

RATE = 16000
DATA = Path(__file__).parent / "data"
CLIPS = sorted(DATA.glob("*.wav"))


def pcm(samples: np.ndarray) -> bytes:
    return np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes()


def white(seconds: float, dbfs: float, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 32768 * 10 ** (dbfs / 20), int(seconds * RATE))


def hum(seconds: float, dbfs: float, hz: float = 50.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return 32768 * 10 ** (dbfs / 20) * np.sqrt(2) * (np.sin(2 * np.pi * hz * t) + np.sin(2 * np.pi * 3 * hz * t) / 3)


def dither(seconds: float, seed: int = 2) -> np.ndarray:
    """Triangular dither of one step: what a silent input through a dithering converter gives."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    return rng.random(n) - rng.random(n)


def clip(path: Path) -> np.ndarray:
    return np.frombuffer(load_audio(path).raw_data, dtype="<i2").astype(float)


NOT_SPEECH = {
    "digital silence": lambda s: np.zeros(int(s * RATE)),
    "dither": dither,
    "white noise -80 dBFS": lambda s: white(s, -80),
    "white noise -60 dBFS": lambda s: white(s, -60),
    "white noise -50 dBFS": lambda s: white(s, -50),
    "white noise -20 dBFS": lambda s: white(s, -20),
    "50 Hz hum -30 dBFS": lambda s: hum(s, -30),
    "60 Hz hum -20 dBFS": lambda s: hum(s, -20, 60.0),
}


@pytest.mark.parametrize("seconds", [2, 30])
@pytest.mark.parametrize("kind", list(NOT_SPEECH))
def test_silence_and_steady_noise_are_not_speech(kind, seconds):
    heard = speech.hear(pcm(NOT_SPEECH[kind](seconds)), RATE, 2)
    assert not heard.speech and heard.reason in ("silent", "steady"), heard


@pytest.mark.parametrize("path", CLIPS, ids=[p.stem for p in CLIPS])
def test_every_speech_clip_passes_whole_and_in_the_chunks_the_hub_sends(path):
    audio = load_audio(path)
    raw = audio.raw_data
    assert speech.hear(raw, RATE, 2).speech
    for settings in (ChunkingSettings(), TEST_CHUNKING):
        for chunk in plan_chunks(audio, settings):
            piece = raw[chunk.audio_start_ms * RATE * 2 // 1000: chunk.audio_end_ms * RATE * 2 // 1000]
            heard = speech.hear(piece, RATE, 2)
            # far from the line: speech rises 25 dB and more above its quiet frames, steady noise 1.4 dB at most
            assert heard.speech and heard.rise_db > 20, (chunk, heard)


def test_faint_speech_passes_down_to_a_few_steps_of_16_bit_audio():
    """Whisper tiny.en reads JFK word for word with the loud frames at -84 dBFS: no level floor above that."""
    for path in (DATA / "jfk.wav", DATA / "ps_librivox_0870.wav"):
        samples = clip(path)
        loud = speech.hear(pcm(samples), RATE, 2).loud_dbfs
        for target in (-60, -76, -84):
            heard = speech.hear(pcm(samples * 10 ** ((target - loud) / 20)), RATE, 2)
            assert heard.speech and abs(heard.loud_dbfs - target) < 0.5, (path.name, target, heard)


def test_speech_in_loud_noise_passes():
    """At 5 dB below white noise the engines still hear some of it, and the gate lets it through."""
    rng = np.random.default_rng(3)
    for path in CLIPS:
        samples = clip(path)
        noise = rng.normal(0, np.sqrt(np.mean(samples ** 2)) * 10 ** (5 / 20), len(samples))
        assert speech.hear(pcm(samples + noise), RATE, 2).speech, path.name


def test_digital_gaps_do_not_make_hiss_look_like_speech():
    """A recording that starts digitally silent and then hisses is still steady; speech with digital pauses is not."""
    assert not speech.hear(pcm(np.concatenate([np.zeros(5 * RATE), white(5, -50)])), RATE, 2).speech
    words = clip(DATA / "ps_goforward.wav")
    assert speech.hear(pcm(np.concatenate([np.zeros(5 * RATE), words, np.zeros(5 * RATE)])), RATE, 2).speech


def test_short_and_odd_input():
    assert speech.hear(b"", RATE, 2).reason == "silent"
    assert speech.hear(b"\x01", RATE, 2).reason == "silent"  # half a sample
    assert not speech.hear(pcm(white(0.05, -30)), RATE, 2).speech  # 50 ms: no word
    # the full scale follows the sample width: the same steady hiss in 32-bit samples
    hiss = (white(2, -50) * 65536).astype("<i4").tobytes()
    heard = speech.hear(hiss, RATE, 4)
    assert heard.reason == "steady" and abs(heard.loud_dbfs + 50) < 1, heard


def test_a_30_s_chunk_is_gated_in_milliseconds():
    chunks = [pcm(white(30, -50)), pcm(np.tile(clip(DATA / "jfk.wav"), 3))]
    for chunk in chunks:
        started = time.perf_counter()
        speech.hear(chunk, RATE, 2)
        assert time.perf_counter() - started < 0.05  # about 3 ms here; bounded loosely for a busy machine


# --- the node answers no-speech without asking the engine ---


class _Hallucinating:
    """An engine that hears "dog" in anything, as PocketSphinx does in digital silence."""

    model, language = "m", "en-US"

    def __init__(self, name: str = "sphinx") -> None:
        self.name = name
        self.calls = 0

    def transcribe_timed(self, audio, context_s: float = 0.0):
        self.calls += 1
        return "dog", ()


def test_the_node_answers_no_speech_without_the_engine():
    engine = _Hallucinating()
    assert _answer(engine, pcm(np.zeros(2 * RATE)), RATE, 2, 0.0) == (ResultStatus.NO_SPEECH.value, "", "", ())
    assert _answer(engine, pcm(white(30, -50)), RATE, 2, 0.0)[0] == ResultStatus.NO_SPEECH.value
    assert engine.calls == 0
    assert _answer(engine, pcm(clip(DATA / "jfk.wav")), RATE, 2, 0.0)[:2] == (ResultStatus.OK.value, "dog")
    assert engine.calls == 1


def test_test_engines_get_every_chunk():
    """The simulated and chaos engines hear no words; a chaos marker is a steady tone, and must reach it."""
    engine = _Hallucinating("simulated")
    assert _answer(engine, pcm(np.zeros(RATE)), RATE, 2, 0.0)[0] == ResultStatus.OK.value


# --- end to end: a recording without speech through a hub and real nodes ---

def silent_recording() -> AudioSegment:
    """8 s of digital silence, then 8 s of white noise at -50 dBFS: a chunk or more of each."""
    samples = np.concatenate([np.zeros(8 * RATE), white(8, -50)])
    return AudioSegment(pcm(samples), sample_width=2, frame_rate=RATE, channels=1)


@pytest.mark.parametrize("engine", ["sphinx", pytest.param("whisper", marks=needs_whisper)])
def test_a_recording_without_speech_gives_no_words_with_a_real_engine(broker, engine):
    """Without the gate PocketSphinx answers "dog" to the silence, and Whisper tiny.en "You"."""
    prefix = unique_prefix()
    nodes = start_nodes(broker.url, prefix, 1, engine=engine, model=model_dir() if engine == "whisper" else "")
    hub = start_hub(broker.url, prefix)
    job = run_job(hub, nodes, silent_recording(), f"silent-{engine}", online=1, timeout=120)
    assert job.state is JobState.DONE
    assert len(job.chunks) >= 2 and {c.result.engine for c in job.chunks} == {engine}
    assert [c.result.status for c in job.chunks] == [ResultStatus.NO_SPEECH] * len(job.chunks), to_text(job)
    assert to_text(job) == ""
