"""PocketSphinx through SpeechRecognition: offline, nothing to download.

SpeechRecognition ships its own en-US acoustic model, language model and
dictionary; ``recognize_sphinx`` builds a decoder per call (about 0.45 s here),
which also makes it safe to call from several threads.
"""

from __future__ import annotations

import re
from pathlib import Path

import speech_recognition as sr

from edge_node.engines.base import EngineUnavailable, NoSpeech, Timed, probability, require_package
from protocol.messages import Span, Word

_FRAMES_PER_S = 100  # PocketSphinx's default frame rate
_FILLER = re.compile(r"^(<s>|</s>|<sil>|\[.*\]|\+\+.*\+\+)$")  # silence and noise, not words
_ALT = re.compile(r"\(\d+\)$")  # "the(2)": an alternate pronunciation of "the"


class SphinxEngine:
    name = "sphinx"

    def __init__(self, model: str = "", language: str = "en-US") -> None:
        require_package("pocketsphinx", "sphinx", "pocketsphinx")
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
        return self.transcribe_timed(audio)[0]

    def transcribe_timed(self, audio: sr.AudioData) -> Timed:
        decoder = self._recognizer.recognize_sphinx(audio, language=self._language, show_all=True)
        hypothesis = decoder.hyp()
        text = hypothesis.hypstr.strip() if hypothesis is not None else ""
        if not text:
            raise NoSpeech()
        words = tuple(
            Word(
                round(s.start_frame / _FRAMES_PER_S, 2), round((s.end_frame + 1) / _FRAMES_PER_S, 2), _ALT.sub("", s.word),
                probability(s.prob),  # the word's posterior probability in the lattice
            )
            for s in decoder.seg()
            if not _FILLER.match(s.word)
        )
        if not words:
            return text, ()
        return text, (Span(words[0].start_s, words[-1].end_s, text, words),)
