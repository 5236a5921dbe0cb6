"""Voice activity: cutting a live 16 kHz mono stream into utterances, one chunk each.

Pure and single-threaded: :class:`Segmenter` takes 30 ms frames (:data:`FRAME_BYTES` of 16-bit PCM)
one at a time and returns each utterance as soon as the speaker pauses. Which frames are speech
comes from a frame classifier: WebRTC's VAD (``webrtc``, the default) or a loudness test against a
running noise floor (``energy``, no dependency). Why, with measurements: docs/capture.md.

The rules, in frames of :data:`FRAME_MS`:

1. **Onset.** While idle, the last ``pad_ms`` of frames are kept. When at least ``start_ratio`` of
   them are speech, an utterance opens at the start of that window: the pre-roll keeps the
   speech's first syllable. It never starts before the previous utterance ended.
2. **End.** An utterance ends once ``end_ratio`` of the last ``end_silence_ms`` are not speech;
   its span ends there, with that pause in it. Opening needs a denser run of speech than staying
   open does (hysteresis), so a short pause inside a sentence does not cut it, nor does a
   click open one.
3. **Too little speech.** An utterance with fewer than ``min_speech_ms`` of speech frames (a
   cough, a door) is dropped.
4. **Maximum length with overlap.** When an utterance reaches ``max_utterance_s`` without a
   pause, it is cut at its quietest frame in ``[start + 0.6 max, end - overlap]``, and the two
   pieces hear ``overlap_s`` across the cut (``ChunkSpec.tail_ms`` / ``lead_ms``), as
   :mod:`hub.chunking` does for a hard cut; :mod:`hub.merge` keeps each word there once. The
   piece is returned at once: text keeps coming during a long monologue. The rest of the
   utterance is always returned later, even if it turns out silent, so that the overlap has
   its other side.

Times are in the stream's own time: frame ``i`` covers ``[30 i, 30 i + 30)`` ms.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hub.audio import SAMPLE_RATE
from hub.chunking import ChunkSpec

_LOGGER = logging.getLogger(__name__)

FRAME_MS = 30  #: one of the frame lengths WebRTC's VAD takes (10, 20 or 30 ms)
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
FRAME_BYTES = 2 * FRAME_SAMPLES
VADS = ("webrtc", "energy")
_CUT_FROM = 0.6  #: a cut for length is searched from this fraction of max_utterance_s on

FrameClassifier = Callable[[bytes], bool]
"""Says whether one frame (:data:`FRAME_BYTES` of 16 kHz mono 16-bit PCM) is speech; may keep state."""


@dataclass(frozen=True)
class VadSettings:
    """How a live stream is cut into utterances (see the module docstring for each rule).

    Attributes:
        vad: ``webrtc`` (WebRTC's VAD, package ``webrtcvad-wheels``) or ``energy``.
        aggressiveness: WebRTC's mode, 0 (keeps most) to 3 (drops most non-speech).
        energy_margin_db: ``energy``: how far above the noise floor speech is, dB.
        pad_ms: onset window, which is also the pre-roll kept before speech, ms.
        start_ratio: fraction of the onset window that must be speech to open an utterance.
        end_silence_ms: the pause that ends an utterance, ms (most of the latency after speech).
        end_ratio: fraction of that pause that must be non-speech.
        min_speech_ms: utterances with less speech are dropped, ms.
        max_utterance_s: longest utterance before it is cut, seconds.
        overlap_s: audio both pieces hear across such a cut, seconds.
    """

    vad: str = "webrtc"
    aggressiveness: int = 2
    energy_margin_db: float = 12.0
    pad_ms: int = 300
    start_ratio: float = 0.6
    end_silence_ms: int = 800
    end_ratio: float = 0.9
    min_speech_ms: int = 240
    max_utterance_s: float = 15.0
    overlap_s: float = 1.0

    def __post_init__(self) -> None:
        if self.vad not in VADS:
            raise ValueError(f"unknown VAD {self.vad!r}; choose one of: {', '.join(VADS)}")
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"the VAD aggressiveness must be 0, 1, 2 or 3, got {self.aggressiveness!r}")
        for name in ("pad_ms", "end_silence_ms"):
            if getattr(self, name) < FRAME_MS:
                raise ValueError(f"{name} must be at least one frame ({FRAME_MS} ms)")
        if self.min_speech_ms < 0:
            raise ValueError("min_speech_ms must not be negative")
        for name in ("start_ratio", "end_ratio"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1]")
        if not (self.energy_margin_db > 0 and math.isfinite(self.energy_margin_db)):
            raise ValueError("energy_margin_db must be a positive number")
        if not (math.isfinite(self.max_utterance_s) and self.max_utterance_s >= 1):
            raise ValueError(f"the longest utterance must be at least 1 s, got {self.max_utterance_s!r}")
        if not 0 <= self.overlap_s <= (1 - _CUT_FROM) * self.max_utterance_s - FRAME_MS / 1000:
            raise ValueError(f"the overlap must be between 0 and {1 - _CUT_FROM:g} of the longest utterance")

    def frames(self, ms: float) -> int:
        """A duration in whole frames, at least one (rounded up)."""
        return max(1, math.ceil(ms / FRAME_MS - 1e-9))


class EnergyClassifier:
    """Speech where a frame is ``margin_db`` louder than the noise floor, and not near digital silence.

    The floor follows the quietest frames: down at once, up slowly (a tenth of a dB per frame at
    most, about 3 dB/s), so that a long sentence does not become the floor.
    """

    _RISE_DB = 0.1  # per frame
    _QUIETEST_DB = -90.0  # digital silence counts as this loud
    _SPEECH_FROM_DB = -50.0  # nothing quieter is speech, whatever the floor

    def __init__(self, margin_db: float) -> None:
        self._margin_db = margin_db
        self._floor: float | None = None

    def __call__(self, frame: bytes) -> bool:
        db = level_db(frame)
        if self._floor is None or db < self._floor:
            self._floor = db
        else:
            self._floor += min(self._RISE_DB, db - self._floor)
        return db >= self._SPEECH_FROM_DB and db >= self._floor + self._margin_db


def level_db(frame: bytes) -> float:
    """A frame's RMS level in dB below full scale (digital silence: -90)."""
    samples = np.frombuffer(frame, dtype="<i2").astype(np.float64)
    rms = math.sqrt(float(np.mean(samples * samples))) if len(samples) else 0.0
    return max(EnergyClassifier._QUIETEST_DB, 20 * math.log10(rms / 32768)) if rms > 0 else EnergyClassifier._QUIETEST_DB


def make_classifier(settings: VadSettings) -> FrameClassifier:
    """The classifier ``settings.vad`` names. ValueError (one line) if its package is missing."""
    if settings.vad == "energy":
        return EnergyClassifier(settings.energy_margin_db)
    try:
        import webrtcvad  # package webrtcvad-wheels: prebuilt, no compiler needed
    except ImportError:
        raise ValueError("the webrtc VAD needs the package webrtcvad-wheels (pip install webrtcvad-wheels), "
                         "or choose --vad energy") from None
    vad = webrtcvad.Vad(settings.aggressiveness)
    return lambda frame: vad.is_speech(frame, SAMPLE_RATE)


@dataclass(frozen=True)
class Utterance:
    """One chunk of a live stream: its span and the audio of ``[spec.audio_start_ms, spec.audio_end_ms)``."""

    spec: ChunkSpec
    audio: bytes  #: 16 kHz mono 16-bit PCM, overlap included
    speech_ms: int  #: how much of its span the VAD took for speech


@dataclass
class _Frame:
    pcm: bytes
    level_db: float
    speech: bool


class Segmenter:
    """Turns 30 ms frames into :class:`Utterance` objects, following the module's rules."""

    def __init__(self, settings: VadSettings, classifier: FrameClassifier | None = None) -> None:
        self.settings = settings
        self._classify = classifier or make_classifier(settings)
        self._onset = settings.frames(settings.pad_ms)
        self._end = settings.frames(settings.end_silence_ms)
        self._max = settings.frames(settings.max_utterance_s * 1000)
        self._overlap = round(settings.overlap_s * 1000 / FRAME_MS)
        self._min_speech = math.ceil(settings.min_speech_ms / FRAME_MS)
        self._frames: list[_Frame] = []  # frames from index self._base on
        self._base = 0
        self._next = 0  # index of the next frame
        self._last_end = 0  # no utterance may start before this frame
        self._start: int | None = None  # first frame of the current piece's span; None while idle
        self._lead = 0  # frames the current piece hears before its span (after a cut for length)
        self._speech = 0  # speech frames in the current utterance (all its pieces)
        self._tail: deque[bool] = deque(maxlen=self._end)  # the current utterance's last frames: speech?
        self._pending = bytearray()  # PCM given to feed() that does not fill a frame yet

    @property
    def position_ms(self) -> int:
        """Where the next frame starts, in the stream's time."""
        return self._next * FRAME_MS

    @property
    def in_utterance(self) -> bool:
        return self._start is not None

    def push(self, frame: bytes) -> list[Utterance]:
        """Take the next frame; return the utterances (0, 1, rarely 2) that it completes."""
        if len(frame) != FRAME_BYTES:
            raise ValueError(f"a frame is {FRAME_BYTES} bytes ({FRAME_MS} ms at 16 kHz), got {len(frame)}")
        speech = bool(self._classify(frame))
        index = self._next
        self._next += 1
        self._frames.append(_Frame(frame, level_db(frame), speech))
        if self._start is None:
            window = self._frames[-self._onset:]
            if sum(f.speech for f in window) >= self.settings.start_ratio * self._onset:
                self._start = max(index + 1 - len(window), self._last_end)
                self._lead = 0
                self._speech = sum(f.speech for f in self._frames[self._start - self._base:])
                self._tail.clear()
            else:
                self._drop_before(max(self._last_end, self._next - self._onset))
            return []
        self._speech += speech
        self._tail.append(speech)
        if len(self._tail) == self._end and self._tail.count(False) >= self.settings.end_ratio * self._end:
            return self._close(self._next)
        if self._next - self._start >= self._max:
            return [self._cut_for_length()]
        return []

    def feed(self, pcm: bytes) -> list[Utterance]:
        """Take PCM of any length (16 kHz mono 16-bit); what does not fill a frame waits for the next call."""
        self._pending += pcm
        whole = len(self._pending) - len(self._pending) % FRAME_BYTES
        out: list[Utterance] = []
        for start in range(0, whole, FRAME_BYTES):
            out += self.push(bytes(self._pending[start:start + FRAME_BYTES]))
        del self._pending[:whole]
        return out

    def flush(self) -> list[Utterance]:
        """The end of the stream: the utterance in progress, if it holds enough speech."""
        return self._close(self._next) if self._start is not None else []

    def skip(self, ms: int) -> list[Utterance]:
        """A gap in the stream (the device was away for ``ms``): end the utterance, move the clock on."""
        out = self.flush()
        self._next += max(0, ms) // FRAME_MS
        self._last_end = self._next
        self._drop_before(self._next)
        return out

    # -- helpers ---------------------------------------------------------------------------
    def _close(self, end: int) -> list[Utterance]:
        assert self._start is not None
        start, lead, speech = self._start, self._lead, self._speech
        self._start, self._lead, self._speech = None, 0, 0
        self._last_end = end
        out = []
        if end <= start:  # the stream ended right at a cut for length: nothing after it
            pass
        elif lead or speech >= self._min_speech:  # the rest of a cut utterance always goes, for its overlap
            out.append(self._utterance(start, end, lead, 0, speech))
        else:
            _LOGGER.debug("dropped %d ms with %d ms of speech", (end - start) * FRAME_MS, speech * FRAME_MS)
        self._drop_before(end)
        return out

    def _cut_for_length(self) -> Utterance:
        assert self._start is not None
        low = self._start + math.ceil(_CUT_FROM * self._max)
        high = max(low, self._next - self._overlap)  # the cut needs overlap_s of audio after it
        quietest = min(range(low, high + 1), key=lambda i: (self._frames[i - self._base].level_db, -i))
        piece = self._utterance(self._start, quietest, self._lead, self._overlap, self._speech)
        self._start, self._lead = quietest, self._overlap
        self._speech = sum(f.speech for f in self._frames[quietest - self._base:])
        self._drop_before(quietest - self._overlap)
        return piece

    def _utterance(self, start: int, end: int, lead: int, tail: int, speech: int) -> Utterance:
        frames = self._frames[start - lead - self._base:end + tail - self._base]
        spec = ChunkSpec(start * FRAME_MS, end * FRAME_MS, lead * FRAME_MS, tail * FRAME_MS)
        return Utterance(spec, b"".join(f.pcm for f in frames), speech * FRAME_MS)

    def _drop_before(self, index: int) -> None:
        if index > self._base:
            del self._frames[: index - self._base]
            self._base = index
