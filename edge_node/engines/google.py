"""Google's free web speech API through SpeechRecognition's ``recognize_google`` (the original app's engine).

Online and optional: **every chunk's audio leaves the machine** and is sent to Google over the
internet. Use it only where that is acceptable. ``--model`` is an optional API key; empty means the
key that SpeechRecognition ships, which Google may rate-limit or revoke at any time. The key is never
reported: the node's status and results say ``own-key`` or ``default-key``.

The API gives no word times, so the text comes as one span covering the whole chunk, with the
best alternative's confidence when Google sends one. A network or
service failure raises :class:`~edge_node.engines.base.EngineError` with a one-line reason; on a node
that is an ``error`` result, and the hub gives the chunk to another node. Creating the engine sends
nothing.
"""

from __future__ import annotations

import speech_recognition as sr

from edge_node.engines.base import EngineError, NoSpeech, Timed, one_line, probability
from protocol.messages import Span

TIMEOUT_S = 30.0  #: longest wait for Google's answer (below the node's engine timeout for any chunk)


class GoogleEngine:
    name = "google"

    def __init__(self, model: str = "", language: str = "en-US") -> None:
        self._key = model or None
        self.model = "own-key" if model else "default-key"  # published in status and results: not the key
        self.language = language
        self._recognizer = sr.Recognizer()
        self._recognizer.operation_timeout = TIMEOUT_S

    def transcribe(self, audio: sr.AudioData) -> str:
        return self.transcribe_timed(audio)[0]

    def transcribe_timed(self, audio: sr.AudioData) -> Timed:
        try:
            answer = self._recognizer.recognize_google(audio, key=self._key, language=self.language, show_all=True)
        except sr.UnknownValueError:
            raise NoSpeech() from None
        except (sr.RequestError, OSError) as exc:  # OSError: a timeout while reading the answer
            raise EngineError(f"engine google: {one_line(exc)}") from None
        text, confidence = best_alternative(answer)
        if not text:
            raise NoSpeech()
        duration = len(audio.frame_data) / (audio.sample_rate * audio.sample_width)
        return text, (Span(0.0, round(duration, 2), text, (), confidence),)


def best_alternative(answer: object) -> tuple[str, float | None]:
    """The first (best) transcript of a ``show_all`` answer and its confidence, which Google may leave out."""
    alternatives = answer.get("alternative") if isinstance(answer, dict) else None
    if not isinstance(alternatives, list) or not alternatives or not isinstance(alternatives[0], dict):
        return "", None
    best = alternatives[0]
    text = best.get("transcript")
    confidence = best.get("confidence")
    number = isinstance(confidence, (int, float)) and not isinstance(confidence, bool)
    return (text.strip() if isinstance(text, str) else ""), (probability(confidence) if number else None)
