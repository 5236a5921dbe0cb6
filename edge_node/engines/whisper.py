"""Whisper through faster-whisper (CTranslate2): far more accurate than PocketSphinx, offline once loaded.

``--model`` is a model name such as ``tiny.en`` or ``base`` (faster-whisper fetches it once, when
the machine is online, into the Hugging Face cache) or a local directory holding a CTranslate2
model (``model.bin``, ``config.json``, ``tokenizer.json``). The model is loaded once per engine
process and reused for every chunk. ``int8`` computation on the CPU.

Whisper decodes a padded 30 s window whatever the chunk length, so chunks of 10-30 s suit it.
"""

from __future__ import annotations

import itertools
import logging
import math
import os

import speech_recognition as sr

from edge_node.engines.base import EngineUnavailable, NoSpeech, Timed, probability, require_package
from protocol.messages import Span, Word

_LOGGER = logging.getLogger(__name__)
DEFAULT_MODEL = "tiny.en"
_RATE = 16000
_FRAME_S = 0.02
_TAIL_GAP_S = 0.5  #: at least this much between the last word heard and the cut for a second look
_TAIL_SPEECH_S = 0.15  #: and at least this much of it loud (speech, not the pause)
_SPEECH_SHARE = 10 ** (-16 / 20)  #: loud: within 16 dB of the chunk's loud frames (as hub.chunking's pauses)
_SILENCE_RMS = 10 ** (-60 / 20)  #: and above -60 dBFS: a silent chunk has no loud frames
_TAIL_LEAD_S = 0.1  #: the second look starts this much before the last word's end
_TAIL_AFTER_S = 0.5  #: and runs this far past the cut, so the stretch does not end on a word
#: and its words are kept only if the model gives them at least this mean probability (see _unheard_tail)
_TAIL_MIN_CONFIDENCE = 0.35
_SEED = 0  #: CTranslate2's sampling seed (see WhisperEngine.__init__)
_DEVICE, _COMPUTE_TYPE = "cpu", "int8"  #: for loading the model, and loading it again (_fresh_sampler)


class WhisperEngine:
    name = "whisper"

    def __init__(self, model: str = "", language: str = "en-US") -> None:
        require_package("faster_whisper", "whisper", "faster-whisper")
        from faster_whisper import WhisperModel

        self.model = model or DEFAULT_MODEL
        self.language = language
        self._lang = language.split("-")[0].lower()
        if self.model.endswith(".en") and self._lang != "en":
            raise EngineUnavailable(f"engine whisper: model {self.model} is English-only, not {language}")
        threads = int(os.environ.get("EDGESCRIBE_ENGINE_THREADS", "1"))
        # A window whose text looks like a loop is decoded again by sampling, at rising temperatures.
        # CTranslate2 seeds each of its threads' generators once, at the thread's first draw, from
        # this seed (else from the system's entropy). See _fresh_sampler for the rest.
        import ctranslate2

        ctranslate2.set_random_seed(_SEED)
        from edge_node.models import resolve_model

        self._model_path = str(resolve_model(self.model))  # EngineUnavailable (one line) if found nowhere
        try:
            self._model = WhisperModel(
                self._model_path, device=_DEVICE, compute_type=_COMPUTE_TYPE, cpu_threads=threads, local_files_only=True,
            )
        except Exception as exc:  # noqa: BLE001 - any load failure is a one-line start-up error
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EngineUnavailable(f"engine whisper could not load model {self.model}: {first[:300]}") from None
        self._threads = threads
        self._model.model = _SamplingWatch(self._model.model)

    def transcribe(self, audio: sr.AudioData) -> str:
        return self.transcribe_timed(audio)[0]

    def transcribe_timed(self, audio: sr.AudioData, context_s: float = 0.0) -> Timed:
        """``context_s``: the audio ends with this much trailing context (see :mod:`hub.chunking`). It is
        decoded with the window that holds the chunk's own end, and no further window is decoded.

        Whisper sometimes skips a short word that stands alone between pauses. Before the cut no
        other chunk hears it, so when speech is left after the last word heard before the cut, that
        stretch is decoded once more on its own (with half a second past the cut) and its words added.
        When nothing at all was heard before the cut, the chunk's own audio is decoded alone, as if it
        had no context (Whisper base heard nothing in 22 s of spoken numbers with their context, and
        all of them without).
        """
        import numpy as np

        pcm = np.frombuffer(audio.get_raw_data(convert_rate=16000, convert_width=2), dtype=np.int16)
        samples = pcm.astype(np.float32) / 32768.0
        own_end_s = len(pcm) / _RATE - context_s
        spans = self._decode(samples, 0.0, own_end_s if context_s > 0 else math.inf)
        if context_s > 0 and (tail := self._unheard_tail(samples, spans, own_end_s)):
            spans = (*_before(spans, own_end_s), tail)  # in time order: what was heard in context goes
        text = " ".join(s.text for s in spans)
        if not text:
            raise NoSpeech()
        return text, spans

    def _decode(self, samples, offset_s: float, own_end_s: float) -> tuple[Span, ...]:
        """Spans of ``samples`` (which start ``offset_s`` into the chunk), stopping at the first segment
        that starts at or after ``own_end_s``; times in chunk time."""
        if self._model.model.sampled:  # the last decoding sampled, even if it then failed
            self._fresh_sampler()
        decoded, _ = self._model.transcribe(
            samples, language=self._lang, beam_size=5, condition_on_previous_text=False, word_timestamps=True,
        )
        segments = itertools.takewhile(lambda s: s.start + offset_s < own_end_s, decoded)  # lazily, window by window
        return tuple(
            Span(
                round(s.start + offset_s, 2), round(s.end + offset_s, 2), s.text.strip(),
                tuple(
                    Word(round(w.start + offset_s, 2), round(w.end + offset_s, 2), w.word.strip(), probability(w.probability))
                    for w in (s.words or ())
                ),
                probability(math.exp(s.avg_logprob)),
            )
            for s in segments
            if s.text.strip()
        )

    def _fresh_sampler(self) -> None:
        """Give the model a sampling generator that has drawn nothing yet, seeded with ``_SEED``.

        CTranslate2 decodes in its own worker threads, and each keeps one generator for its life, so
        a decoding that sampled leaves the next one a generator further on: the text of a chunk that
        needs sampling would depend on which chunks its node decoded before, and differ from run to
        run (Whisper base on a list of spoken numbers lost 15 words at a cut in 2 of 3 runs, and
        not in the third). New worker threads draw afresh. Loading the model again takes about
        0.3 s for base, and happens only before a decoding that follows one that sampled (which the
        segments do not tell: when every temperature fails, faster-whisper may keep the unsampled text).
        """
        import ctranslate2

        _LOGGER.debug("a decoding sampled: reloading the model for a fresh sampling generator")
        self._model.model = _SamplingWatch(ctranslate2.models.Whisper(
            self._model_path, device=_DEVICE, compute_type=_COMPUTE_TYPE, intra_threads=self._threads,
        ))

    def _unheard_tail(self, samples, spans: tuple[Span, ...], own_end_s: float) -> Span | None:
        """Words of speech left between the last word heard before ``own_end_s`` and it, decoded alone."""
        import numpy as np

        heard = [w.end_s for s in spans for w in s.words if w.mid_s < own_end_s]
        last_s = max(heard, default=0.0)  # nothing heard: the whole of the chunk's own audio is left
        if own_end_s - last_s < _TAIL_GAP_S:  # too little left after the last word
            return None
        frame = int(_RATE * _FRAME_S)
        own = samples[: int(own_end_s * _RATE)]
        rms = np.sqrt(np.mean(own[: len(own) // frame * frame].reshape(-1, frame) ** 2, axis=1))
        if rms.size == 0:
            return None
        loud = (rms >= np.percentile(rms, 90) * _SPEECH_SHARE) & (rms >= _SILENCE_RMS)
        first, last = int(last_s / _FRAME_S) + 1, int(own_end_s / _FRAME_S)
        if int(loud[first:last].sum()) * _FRAME_S < _TAIL_SPEECH_S:
            return None
        start_s = max(0.0, last_s - _TAIL_LEAD_S)
        # past the cut, so the stretch does not end inside a word; nothing heard: the chunk alone, which
        # ends in a pause (Whisper base heard nothing either with the start of the next word)
        end_s = min(len(samples) / _RATE, own_end_s + _TAIL_AFTER_S) if heard else own_end_s
        clip = samples[int(start_s * _RATE): int(end_s * _RATE)]
        words = [
            w for s in self._decode(clip, start_s, math.inf) for w in s.words
            if last_s < w.mid_s < own_end_s
        ]
        if not words:
            return None
        # On a short stretch Whisper also guesses: the start of the next chunk's first word, heard early
        # and timed before the cut (a doubled word), or "You" in the tail of a word. On 12 long recordings
        # (tiny.en and base) 13 second looks fired: 4 right readings had a mean probability of 0.37-0.99,
        # a half-right one 0.40, and 8 wrong ones (base) 0.04-0.31.
        known = [w.confidence for w in words if w.confidence is not None]
        if known and sum(known) / len(known) < _TAIL_MIN_CONFIDENCE:
            _LOGGER.debug("a second look before the cut at %.2f s was unsure (%s): not kept", own_end_s, " ".join(w.text for w in words))
            return None
        _LOGGER.debug("heard %d word(s) again before the cut at %.2f s", len(words), own_end_s)
        return Span(words[0].start_s, words[-1].end_s, " ".join(w.text for w in words), tuple(words))


class _SamplingWatch:
    """faster-whisper's CTranslate2 model, noting when it is asked to sample (``sampled``)."""

    def __init__(self, model) -> None:
        self._model = model
        self.sampled = False

    def generate(self, *args, **kwargs):
        if kwargs.get("sampling_temperature", 0) > 0:  # faster-whisper's temperature fallback
            self.sampled = True
        return self._model.generate(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._model, name)


def _before(spans: tuple[Span, ...], end_s: float) -> tuple[Span, ...]:
    """The spans' words whose middle lies before ``end_s``; a span cut short keeps only their text."""
    out = []
    for span in spans:
        words = tuple(w for w in span.words if w.mid_s < end_s)
        if len(words) == len(span.words) and (words or span.start_s < end_s):
            out.append(span)
        elif words:
            out.append(Span(words[0].start_s, words[-1].end_s, " ".join(w.text for w in words), words, span.confidence))
    return tuple(out)
