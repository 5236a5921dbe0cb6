"""hub.pauses and hub.recording: pydub's pauses, window for window, from one streaming pass;
and a recording read by range from a file is the same as one in memory."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pydub import AudioSegment
from pydub.generators import Sine, WhiteNoise
from pydub.silence import detect_silence as pydub_silence

from hub.chunking import ChunkingSettings, plan_chunks
from hub.pauses import detect_silence, scan
from hub.recording import Recording, wav_header

DATA = Path(__file__).parent / "data"
RATE = 16000


def _speechlike(seed: int, extra_samples: int) -> AudioSegment:
    """Tones and noise between pauses of random length, quiet hiss in some pauses, an odd sample count."""
    rng = random.Random(seed)
    parts = []
    for _ in range(12):
        ms = rng.randint(200, 3000)
        parts.append(Sine(rng.randint(150, 900), sample_rate=RATE).to_audio_segment(ms, volume=rng.uniform(-30, -3)))
        pause = rng.choice([50, 290, 300, 310, 700, 1500])
        quiet = WhiteNoise(sample_rate=RATE).to_audio_segment(pause, volume=rng.uniform(-80, -35))
        parts.append(quiet if rng.random() < 0.5 else AudioSegment.silent(pause, frame_rate=RATE))
    audio = sum(parts[1:], parts[0]).set_channels(1).set_sample_width(2)
    return audio._spawn(audio.raw_data + b"\x07\x00" * extra_samples)


def _ours(segment: AudioSegment, min_len: int, thresh_db: float) -> list[tuple[int, int]]:
    recording = Recording.from_segment(segment)
    loudness = scan(recording.blocks(), RATE, 10)
    assert loudness.rms == segment.rms and loudness.length_ms == len(segment)
    return detect_silence(loudness, recording.pcm, min_len, loudness.dbfs + thresh_db, 10)


@pytest.mark.parametrize("seed, extra, min_len", [(1, 0, 300), (2, 7, 300), (3, 165, 300), (4, 3, 305), (5, 0, 1000)])
def test_the_same_pauses_as_pydub(seed: int, extra: int, min_len: int) -> None:
    segment = _speechlike(seed, extra)
    expected = [tuple(r) for r in pydub_silence(segment, min_silence_len=min_len, silence_thresh=segment.dBFS - 16, seek_step=10)]
    assert expected, "the recording should have pauses"
    assert _ours(segment, min_len, -16) == expected


def test_the_same_pauses_as_pydub_on_real_speech() -> None:
    for name in ("jfk.wav", "ps_librivox_0870.wav"):
        segment = AudioSegment.from_wav(DATA / name).set_frame_rate(RATE).set_channels(1)
        expected = [tuple(r) for r in pydub_silence(segment, min_silence_len=300, silence_thresh=segment.dBFS - 16, seek_step=10)]
        assert _ours(segment, 300, -16) == expected


def test_a_recording_on_disk_reads_and_plans_like_one_in_memory(tmp_path: Path) -> None:
    segment = _speechlike(7, 11) * 4
    path = tmp_path / "r.wav"
    path.write_bytes(wav_header(int(segment.frame_count())) + segment.raw_data)
    on_disk, in_memory = Recording.open_wav(path), Recording.from_segment(segment)
    assert len(on_disk) == len(in_memory) == len(segment)
    assert on_disk[1234:5678].raw_data == segment[1234:5678].raw_data
    assert on_disk[len(segment) - 3 : len(segment) + 50].raw_data == segment[len(segment) - 3 :].raw_data
    settings = ChunkingSettings(max_s=12)
    assert plan_chunks(on_disk, settings) == plan_chunks(segment, settings)
    copy = tmp_path / "copy.wav"
    on_disk.write_wav(copy)
    assert copy.read_bytes() == path.read_bytes()


def test_an_owned_file_is_deleted_on_close(tmp_path: Path) -> None:
    path = tmp_path / "r.pcm"
    path.write_bytes(b"\x01\x00" * 16000)
    recording = Recording.open_pcm(path, owned=True)
    assert len(recording) == 1000 and recording.pcm(0, 2) == b"\x01\x00\x01\x00"
    recording.close()
    assert not path.exists()
    with pytest.raises(ValueError, match="closed"):
        recording.pcm(0, 1)


def test_a_finished_job_drops_its_recording_and_the_file_goes(tmp_path: Path) -> None:
    import gc

    from hub.chunking import ChunkSpec
    from hub.dispatcher import Dispatcher
    from hub.jobs import ChunkWork, Job
    from protocol.messages import NodeState, NodeStatus, Result, ResultStatus

    path = tmp_path / "r.pcm"
    path.write_bytes(b"\x01\x00" * 16000)
    job = Job(id="j1", name="r", audio=Recording.open_pcm(path, owned=True), chunks=[ChunkWork(0, ChunkSpec(0, 1000))])
    dispatcher = Dispatcher()
    dispatcher.add_job(job)
    dispatcher.node_status(NodeStatus(node_id="n1", state=NodeState.ONLINE, capacity=1), now=0.0)
    (a,) = dispatcher.assign(now=0.0)
    assert job.audio is not None and len(job.audio[0:1000]) == 1000
    dispatcher.result(Result(job_id="j1", seq=0, attempt=a.attempt, node_id="n1", status=ResultStatus.OK, text="x"), now=1.0)
    assert job.finished.is_set() and job.audio is None
    del a
    gc.collect()
    assert not path.exists()
