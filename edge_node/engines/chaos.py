"""Fault injection for tests and chaos runs: poison audio that crashes, hangs or fails the engine.

A chunk is *marked* when a pure 1234 Hz sine dominates it (see :func:`marker_ratio`).
Marked chunks trigger the fault that the model string names; every other chunk
goes to the sphinx engine, so a node running ``--engine chaos`` transcribes
normal speech as usual:

- ``crash``: ``os.abort()``, a real SIGABRT of the engine process (no core file);
- ``hang``: block forever, until the node kills the engine process;
- ``error``: raise :class:`RuntimeError`, an ordinary engine failure.

It is for tests only: :func:`edge_node.engines.create_engine` refuses it unless
the environment has ``EDGESCRIBE_TEST_ENGINES=1``.

The detector is pure Python (no numpy): a Goertzel filter at the marker
frequency over up to ``_BLOCKS`` evenly spaced 50 ms blocks, so a 30 s chunk
costs about 50,000 samples of arithmetic (a few tens of milliseconds).
"""

from __future__ import annotations

import array
import logging
import math
import os
import sys
import threading

import speech_recognition as sr

from edge_node.engines.base import EngineUnavailable, Timed
from edge_node.engines.sphinx import SphinxEngine

_LOGGER = logging.getLogger(__name__)

MARKER_HZ = 1234.0
FAULTS = ("crash", "hang", "error")
MARKER_SHARE = 0.5  #: a chunk is marked when the marker carries at least this share of its energy
_MIN_LEVEL = 30.0  #: ... and its RMS amplitude (of 32767) is at least this: about -60 dBFS
_BLOCK_S = 0.05  #: Goertzel block length: a 20 Hz wide main lobe
_BLOCKS = 64  #: blocks analysed at most, spread evenly over the chunk


def marker_ratio(pcm: bytes, rate: int) -> tuple[float, float]:
    """(share of the energy at :data:`MARKER_HZ`, RMS amplitude at it) of 16-bit mono PCM.

    The share is about 1 for a pure marker tone (with or without silence around
    it), near 0 for speech, and the marker's own share of the energy when it is
    mixed under other sound.
    """
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) // 2 * 2])
    if sys.byteorder == "big":
        samples.byteswap()  # WAV PCM is little-endian
    size = max(1, int(rate * _BLOCK_S))
    blocks = len(samples) // size
    if blocks == 0 or not 0 < MARKER_HZ < rate / 2:
        return 0.0, 0.0
    coeff = 2.0 * math.cos(2.0 * math.pi * MARKER_HZ / rate)
    step = blocks / min(blocks, _BLOCKS)
    tone = energy = 0.0
    count = 0
    for b in range(min(blocks, _BLOCKS)):
        start = int(b * step) * size
        block = samples[start : start + size]
        s1 = s2 = 0.0
        for x in block:
            s1, s2 = x + coeff * s1 - s2, s1
        power = s1 * s1 + s2 * s2 - coeff * s1 * s2  # |X(f)|^2: (A * size / 2)^2 for a sine of amplitude A
        tone += 2.0 * power / size  # that sine's energy in the block: A^2 * size / 2
        energy += sum(x * x for x in block)
        count += size
    if energy <= 0:
        return 0.0, 0.0
    share = min(1.0, tone / energy)
    return share, math.sqrt(share * energy / count)


def has_marker(pcm: bytes, rate: int) -> bool:
    """Does a :data:`MARKER_HZ` sine dominate this 16-bit mono PCM?"""
    share, level = marker_ratio(pcm, rate)
    return share >= MARKER_SHARE and level >= _MIN_LEVEL


class ChaosEngine:
    """Sphinx, except on marked chunks, where it commits the fault named by ``model``."""

    name = "chaos"

    def __init__(self, model: str = "", language: str = "en-US") -> None:
        if model not in FAULTS:
            raise EngineUnavailable(f"engine chaos needs --model {' | '.join(FAULTS)}, not {model!r}")
        self._sphinx = SphinxEngine("", language)
        self.model = model
        self.language = language

    def transcribe(self, audio: sr.AudioData) -> str:
        return self.transcribe_timed(audio)[0]

    def transcribe_timed(self, audio: sr.AudioData) -> Timed:
        if has_marker(audio.get_raw_data(convert_width=2), audio.sample_rate):
            _LOGGER.warning("chaos engine: marker tone found; fault %s", self.model)
            self._fault()
        return self._sphinx.transcribe_timed(audio)

    def _fault(self) -> None:
        if self.model == "crash":
            try:
                import resource

                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a real SIGABRT, but no core file
            except (ImportError, ValueError, OSError):
                pass
            os.abort()
        if self.model == "hang":
            threading.Event().wait()
        raise RuntimeError("chaos engine: injected failure on a marked chunk")
