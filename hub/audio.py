"""Loading recordings and normalising them to the hub's working format.

Everything downstream (chunking, the edge nodes' recognisers) works on
16 kHz, mono, 16-bit signed little-endian PCM, held in a
:class:`pydub.AudioSegment`.  :func:`load_audio` turns any file or byte
string that ffmpeg can decode (WAV, FLAC, MP3, OGG/Vorbis/Opus, WebM, M4A, ...)
into that format; :func:`wav_bytes` serialises a segment (typically one chunk)
into a self-contained WAV for the wire.

How decoding works, and why not ``AudioSegment.from_file``:

1. ``ffprobe`` (through :func:`pydub.utils.mediainfo_json`) checks that the
   input has an audio stream and, when the container states it, reads its
   duration.  A recording over ``max_duration_s`` is rejected here, before
   anything is decoded.
2. ffmpeg (``AudioSegment.converter``) decodes the first audio stream and
   resamples/downmixes it to 16 kHz mono s16le *inside ffmpeg*, writing raw
   PCM to a temporary file, which is read back in one allocation.  With a
   limit, ffmpeg is also told to stop one second after it (``-t``), so a file
   whose container does not state a duration (e.g. a browser's WebM) can
   never decode to much more than the limit; the decoded length is then
   checked too.

``AudioSegment.from_file`` is avoided on purpose: it decodes at the source
rate and channel count (a 2 h 48 kHz stereo WAV is ~1.4 GB, read whole into
memory by its WAV fast path) and holds several copies of the output.  Here
the peak is one copy of the 16 kHz mono PCM: 32 kB per second of audio,
~230 MB for two hours.  :func:`load_recording` keeps that copy in a file
instead, read by range (:mod:`hub.recording`): what the hub uses for files.

``bytes`` input is written to a private temporary file first rather than
piped: through a pipe (pydub's ``cache:pipe:0``) ffmpeg drops the last
~100 ms of a FLAC stream and cannot read an M4A whose index sits at the end.

Paths are passed to ffmpeg as ``file:<absolute path>`` so that a file name is
never read as an option (``-x.wav``) or a URL (``http:...``), and decoding
only allows the ``file`` protocol.
"""

from __future__ import annotations

import io
import logging
import math
import os
import struct
import subprocess
import tempfile
import wave
from pathlib import Path

from pydub import AudioSegment
from pydub.utils import mediainfo_json

from hub.recording import Recording, wav_header

_LOGGER = logging.getLogger(__name__)

SAMPLE_RATE = 16000
"""Sample rate of every segment returned by :func:`load_audio`, in Hz."""

_CHANNELS = 1
_SAMPLE_WIDTH = 2  # bytes per sample: 16-bit
_DECODE_SLACK_S = 1.0  # decode this many seconds past the limit to detect "over"


class AudioError(ValueError):
    """An input that is not usable audio; ``str(error)`` is a one-line reason for the user.

    Examples: ``file not found: x.wav``, ``not an audio file: report.pdf``,
    ``no audio in file: blank.wav``,
    ``recording is 7300 s long, over the 7200 s limit`` (that one a :class:`TooLong`).
    """


class TooLong(AudioError):
    """A recording over the ``max_duration_s`` limit of :func:`load_audio`."""


def load_audio(
    source: str | os.PathLike[str] | bytes,
    *,
    max_duration_s: float | None = None,
    name: str | None = None,
) -> AudioSegment:
    """Decode a recording and return it as 16 kHz, mono, 16-bit PCM.

    Args:
        source: a path to an audio file, or the encoded file's contents.
        max_duration_s: longest accepted recording, in seconds; ``None`` for no
            limit.  Checked from the container's stated duration before
            decoding, and again on the decoded audio (whose decoding stops
            one second past the limit).
        name: how to call the input in error messages; defaults to the path
            as given, or ``"uploaded data"`` for bytes (which are decoded
            from a temporary file, see the module docstring).

    Returns:
        The audio, at :data:`SAMPLE_RATE` Hz, one channel, 2 bytes per sample.

    Raises:
        AudioError: the file is missing, not a regular file, unreadable or
            empty; the data is not audio, corrupt, or holds no samples; or it
            is longer than ``max_duration_s`` (then a :class:`TooLong`).
        OSError: ffmpeg/ffprobe themselves cannot be run (a set-up problem,
            not the input's fault).
    """
    _check_limit(max_duration_s)

    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "uploaded data"
        if not len(source):
            raise AudioError(f"empty file: {label}")
        with tempfile.TemporaryDirectory(prefix="edgescribe-") as tmp:
            path = Path(tmp) / "input"
            path.write_bytes(source)
            return _load_file(path, label, max_duration_s)
    label = name or os.fspath(source)
    path = Path(os.fspath(source)).absolute()
    _check_file(path, label)
    return _load_file(path, label, max_duration_s)


def wav_bytes(segment: AudioSegment) -> bytes:
    """Return a complete WAV file (16-bit mono PCM, the segment's rate) of ``segment``.

    Segments from :func:`load_audio` are written as they are; anything else is
    first converted to one channel and 2-byte samples.  Uses the stdlib
    :mod:`wave` writer over ``segment.raw_data``, without running ffmpeg.
    """
    if segment.channels != _CHANNELS:
        segment = segment.set_channels(_CHANNELS)
    if segment.sample_width != _SAMPLE_WIDTH:
        segment = segment.set_sample_width(_SAMPLE_WIDTH)
    raw = segment.raw_data
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(_CHANNELS)
        writer.setsampwidth(_SAMPLE_WIDTH)
        writer.setframerate(segment.frame_rate)
        writer.setnframes(len(raw) // _SAMPLE_WIDTH)
        writer.writeframes(raw)
    return buffer.getvalue()


_WAV_HEADER = 44  # bytes before the samples in a WAV written by :func:`wav_bytes`


def write_wav_at(path: Path, first_sample: int, pcm: bytes) -> None:
    """Write 16-bit mono ``pcm`` into the WAV at ``path`` from sample ``first_sample`` on, and sync it.

    Makes the file (16 kHz) if there is none, and grows it: a WAV that is written as audio
    arrives. Samples are written before the header counts them, so after a crash the header
    counts only samples that are there. Between the old end and ``first_sample`` the file reads
    as silence (a hole: no disk used). Writing over samples that are there replaces them.
    """
    if first_sample < 0 or len(pcm) % _SAMPLE_WIDTH:
        raise ValueError("write_wav_at needs a sample offset >= 0 and whole 16-bit samples")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    with os.fdopen(fd, "r+b") as f:
        header = f.read(_WAV_HEADER) or wav_header(0)
        if len(header) != _WAV_HEADER or header[36:40] != b"data":
            raise ValueError(f"{path} is not a WAV that write_wav_at wrote")
        (size,) = struct.unpack("<I", header[40:44])
        start = first_sample * _SAMPLE_WIDTH
        f.seek(_WAV_HEADER + start)
        f.write(pcm)
        size = max(size, start + len(pcm))
        f.flush()
        os.fsync(f.fileno())
        f.seek(0)
        f.write(wav_header(size // _SAMPLE_WIDTH))
        f.flush()
        os.fsync(f.fileno())


def _check_limit(max_duration_s: float | None) -> None:
    if max_duration_s is not None and not (max_duration_s > 0 and math.isfinite(max_duration_s)):
        raise ValueError(f"max_duration_s must be a positive number of seconds, got {max_duration_s!r}")


def _probe_within(ffmpeg_input: str, label: str, max_duration_s: float | None) -> None:
    """Probe the input (AudioError if it is not audio) and refuse it if its stated duration is over the limit."""
    duration_s = _probe(ffmpeg_input, label)
    if duration_s is not None and max_duration_s is not None and duration_s > max_duration_s:
        raise TooLong(f"recording is {duration_s:.0f} s long, over the {max_duration_s:g} s limit")


def _decoded_within(length_s: float, max_duration_s: float | None) -> None:
    """Refuse decoded audio over the limit (a container may state no duration, or a wrong one)."""
    if max_duration_s is not None and length_s > max_duration_s:
        raise TooLong(f"recording is longer than the {max_duration_s:g} s limit")


def _load_file(path: Path, label: str, max_duration_s: float | None) -> AudioSegment:
    """Probe, limit-check and decode the regular file at absolute ``path``."""
    ffmpeg_input = f"file:{path}"
    _probe_within(ffmpeg_input, label, max_duration_s)
    segment = _decode(ffmpeg_input, label, max_duration_s)
    _decoded_within(len(segment) / 1000.0, max_duration_s)
    _LOGGER.debug("loaded %s: %.1f s of audio", label, len(segment) / 1000.0)
    return segment


def _check_file(path: Path, label: str) -> None:
    """Raise AudioError unless ``path`` is a non-empty regular file we may read."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise AudioError(f"file not found: {label}") from None
    except OSError as exc:
        raise AudioError(f"cannot read file: {label} ({exc.strerror or exc})") from None
    if path.is_dir():
        raise AudioError(f"not a file but a directory: {label}")
    if not path.is_file():
        raise AudioError(f"not a regular file: {label}")
    if not os.access(path, os.R_OK):
        raise AudioError(f"cannot read file: {label} (permission denied)")
    if info.st_size == 0:
        raise AudioError(f"empty file: {label}")


def _probe(ffmpeg_input: str, label: str) -> float | None:
    """Check with ffprobe that the input has an audio stream; return its duration in s if stated."""
    try:
        info = mediainfo_json(ffmpeg_input)
    except OSError:
        raise
    except Exception as exc:  # pydub parses ffprobe's output and fails in many ways on garbage
        _LOGGER.debug("ffprobe could not read %s: %r", label, exc)
        raise AudioError(f"not an audio file: {label}") from None
    streams = info.get("streams") or []
    audio = [s for s in streams if isinstance(s, dict) and s.get("codec_type") == "audio"]
    if not audio:
        _LOGGER.debug("no audio stream in %s (format %s)", label, info.get("format", {}).get("format_name"))
        raise AudioError(f"not an audio file: {label}")
    for candidate in (info.get("format", {}).get("duration"), audio[0].get("duration")):
        try:
            duration = float(candidate)
        except (TypeError, ValueError):
            continue
        if math.isfinite(duration) and duration >= 0:
            return duration
    return None


def _decode(ffmpeg_input: str, label: str, max_duration_s: float | None) -> AudioSegment:
    """Run ffmpeg to turn the first audio stream into 16 kHz mono s16le, via a temp file."""
    fd, out_name = tempfile.mkstemp(prefix="edgescribe-", suffix=".pcm")
    try:
        os.close(fd)
        _decode_to(ffmpeg_input, label, max_duration_s, out_name)
        raw = Path(out_name).read_bytes()
    finally:
        os.unlink(out_name)
    usable = len(raw) - len(raw) % _SAMPLE_WIDTH
    if usable == 0:
        raise AudioError(f"no audio in file: {label}")
    if usable != len(raw):
        raw = raw[:usable]
    return AudioSegment(data=raw, sample_width=_SAMPLE_WIDTH, frame_rate=SAMPLE_RATE, channels=_CHANNELS)


def _decode_to(ffmpeg_input: str, label: str, max_duration_s: float | None, out_name: str) -> None:
    """Run ffmpeg to write the first audio stream as 16 kHz mono s16le to the file ``out_name``."""
    command = [
        AudioSegment.converter,
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-protocol_whitelist",
        "file",
        "-i",
        ffmpeg_input,
        "-map",
        "0:a:0",
        "-vn",
        "-ac",
        str(_CHANNELS),
        "-ar",
        str(SAMPLE_RATE),
        "-acodec",
        "pcm_s16le",
        "-f",
        "s16le",
    ]
    if max_duration_s is not None:
        command += ["-t", f"{max_duration_s + _DECODE_SLACK_S:.3f}"]
    result = subprocess.run(
        [*command, "-y", f"file:{out_name}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    if result.returncode != 0:
        _LOGGER.debug(
            "ffmpeg failed on %s (exit %d): %s",
            label,
            result.returncode,
            result.stderr.decode(errors="replace").strip()[-500:],
        )
        raise AudioError(f"corrupt or unsupported audio: {label}")


def load_recording(
    source: str | os.PathLike[str],
    *,
    max_duration_s: float | None = None,
    name: str | None = None,
    directory: str | os.PathLike[str] | None = None,
) -> Recording:
    """Like :func:`load_audio`, but the decoded audio stays in a file: a :class:`~hub.recording.Recording`.

    ffmpeg writes 16 kHz mono s16le to a private temporary file in ``directory`` (default: the
    system's temporary folder), which the recording owns: it is deleted when the recording is
    closed or collected. The hub reads a chunk's samples from it when the chunk is sent, so its
    memory does not grow with the recording's length (32 kB per second in memory before: 230 MB
    for two hours). Raises as :func:`load_audio` does.
    """
    _check_limit(max_duration_s)
    label = name or os.fspath(source)
    path = Path(os.fspath(source)).absolute()
    _check_file(path, label)
    ffmpeg_input = f"file:{path}"
    _probe_within(ffmpeg_input, label, max_duration_s)
    fd, out_name = tempfile.mkstemp(prefix="edgescribe-", suffix=".pcm", dir=directory)
    os.close(fd)
    try:
        _decode_to(ffmpeg_input, label, max_duration_s, out_name)
        recording = Recording.open_pcm(Path(out_name), SAMPLE_RATE, owned=True)
    except BaseException:
        os.unlink(out_name)
        raise
    if recording.frames == 0:
        recording.close()
        raise AudioError(f"no audio in file: {label}")
    try:
        _decoded_within(len(recording) / 1000.0, max_duration_s)
    except TooLong:
        recording.close()
        raise
    _LOGGER.debug("decoded %s to %s: %.1f s of audio", label, out_name, len(recording) / 1000.0)
    return recording
