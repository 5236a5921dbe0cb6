"""Whisper through faster-whisper (CTranslate2): far more accurate than PocketSphinx, offline once loaded.

``--model`` is a model name such as ``tiny.en`` or ``base`` (faster-whisper fetches it once, when
the machine is online, into the Hugging Face cache) or a local directory holding a CTranslate2
model (``model.bin``, ``config.json``, ``tokenizer.json``). The model is loaded once per engine
process and reused for every chunk. ``int8`` computation on the CPU.

Whisper decodes a padded 30 s window whatever the chunk length, so chunks of 10-30 s suit it.
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

import speech_recognition as sr

from edge_node.engines.base import EngineUnavailable, NoSpeech, Timed, probability, require_package
from protocol.messages import Span, Word

DEFAULT_MODEL = "tiny.en"


class WhisperEngine:
    name = "whisper"

    def __init__(self, model: str = "", language: str = "en-US") -> None:
        require_package("faster_whisper", "whisper", "faster-whisper")
        from faster_whisper import WhisperModel

        self.model = model or DEFAULT_MODEL
        self.language = language
        self._lang = language.split("-")[0].lower()
        path = Path(self.model)
        local = path.is_dir()
        if not local and (os.sep in self.model or self.model.startswith(".")):
            raise EngineUnavailable(f"engine whisper: model directory {self.model} not found")
        if self.model.endswith(".en") and self._lang != "en":
            raise EngineUnavailable(f"engine whisper: model {self.model} is English-only, not {language}")
        threads = int(os.environ.get("EDGESCRIBE_ENGINE_THREADS", "1"))
        try:
            self._model = WhisperModel(
                str(path) if local else self.model, device="cpu", compute_type="int8", cpu_threads=threads,
                local_files_only=local,
            )
        except Exception as exc:  # noqa: BLE001 - any load failure is a one-line start-up error
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EngineUnavailable(f"engine whisper could not load model {self.model}: {first[:300]}") from None

    def transcribe(self, audio: sr.AudioData) -> str:
        return self.transcribe_timed(audio)[0]

    def transcribe_timed(self, audio: sr.AudioData, context_s: float = 0.0) -> Timed:
        """``context_s``: the audio ends with this much trailing context (see :mod:`hub.chunking`). It is
        decoded with the window that holds the chunk's own end, and no further window is decoded."""
        import numpy as np

        pcm = np.frombuffer(audio.get_raw_data(convert_rate=16000, convert_width=2), dtype=np.int16)
        decoded, _ = self._model.transcribe(
            pcm.astype(np.float32) / 32768.0, language=self._lang, beam_size=5, condition_on_previous_text=False,
            word_timestamps=True,
        )
        own_end_s = len(pcm) / 16000 - context_s
        # segments come lazily, window by window: stop at the first one that starts in the context
        segments = itertools.takewhile(lambda s: context_s <= 0 or s.start < own_end_s, decoded)
        spans = tuple(
            Span(
                round(s.start, 2), round(s.end, 2), s.text.strip(),
                tuple(Word(round(w.start, 2), round(w.end, 2), w.word.strip(), probability(w.probability)) for w in (s.words or ())),
                probability(math.exp(s.avg_logprob)),
            )
            for s in segments
            if s.text.strip()
        )
        text = " ".join(s.text for s in spans)
        if not text:
            raise NoSpeech()
        return text, spans
