"""Microphone capture: `python -m hub listen` through a real audio stack, and its parts.

Every test here has "capture" in its name (`pytest -k capture`). The end-to-end tests run the real
command against a private PulseAudio whose pipe source the test feeds in real time
(tests/virtmic.py): PortAudio opens it like a microphone, at 44.1 kHz stereo, from a 48 kHz stereo
source, so both PulseAudio and the hub resample. Narrow unit tests use fakes.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
from pydub import AudioSegment

from bench.wer import wer
from hub.audio import SAMPLE_RATE, load_audio
from hub.capture import CaptureSettings, DeviceError, DeviceLost, InputDevice, Microphone, Resampler, find_input
from hub.chunking import ChunkSpec
from hub.dispatcher import DispatchSettings
from hub.jobs import ChunkState, JobState
from hub.listen import LinePrinter, ListenSession, ListenSettings
from hub.service import Hub, HubSettings, StreamClosed
from hub.vad import FRAME_BYTES, FRAME_MS, FRAME_SAMPLES, EnergyClassifier, Segmenter, VadSettings
from protocol.broker import BrokerAddress
from protocol.messages import Result, ResultStatus
from tests.chainkit import tagged_env
from tests.virtmic import SOURCE, Feeder, VirtualMic, pulseaudio_missing

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ["ps_librivox_0870", "ps_librivox_0880", "ps_librivox_0890"]


# -- frames and fakes ---------------------------------------------------------------------------
def tone_frames(n: int, db: float = -20.0, start: int = 0) -> list[bytes]:
    """``n`` frames of a 300 Hz tone at ``db`` dBFS, continuing the phase of frame ``start``."""
    t = (np.arange(n * FRAME_SAMPLES) + start * FRAME_SAMPLES) / SAMPLE_RATE
    wave = (10 ** (db / 20) * 32767 * math.sqrt(2) * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
    return [wave[i * FRAME_BYTES:(i + 1) * FRAME_BYTES] for i in range(n)]


def silence(n: int) -> list[bytes]:
    return [bytes(FRAME_BYTES)] * n


def loud(frame: bytes) -> bool:
    """A fake classifier: anything not digitally silent is speech."""
    return any(frame)


def run_segmenter(segmenter: Segmenter, frames: list[bytes]) -> list:
    out = []
    for frame in frames:
        out += segmenter.push(frame)
    return out


def stream_hub(tmp_path: Path | None = None, **dispatch: float) -> Hub:
    """A hub that is made but not started: streams and results can be driven by hand."""
    settings = HubSettings(broker=BrokerAddress.parse("mqtt://127.0.0.1:1"), store_dir=tmp_path,
                           dispatch=DispatchSettings(**dispatch))
    return Hub(settings)


def answer(hub: Hub, job_id: str, seq: int, text: str) -> None:
    result = Result(job_id=job_id, seq=seq, node_id="n1", attempt=1, status=ResultStatus.OK,
                    text=text, engine="fake", model="", seconds=0.1)
    hub._dispatcher.jobs[job_id].chunks[seq].tried.add("n1")  # as if the hub had sent it to n1
    hub._on_result(hub._topics.hub_results(hub.hub_id, "n1"), result.encode(), False)


# -- the segmenter ------------------------------------------------------------------------------
def test_capture_vad_feed_takes_pcm_of_any_length_as_frames():
    frames = silence(20) + tone_frames(40) + silence(30) + tone_frames(25, start=40) + silence(30)
    by_frame = run_segmenter(Segmenter(VadSettings(end_silence_ms=600), classifier=loud), frames)
    pcm = b"".join(frames)
    seg = Segmenter(VadSettings(end_silence_ms=600), classifier=loud)
    by_piece, at = [], 0
    for size in (1, 959, 7, 4000, 2, 333):  # odd sizes, cutting frames and samples anywhere
        by_piece += seg.feed(pcm[at:at + size])
        at += size
    by_piece += seg.feed(pcm[at:])
    assert len(by_frame) == 2 and by_piece == by_frame
    assert seg.position_ms == len(frames) * FRAME_MS


def test_capture_vad_opens_with_pre_roll_and_closes_after_the_pause():
    seg = Segmenter(VadSettings(pad_ms=300, end_silence_ms=600), classifier=loud)
    frames = silence(20) + tone_frames(40) + silence(30)
    [u] = run_segmenter(seg, frames)
    # opens when 60 % of the 300 ms window is speech: the window's start, before the speech began
    assert u.spec.start_ms == (20 + 6 - 10) * FRAME_MS
    assert u.spec.end_ms == (60 + 18) * FRAME_MS  # 90 % of 600 ms of pause, in the span
    assert u.spec.lead_ms == u.spec.tail_ms == 0
    assert u.audio == b"".join(frames[16:78])
    assert u.speech_ms == 40 * FRAME_MS
    assert not seg.in_utterance and seg.flush() == []


def test_capture_vad_hysteresis_ignores_clicks_and_short_pauses():
    seg = Segmenter(VadSettings(pad_ms=300, end_silence_ms=600, min_speech_ms=240), classifier=loud)
    clicks = silence(10) + tone_frames(2) + silence(10) + tone_frames(3) + silence(30)  # never 6 of 10
    assert run_segmenter(seg, clicks) == [] and not seg.in_utterance
    speech = tone_frames(30) + silence(12) + tone_frames(30) + silence(25)  # a 360 ms pause inside
    [u] = run_segmenter(seg, speech)
    assert u.speech_ms == 60 * FRAME_MS
    short = silence(5) + tone_frames(7) + silence(25)  # opens, but 210 ms of speech is under the minimum
    assert run_segmenter(seg, short) == []


def test_capture_vad_cuts_long_speech_with_overlap_and_returns_each_piece_at_once():
    settings = VadSettings(max_utterance_s=6.0, overlap_s=0.6, pad_ms=300, end_silence_ms=600)
    seg = Segmenter(settings, classifier=loud)
    frames = silence(10) + tone_frames(500) + silence(25)  # 15 s without a pause
    quiet = {150, 330}  # a quieter frame in each cut window: the cuts go there
    frames = [tone_frames(1, db=-40, start=i)[0] if i in quiet else f for i, f in enumerate(frames)]
    pieces, when = [], []
    for i, frame in enumerate(frames):
        for u in seg.push(frame):
            pieces.append(u)
            when.append(i + 1)
    pcm = b"".join(frames)
    assert len(pieces) == 3
    assert [p.spec.start_ms // FRAME_MS for p in pieces[1:]] == sorted(quiet)
    for a, b in zip(pieces, pieces[1:]):
        assert a.spec.end_ms == b.spec.start_ms
        assert a.spec.tail_ms == b.spec.lead_ms == 600
    for p, at in zip(pieces, when):
        assert p.spec.duration_ms <= 6000
        assert p.audio == pcm[p.spec.audio_start_ms * 32:p.spec.audio_end_ms * 32]
        assert at * FRAME_MS - p.spec.audio_end_ms < 6000  # returned while the speech goes on
    assert pieces[0].spec.lead_ms == 0 and pieces[-1].spec.tail_ms == 0


def test_capture_vad_skip_moves_the_clock_and_ends_the_utterance():
    seg = Segmenter(VadSettings(), classifier=loud)
    run_segmenter(seg, silence(5) + tone_frames(20))
    [u] = seg.skip(3000)
    assert u.spec.end_ms == 25 * FRAME_MS
    assert seg.position_ms == 25 * FRAME_MS + 3000
    [v] = run_segmenter(seg, tone_frames(20) + silence(30))
    assert v.spec.start_ms == 25 * FRAME_MS + 3000


def test_capture_energy_vad_follows_the_noise_floor():
    rng = np.random.default_rng(1)
    classify = EnergyClassifier(margin_db=12)

    def noise(db: float) -> bytes:
        return (rng.normal(0, 10 ** (db / 20) * 32767, FRAME_SAMPLES)).astype("<i2").tobytes()

    assert not any(classify(noise(-45)) for _ in range(50))
    assert all(classify(f) for f in tone_frames(30, db=-20))
    assert not any(classify(noise(-45)) for _ in range(5))
    assert not classify(bytes(FRAME_BYTES))


def test_capture_webrtc_vad_finds_each_clip_of_real_speech(corpus):
    clips = [load_audio(corpus[name][0]) for name in CLIPS]
    gap = AudioSegment.silent(1000, frame_rate=SAMPLE_RATE)
    audio = gap
    bounds = []
    for clip in clips:
        bounds.append((len(audio), len(audio) + len(clip)))
        audio += clip + gap
    pcm = audio.raw_data[: len(audio.raw_data) // FRAME_BYTES * FRAME_BYTES]
    seg = Segmenter(VadSettings(vad="webrtc"))
    utterances = run_segmenter(seg, [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]) + seg.flush()
    for start, end in bounds:  # each clip's speech lies inside the utterances
        inside = [u for u in utterances if u.spec.end_ms > start and u.spec.start_ms < end]
        assert inside, (start, end, [u.spec for u in utterances])
        assert all(u.spec.start_ms >= start - 1000 and u.spec.end_ms <= end + 1000 for u in inside)


# -- resampling ------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [44_100, 48_000])
def test_capture_resampler_turns_stereo_blocks_into_16_khz_mono(rate):
    seconds = 2.0
    t = np.arange(int(rate * seconds)) / rate
    left = 8000 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, left * 0.5], axis=1).astype("<i2").tobytes()
    resample = Resampler(rate, 2)
    block = 4 * int(rate * 0.03)
    out = b"".join(resample(stereo[i:i + block]) for i in range(0, len(stereo), block)) + resample(b"", last=True)
    got = np.frombuffer(out, "<i2").astype(float)
    assert abs(len(got) - seconds * SAMPLE_RATE) <= 2
    want = 0.75 * 8000 * np.sin(2 * np.pi * 440 * np.arange(len(got)) / SAMPLE_RATE)
    middle = slice(1000, len(got) - 1000)  # away from the filter's edges
    assert np.corrcoef(got[middle], want[middle])[0, 1] > 0.999
    assert np.sqrt(np.mean(got[middle] ** 2)) == pytest.approx(0.75 * 8000 / math.sqrt(2), rel=0.02)


# -- the microphone, with a fake PortAudio ---------------------------------------------------------
class FakeStream:
    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.closed = False

    def start(self):
        pass

    def abort(self):
        pass

    def close(self):
        self.closed = True


class FakePortAudioError(Exception):
    pass


def fake_sd(fail: str = "") -> types.SimpleNamespace:
    streams = []

    def open_stream(**kwargs):
        if fail:
            raise FakePortAudioError(fail)
        streams.append(FakeStream(**kwargs))
        return streams[-1]

    return types.SimpleNamespace(RawInputStream=open_stream, PortAudioError=FakePortAudioError, streams=streams)


DEVICES = [InputDevice(0, "USB Audio Device: Mic", "ALSA", 1, 48000.0), InputDevice(3, "pulse", "ALSA", 32, 44100.0)]


def test_capture_device_names_and_errors_name_the_choices():
    assert find_input(None, DEVICES, 3).index == 3
    assert find_input("usb", DEVICES, None).index == 0
    assert find_input("3", DEVICES, None).name == "pulse"
    with pytest.raises(DeviceError, match=r"no input device 'nope'; choose one of: 0 'USB Audio Device: Mic'; 3 'pulse'"):
        find_input("nope", DEVICES, None)
    with pytest.raises(DeviceError, match="ambiguous"):
        find_input("u", DEVICES, None)
    with pytest.raises(DeviceError, match="no sound input device found"):
        find_input(None, [], None)
    with pytest.raises(DeviceError, match=r"cannot open input device 0 'USB Audio Device: Mic'.*Device unavailable.*another program"):
        Microphone(fake_sd("Device unavailable [PaErrorCode -9985]"), DEVICES[0], CaptureSettings())


@pytest.mark.parametrize("devices", [[], [{"index": 2, "name": "hdmi", "hostapi": 0, "max_input_channels": 0,
                                            "default_samplerate": 48000.0}]])
def test_capture_list_devices_without_an_input_device_says_so_and_fails(monkeypatch, capsys, devices):
    import hub.cli

    sd = types.SimpleNamespace(query_devices=lambda: devices, query_hostapis=lambda: [{"name": "ALSA"}],
                               default=types.SimpleNamespace(device=[-1, -1]))
    monkeypatch.setattr(hub.cli, "sounddevice", lambda: sd)
    monkeypatch.setattr(hub.cli, "stop_on_signals", lambda: None)  # pytest's own handlers stay
    assert hub.cli.main(["listen", "--list-devices"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("hub: no sound input device found (PortAudio sees none); plug in a microphone")
    sd.query_devices = lambda: [*devices, {"index": 3, "name": "USB mic", "hostapi": 0, "max_input_channels": 1,
                                           "default_samplerate": 44100.0}]
    assert hub.cli.main(["listen", "--list-devices"]) == 0
    assert capsys.readouterr().out == "  3: USB mic (ALSA, 1 in, 44100 Hz)\n"


def test_capture_callback_only_enqueues_and_counts_overruns():
    sd = fake_sd()
    device = InputDevice(5, "16 kHz mic", "ALSA", 1, 16000.0)  # no resampling: the blocks come out as they went in
    mic = Microphone(sd, device, CaptureSettings(block_ms=30, queue_s=0.06, stall_s=0.5))
    callback = sd.streams[0].kwargs["callback"]
    assert sd.streams[0].kwargs["blocksize"] == 480
    blocks = [bytes([n]) * 960 for n in (1, 2, 3, 4)]
    ok, overflow = types.SimpleNamespace(input_overflow=False), types.SimpleNamespace(input_overflow=True)
    callback(blocks[0], 480, None, ok)
    callback(blocks[1], 480, None, overflow)
    callback(blocks[2], 480, None, ok)  # the queue holds two blocks: this one is dropped
    assert (mic.overflows, mic.dropped, mic.overruns) == (1, 1, 2)
    assert [mic.read(), mic.read()] == blocks[:2]
    callback(blocks[3], 480, None, ok)
    # the dropped block comes back as silence before the next one, keeping the clock true
    assert [mic.read(), mic.read()] == [bytes(960), blocks[3]]
    sd.streams[0].kwargs["finished_callback"]()
    with pytest.raises(DeviceLost, match="stopped"):
        mic.read()
    with pytest.raises(DeviceLost, match="no audio for 0.5 s"):
        mic.read()
    mic.interrupt()
    assert mic.read() is None


# -- streams in the hub -------------------------------------------------------------------------------
def pcm_segment(ms: int) -> AudioSegment:
    return AudioSegment(bytes(ms * 32), sample_width=2, frame_rate=SAMPLE_RATE, channels=1)


def test_capture_stream_job_grows_is_stored_and_finishes_only_when_closed(tmp_path):
    hub = stream_hub(tmp_path)
    job = hub.open_stream("mic")
    assert not job.is_finished and job.open
    hub.append(job, ChunkSpec(1000, 3000), pcm_segment(2000))
    hub.append(job, ChunkSpec(3000, 5000, lead_ms=500), pcm_segment(2500))
    with pytest.raises(ValueError, match="starts before"):
        hub.append(job, ChunkSpec(4000, 6000), pcm_segment(2000))
    with pytest.raises(ValueError, match="samples"):
        hub.append(job, ChunkSpec(6000, 7000), pcm_segment(500))
    wav = tmp_path / "audio" / f"{job.id}.wav"
    assert len(AudioSegment.from_wav(wav)) == 5000  # session time, silent before the first utterance
    answer(hub, job.id, 0, "hello there")
    answer(hub, job.id, 1, "general kenobi")
    assert not job.is_finished  # still open
    hub.close_stream(job)
    assert job.finished.is_set() and job.state is JobState.DONE and not wav.exists()
    with pytest.raises(StreamClosed):
        hub.append(job, ChunkSpec(6000, 7000), pcm_segment(1000))
    stored = hub.store.load(job.id)
    assert [c.spec for c in stored.chunks] == [ChunkSpec(1000, 3000), ChunkSpec(3000, 5000, 500, 0)]
    hub.stop()


def test_capture_stream_cut_off_by_a_crash_is_closed_on_restart_and_keeps_its_chunks(tmp_path):
    hub = stream_hub(tmp_path)
    job = hub.open_stream("mic")
    hub.append(job, ChunkSpec(0, 2000), pcm_segment(2000))
    hub.store.close()  # the hub dies; its lock goes with it
    again = stream_hub(tmp_path)
    again._link.start = lambda: None  # no broker here: only the resumption is looked at
    again.start()
    resumed = again.job(job.id)
    assert resumed is not None and not resumed.open and len(resumed.chunks) == 1
    assert resumed.chunks[0].state is ChunkState.QUEUED and not resumed.is_finished
    again.stop()


def test_capture_idle_stream_does_not_fail_for_want_of_a_node():
    hub = stream_hub(no_node_timeout_s=1)
    job = hub.open_stream("mic")
    disp = hub._dispatcher
    assert disp.expire(0.0) == [] and disp.expire(100.0) == []  # nothing queued: waiting for speech
    hub.append(job, ChunkSpec(0, 1000), pcm_segment(1000))
    disp.expire(200.0)
    disp.expire(201.5)
    assert job.state is JobState.FAILED and "no edge node" in job.error
    with pytest.raises(StreamClosed, match="no edge node"):
        hub.append(job, ChunkSpec(1000, 2000), pcm_segment(1000))


def test_capture_lines_come_in_order_and_a_cut_waits_for_its_other_side():
    hub = stream_hub()
    job = hub.open_stream("mic")
    lines = []
    printer = LinePrinter(hub, job.id, lines.append)
    hub.add_listener(printer)
    hub.append(job, ChunkSpec(0, 2000), pcm_segment(2000))
    hub.append(job, ChunkSpec(3000, 8000, tail_ms=1000), pcm_segment(6000))
    hub.append(job, ChunkSpec(8000, 10000, lead_ms=1000), pcm_segment(3000))
    hub.append(job, ChunkSpec(61000, 62000), pcm_segment(1000))
    answer(hub, job.id, 1, "one two")
    assert lines == []  # chunk 0 is not back yet
    answer(hub, job.id, 0, "zero")
    assert lines == ["[00:00-00:02] zero"]  # chunk 1 waits for chunk 2, which hears its overlap
    answer(hub, job.id, 3, "")
    answer(hub, job.id, 2, "three")
    assert lines == ["[00:00-00:02] zero", "[00:03-00:08] one two", "[00:08-00:10] three"]
    assert printer.first_text is not None and printer.lines == 3


class ScriptedMic:
    """A microphone that plays frames, then is lost (or waits to be interrupted)."""

    def __init__(self, frames: list[bytes], lose: bool, name: str) -> None:
        self.device = InputDevice(0, name, "fake", 1, 16000.0)
        self._frames = list(frames)
        self._lose = lose
        self._stop = threading.Event()
        self.overflows = self.dropped = self.overruns = 0

    def read(self):
        if self._frames:
            return self._frames.pop(0)
        if self._lose:
            raise DeviceLost(f"input device {self.device.name} stopped (unplugged)")
        self._stop.wait(10)
        return None

    def interrupt(self):
        self._stop.set()

    def close(self):
        pass


def test_capture_session_keeps_the_text_when_the_device_goes_and_retries_as_configured(tmp_path):
    hub = stream_hub()
    first = silence(10) + tone_frames(40)
    second = silence(10) + tone_frames(40) + silence(30)
    mics = [ScriptedMic(first, lose=True, name="usb"), ScriptedMic(second, lose=False, name="usb")]
    opened = []

    def open_mic(settings, again):
        opened.append(again)
        return mics[len(opened) - 1]

    keep = tmp_path / "kept.wav"
    settings = ListenSettings(on_device_lost="retry", retry_s=0.01, keep_audio=keep)
    session = ListenSession(hub, settings, open_mic=open_mic, classifier=loud)
    two = threading.Event()
    hub.add_listener(lambda job: len(job.chunks) >= 2 and two.set())
    job = session.start()
    assert two.wait(10)  # the second microphone's utterance is in the job
    session.stop()
    assert session.join(10)
    chunks = hub.job(job.id).chunks
    assert opened == [False, True] and len(session.lost) == 1 and "unplugged" in session.lost[0]
    assert len(chunks) == 2 and chunks[0].spec.end_ms == 50 * FRAME_MS  # cut where the device went
    assert chunks[1].spec.start_ms > 50 * FRAME_MS and not job.open
    assert session.ended == ""
    assert len(AudioSegment.from_wav(keep)) >= (50 + 80) * FRAME_MS


# -- end to end, through PulseAudio and PortAudio -----------------------------------------------------
@pytest.fixture
def virtual_mic(tmp_path):
    why = pulseaudio_missing()
    if why:
        pytest.skip(why)
    mic = VirtualMic(tmp_path / "pulse")
    try:
        mic.start()
    except RuntimeError as exc:
        pytest.skip(f"a private PulseAudio cannot start here: {exc}")
    try:
        yield mic
    finally:
        mic.kill()


class Listen:
    """`python -m hub listen` as a subprocess, its stdout and stderr lines read as they come, with their times."""

    def __init__(self, mic: VirtualMic, *args: str, tag: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "listen", *args], cwd=ROOT, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env={**tagged_env(tag), **mic.env},
        )
        self.out: list[tuple[float, str]] = []
        self.err: list[str] = []
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(s, l), daemon=True)
                         for s, l in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, into) -> None:
        for line in stream:
            with self._cond:
                into.append((time.monotonic(), line.rstrip("\n")) if into is self.out else line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, what, timeout: float) -> bool:
        """Wait (bounded) until ``what()`` holds, or the process has ended."""
        with self._cond:
            self._cond.wait_for(lambda: what() or self.proc.poll() is not None, timeout)
            return bool(what())

    def finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def started(listen: Listen):
    return lambda: any("hub: listening to" in line for line in listen.err)


def speech_of(corpus, names: list[str], mic: VirtualMic) -> tuple[bytes, str, float]:
    """The clips with a second of silence after each, in the source's format; the reference; seconds."""
    audio, refs = AudioSegment.empty(), []
    for name in names:
        path, ref = corpus[name]
        audio += load_audio(path) + AudioSegment.silent(1000, frame_rate=SAMPLE_RATE)
        refs.append(ref)
    return mic.pcm(audio), " ".join(refs), len(audio) / 1000


def test_capture_lists_the_virtual_device_and_names_the_choices_for_a_missing_one(virtual_mic):
    env = {**os.environ, **virtual_mic.env}
    listing = subprocess.run([sys.executable, "-m", "hub", "listen", "--list-devices"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert any(line.split(":", 1)[-1].strip().startswith(SOURCE) for line in listing.stdout.splitlines()), listing.stdout
    missing = subprocess.run([sys.executable, "-m", "hub", "listen", "--device", "no-such-mic"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2
    lines = [line for line in missing.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no input device 'no-such-mic'; choose one of:" in lines[0] and f"'{SOURCE}'" in lines[0]


def test_capture_live_lines_arrive_while_it_plays_in_order_and_sigterm_writes_the_transcript(
    virtual_mic, corpus, tmp_path
):
    pcm, reference, seconds = speech_of(corpus, CLIPS, virtual_mic)
    feeder = Feeder(virtual_mic)
    feeder.start()
    out = tmp_path / "session.json"
    listen = Listen(virtual_mic, "--local-nodes", "2", "--device", SOURCE, "--store", str(tmp_path / "store"),
                    "--output", str(out), "--log-level", "INFO", tag="capture-live")
    try:
        assert listen.wait_for(started(listen), 60), listen.err
        began = time.monotonic()
        feeder.say(pcm)
        assert listen.wait_for(lambda: listen.out, seconds + 30), listen.err[-20:]
        assert feeder.said.wait(seconds + 10)
        first_at = listen.out[0][0]
        assert first_at < feeder.said_at, "no line came while the recording played"
        # every clip said; the last utterance ends with the 0.6 s pause after it, then one engine pass
        listen.wait_for(lambda: wer(reference, " ".join(line.split("] ", 1)[-1] for _, line in listen.out)) < 0.35, 30)
        listen.proc.send_signal(signal.SIGTERM)
        assert listen.finish(60) == 0, listen.err[-20:]
    finally:
        listen.stop()
        feeder.stop()
    lines = [line for _, line in listen.out]
    starts = [line[1:6] for line in lines]
    assert all(line.startswith("[") and "] " in line for line in lines) and starts == sorted(starts)
    heard = " ".join(line.split("] ", 1)[1] for line in lines)
    assert wer(reference, heard) < 0.35, heard
    doc = json.loads(out.read_text())
    assert doc["state"] == "done" and wer(reference, doc["text"]) < 0.35
    summary = next(line for line in listen.err if "line(s) from" in line)
    assert "0 overrun(s)" in summary, summary
    print(f"\nfirst line {first_at - began:.1f} s after the speech began ({seconds:.1f} s of audio); {summary}")
    print("\n".join(lines))
    assert not list((tmp_path / "store" / "audio").glob("*.wav"))  # no raw audio kept without --keep-audio


def test_capture_device_that_disappears_keeps_the_text_so_far(virtual_mic, corpus, tmp_path):
    pcm, reference, seconds = speech_of(corpus, CLIPS[:1], virtual_mic)
    feeder = Feeder(virtual_mic)
    feeder.start()
    out = tmp_path / "session.txt"
    listen = Listen(virtual_mic, "--local-nodes", "1", "--device", SOURCE, "--store", str(tmp_path / "store"),
                    "--output", str(out), tag="capture-lost")
    try:
        assert listen.wait_for(started(listen), 60), listen.err
        feeder.say(pcm)
        assert listen.wait_for(lambda: listen.out, seconds + 30), listen.err[-20:]
        virtual_mic.kill()  # as if the USB microphone were pulled out
        code = listen.finish(60)
    finally:
        listen.stop()
        feeder.stop()
    assert code == 1, listen.err[-20:]
    assert any("stopped (unplugged, or its sound server went away); the text so far is kept" in line for line in listen.err)
    assert any("the session ended early" in line for line in listen.err)
    assert wer(reference, out.read_text()) < 0.35


def test_capture_session_ends_when_its_stream_fails_for_want_of_a_node():
    hub = stream_hub(no_node_timeout_s=0.3)
    hub._link.start = lambda: None  # no broker, so no node: the dispatch thread's timeout runs
    hub.start()
    try:
        mic = ScriptedMic(silence(10) + tone_frames(40) + silence(30), lose=False, name="usb")
        session = ListenSession(hub, ListenSettings(), open_mic=lambda settings, again: mic, classifier=loud)
        job = session.start()
        assert session.join(10), "the session did not end when its stream failed"
        assert job.state is JobState.FAILED and "no edge node" in session.ended
    finally:
        hub.stop()
