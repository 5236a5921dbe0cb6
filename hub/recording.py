"""A job's recording, read by range: from a file on disk, so that the hub never holds it whole.

A two-hour recording is 230 MB of 16 kHz mono 16-bit PCM. The hub used to hold all of it in
memory for the job's life; now :func:`hub.audio.load_recording` has ffmpeg decode it to a
file, and a :class:`Recording` reads only what is asked for: a chunk's samples when the chunk is
sent, one-minute blocks when pauses are looked for (:mod:`hub.pauses`). Reads use ``pread`` on
a descriptor held open, so they are safe from any thread, and the file (a temporary one is
*owned*) is deleted when the recording is closed or collected, even if a path was unlinked
first (the descriptor keeps the data readable).

A recording can also wrap PCM in memory (:meth:`Recording.from_segment`), for callers that
already have a :class:`pydub.AudioSegment`.

Slicing works as on an AudioSegment, in milliseconds: ``recording[1000:3000]`` is an
AudioSegment of those two seconds, so code written for segments works unchanged.
"""

from __future__ import annotations

import os
import struct
import weakref
from collections.abc import Iterator
from pathlib import Path

from pydub import AudioSegment

from hub.pauses import pcm_blocks

SAMPLE_RATE = 16000
SAMPLE_WIDTH = 2
_BLOCK_FRAMES = SAMPLE_RATE * 60


def _close(fd: int | None, path: Path | None) -> None:
    if fd is not None:
        os.close(fd)
    if path is not None:
        path.unlink(missing_ok=True)


def wav_header(frames: int, rate: int = SAMPLE_RATE) -> bytes:
    """The 44-byte header of a 16-bit mono PCM WAV of ``frames`` samples."""
    size = frames * SAMPLE_WIDTH
    return (
        b"RIFF" + struct.pack("<I", 36 + size) + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * SAMPLE_WIDTH, SAMPLE_WIDTH, 16)
        + b"data" + struct.pack("<I", size)
    )


def _wav_data(path: Path) -> tuple[int, int, int]:
    """(offset of the samples, their byte count, sample rate) of a 16-bit mono PCM WAV."""
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise ValueError(f"{path} is not a WAV file")
        rate = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise ValueError(f"{path} has no data chunk")
            kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if kind == b"fmt ":
                fmt = f.read(size)
                _, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
                if channels != 1 or bits != 16:
                    raise ValueError(f"{path} is not 16-bit mono")
                f.seek(size % 2, os.SEEK_CUR)
            elif kind == b"data":
                if rate is None:
                    raise ValueError(f"{path} has no format chunk before its data")
                offset = f.tell()
                available = os.fstat(f.fileno()).st_size - offset
                return offset, min(size, available) // SAMPLE_WIDTH * SAMPLE_WIDTH, rate
            else:
                f.seek(size + size % 2, os.SEEK_CUR)


class Recording:
    """16-bit mono PCM, in a file (read by range) or in memory."""

    def __init__(self, frames: int, frame_rate: int = SAMPLE_RATE, *, data: bytes | None = None,
                 path: Path | None = None, offset: int = 0, owned: bool = False) -> None:
        self.frame_rate = frame_rate
        self.frames = frames
        self._data = data
        self._offset = offset
        self._fd = os.open(path, os.O_RDONLY) if path is not None else None
        self.path = path
        self._finalizer = weakref.finalize(self, _close, self._fd, path if owned else None)

    @classmethod
    def from_segment(cls, segment: AudioSegment) -> Recording:
        """A segment's PCM (16-bit mono), in memory, not copied."""
        if segment.channels != 1 or segment.sample_width != SAMPLE_WIDTH:
            raise ValueError("a recording is 16-bit mono")
        return cls(int(segment.frame_count()), segment.frame_rate, data=segment.raw_data)

    @classmethod
    def open_pcm(cls, path: Path, frame_rate: int = SAMPLE_RATE, owned: bool = False) -> Recording:
        """Raw s16le samples in a file; ``owned``: delete the file on :meth:`close`."""
        return cls(path.stat().st_size // SAMPLE_WIDTH, frame_rate, path=path, owned=owned)

    @classmethod
    def open_wav(cls, path: Path, owned: bool = False) -> Recording:
        """A 16-bit mono PCM WAV file, read by range."""
        offset, size, rate = _wav_data(path)
        return cls(size // SAMPLE_WIDTH, rate, path=path, offset=offset, owned=owned)

    # -- reading ---------------------------------------------------------------------------
    def pcm(self, first: int, end: int) -> bytes:
        """Samples ``[first, end)`` (clamped to the recording) as bytes."""
        first, end = max(0, first), min(end, self.frames)
        if end <= first:
            return b""
        if self._data is not None:
            return self._data[first * SAMPLE_WIDTH : end * SAMPLE_WIDTH]
        if self._fd is None:
            raise ValueError("recording is closed")
        size = (end - first) * SAMPLE_WIDTH
        data = os.pread(self._fd, size, self._offset + first * SAMPLE_WIDTH)
        if len(data) != size:
            raise OSError(f"short read from {self.path}: {len(data)} of {size} bytes")
        return data

    def blocks(self) -> Iterator[bytes | memoryview]:
        """Every sample, in one-minute blocks (for a pass such as :func:`hub.pauses.scan`)."""
        if self._data is not None:
            yield from pcm_blocks(self._data, _BLOCK_FRAMES)
            return
        for first in range(0, self.frames, _BLOCK_FRAMES):
            yield self.pcm(first, first + _BLOCK_FRAMES)

    def frame_count(self) -> int:
        return self.frames

    def __len__(self) -> int:
        """Length in milliseconds, rounded as pydub does."""
        return round(1000 * (self.frames / self.frame_rate))

    def __getitem__(self, span: slice) -> AudioSegment:
        """``recording[start_ms:end_ms]`` as an AudioSegment; like pydub, a span past the end is cut there."""
        if not isinstance(span, slice) or span.step is not None:
            raise TypeError("a recording is sliced by [start_ms:end_ms]")
        length = len(self)
        start = min(span.start if span.start is not None else 0, length)
        end = min(span.stop if span.stop is not None else length, length)
        first, last = start * self.frame_rate // 1000, end * self.frame_rate // 1000
        data = self.pcm(first, last)
        data += b"\0" * ((max(0, last - first) * SAMPLE_WIDTH) - len(data))  # pydub pads the last ms
        return AudioSegment(data=data, sample_width=SAMPLE_WIDTH, frame_rate=self.frame_rate, channels=1)

    # -- writing and closing ---------------------------------------------------------------
    def write_wav(self, path: Path) -> None:
        """Write the whole recording as a WAV file, a block at a time."""
        with open(path, "wb") as out:
            out.write(wav_header(self.frames, self.frame_rate))
            if self._data is not None:
                out.write(self._data[: self.frames * SAMPLE_WIDTH])
                return
            assert self.path is not None
            with open(self.path, "rb") as src:
                src.seek(self._offset)
                left = self.frames * SAMPLE_WIDTH
                while left:
                    block = src.read(min(left, 1 << 20))
                    if not block:
                        raise OSError(f"{self.path} ended early")
                    out.write(block)
                    left -= len(block)

    def close(self) -> None:
        """Release the descriptor (and delete an owned file) now rather than when collected."""
        self._finalizer()
        self._fd = None
