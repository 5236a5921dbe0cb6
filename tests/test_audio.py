"""Tests for hub.audio: decoding any format to 16 kHz mono 16-bit, clear errors, WAV output."""

from __future__ import annotations

import io
import random
import shutil
import subprocess
import wave
from pathlib import Path

import pytest
from pydub import AudioSegment
from pydub.generators import Sine, WhiteNoise

import hub.audio
from hub.audio import SAMPLE_RATE, AudioError, load_audio, wav_bytes

TONE_HZ = 440
TONE_MS = 2000


@pytest.fixture(scope="module")
def stereo_tone() -> AudioSegment:
    """2 s of a 440 Hz tone at 44.1 kHz, stereo, 16-bit: nothing like the target format."""
    mono = Sine(TONE_HZ, sample_rate=44100).to_audio_segment(duration=TONE_MS, volume=-6.0)
    return AudioSegment.from_mono_audiosegments(mono, mono)


def _frequency_hz(segment: AudioSegment) -> float:
    """Estimate a pure tone's frequency from zero crossings in the middle second."""
    samples = segment[500:1500].get_array_of_samples()
    crossings = sum(1 for a, b in zip(samples, samples[1:]) if (a < 0) != (b < 0))
    return crossings / 2.0


def _assert_normalised(segment: AudioSegment, expected_ms: int, tolerance_ms: int) -> None:
    assert segment.frame_rate == SAMPLE_RATE == 16000
    assert segment.channels == 1
    assert segment.sample_width == 2
    assert abs(len(segment) - expected_ms) <= tolerance_ms
    assert len(segment.raw_data) == 2 * int(segment.frame_count())


@pytest.mark.parametrize(
    ("suffix", "export_args", "tolerance_ms"),
    [
        ("wav", {"format": "wav"}, 0),
        ("wav", {"format": "wav", "parameters": ["-acodec", "pcm_s24le", "-ar", "48000"]}, 0),
        ("flac", {"format": "flac"}, 0),
        ("mp3", {"format": "mp3"}, 60),
        ("ogg", {"format": "ogg"}, 30),
        ("opus", {"format": "ogg", "codec": "libopus"}, 30),
        ("webm", {"format": "webm", "codec": "libopus"}, 30),
        ("m4a", {"format": "ipod", "codec": "aac"}, 60),
    ],
)
def test_formats_decode_to_16k_mono_16bit(
    tmp_path: Path, stereo_tone: AudioSegment, suffix: str, export_args: dict, tolerance_ms: int
) -> None:
    path = tmp_path / f"tone.{suffix}"
    stereo_tone.export(path, **export_args)

    from_path = load_audio(path)
    from_bytes = load_audio(path.read_bytes(), name=path.name)

    for segment in (from_path, from_bytes):
        _assert_normalised(segment, TONE_MS, tolerance_ms)
        assert abs(_frequency_hz(segment) - TONE_HZ) <= 5  # resampled, not just relabelled
        assert segment.dBFS > -12  # the tone survived the downmix
    assert len(from_bytes) == len(from_path)


def test_str_path_and_quiet_noise_are_fine(tmp_path: Path) -> None:
    noise = WhiteNoise(sample_rate=8000).to_audio_segment(duration=700, volume=-40.0)
    path = tmp_path / "noise.wav"
    noise.export(path, format="wav")

    segment = load_audio(str(path))

    _assert_normalised(segment, 700, 0)
    assert -48 < segment.dBFS < -42  # uniform noise: -4.8 dB + -40 dB


def test_espeak_speech_file(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "Some sentence. Another sentence."], check=True)
    with wave.open(str(path), "rb") as source:
        expected_ms = round(1000 * source.getnframes() / source.getframerate())
        assert source.getframerate() != SAMPLE_RATE

    speech = load_audio(path)

    _assert_normalised(speech, expected_ms, 2)
    assert expected_ms > 1000
    assert speech.dBFS > -40


def test_garbage_bytes_are_rejected_with_the_given_name() -> None:
    junk = random.Random(7).randbytes(50_000)

    with pytest.raises(AudioError) as caught:
        load_audio(junk, name="junk.bin")

    assert str(caught.value) == "not an audio file: junk.bin"
    assert isinstance(caught.value, ValueError)


def test_text_renamed_to_wav_is_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("Meeting notes, not a recording.\n" * 200, encoding="utf-8")

    with pytest.raises(AudioError) as caught:
        load_audio(path, name="notes.wav")

    assert str(caught.value) == "not an audio file: notes.wav"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"

    with pytest.raises(AudioError) as caught:
        load_audio(path)

    assert str(caught.value) == f"file not found: {path}"


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="^not a file but a directory: "):
        load_audio(tmp_path)


def test_empty_file_and_empty_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")

    with pytest.raises(AudioError) as from_path:
        load_audio(path, name="empty.wav")
    with pytest.raises(AudioError) as from_bytes:
        load_audio(b"")

    assert str(from_path.value) == "empty file: empty.wav"
    assert str(from_bytes.value) == "empty file: uploaded data"


def test_wav_with_no_samples_has_no_audio() -> None:
    with pytest.raises(AudioError) as caught:
        load_audio(wav_bytes(AudioSegment.silent(0, frame_rate=SAMPLE_RATE)), name="blank.wav")

    assert str(caught.value) == "no audio in file: blank.wav"


def test_truncated_flac_gives_a_one_line_error(stereo_tone: AudioSegment) -> None:
    flac = stereo_tone.export(io.BytesIO(), format="flac").getvalue()

    with pytest.raises(AudioError) as caught:
        load_audio(flac[:60], name="cut.flac")

    message = str(caught.value)
    assert message.endswith(": cut.flac")
    assert "\n" not in message
    assert "ffmpeg" not in message.lower()


def test_duration_limit_from_the_container(stereo_tone: AudioSegment) -> None:
    three_seconds = wav_bytes(stereo_tone + stereo_tone[:1000])

    with pytest.raises(AudioError) as caught:
        load_audio(three_seconds, max_duration_s=2)

    assert str(caught.value) == "recording is 3 s long, over the 2 s limit"
    assert len(load_audio(three_seconds, max_duration_s=3)) == 3000


def test_duration_limit_when_the_container_states_none(
    monkeypatch: pytest.MonkeyPatch, stereo_tone: AudioSegment
) -> None:
    monkeypatch.setattr(hub.audio, "_probe", lambda ffmpeg_input, label: None)
    three_seconds = wav_bytes(stereo_tone + stereo_tone[:1000])

    with pytest.raises(AudioError) as caught:
        load_audio(three_seconds, max_duration_s=2.5)

    assert str(caught.value) == "recording is longer than the 2.5 s limit"
    assert len(load_audio(three_seconds, max_duration_s=5)) == 3000


def test_invalid_limit_is_a_programming_error(stereo_tone: AudioSegment) -> None:
    with pytest.raises(ValueError, match="max_duration_s"):
        load_audio(wav_bytes(stereo_tone), max_duration_s=0)


def test_wav_bytes_round_trips_through_wave() -> None:
    noise = WhiteNoise(sample_rate=SAMPLE_RATE).to_audio_segment(duration=1234, volume=-10.0)
    segment = noise.set_channels(1).set_sample_width(2)

    data = wav_bytes(segment)

    with wave.open(io.BytesIO(data), "rb") as reader:
        assert reader.getnchannels() == 1
        assert reader.getsampwidth() == 2
        assert reader.getframerate() == SAMPLE_RATE
        assert reader.getnframes() == int(segment.frame_count()) == 19744
        assert reader.readframes(reader.getnframes()) == segment.raw_data
    assert load_audio(data).raw_data == segment.raw_data


def test_wav_bytes_converts_other_layouts_to_16bit_mono(stereo_tone: AudioSegment) -> None:
    eight_bit = stereo_tone.set_sample_width(1)

    with wave.open(io.BytesIO(wav_bytes(eight_bit)), "rb") as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 44100)
        assert reader.getnframes() == 88200
