"""PocketSphinx through SpeechRecognition: offline, nothing to download.

SpeechRecognition ships its own en-US acoustic model, language model and
dictionary; ``recognize_sphinx`` builds a decoder per call (about 0.45 s here),
which also makes it safe to call from several threads.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import speech_recognition as sr

from edge_node.engines.base import EngineUnavailable, NoSpeech


class SphinxEngine:
    name = "sphinx"

    def __init__(self, model: str = "", language: str = "en-US") -> None:
        if importlib.util.find_spec("pocketsphinx") is None:
            raise EngineUnavailable("engine sphinx needs the pocketsphinx package: pip install pocketsphinx")
        data = Path(sr.__file__).parent / "pocketsphinx-data"
        if model:
            # a directory holding acoustic-model/, language-model.lm.bin and pronounciation-dictionary.dict
            path = Path(model)
            self._language: str | tuple[str, str, str] = (
                str(path / "acoustic-model"),
                str(path / "language-model.lm.bin"),
                str(path / "pronounciation-dictionary.dict"),
            )
            if not all(Path(p).exists() for p in self._language):
                raise EngineUnavailable(f"engine sphinx: {model} is not a PocketSphinx model directory")
        else:
            if not (data / language).is_dir():
                have = ", ".join(sorted(p.name for p in data.iterdir())) if data.is_dir() else "none"
                raise EngineUnavailable(f"engine sphinx has no model for language {language!r} (has: {have})")
            self._language = language
        self.model = model or f"speechrecognition/{language}"
        self.language = language
        self._recognizer = sr.Recognizer()

    def transcribe(self, audio: sr.AudioData) -> str:
        try:
            text = self._recognizer.recognize_sphinx(audio, language=self._language)
        except sr.UnknownValueError:
            raise NoSpeech() from None
        text = text.strip()
        if not text:
            raise NoSpeech()
        return text
