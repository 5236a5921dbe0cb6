"""Pause detection in one streaming pass: the same pauses as ``pydub.silence.detect_silence``, fast.

:func:`hub.chunking.plan_chunks` cuts at pauses. pydub's ``detect_silence`` finds them by taking
the RMS of a ``min_silence_len`` window at every ``seek_step`` ms, each window sliced and summed
anew: on a two-hour recording 720,000 windows of 300 ms, 9-14 s of CPU, and the whole recording
in memory. A profile of the hub (docs/benchmarks.md) showed it as nine tenths of the hub's work.

Here the recording is read once, in blocks (from memory or from a file, see
:class:`hub.recording.Recording`), into the exact sum of squares of every 10 ms step
(numpy, int64). The sum of a window that starts on a step is then a difference of two prefix
sums, and its RMS is computed as audioop does (the sum divided by the sample count in double
precision, square root, truncated), so the pauses are pydub's, window for window. The few
windows that do not start on a step or run past the last sample (pydub's extra last window, and
its zero padding at the end) are computed directly from their samples.
"""

from __future__ import annotations

import audioop
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from pydub.utils import db_to_float, ratio_to_db

SAMPLE_WIDTH = 2
MAX_AMPLITUDE = 32768.0  #: pydub's ``max_possible_amplitude`` of 16-bit audio
_READ_FRAMES = 16000 * 60  # samples per block read: one minute at 16 kHz (1.9 MB)


@dataclass(frozen=True)
class Loudness:
    """Sums of squares of a recording's samples, per ``step_ms`` step, and over the whole."""

    frame_rate: int
    frames: int
    step_ms: int
    steps: np.ndarray  #: int64 sum of squares of each whole step
    total: int  #: sum of squares of every sample

    @property
    def length_ms(self) -> int:
        """pydub's ``len(segment)``."""
        return round(1000 * (self.frames / self.frame_rate))

    @property
    def rms(self) -> int:
        """pydub's ``segment.rms`` (audioop's truncated root mean square)."""
        return int((self.total / self.frames) ** 0.5) if self.frames else 0

    @property
    def dbfs(self) -> float:
        rms = self.rms
        return ratio_to_db(rms / MAX_AMPLITUDE) if rms else -float("inf")


def scan(blocks: Iterable[bytes | memoryview], frame_rate: int, step_ms: int) -> Loudness:
    """One pass over 16-bit mono PCM given in blocks of any size."""
    step = frame_rate * step_ms // 1000
    if step <= 0 or step * 1000 != frame_rate * step_ms:
        raise ValueError(f"a step of {step_ms} ms is not a whole number of samples at {frame_rate} Hz")
    sums: list[np.ndarray] = []
    carry = np.zeros(0, dtype=np.int64)
    frames = total = 0
    for block in blocks:
        samples = np.frombuffer(block, dtype="<i2").astype(np.int64)
        frames += len(samples)
        squares = np.concatenate((carry, samples * samples)) if len(carry) else samples * samples
        whole = len(squares) // step * step
        sums.append(squares[:whole].reshape(-1, step).sum(axis=1))
        carry = squares[whole:]
        total += int(squares[:whole].sum())
    total += int(carry.sum())
    steps = np.concatenate(sums) if sums else np.zeros(0, dtype=np.int64)
    return Loudness(frame_rate, frames, step_ms, steps, total)


def pcm_blocks(data: bytes | memoryview, frames_per_block: int = _READ_FRAMES) -> Iterator[memoryview]:
    """In-memory PCM as blocks, without copying it."""
    view = memoryview(data)
    size = frames_per_block * SAMPLE_WIDTH
    for start in range(0, len(view), size):
        yield view[start : start + size]


def detect_silence(
    loudness: Loudness, read, min_silence_len: int, silence_thresh: float, seek_step: int
) -> list[tuple[int, int]]:
    """``pydub.silence.detect_silence`` on the scanned recording; ``read(start, end)`` gives samples as bytes.

    ``seek_step`` must be the scan's step. ``silence_thresh`` is in dBFS, as for pydub.
    """
    if seek_step != loudness.step_ms:
        raise ValueError("seek_step must be the step the recording was scanned with")
    seg_len = loudness.length_ms
    if seg_len < min_silence_len:
        return []
    threshold = db_to_float(silence_thresh) * MAX_AMPLITUDE
    rate = loudness.frame_rate
    window = rate * min_silence_len // 1000
    last_start = seg_len - min_silence_len
    starts_ms = np.arange(0, last_start + 1, seek_step, dtype=np.int64)
    # windows wholly inside the scanned steps: prefix sums; their count of samples is exact
    inside = 0
    if min_silence_len % seek_step == 0:
        per = min_silence_len // seek_step
        prefix = np.concatenate(([0], np.cumsum(loudness.steps)))
        inside = max(0, min(len(starts_ms), len(loudness.steps) - per + 1))
        sums = prefix[per : per + inside] - prefix[:inside]
        rms = np.sqrt(sums.astype(np.float64) / window).astype(np.int64)
        silent = list(starts_ms[:inside][rms <= threshold])
    else:
        silent = []
    extra = [int(s) for s in starts_ms[inside:]]
    if last_start % seek_step:
        extra.append(last_start)
    for start_ms in extra:  # near the end: pydub pads a window that runs past the last sample with zeros
        first = start_ms * rate // 1000
        data = read(first, min(first + window, loudness.frames))
        data += b"\0" * (window * SAMPLE_WIDTH - len(data))
        if audioop.rms(data, SAMPLE_WIDTH) <= threshold:
            silent.append(start_ms)
    return _ranges([int(s) for s in silent], min_silence_len, seek_step)


def _ranges(starts: list[int], min_silence_len: int, seek_step: int) -> list[tuple[int, int]]:
    """pydub's merge of silent window starts into ``(start_ms, end_ms)`` ranges."""
    if not starts:
        return []
    out = []
    range_start = prev = starts[0]
    for start in starts[1:]:
        if start != prev + seek_step and start > prev + min_silence_len:
            out.append((range_start, prev + min_silence_len))
            range_start = start
        prev = start
    out.append((range_start, prev + min_silence_len))
    return out
