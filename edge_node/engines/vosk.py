"""Vosk (Kaldi): offline and light, with word times; the model is a directory you provide.

``--model`` must be a local Vosk model directory (an unpacked ``vosk-model-*`` archive, holding
``am/final.mdl`` and ``conf/``). Vosk's own fetch-by-name needs the internet and is not used, so
model names are not supported. The model is loaded once per engine process; every chunk gets a
recognizer of its own, so calls do not share decoder state.

Optional: ``pip install vosk==0.3.45`` (Apache-2.0); it is not in ``edge_node/requirements.txt``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import speech_recognition as sr

from edge_node.engines.base import EngineUnavailable, NoSpeech, Timed, one_line, probability, require_package
from protocol.messages import Span, Word

_RATE = 16000
_BLOCK = 8000  # bytes fed to the recognizer at a time: 0.25 s of 16-bit audio
_KALDI_ERROR = re.compile(r"^ERROR \(.*?:\d+\)\s*(.*)$")  # "ERROR (VoskAPI:Model():model.cc:122) Folder ..."
_HINT = "--model must be a local Vosk model directory; model names are not supported (Vosk cannot download here)"


class VoskEngine:
    name = "vosk"

    def __init__(self, model: str = "", language: str = "en-US") -> None:
        require_package("vosk", "vosk", "vosk==0.3.45")
        if not model:
            raise EngineUnavailable(f"engine vosk needs a model: {_HINT}")
        path = Path(model)
        if not path.is_dir():
            what = "is not a directory" if path.exists() else "not found"
            raise EngineUnavailable(f"engine vosk: model directory {model} {what}; {_HINT}")
        if not ((path / "am" / "final.mdl").is_file() or (path / "final.mdl").is_file()):
            raise EngineUnavailable(f"engine vosk: {model} is not a Vosk model directory (no am/final.mdl)")
        try:
            import vosk
        except (ImportError, OSError) as exc:
            raise EngineUnavailable(f"engine vosk could not load the vosk package: {one_line(exc)}") from None
        vosk.SetLogLevel(-1)  # Kaldi's LOG lines; its errors still go to stderr, so they are caught below
        with tempfile.TemporaryFile("w+") as log:
            try:
                with _stderr_to(log):
                    self._model = vosk.Model(str(path))
            except Exception as exc:  # noqa: BLE001 - any load failure is a one-line start-up error
                reason = _kaldi_error(log) or one_line(exc)
                raise EngineUnavailable(f"engine vosk could not load model {model}: {reason}") from None
        self._recognizer_class = vosk.KaldiRecognizer
        self.model = model
        self.language = language

    def transcribe(self, audio: sr.AudioData) -> str:
        return self.transcribe_timed(audio)[0]

    def transcribe_timed(self, audio: sr.AudioData) -> Timed:
        pcm = audio.get_raw_data(convert_rate=_RATE, convert_width=2)
        recognizer = self._recognizer_class(self._model, _RATE)
        recognizer.SetWords(True)
        results = []
        for start in range(0, len(pcm), _BLOCK):
            if recognizer.AcceptWaveform(pcm[start:start + _BLOCK]):
                results.append(recognizer.Result())
        results.append(recognizer.FinalResult())
        spans = tuple(span for span in map(_span, results) if span is not None)
        text = " ".join(s.text for s in spans)
        if not text:
            raise NoSpeech()
        return text, spans


def _span(result: str) -> Span | None:
    """One recognizer result (JSON with ``text`` and, with SetWords, ``result``: word, start, end, conf)."""
    parsed = json.loads(result)
    text = parsed.get("text", "").strip()
    if not text:
        return None
    words = tuple(
        Word(round(w["start"], 2), round(w["end"], 2), w["word"], probability(w["conf"]) if "conf" in w else None)
        for w in parsed.get("result", ())
    )
    if not words:
        return Span(0.0, 0.0, text)
    return Span(words[0].start_s, words[-1].end_s, text, words)


@contextlib.contextmanager
def _stderr_to(file: IO[str]) -> Iterator[None]:
    """Send file descriptor 2 (where Kaldi writes) to ``file`` for a while."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _kaldi_error(log: IO[str]) -> str:
    """The last Kaldi ERROR message written to ``log``, or ``""``."""
    log.seek(0)
    errors = [m.group(1) for m in map(_KALDI_ERROR.match, log.read().splitlines()) if m]
    return " ".join(errors[-1].split())[:300] if errors else ""
