"""A benchmark engine of fixed, known cost: it sleeps ``duration x RTF`` and hears no words.

``--engine simulated --model RTF`` (for example ``--model 0.05``: a 20 s chunk takes 1 s) makes a
node that behaves like a real one on the wire (it receives chunks, holds its capacity, publishes
results and its measured speed) while its "transcription" costs only a sleep. ``bench.scale``
uses it to measure the hub's dispatching and the broker path with many nodes on one small
machine, where real engines would only measure the CPU.

It is for benchmarks and tests only: :func:`edge_node.engines.create_engine` refuses it unless
the environment has ``EDGESCRIBE_TEST_ENGINES=1``. The text it returns says how much audio it
was given, so that a transcript shows every chunk once, in order.

A sleep holds no GIL and can neither crash nor hang, so a node runs this engine in its worker
thread (:func:`edge_node.engines.runs_inline`), not in a child process of its own: a node then costs one Python process,
which is what lets 64 nodes run on 2 cores (see docs/benchmarks.md).
"""

from __future__ import annotations

import math
import time

import speech_recognition as sr

from edge_node.engines.base import EngineUnavailable, Timed

MAX_RTF = 10.0


def parse_rtf(model: str) -> float:
    """The real-time factor that ``--model`` names; :class:`EngineUnavailable` if it is not one."""
    try:
        rtf = float(model)
    except ValueError:
        raise EngineUnavailable(f"engine simulated needs --model RTF (a number such as 0.05), not {model!r}") from None
    if not (math.isfinite(rtf) and 0 <= rtf <= MAX_RTF):
        raise EngineUnavailable(f"engine simulated needs a real-time factor between 0 and {MAX_RTF:g}, not {model!r}")
    return rtf


class SimulatedEngine:
    """Sleeps ``rtf`` seconds per second of audio; returns ``simulated N ms``."""

    name = "simulated"

    def __init__(self, model: str = "", language: str = "en-US", sleep=time.sleep) -> None:
        self.rtf = parse_rtf(model)
        self.model = model
        self.language = language
        self._sleep = sleep

    def transcribe(self, audio: sr.AudioData) -> str:
        return self.transcribe_timed(audio)[0]

    def transcribe_timed(self, audio: sr.AudioData) -> Timed:
        frames = len(audio.frame_data) // audio.sample_width
        duration_s = frames / audio.sample_rate
        self._sleep(duration_s * self.rtf)
        return f"simulated {round(duration_s * 1000)} ms", ()
