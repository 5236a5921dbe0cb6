"""Each engine runs in a child process of its own.

Why a process and not a thread: PocketSphinx holds the GIL for the whole
decode (measured: a 40 s stall of every other thread), which would starve
paho's network thread, miss keepalives and make the broker declare a busy node
dead. A child process also contains engines that crash (a segfault becomes an
``error`` result) or hang (killed after ``timeout``), and is started again.

The worker thread that owns an :class:`EngineProcess` sends it raw PCM over a
pipe and waits, bounded, for ``(status, text, reason)``. The child exits when
its pipe closes, so it never outlives the node by more than the chunk in hand.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from dataclasses import dataclass
from multiprocessing.connection import Connection

from protocol.messages import ResultStatus, Span

_LOGGER = logging.getLogger(__name__)
_CTX = mp.get_context("spawn")  # no fork of a process that runs paho threads


@dataclass(frozen=True)
class EngineSpec:
    name: str
    model: str = ""
    language: str = "en-US"


@dataclass(frozen=True)
class Outcome:
    status: ResultStatus
    text: str = ""
    reason: str = ""
    spans: tuple[Span, ...] = ()


class EngineStartError(RuntimeError):
    """The engine could not be loaded in its process; the message is one line."""


def _child(conn: Connection, spec: EngineSpec) -> None:
    # Runs in the child process. Ctrl-C in a terminal reaches the whole process group:
    # the node decides what happens to the chunk in hand, not the engine.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    from edge_node.engines import EngineUnavailable, create_engine

    try:
        engine = create_engine(spec.name, spec.model, spec.language)
    except EngineUnavailable as exc:
        conn.send(("error", str(exc)))
        return
    conn.send(("ready", f"{engine.name}\t{engine.model}\t{engine.language}"))
    while True:
        try:
            pcm, rate, width, context_s = conn.recv()
        except (EOFError, OSError):
            return  # the node is gone
        try:
            conn.send(_answer(engine, pcm, rate, width, context_s))
        except OSError:  # BrokenPipeError included: the node died while we worked
            return


def _answer(engine, pcm: bytes, rate: int, width: int, context_s: float) -> tuple[str, str, str, tuple[Span, ...]]:
    """(status, text, reason, spans) of one chunk; every engine failure becomes an error answer.

    ``context_s``: the audio ends with this much trailing context. The node passes it only to engines
    that read it (:data:`edge_node.engines.CONTEXT_ENGINES`), which may stop decoding once they reach it;
    for the others it has cut the context off, and ``context_s`` is 0.

    Audio that cannot be speech (:mod:`edge_node.speech`: digital silence, steady hiss or hum) is
    answered ``no-speech`` without the engine, which would hear words in it. The test engines
    (:data:`edge_node.engines.TEST_ENGINES`) hear no words and get every chunk.
    """
    import speech_recognition as sr

    from edge_node import speech
    from edge_node.engines import TEST_ENGINES, NoSpeech

    try:
        if engine.name not in TEST_ENGINES and not (heard := speech.hear(pcm, rate, width)).speech:
            _LOGGER.debug("no speech in %.1f s of audio: %s (loud frames %.1f dBFS, %.1f dB above the quiet ones)",
                          len(pcm) / (rate * width), heard.reason, heard.loud_dbfs, heard.rise_db)
            raise NoSpeech()
        audio = sr.AudioData(pcm, rate, width)
        text, spans = engine.transcribe_timed(audio, context_s) if context_s else engine.transcribe_timed(audio)
        return (ResultStatus.OK.value, text, "", spans)
    except NoSpeech:
        return (ResultStatus.NO_SPEECH.value, "", "", ())
    except Exception as exc:  # noqa: BLE001 - every engine failure becomes an error result
        return (ResultStatus.ERROR.value, "", f"{type(exc).__name__}: {exc}"[:1000], ())


class EngineProcess:
    """One engine in one child process, restarted after a crash or a hang."""

    def __init__(self, spec: EngineSpec, start_timeout: float = 120.0) -> None:
        self.spec = spec
        self._start_timeout = start_timeout
        self._proc: mp.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self.name = spec.name
        self.model = spec.model
        self.language = spec.language

    def start(self) -> None:
        parent, child = _CTX.Pipe()
        proc = _CTX.Process(target=_child, args=(child, self.spec), name=f"engine-{self.spec.name}", daemon=True)
        proc.start()
        child.close()
        if not parent.poll(self._start_timeout):
            proc.kill()
            raise EngineStartError(f"engine {self.spec.name} did not load within {self._start_timeout:.0f} s")
        try:
            kind, detail = parent.recv()
        except EOFError:
            proc.join(1)
            raise EngineStartError(f"engine {self.spec.name} process died while loading (exit code {proc.exitcode})") from None
        if kind != "ready":
            proc.join(1)
            raise EngineStartError(detail)
        self.name, self.model, self.language = detail.split("\t")
        self._proc, self._conn = proc, parent

    def transcribe(self, pcm: bytes, rate: int, width: int, timeout: float, context_s: float = 0.0) -> Outcome:
        """Run one chunk; never raises. A crash or hang kills the process, which restarts next call."""
        if self._proc is None or not self._proc.is_alive():
            try:
                self.start()
            except EngineStartError as exc:
                return Outcome(ResultStatus.ERROR, reason=str(exc))
        assert self._conn is not None and self._proc is not None
        try:
            self._conn.send((pcm, rate, width, context_s))
            if not self._conn.poll(timeout):
                _LOGGER.error("engine %s hung for %.0f s; killing it", self.name, timeout)
                self.close()
                return Outcome(ResultStatus.ERROR, reason=f"engine gave no answer within {timeout:.0f} s")
            status, text, reason, spans = self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            self._proc.join(1)
            code = self._proc.exitcode
            _LOGGER.error("engine %s process died (exit code %s)", self.name, code)
            self.close()
            return Outcome(ResultStatus.ERROR, reason=f"engine process died (exit code {code})")
        return Outcome(ResultStatus(status), text, reason, spans)

    def close(self, grace: float = 0.0) -> None:
        """Close the pipe (the child then exits); kill it if it is still there after ``grace`` s."""
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            self._proc.join(grace)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)
        self._proc = self._conn = None


class InlineEngine:
    """The interface of :class:`EngineProcess`, but the engine runs in the calling thread.

    Only for engines that cannot hold the GIL, crash or hang (:func:`edge_node.engines.runs_inline`:
    the simulated benchmark engine), so that a node costs no second process.
    """

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self._engine = None
        self.name = spec.name
        self.model = spec.model
        self.language = spec.language

    def start(self) -> None:
        from edge_node.engines import EngineUnavailable, create_engine

        try:
            self._engine = create_engine(self.spec.name, self.spec.model, self.spec.language)
        except EngineUnavailable as exc:
            raise EngineStartError(str(exc)) from None
        self.name, self.model, self.language = self._engine.name, self._engine.model, self._engine.language

    def transcribe(self, pcm: bytes, rate: int, width: int, timeout: float, context_s: float = 0.0) -> Outcome:
        """Run one chunk in this thread; never raises (``timeout`` is not needed: the engine cannot hang)."""
        if self._engine is None:
            return Outcome(ResultStatus.ERROR, reason="engine not started")
        status, text, reason, spans = _answer(self._engine, pcm, rate, width, context_s)
        return Outcome(ResultStatus(status), text, reason, spans)

    def close(self, grace: float = 0.0) -> None:
        self._engine = None


def make_engine(spec: EngineSpec) -> EngineProcess | InlineEngine:
    """An engine process, or for the engines that allow it (:func:`edge_node.engines.runs_inline`) an inline engine."""
    from edge_node.engines import runs_inline

    return InlineEngine(spec) if runs_inline(spec.name) else EngineProcess(spec)
