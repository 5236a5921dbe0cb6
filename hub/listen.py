"""A live session: microphone -> utterances -> chunks of one growing job -> lines of text in order.

Threads (docs/capture.md has the picture):

- PortAudio's callback thread only enqueues blocks (:mod:`hub.capture`).
- The ``capture-segmenter`` thread (:class:`ListenSession`) reads them, resamples to 16 kHz mono,
  cuts 30 ms frames, runs the VAD (:mod:`hub.vad`) and hands each utterance to
  :meth:`hub.service.Hub.append` as soon as the speaker pauses. At the end (``stop()``, a lost
  device with ``on_device_lost="exit"``, or a stream that failed) it sends the utterance in
  progress and closes the stream; the hub finishes the chunks in flight.
- The hub's threads call :class:`LinePrinter`, a job listener, which emits each chunk's line as
  soon as that chunk and every one before it are finished.

The session is one job of the hub (a stream), so with a store it is kept there like any other,
and a dashboard on that hub shows it live.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydub import AudioSegment

from hub.audio import SAMPLE_RATE, write_wav_at
from hub.capture import CaptureSettings, DeviceError, DeviceLost, InputDevice, Microphone, open_microphone
from hub.jobs import ChunkState, ChunkWork, Job, JobState
from hub.service import Hub, StreamClosed
from hub.transcript import clock, line, segments
from hub.vad import VADS, FrameClassifier, Segmenter, Utterance, VadSettings
from protocol.cli import env_default

_LOGGER = logging.getLogger(__name__)

ON_DEVICE_LOST = ("exit", "retry")
_KEEP_EVERY = SAMPLE_RATE * 2  # bytes of kept audio written at once: one second


@dataclass(frozen=True)
class ListenSettings:
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    name: str = ""  #: the job's name; empty: the device's name and the start time
    on_device_lost: str = "exit"  #: ``exit``: end the session; ``retry``: open the device again
    retry_s: float = 2.0  #: with ``retry``, seconds between attempts
    keep_audio: Path | None = None  #: also write the session's 16 kHz audio to this WAV

    def __post_init__(self) -> None:
        if self.on_device_lost not in ON_DEVICE_LOST:
            raise ValueError(f"on_device_lost must be one of {', '.join(ON_DEVICE_LOST)}, got {self.on_device_lost!r}")
        if not self.retry_s > 0:
            raise ValueError("retry_s must be positive")
        if self.keep_audio is not None and not self.keep_audio.parent.is_dir():
            raise ValueError(f"cannot keep the audio in {self.keep_audio}: no directory {self.keep_audio.parent}")


MicrophoneFactory = Callable[[CaptureSettings, bool], Microphone]
"""Opens the microphone; the flag is set when it opens it again after the device was lost."""


class ListenSession:
    """One microphone session feeding one stream of ``hub``. ``start``, then ``stop`` and ``join``."""

    def __init__(
        self,
        hub: Hub,
        settings: ListenSettings,
        emit: Callable[[str], None] | None = None,
        open_mic: MicrophoneFactory = open_microphone,
        classifier: FrameClassifier | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hub = hub
        self._emit = emit
        self.settings = settings
        self._open_mic = open_mic
        self._segmenter = Segmenter(settings.vad, classifier)
        self._clock = clock
        self._stop = threading.Event()
        self._mic: Microphone | None = None
        self._thread = threading.Thread(target=self._run, name="capture-segmenter", daemon=True)
        self._keep = bytearray()
        self._kept_samples = 0
        self.job: Job | None = None
        self.device: InputDevice | None = None  #: the device, once open
        self.printer: LinePrinter | None = None  #: with ``emit``: the lines, as they come
        self.started: float | None = None  #: monotonic time the first audio arrived
        self.appended: dict[int, float] = {}  #: chunk seq -> monotonic time it was handed to the hub
        self.overflows = 0  #: overflowed blocks, over every device opened (see hub.capture)
        self.dropped = 0  #: blocks dropped on a full queue
        self.lost: list[str] = []  #: why the device went away, each time it did
        self.ended = ""  #: why the session ended before it was stopped ("" if it was stopped)

    def start(self) -> Job:
        """Open the device (DeviceError if it cannot be), open the stream, start the thread."""
        self._mic = self._open_mic(self.settings.capture, False)
        self.device = self._mic.device
        name = self.settings.name or f"{self._mic.device.name} {time.strftime('%Y-%m-%d %H:%M')}"
        self.job = self.hub.open_stream(name)
        if self._emit is not None:
            self.printer = LinePrinter(self.hub, self.job.id, self._emit, self._clock)
            self.hub.add_listener(self.printer)
        self.hub.add_listener(self._on_job)
        self._thread.start()
        return self.job

    def stop(self) -> None:
        """Finish: send the utterance in progress, close the stream. Safe from a signal handler."""
        self._stop.set()
        mic = self._mic
        if mic is not None:
            mic.interrupt()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True once it has ended (the stream is then closed)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def overruns(self) -> int:
        mic = self._mic
        return self.overflows + self.dropped + (mic.overruns if mic is not None else 0)

    def _on_job(self, job: Job) -> None:
        """A job listener: a stream that failed as a whole (no node in time) ends the session now."""
        if self.job is not None and job.id == self.job.id and job.state is JobState.FAILED and not self._stop.is_set():
            self.ended = f"stream {job.id} failed: {job.error}"
            _LOGGER.error("%s; the session ends", self.ended)
            self.stop()

    # -- the capture-segmenter thread --------------------------------------------------------
    def _run(self) -> None:
        assert self.job is not None
        try:
            while True:
                mic = self._mic
                if mic is None:
                    break
                try:
                    pcm = mic.read()
                except DeviceLost as exc:
                    if not self._device_lost(str(exc)):
                        break
                    continue
                if pcm is None:
                    break
                if self.started is None:
                    self.started = self._clock()
                self._keep_audio(pcm)
                self._send(self._segmenter.feed(pcm))
            self._send(self._segmenter.flush())
        except StreamClosed as exc:
            self.ended = str(exc)
            _LOGGER.error("%s; the session ends", exc)
        except Exception as exc:  # noqa: BLE001 - log it, then close the stream so that the text so far is kept
            self.ended = f"internal error: {exc}"
            _LOGGER.exception("the capture session failed; closing it with the text so far")
        finally:
            self._close_mic()
            self._keep_audio(b"", flush=True)
            self.hub.close_stream(self.job)

    def _send(self, utterances: list[Utterance]) -> None:
        assert self.job is not None
        for u in utterances:
            self.appended[append_utterance(self.hub, self.job, u).seq] = self._clock()

    def _device_lost(self, why: str) -> bool:
        """Log, keep the text so far, and open the device again if so configured. True to go on."""
        _LOGGER.error("%s; the text so far is kept", why)
        self.lost.append(why)
        self._send(self._segmenter.flush())
        self._close_mic()
        if self.settings.on_device_lost == "exit" or self._stop.is_set():
            self.ended = why
            return False
        gone = self._clock()
        while not self._stop.wait(self.settings.retry_s):
            try:
                mic = self._open_mic(self.settings.capture, True)
            except DeviceError as exc:
                _LOGGER.warning("still no input device: %s; trying again in %g s", exc, self.settings.retry_s)
                continue
            self._mic = mic
            if self._stop.is_set():  # stopped while it opened: stop() missed this microphone
                mic.interrupt()
            away_ms = int((self._clock() - gone) * 1000)
            _LOGGER.warning("input device %s is back after %.1f s", mic.device, away_ms / 1000)
            self._send(self._segmenter.skip(away_ms))
            self._keep_audio(b"", flush=True)  # what came before the gap, at its place
            self._kept_samples = self._segmenter.position_ms * SAMPLE_RATE // 1000
            return True
        return False

    def _close_mic(self) -> None:
        mic, self._mic = self._mic, None
        if mic is not None:
            mic.close()
            self.overflows += mic.overflows
            self.dropped += mic.dropped

    def _keep_audio(self, frame: bytes, flush: bool = False) -> None:
        if self.settings.keep_audio is None:
            return
        self._keep += frame
        if self._keep and (flush or len(self._keep) >= _KEEP_EVERY):
            write_wav_at(self.settings.keep_audio, self._kept_samples, bytes(self._keep))
            self._kept_samples += len(self._keep) // 2
            self._keep.clear()


def append_utterance(hub: Hub, job: Job, utterance: Utterance) -> ChunkWork:
    """Hand one utterance to a stream job as its next chunk (raises :class:`~hub.service.StreamClosed`)."""
    audio = AudioSegment(utterance.audio, sample_width=2, frame_rate=SAMPLE_RATE, channels=1)
    return hub.append(job, utterance.spec, audio)


class LinePrinter:
    """A job listener that emits ``[MM:SS-MM:SS] text`` per chunk of one stream, in order, once ready.

    A chunk is ready when it and every chunk before it are finished; a chunk cut for length also
    waits for the next piece, which decides where the words of their overlap go. A chunk with no
    speech prints nothing; a failed one prints ``[gap MM:SS-MM:SS: reason]``.
    """

    def __init__(self, hub: Hub, job_id: str, emit: Callable[[str], None], clock: Callable[[], float] = time.monotonic):
        self._hub = hub
        self._job_id = job_id
        self._emit = emit
        self._clock = clock
        self._lock = threading.Lock()
        self._next = 0
        self.printed: dict[int, float] = {}  #: chunk seq -> monotonic time its line (or its turn) came
        self.first_text: float | None = None  #: monotonic time of the first line of text
        self.lines = 0

    def __call__(self, job: Job) -> None:
        if job.id != self._job_id:
            return
        with self._lock:
            current = self._hub.job(self._job_id)  # a copy, read under the hub's lock
            if current is None:
                return
            chunks = current.chunks
            ready = self._next
            while ready < len(chunks) and _finished(chunks, ready):
                ready += 1
            if ready == self._next:
                return
            by_seq: dict[int, list[str]] = {}
            for seg in segments(current):
                if self._next <= seg.seq < ready and (text := line(seg)):  # words, or a failed chunk's marked gap
                    by_seq.setdefault(seg.seq, []).append(text)
            now = self._clock()
            for seq in range(self._next, ready):
                self.printed[seq] = now
                parts = by_seq.get(seq)
                if not parts:
                    continue
                spec = chunks[seq].spec
                if chunks[seq].state is ChunkState.FAILED:
                    self._emit(parts[0])
                else:
                    self._emit(f"[{clock(spec.start_ms / 1000)}-{clock(spec.end_ms / 1000)}] {' '.join(parts)}")
                    if self.first_text is None:
                        self.first_text = now
                self.lines += 1
            self._next = ready


def _finished(chunks: list, seq: int) -> bool:
    done = (ChunkState.DONE, ChunkState.FAILED)
    if chunks[seq].state not in done:
        return False
    if chunks[seq].spec.tail_ms:  # cut for length: the next piece decides the overlap's words
        return seq + 1 < len(chunks) and chunks[seq + 1].state in done
    return True


@dataclass(frozen=True)
class Latency:
    """How fast text came, from a session and its printer."""

    first_text_s: float | None  #: from the first audio to the first line of text
    after_utterance_s: list[float]  #: per chunk: from the end of its span (in real time) to its line

    @staticmethod
    def of(session: ListenSession) -> Latency:
        printer = session.printer
        if session.started is None or session.job is None or printer is None:
            return Latency(None, [])
        job = session.hub.job(session.job.id)
        first_line = printer.first_text
        after = []
        for seq, at in sorted(printer.printed.items()):
            if job is not None and seq < len(job.chunks):
                after.append(round(at - (session.started + job.chunks[seq].spec.end_ms / 1000), 3))
        first = None if first_line is None else round(first_line - session.started, 3)
        return Latency(first, after)

    def describe(self) -> str:
        first = "no text" if self.first_text_s is None else f"first text after {self.first_text_s:.1f} s"
        if not self.after_utterance_s:
            return first
        return (f"{first}; each line {statistics.median(self.after_utterance_s):.1f} s (median), "
                f"{max(self.after_utterance_s):.1f} s (max) after its utterance ended")


def add_capture_args(parser: argparse.ArgumentParser) -> None:
    """The flags of a microphone session, shared by ``hub listen`` and ``dashboard --listen``."""
    parser.add_argument("--device", default=env_default("--device"),
                        help="input device: index, name or a unique part of it (default: the system's default input; "
                             "env EDGESCRIBE_DEVICE)")
    parser.add_argument("--samplerate", type=int, default=None, help="open the device at this rate, Hz (default: its own)")
    parser.add_argument("--vad", choices=VADS, default=env_default("--vad", "webrtc"),
                        help="voice activity detector: webrtc or energy (docs/capture.md)")
    parser.add_argument("--vad-aggressiveness", type=int, default=VadSettings.aggressiveness, choices=(0, 1, 2, 3),
                        help="webrtc: 0 keeps the most audio as speech, 3 the least (default %(default)s)")
    parser.add_argument("--max-utterance", type=float, default=VadSettings.max_utterance_s,
                        help="cut speech without a pause after this many seconds (with --chunk-overlap), at most --max-chunk less the overlap")
    parser.add_argument("--end-pause", type=float, default=VadSettings.end_silence_ms / 1000,
                        help="the pause that ends an utterance, seconds (default %(default)s)")
    parser.add_argument("--on-device-lost", choices=ON_DEVICE_LOST, default=env_default("--on-device-lost", "exit"),
                        help="when the device goes away: end the session (exit) or wait for it (retry)")
    parser.add_argument("--retry-interval", type=float, default=2.0, help="with --on-device-lost retry, seconds between tries")
    parser.add_argument("--keep-audio", type=Path, metavar="WAV", default=None,
                        help="also keep the session's audio (16 kHz mono) in this WAV; otherwise none is kept")


def listen_settings(args: argparse.Namespace) -> ListenSettings:
    """ListenSettings from :func:`add_capture_args` and ``--chunk-overlap``/``--max-chunk`` (ValueError if invalid)."""
    if args.max_utterance + args.chunk_overlap > args.max_chunk:  # a piece carries the overlap before it too
        raise ValueError(
            f"--max-utterance ({args.max_utterance:g} s) plus --chunk-overlap ({args.chunk_overlap:g} s) must not exceed"
            f" --max-chunk ({args.max_chunk:g} s)"
        )
    return ListenSettings(
        capture=CaptureSettings(device=args.device, samplerate=args.samplerate),
        vad=VadSettings(vad=args.vad, aggressiveness=args.vad_aggressiveness, max_utterance_s=args.max_utterance,
                        overlap_s=args.chunk_overlap, end_silence_ms=int(round(args.end_pause * 1000))),
        on_device_lost=args.on_device_lost,
        retry_s=args.retry_interval,
        keep_audio=args.keep_audio,
    )
