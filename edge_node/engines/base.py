"""The engine interface: one small protocol, one module per backend."""

from __future__ import annotations

from typing import Protocol

import speech_recognition as sr


class EngineUnavailable(RuntimeError):
    """An engine that is missing or misconfigured; the message is a one-line reason."""


class NoSpeech(Exception):
    """The engine heard nothing it could transcribe (not a failure)."""


class Engine(Protocol):
    """A speech-to-text backend, loaded once per node and reused for every chunk.

    ``transcribe`` returns the text, raises :class:`NoSpeech` when nothing was
    heard, and raises any other exception when the engine itself failed.
    It may be called from several worker threads at once.
    """

    name: str
    model: str
    language: str

    def transcribe(self, audio: sr.AudioData) -> str: ...
