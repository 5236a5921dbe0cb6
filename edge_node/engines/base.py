"""The engine interface: one small protocol, one module per backend."""

from __future__ import annotations

from typing import Protocol

import speech_recognition as sr

from protocol.messages import Span

#: What an engine hears: the text, and the same text with times where the engine gives them.
Timed = tuple[str, tuple[Span, ...]]


class EngineUnavailable(RuntimeError):
    """An engine that is missing or misconfigured; the message is a one-line reason."""


class NoSpeech(Exception):
    """The engine heard nothing it could transcribe (not a failure)."""


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
