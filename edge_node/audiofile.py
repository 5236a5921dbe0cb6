"""Reading a whole audio file for ``python -m edge_node transcribe`` (pydub + ffmpeg)."""

from __future__ import annotations

from pathlib import Path

import speech_recognition as sr
from pydub import AudioSegment
from pydub.exceptions import CouldntDecodeError

SAMPLE_RATE = 16000


class AudioFileError(ValueError):
    """A file that is missing or is not audio; the message is one line."""


def read_audio_file(path: Path) -> sr.AudioData:
    """Decode any format ffmpeg knows into 16 kHz mono 16-bit audio."""
    if not path.is_file():
        raise AudioFileError(f"file not found: {path}")
    try:
        segment = AudioSegment.from_file(path)
    except (CouldntDecodeError, IndexError, OSError) as exc:
        raise AudioFileError(f"not an audio file: {path} ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})") from None
    segment = segment.set_frame_rate(SAMPLE_RATE).set_channels(1).set_sample_width(2)
    if len(segment) == 0:
        raise AudioFileError(f"no audio in file: {path}")
    return sr.AudioData(segment.raw_data, SAMPLE_RATE, 2)
