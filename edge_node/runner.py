"""Each engine runs in a child process of its own.

Why a process and not a thread: PocketSphinx holds the GIL for the whole
decode (measured: a 40 s stall of every other thread), which would starve
paho's network thread, miss keepalives and make the broker declare a busy node
dead. A child process also contains engines that crash (a segfault becomes an
``error`` result) or hang (killed after ``timeout``), and is started again.

The worker thread that owns an :class:`EngineProcess` sends it raw PCM over a
pipe and waits, bounded, for ``(status, text, reason)``. The child exits when
its pipe closes, so it never outlives the node by more than the chunk in hand.

A :class:`SharedEngine` is one child process with one loaded engine that serves K
workers, possibly of several nodes hosted by one process (``python -m edge_node
--node-id A --node-id B``): a second copy of a model on one machine buys nothing but
its load time and memory. Threads, on purpose: in the child, one thread per pipe runs
the same request loop as an :class:`EngineProcess`; only engines that release the GIL
while decoding (:data:`edge_node.engines.SHARED_ENGINES`) may be shared. In the
parent, each client's pipe is used by its own worker thread only; the start of the
child, its killing and its generation (which tells a client that its pipe belongs to a
child that is gone) are guarded by one lock. A hang or crash ends the child for every
client: each in-flight request then returns an error, and the next request of any
client starts it again, once.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
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


def _child(conns: list[Connection], spec: EngineSpec) -> None:
    # Runs in the child process; one pipe per client, a thread for each when there are several. Ctrl-C in a terminal reaches the whole process group:
    # the node decides what happens to the chunk in hand, not the engine.
    import os
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The engine decodes in worker threads here, where OpenMP's thread count is not the one CTranslate2 sets
    # for the thread that loads the model: it falls back to one thread per core, which spin between calls.
    # Before any library that links OpenMP is loaded: as many as the engine's own threads (measured: Whisper
    # tiny.en on a 222 s recording, one node, 14.4 s of CPU with the default and 12.3 s with this).
    os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("EDGESCRIBE_ENGINE_THREADS", "1"))

    from edge_node.engines import EngineUnavailable, create_engine

    try:
        engine = create_engine(spec.name, spec.model, spec.language, workers=len(conns))
    except EngineUnavailable as exc:
        conns[0].send(("error", str(exc)))
        return
    conns[0].send(("ready", f"{engine.name}\t{engine.model}\t{engine.language}"))
    if len(conns) == 1:
        _serve(conns[0], engine)
        return
    threads = [threading.Thread(target=_serve, args=(c, engine), name=f"client-{i}", daemon=True)
               for i, c in enumerate(conns)]
    for thread in threads:
        thread.start()
    for thread in threads:  # the child lives until every client's pipe is closed (or it is killed)
        thread.join()


def _serve(conn: Connection, engine) -> None:
    """Answer one client's requests until its pipe closes."""
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


def _launch(spec: EngineSpec, clients: int, start_timeout: float) -> tuple[mp.process.BaseProcess, list[Connection], list[str]]:
    """Start an engine child with ``clients`` pipes; wait, bounded, until it has loaded the engine.

    Returns the process, the parent's end of each pipe and the engine's (name, model, language);
    raises :class:`EngineStartError` (one line) when the engine cannot be loaded.
    """
    pipes = [_CTX.Pipe() for _ in range(clients)]
    suffix = f"-shared{clients}" if clients > 1 else ""
    proc = _CTX.Process(target=_child, args=([c for _, c in pipes], spec), name=f"engine-{spec.name}{suffix}", daemon=True)
    proc.start()
    parents = [p for p, _ in pipes]
    for _, child in pipes:
        child.close()
    try:
        if not parents[0].poll(start_timeout):
            proc.kill()
            proc.join(5)
            raise EngineStartError(f"engine {spec.name} did not load within {start_timeout:.0f} s")
        try:
            kind, detail = parents[0].recv()
        except EOFError:
            proc.join(1)
            raise EngineStartError(f"engine {spec.name} process died while loading (exit code {proc.exitcode})") from None
        if kind != "ready":
            proc.join(1)
            raise EngineStartError(detail)
    except EngineStartError:
        for conn in parents:
            conn.close()
        raise
    return proc, parents, detail.split("\t")


def _ask(conn: Connection, proc: mp.process.BaseProcess, name: str, request: tuple, timeout: float) -> Outcome | str:
    """Send one request and wait, bounded, for its answer: the :class:`Outcome`, or why the process must go."""
    try:
        conn.send(request)
        if not conn.poll(timeout):
            _LOGGER.error("engine %s hung for %.0f s; killing it", name, timeout)
            return f"engine gave no answer within {timeout:.0f} s"
        status, text, reason, spans = conn.recv()
    except (EOFError, OSError):  # BrokenPipeError included
        proc.join(1)
        code = proc.exitcode
        _LOGGER.error("engine %s process died (exit code %s)", name, code)
        return f"engine process died (exit code {code})"
    return Outcome(ResultStatus(status), text, reason, spans)


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
        self._proc, (self._conn,), (self.name, self.model, self.language) = _launch(self.spec, 1, self._start_timeout)

    def transcribe(self, pcm: bytes, rate: int, width: int, timeout: float, context_s: float = 0.0) -> Outcome:
        """Run one chunk; never raises. A crash or hang kills the process, which restarts next call."""
        if self._proc is None or not self._proc.is_alive():
            try:
                self.start()
            except EngineStartError as exc:
                return Outcome(ResultStatus.ERROR, reason=str(exc))
        assert self._conn is not None and self._proc is not None
        answer = _ask(self._conn, self._proc, self.name, (pcm, rate, width, context_s), timeout)
        if isinstance(answer, str):
            self.close()
            return Outcome(ResultStatus.ERROR, reason=answer)
        return answer

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


class SharedEngine:
    """One engine in one child process, serving ``workers`` clients at once (see the module docstring).

    :meth:`clients` gives the clients, each with the interface of :class:`EngineProcess`; give each to
    one worker thread. The child starts with the first client's ``start()`` or ``transcribe()``, and ends
    with the last client's ``close()``.
    """

    def __init__(self, spec: EngineSpec, workers: int, start_timeout: float = 120.0) -> None:
        if workers < 1:
            raise ValueError(f"a shared engine needs at least one worker, not {workers}")
        self.spec = spec
        self._start_timeout = start_timeout
        self._lock = threading.Lock()
        self._proc: mp.process.BaseProcess | None = None
        self._conns: list[Connection] = []  #: the parent's ends of the current child's pipes, one per client
        self._generation = 0  #: counts the children started; a client's pipe of an older one is stale
        self._info = (spec.name, spec.model, spec.language)
        self._clients = [_SharedClient(self, i) for i in range(workers)]
        self._open = set(range(workers))

    def clients(self) -> list[_SharedClient]:
        return list(self._clients)

    def _connect(self, index: int) -> tuple[int, Connection, mp.process.BaseProcess]:
        """Client ``index``'s pipe to a live child: (generation, pipe, process); starts the child if there
        is none (raises :class:`EngineStartError`)."""
        with self._lock:
            if self._proc is None or not self._proc.is_alive():
                self._end_locked()
                self._proc, self._conns, info = _launch(self.spec, len(self._clients), self._start_timeout)
                self._info = (info[0], info[1], info[2])
                self._generation += 1
                for i in set(range(len(self._clients))) - self._open:
                    self._conns[i].close()  # closed clients: the child's thread for them ends at once
                _LOGGER.info("engine %s loaded once for %d workers (pid %s)", self._info[0], len(self._clients), self._proc.pid)
            return self._generation, self._conns[index], self._proc

    def _kill(self, generation: int) -> None:
        """End the child of ``generation`` (a hang or crash seen by one client); a newer one stays."""
        with self._lock:
            if generation == self._generation:
                self._end_locked()

    def _end_locked(self) -> None:
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(5)
        self._proc = None

    def _release(self, index: int, grace: float) -> None:
        """Client ``index`` is closed; the last one ends the child (after ``grace`` s to finish)."""
        with self._lock:
            self._open.discard(index)
            if self._open or self._proc is None:
                return
            for conn in self._conns:
                conn.close()  # the child's threads see their pipes close and the child exits
            self._proc.join(grace)
            self._end_locked()


class _SharedClient:
    """One worker's door to a :class:`SharedEngine`: the interface of :class:`EngineProcess`."""

    def __init__(self, owner: SharedEngine, index: int) -> None:
        self._owner = owner
        self._index = index
        self._generation = 0
        self._conn: Connection | None = None
        self.spec = owner.spec
        self.name, self.model, self.language = owner.spec.name, owner.spec.model, owner.spec.language

    def start(self) -> None:
        self._attach()

    def _attach(self) -> tuple[Connection, mp.process.BaseProcess]:
        generation, conn, proc = self._owner._connect(self._index)
        if generation != self._generation:
            if self._conn is not None:
                self._conn.close()  # the pipe of a child that is gone: only this client ever uses it
            self._generation, self._conn = generation, conn
        self.name, self.model, self.language = self._owner._info
        return conn, proc

    def transcribe(self, pcm: bytes, rate: int, width: int, timeout: float, context_s: float = 0.0) -> Outcome:
        """Run one chunk; never raises. A crash or hang ends the child for every client; the next call
        of any client starts it again."""
        try:
            conn, proc = self._attach()
        except EngineStartError as exc:
            return Outcome(ResultStatus.ERROR, reason=str(exc))
        answer = _ask(conn, proc, self.name, (pcm, rate, width, context_s), timeout)
        if isinstance(answer, str):
            self._owner._kill(self._generation)
            return Outcome(ResultStatus.ERROR, reason=answer)
        return answer

    def close(self, grace: float = 0.0) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._owner._release(self._index, grace)


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


#: what a node's worker thread drives: each has start(), transcribe(), close(), name, model and language
Engine = EngineProcess | InlineEngine | _SharedClient


def make_engine(spec: EngineSpec) -> EngineProcess | InlineEngine:
    """An engine process, or for the engines that allow it (:func:`edge_node.engines.runs_inline`) an inline engine."""
    from edge_node.engines import runs_inline

    return InlineEngine(spec) if runs_inline(spec.name) else EngineProcess(spec)


def make_engines(spec: EngineSpec, count: int) -> list[Engine]:
    """``count`` engines for as many worker threads: the clients of one :class:`SharedEngine` for the
    engines that may be shared (:data:`edge_node.engines.SHARED_ENGINES`), else one each."""
    from edge_node.engines import SHARED_ENGINES

    if count > 1 and spec.name in SHARED_ENGINES:
        return list(SharedEngine(spec, workers=count).clients())
    return [make_engine(spec) for _ in range(count)]
