"""The node's speech gate: a chunk that is silent or steady noise is not given to the engine.

Engines hear words in audio without any: PocketSphinx heard "dog" in 2 s of digital silence, and
Whisper "You" in digital silence and in 30 s of mains hum. Speech rises and falls with its syllables,
while silence and steady noise (hiss, hum) keep one level. :func:`hear` measures the level of every
20 ms frame and says no speech when

1. **Silent.** The loud frames (the :data:`LOUD_FRAMES`-th loudest, 100 ms of audio) are below
   :data:`SILENCE_DBFS`, half a step of 16-bit audio: digital silence. Not higher: Whisper still
   reads speech whose loud frames are at -84 dBFS, a few steps of 16-bit audio, word for word.
2. **Steady.** The loud frames rise less than :data:`STEADY_DB` above the quiet ones (the
   :data:`QUIET_PERCENTILE`-th percentile of the frames that are not digitally silent): hiss, hum
   or dither with nothing rising out of it, at any level.

Everything else passes, however little speech it holds: the gate only rejects what cannot be
speech. The measurements behind the numbers: docs/architecture.md, "The node's speech gate".

Plain ``audioop`` (which the node has through SpeechRecognition and pydub, ``audioop-lts`` on
Python 3.13), no numpy, which a PocketSphinx node does not install: a 30 s chunk takes about 2 ms.
"""

from __future__ import annotations

import audioop
import math
from dataclasses import dataclass

FRAME_S = 0.02  #: the frames whose levels are compared, seconds
LOUD_FRAMES = 5  #: the loud level is that of the 5th loudest frame: 100 ms, shorter than any word
QUIET_PERCENTILE = 10  #: the quiet level: this percentile of the frames that are not digitally silent
SILENCE_DBFS = -96.0  #: loud frames below this (half a step of 16-bit audio) are digital silence
STEADY_DB = 3.0  #: loud frames that rise less than this above the quiet ones are steady noise
_FINE = 16  #: a faint frame's RMS is measured at this gain, since audioop's is a whole number


@dataclass(frozen=True)
class Hearing:
    """What the gate found in some audio, and why (levels of 20 ms frames, dBFS)."""

    speech: bool  #: it may hold speech: give it to the engine
    loud_dbfs: float  #: the :data:`LOUD_FRAMES`-th loudest frame
    quiet_dbfs: float  #: the :data:`QUIET_PERCENTILE`-th percentile frame of those not digitally silent
    reason: str  #: why not speech: "silent", "steady"; "" when it may be speech

    @property
    def rise_db(self) -> float:
        """How far the loud frames rise above the quiet ones."""
        return self.loud_dbfs - self.quiet_dbfs


def frame_levels(pcm: bytes, rate: int, width: int) -> list[float]:
    """The RMS level of each 20 ms frame of mono signed PCM (a last shorter one too), dBFS; -inf for zeros."""
    step = max(1, round(rate * FRAME_S)) * width
    full_scale = float(1 << (8 * width - 1))
    pcm = pcm[: len(pcm) - len(pcm) % width]
    fine = b""
    levels = []
    for start in range(0, len(pcm), step):
        rms: float = audioop.rms(pcm[start: start + step], width)
        # A whole number is too coarse a few steps above zero, where Whisper still hears speech. No
        # sample of a frame this faint is over (rms + 1) * sqrt(samples), so the gain cannot clip it.
        if (rms + 1) * math.sqrt(step // width) * _FINE < full_scale:
            fine = fine or audioop.mul(pcm, width, _FINE)
            rms = audioop.rms(fine[start: start + step], width) / _FINE
        levels.append(20 * math.log10(rms / full_scale) if rms else -math.inf)
    return levels


def hear(pcm: bytes, rate: int, width: int) -> Hearing:
    """Whether mono signed PCM (``width`` bytes a sample) may hold speech; see the module docstring."""
    levels = sorted(frame_levels(pcm, rate, width))
    loud = levels[max(0, len(levels) - LOUD_FRAMES)] if levels else -math.inf
    if loud < SILENCE_DBFS:
        return Hearing(False, loud, loud, "silent")
    # digitally silent frames between sounds (a gap in a recording, text-to-speech's pauses) are left
    # out of the quiet level, or steady hiss after a gap would seem to rise out of it
    sound = [level for level in levels if level >= SILENCE_DBFS]
    quiet = sound[(len(sound) - 1) * QUIET_PERCENTILE // 100]
    steady = loud - quiet < STEADY_DB
    return Hearing(not steady, loud, quiet, "steady" if steady else "")
