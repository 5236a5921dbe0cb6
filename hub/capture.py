"""The microphone: a PortAudio input stream (sounddevice) delivered as 16 kHz mono 16-bit PCM.

The audio callback runs on PortAudio's own thread and **only enqueues**: it copies the block
into a :class:`queue.SimpleQueue` (whose ``put`` never blocks) and counts what goes wrong. It
never waits, logs or resamples. Two things are counted, never silent:

- ``overflows``: blocks that PortAudio flagged ``input_overflow`` (the device's buffer ran over
  before the callback ran: samples lost there, how many is not known);
- ``dropped``: blocks the callback threw away because ``queue_s`` of audio was already waiting
  (the reader fell behind). It then queues their number before the next block it keeps, and
  :meth:`Microphone.read` puts as much silence in their place, so that the stream's clock stays
  true.

:meth:`Microphone.read` runs on the reader's thread: it takes one block, mixes the channels down
and resamples it to 16 kHz with soxr's streaming resampler (devices at 44.1 or 48 kHz, stereo,
are the usual case). A device that goes away (a USB microphone unplugged, the sound server gone)
ends the stream: PortAudio calls ``finished_callback``, or no block comes for ``stall_s``; either
way ``read`` raises :class:`DeviceLost`.

sounddevice scans the devices once, when it is imported (hence the import inside the functions:
PULSE_SERVER and friends must be set first); :func:`rescan` scans them again, for a device that
comes back.
"""

from __future__ import annotations

import logging
import math
import queue
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from hub.audio import SAMPLE_RATE

_LOGGER = logging.getLogger(__name__)

_STOP = object()  # queued by interrupt(): the reader should stop
_LOST = object()  # queued by PortAudio's finished_callback: the stream ended by itself


class DeviceError(RuntimeError):
    """No such input device, or it cannot be opened; the message is one line and names the choices."""


class DeviceLost(DeviceError):
    """The device stopped delivering audio in the middle of a session."""


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    hostapi: str
    channels: int  #: most input channels
    default_rate: float  #: Hz

    def __str__(self) -> str:
        return f"{self.index} {self.name!r}"

    def describe(self) -> str:
        return f"{self.index}: {self.name} ({self.hostapi}, {self.channels} in, {self.default_rate:g} Hz)"


@dataclass(frozen=True)
class CaptureSettings:
    """Which device and how to read it.

    Attributes:
        device: an index, an exact name or a unique part of a name; None for the default input.
        samplerate: Hz to open the device at; None for the device's default rate.
        block_ms: audio per callback, ms.
        queue_s: audio the queue holds for a reader that falls behind before blocks are dropped, s.
        stall_s: no block for this long means the device is gone, s.
    """

    device: str | None = None
    samplerate: int | None = None
    block_ms: int = 30
    queue_s: float = 10.0
    stall_s: float = 2.0

    def __post_init__(self) -> None:
        if self.samplerate is not None and not 8000 <= self.samplerate <= 192_000:
            raise ValueError(f"the sample rate must be between 8000 and 192000 Hz, got {self.samplerate}")
        if not 5 <= self.block_ms <= 500:
            raise ValueError(f"block_ms must be between 5 and 500, got {self.block_ms}")
        for name in ("queue_s", "stall_s"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.stall_s * 1000 <= 2 * self.block_ms:
            raise ValueError("stall_s must be longer than two blocks")


def sounddevice() -> ModuleType:
    """The sounddevice module; DeviceError if PortAudio is missing."""
    try:
        import sounddevice as sd
    except OSError as exc:  # libportaudio2 is not installed
        raise DeviceError(f"cannot load PortAudio ({exc}); install it: apt-get install libportaudio2") from None
    return sd


def rescan(sd: ModuleType) -> None:
    """Make PortAudio look for devices again (after one was unplugged or plugged in)."""
    sd._terminate()
    sd._initialize()


def list_inputs(sd: ModuleType) -> list[InputDevice]:
    """Every device with an input channel, by index."""
    hostapis = sd.query_hostapis()
    return [
        InputDevice(d["index"], d["name"], hostapis[d["hostapi"]]["name"], d["max_input_channels"], d["default_samplerate"])
        for d in sd.query_devices()
        if d["max_input_channels"] > 0
    ]


def default_input(sd: ModuleType) -> int | None:
    index = sd.default.device[0]
    return None if index is None or index < 0 else int(index)


NO_INPUT = ("no sound input device found (PortAudio sees none); plug in a microphone, "
            "or check that this user may use the sound devices (group audio)")


def find_input(wanted: str | None, devices: list[InputDevice], default: int | None) -> InputDevice:
    """The device ``wanted`` names (see :class:`CaptureSettings`). DeviceError, naming the choices, if none."""
    choices = "; ".join(str(d) for d in devices)
    if not devices:
        raise DeviceError(NO_INPUT)
    if wanted is None:
        match = [d for d in devices if d.index == default] or devices[:1]
        return match[0]
    if wanted.strip().isdigit():
        match = [d for d in devices if d.index == int(wanted)]
    else:
        match = [d for d in devices if d.name == wanted]
        if not match:
            match = [d for d in devices if wanted.lower() in d.name.lower()]
    if len(match) == 1:
        return match[0]
    if match:
        raise DeviceError(f"input device {wanted!r} is ambiguous: {'; '.join(str(d) for d in match)}; "
                          f"give its index or its whole name")
    raise DeviceError(f"no input device {wanted!r}; choose one of: {choices}")


class Resampler:
    """Interleaved 16-bit blocks at ``rate`` Hz with ``channels`` channels -> 16 kHz mono 16-bit, streaming."""

    def __init__(self, rate: int, channels: int) -> None:
        self.rate = rate
        self.channels = channels
        self._soxr = None
        if rate != SAMPLE_RATE:
            import soxr

            self._soxr = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def __call__(self, pcm: bytes, last: bool = False) -> bytes:
        samples = np.frombuffer(pcm, dtype="<i2")
        if self.channels == 1 and self._soxr is None:
            return pcm
        mono = samples.reshape(-1, self.channels).astype(np.float32).mean(axis=1)
        if self._soxr is not None:
            mono = self._soxr.resample_chunk(mono, last=last)
        return np.clip(np.rint(mono), -32768, 32767).astype("<i2").tobytes()


class Microphone:
    """An open input stream. Made by :func:`open_microphone`; read it from one thread."""

    def __init__(self, sd: ModuleType, device: InputDevice, settings: CaptureSettings) -> None:
        self.device = device
        self.rate = int(settings.samplerate or device.default_rate)
        self.channels = min(2, device.channels)
        self.overflows = 0  #: blocks PortAudio flagged as overflowed (written by the callback only)
        self.dropped = 0  #: blocks thrown away on a full queue (written by the callback only)
        self._settings = settings
        self._block = max(1, self.rate * settings.block_ms // 1000)
        self._max_blocks = max(2, math.ceil(settings.queue_s * 1000 / settings.block_ms))
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._gap = 0  # blocks dropped since the last one queued (the callback's own)
        self._resample = Resampler(self.rate, self.channels)
        try:
            self._stream = sd.RawInputStream(
                samplerate=self.rate, blocksize=self._block, device=device.index, channels=self.channels,
                dtype="int16", callback=self._callback, finished_callback=self._finished,
            )
            self._stream.start()
        except sd.PortAudioError as exc:
            raise DeviceError(f"cannot open input device {device} at {self.rate} Hz, {self.channels} channel(s): "
                              f"{_reason(exc)}; is another program using it? (--samplerate may help)") from None
        _LOGGER.info("recording from %s at %d Hz, %d channel(s), blocks of %d ms",
                     device.describe(), self.rate, self.channels, settings.block_ms)

    # -- PortAudio's thread: enqueue and count, nothing else -------------------------------
    def _callback(self, indata: Any, frames: int, time: Any, status: Any) -> None:
        if status.input_overflow:
            self.overflows += 1
        if self._queue.qsize() >= self._max_blocks:
            self.dropped += 1
            self._gap += 1
            return
        if self._gap:
            self._queue.put(self._gap)
            self._gap = 0
        self._queue.put(bytes(indata))

    def _finished(self) -> None:
        self._queue.put(_LOST)

    # -- the reader's thread ---------------------------------------------------------------
    def read(self) -> bytes | None:
        """The next block as 16 kHz mono PCM (maybe empty while the resampler fills); None once interrupted.

        Raises :class:`DeviceLost` when the device stops delivering.
        """
        try:
            item = self._queue.get(timeout=self._settings.stall_s)
        except queue.Empty:
            raise DeviceLost(f"input device {self.device} sent no audio for {self._settings.stall_s:g} s") from None
        if item is _STOP:
            return None
        if item is _LOST:
            raise DeviceLost(f"input device {self.device} stopped (unplugged, or its sound server went away)")
        if isinstance(item, int):  # blocks dropped here: as much silence
            item = bytes(2 * self.channels * self._block * item)
        return self._resample(item)

    def interrupt(self) -> None:
        """Make :meth:`read` return None. Safe from a signal handler and from any thread."""
        self._queue.put(_STOP)

    def close(self) -> None:
        try:
            self._stream.abort()
            self._stream.close()
        except Exception as exc:  # noqa: BLE001 - a device that is gone may fail to close; nothing to keep
            _LOGGER.debug("closing %s: %s", self.device, exc)

    @property
    def overruns(self) -> int:
        """Overflowed plus dropped blocks."""
        return self.overflows + self.dropped


def open_microphone(settings: CaptureSettings, again: bool = False, sd: ModuleType | None = None) -> Microphone:
    """Find the device of ``settings`` and start recording from it. DeviceError (one line) if it cannot.

    ``again``: look for devices anew first (the device was lost and may be back, under another index).
    """
    sd = sd or sounddevice()
    if again:
        rescan(sd)
    device = find_input(settings.device, list_inputs(sd), default_input(sd))
    return Microphone(sd, device, settings)


def _reason(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
