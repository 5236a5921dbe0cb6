"""The engine interface: one small protocol, one module per backend."""

from __future__ import annotations

import importlib.util
from typing import Protocol

import speech_recognition as sr

from protocol.messages import Span

#: What an engine hears: the text, and the same text with times where the engine gives them.
Timed = tuple[str, tuple[Span, ...]]


class EngineUnavailable(RuntimeError):
    """An engine that is missing or misconfigured; the message is a one-line reason."""


class EngineError(RuntimeError):
    """An engine that failed on this audio for a reason it can name (a web service that is down); one line."""


class NoSpeech(Exception):
    """The engine heard nothing it could transcribe (not a failure)."""


def require_package(module: str, engine: str, install: str) -> None:
    """Raise :class:`EngineUnavailable` when ``module`` is not installed; ``install`` is the pip argument."""
    if importlib.util.find_spec(module) is None:
        raise EngineUnavailable(f"engine {engine} needs the {install.split('=')[0]} package: pip install {install}")


def probability(value: float) -> float:
    """An engine's confidence as results carry it: clamped to [0, 1], three decimals."""
    return round(min(1.0, max(0.0, float(value))), 3)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (whitespace collapsed, cut at ``limit``), or its type's name."""
    return " ".join(str(exc).split())[:limit] or type(exc).__name__


class Engine(Protocol):
    """A speech-to-text backend, loaded once per node and reused for every chunk.

    ``transcribe_timed`` returns the text and its timed spans (seconds from the
    start of ``audio``), raises :class:`NoSpeech` when nothing was heard, and
    raises any other exception when the engine itself failed. ``transcribe``
    is the same without the times.
    """

    name: str
    model: str
    language: str

    def transcribe_timed(self, audio: sr.AudioData) -> Timed: ...

    def transcribe(self, audio: sr.AudioData) -> str: ...
