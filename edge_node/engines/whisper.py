"""Whisper through faster-whisper (CTranslate2): far more accurate than PocketSphinx, offline once loaded.

``--model`` is a model name such as ``tiny.en`` or ``base``, found by :mod:`edge_node.models`, or a
local directory holding a CTranslate2 model (``model.bin``, ``config.json``, ``tokenizer.json``).
The model is loaded once per engine process and reused for every chunk. ``int8`` computation on
the CPU.

Whisper decodes a padded 30 s window whatever the chunk length, so the hub cuts chunks that fill
the window (:mod:`hub.chunking`). Within a window Whisper may stop before the end of the audio;
faster-whisper then decodes the rest as a window of its own, a second encoder pass. That is needed
when speech is left, and wasted (and a chance for "Thank you for watching.") when only the pause
is: such a window is not decoded (:meth:`WhisperEngine._decode`).

With ``workers`` > 1 (a :class:`edge_node.runner.SharedEngine`), that many threads may call
:meth:`WhisperEngine.transcribe_timed` at once: CTranslate2 decodes them in parallel on one copy of the
weights (``num_workers``, ``inter_threads``), one CPU thread each. Each decoding's window check is
per thread (:class:`_SamplingWatch`). The model is reloaded for a fresh sampler
(:meth:`WhisperEngine._fresh_sampler`) only when a decoding begins while no other runs: a reload never
swaps the model under a decoding in progress; while others keep running, it waits for the next decoding
that begins alone. With one worker that is before every decoding, as it always was.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable

import speech_recognition as sr

from edge_node.engines.base import EngineUnavailable, NoSpeech, Timed, probability, require_package
from protocol.messages import Span, Word

_LOGGER = logging.getLogger(__name__)
DEFAULT_MODEL = "tiny.en"
_RATE = 16000
_FRAME_S = 0.02
_LEFT_SPEECH_S = 0.15  #: a window is decoded after the last word only if at least this much of the rest is loud
_SPEECH_SHARE = 10 ** (-16 / 20)  #: loud: within 16 dB of the audio's loud frames (as hub.chunking's pauses)
_SILENCE_RMS = 10 ** (-60 / 20)  #: and above -60 dBFS
_STRETCHED_WORD_S = 1.0  #: a last word longer than this, ending within _STRETCH_TO_END_S of the end, is looked at again
_STRETCH_TO_END_S = 0.3
_AGAIN_LEAD_S = 0.1  #: the second look starts this much before the stretched word
_AGAIN_MIN_CONFIDENCE = 0.35  #: and its words are kept only if the model gives them this mean probability
_SEED = 0  #: CTranslate2's sampling seed (see WhisperEngine.__init__)
_DEVICE, _COMPUTE_TYPE = "cpu", "int8"  #: for loading the model, and loading it again (_fresh_sampler)


class WhisperEngine:
    name = "whisper"

    def __init__(self, model: str = "", language: str = "en-US", workers: int = 1) -> None:
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
                self._model_path, device=_DEVICE, compute_type=_COMPUTE_TYPE, cpu_threads=threads, num_workers=workers,
                local_files_only=True,
            )
        except Exception as exc:  # noqa: BLE001 - any load failure is a one-line start-up error
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EngineUnavailable(f"engine whisper could not load model {self.model}: {first[:300]}") from None
        self._threads = threads
        self._workers = workers
        self._decoding = 0  #: decodings in progress (guarded by _lock): the model is reloaded only at 0
        self._lock = threading.Lock()
        self._model.model = _SamplingWatch(self._model.model)

    def transcribe(self, audio: sr.AudioData) -> str:
        return self.transcribe_timed(audio)[0]

    def transcribe_timed(self, audio: sr.AudioData, context_s: float = 0.0) -> Timed:
        """``context_s``: the audio ends with this much trailing context (see :mod:`hub.chunking`). It is
        decoded with the window that holds the chunk's own end, and no further window is decoded."""
        import numpy as np

        pcm = np.frombuffer(audio.get_raw_data(convert_rate=16000, convert_width=2), dtype=np.int16)
        samples = pcm.astype(np.float32) / 32768.0
        own_end_s = len(pcm) / _RATE - context_s
        spans = self._decode(samples, own_end_s if context_s > 0 else math.inf)
        text = " ".join(s.text for s in spans)
        if not text:
            raise NoSpeech()
        return text, spans

    def _decode(self, samples, own_end_s: float) -> tuple[Span, ...]:
        """Spans of ``samples`` (see :meth:`_decode_once`), with a second look where the last word is stretched.

        When Whisper stops in the middle of a sentence, the word alignment may stretch its last word over
        the rest of the audio ("please try" in 27.1-29.4 s of a 29.4 s chunk, then 12 words unheard), and
        faster-whisper's next window starts at that word's end, where nothing is left. So when the last
        word runs to within ``_STRETCH_TO_END_S`` of the end and lasts over ``_STRETCHED_WORD_S``, the
        stretch from its start is decoded again, alone, and its words replace it if the model is sure
        enough of them (a mean probability of at least ``_AGAIN_MIN_CONFIDENCE``: on 12 recordings, right
        readings of short stretches had 0.37-0.99, wrong ones 0.04-0.31).
        """
        spans = self._decode_once(samples, own_end_s)
        end_s = min(len(samples) / _RATE, own_end_s)
        last = spans[-1].words[-1] if spans and spans[-1].words else None
        if last is None or end_s - last.end_s > _STRETCH_TO_END_S or last.end_s - last.start_s < _STRETCHED_WORD_S:
            return spans
        start_s = max(0.0, last.start_s - _AGAIN_LEAD_S)
        again = [
            Word(round(w.start_s + start_s, 2), round(w.end_s + start_s, 2), w.text, w.confidence)
            for span in self._decode_once(samples[int(start_s * _RATE): int(end_s * _RATE)], math.inf)
            for w in span.words
        ]
        again = [w for w in again if w.end_s > last.start_s]
        known = [w.confidence for w in again if w.confidence is not None]
        if not again or (known and sum(known) / len(known) < _AGAIN_MIN_CONFIDENCE):
            _LOGGER.debug("a second look at a stretched last word was empty or unsure: kept %r", last.text)
            return spans
        _LOGGER.debug("a stretched last word %r heard again as %d word(s)", last.text, len(again))
        kept = spans[-1].words[:-1]
        head = spans[:-1] + ((Span(kept[0].start_s, kept[-1].end_s, _joined(kept), kept, spans[-1].confidence),)
                             if kept else ())
        return (*head, Span(again[0].start_s, again[-1].end_s, _joined(again), tuple(again)))

    def _decode_once(self, samples, own_end_s: float) -> tuple[Span, ...]:
        """Spans of ``samples``, stopping at the first segment that starts at or after ``own_end_s``.

        Before faster-whisper encodes a further window (it starts one where the last ended early), the
        audio after the last word heard must hold speech: at least ``_LEFT_SPEECH_S`` of loud frames.
        Else decoding ends there. On 12 long recordings cut into chunks, 40 such windows followed 75
        chunks' first ones; one of them held only a pause and came back as "Thank you very much for
        watching and I'll see you in the next one." after every temperature of the fallback.
        """
        with self._lock:
            if self._model.model.sampled and not self._decoding:  # a decoding sampled, even if it then failed
                self._fresh_sampler()
            self._decoding += 1
            watch = self._model.model
        loud = _loud_frames(samples)
        heard_s = 0.0  # where the last word heard so far ends
        watch.more = lambda: _speech_left(loud, heard_s)
        spans: list[Span] = []
        try:
            decoded, _ = self._model.transcribe(
                samples, language=self._lang, beam_size=5, condition_on_previous_text=False, word_timestamps=True,
            )
            for s in decoded:  # lazily, window by window
                if s.start >= own_end_s:
                    break
                heard_s = max([heard_s, *(w.end for w in s.words)] if s.words else [heard_s, s.end])
                if s.text.strip():
                    spans.append(_span(s))
        except _NoSpeechLeft:
            _LOGGER.debug("no speech left after %.2f s: no further window decoded", heard_s)
        finally:
            watch.more = None
            with self._lock:
                self._decoding -= 1
        return tuple(spans)

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
            inter_threads=self._workers,
        ))


def _joined(words) -> str:
    """The words as text: a word that goes on the one before ("-ray" after "X", "'s") takes no space."""
    return "".join(w.text if i == 0 or w.text[:1] in "-'" else " " + w.text for i, w in enumerate(words))


class _NoSpeechLeft(Exception):
    """Raised into faster-whisper's decoding loop when the window it is about to encode holds no speech."""


def _span(s) -> Span:
    """A faster-whisper segment as a :class:`Span`."""
    return Span(
        round(s.start, 2), round(s.end, 2), s.text.strip(),
        tuple(Word(round(w.start, 2), round(w.end, 2), w.word.strip(), probability(w.probability)) for w in (s.words or ())),
        probability(math.exp(s.avg_logprob)),
    )


def _loud_frames(samples):
    """Per 20 ms frame: is it loud (within 16 dB of the audio's loud frames, and above -60 dBFS)?"""
    import numpy as np

    frame = int(_RATE * _FRAME_S)
    usable = samples[: len(samples) // frame * frame]
    if usable.size == 0:
        return np.zeros(0, dtype=bool)
    rms = np.sqrt(np.mean(usable.reshape(-1, frame) ** 2, axis=1))
    return (rms >= np.percentile(rms, 90) * _SPEECH_SHARE) & (rms >= _SILENCE_RMS)


def _speech_left(loud, after_s: float) -> bool:
    """Is there at least ``_LEFT_SPEECH_S`` of loud frames after ``after_s``?"""
    return int(loud[int(after_s / _FRAME_S) + 1:].sum()) * _FRAME_S >= _LEFT_SPEECH_S


class _SamplingWatch:
    """faster-whisper's CTranslate2 model, noting when it is asked to sample (``sampled``), and asking
    ``more()`` (when set) before it encodes a window after the first of a decoding.

    ``more`` and whether a window was encoded belong to the decoding of the calling thread (faster-whisper
    encodes and generates in the thread that reads its segments); ``sampled`` is one flag for all.
    """

    def __init__(self, model) -> None:
        self._model = model
        self.sampled = False
        self._local = threading.local()

    @property
    def more(self) -> Callable[[], bool] | None:
        return getattr(self._local, "more", None)

    @more.setter
    def more(self, check: Callable[[], bool] | None) -> None:
        self._local.more, self._local.encoded = check, False  # a new decoding begins (or ends)

    def encode(self, *args, **kwargs):
        more = self.more
        if getattr(self._local, "encoded", False) and more is not None and not more():
            raise _NoSpeechLeft()
        self._local.encoded = True
        return self._model.encode(*args, **kwargs)

    def generate(self, *args, **kwargs):
        if kwargs.get("sampling_temperature", 0) > 0:  # faster-whisper's temperature fallback
            self.sampled = True
        return self._model.generate(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._model, name)
