"""Live recordings from the browser: PCM blocks in, utterances out to a growing hub stream.

The page sends 16 kHz mono 16-bit PCM in blocks of about half a second, each with its byte
offset in the recording (docs/api.md, "Live recording"). Each :class:`LiveSession` owns one
:class:`hub.vad.Segmenter` (the same VAD and settings as ``hub listen``), cuts the blocks into
30 ms frames and hands each utterance to :meth:`hub.service.Hub.append` as soon as the speaker
pauses, in session time, so that its text comes while the user is still speaking.

Threads: a block is processed in the request thread that brought it, under its session's lock
(the segmenter is not thread-safe, and blocks must go in order); nothing here sleeps. A session
whose browser went away (no block for ``idle_s``) is ended by the ``dashboard-live-sweep``
thread, which waits on a condition until the earliest such deadline; :meth:`LiveSessions.close`
ends every open session at shutdown. docs/capture.md says why it is a thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hub.audio import SAMPLE_RATE
from hub.chunking import ChunkingSettings
from hub.jobs import Job
from hub.listen import append_utterance
from hub.service import Hub, StreamClosed
from hub.vad import Segmenter, Utterance, VadSettings

_LOGGER = logging.getLogger(__name__)

BYTES_PER_S = 2 * SAMPLE_RATE  #: 16 kHz mono 16-bit PCM
MAX_BLOCK_BYTES = 10 * BYTES_PER_S  #: the largest block taken at once: 10 s of audio
FORGET_S = 600.0  #: an ended session answers 410 for this long, then 404


class Gap(Exception):
    """A block that starts after the audio received so far: nothing is taken."""

    def __init__(self, expected: int) -> None:
        super().__init__(f"a block must start at offset {expected}, the audio received so far")
        self.expected = expected


class Ended(Exception):
    """The session takes no more audio (``end``, idle, the duration limit, or its stream failed)."""


class DurationLimit(Ended):
    """The block would take the session past its longest duration; the session has ended."""


def append_utterances(hub: Hub, job: Job, utterances: list[Utterance]) -> None:
    """Hand each utterance to the stream, as :class:`hub.listen.ListenSession` does."""
    for u in utterances:
        append_utterance(hub, job, u)


class LiveSession:
    """One browser recording: its stream job, its segmenter and how much audio has come."""

    def __init__(self, hub: Hub, job: Job, segmenter: Segmenter, max_bytes: int, now: float) -> None:
        self.hub = hub
        self.job = job
        self._segmenter = segmenter
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self.received = 0  #: bytes of PCM taken so far: the next block's offset
        self.last_seen = now  #: clock time of the last request for this session
        self.ended = ""  #: why it ended; "" while open

    def add(self, offset: int, pcm: bytes, now: float) -> None:
        """Take the block at byte ``offset``. What was already taken (a retry) is not taken twice.

        Raises :class:`Gap` if it starts after the audio so far, :class:`Ended` if the session is over.
        """
        with self._lock:
            if self.ended:
                raise Ended(f"the live recording {self.job.id} has ended ({self.ended})")
            self.last_seen = now
            if offset > self.received:
                raise Gap(self.received)
            new = pcm[self.received - offset:]
            if not new:
                return
            if self.received + len(new) > self._max_bytes:
                self._end("it reached the longest recording allowed")
                raise DurationLimit(f"the live recording reached the {self._max_bytes // BYTES_PER_S} s limit and has ended")
            self.received += len(new)
            try:
                append_utterances(self.hub, self.job, self._segmenter.feed(new))
            except StreamClosed as exc:
                self._end(str(exc))
                raise Ended(f"the live recording {self.job.id} has ended ({exc})") from None

    def end(self, why: str) -> bool:
        """Send the utterance in progress and close the stream; False if it had already ended."""
        with self._lock:
            return self._end(why)

    def _end(self, why: str) -> bool:
        if self.ended:
            return False
        self.ended = why
        try:
            append_utterances(self.hub, self.job, self._segmenter.flush())
        except StreamClosed as exc:  # the stream failed as a whole: nothing more to send
            _LOGGER.warning("live recording %s: %s", self.job.id, exc)
        self.hub.close_stream(self.job)
        _LOGGER.info("live recording %s ended after %.1f s of audio: %s", self.job.id, self.received / BYTES_PER_S, why)
        return True


def live_vad(chunking: ChunkingSettings) -> VadSettings:
    """``hub listen``'s VAD defaults, with utterances cut so that a piece, with the overlap before it, fits
    a chunk (``--max-chunk``, ``--chunk-overlap``), as :func:`hub.listen.listen_settings` requires."""
    longest = min(VadSettings.max_utterance_s, chunking.max_s - chunking.overlap_s)
    return VadSettings(max_utterance_s=longest, overlap_s=chunking.overlap_s)


@dataclass(frozen=True)
class LiveSettings:
    max_duration_s: float  #: longest live recording, seconds (the dashboard's max duration)
    idle_s: float = 30.0  #: a session with no block for this long is ended
    vad: VadSettings = VadSettings()  #: as ``hub listen``'s defaults: WebRTC's VAD


class LiveSessions:
    """Every live session of one dashboard, by job id; the sweep that ends abandoned ones."""

    def __init__(self, hub: Hub, settings: LiveSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.hub = hub
        self.settings = settings
        self.clock = clock  #: monotonic seconds; tests move it by hand
        self._cond = threading.Condition()
        self._sessions: dict[str, LiveSession] = {}
        self._ended: dict[str, float] = {}  # ended session id -> clock time it ended, forgotten after FORGET_S
        self._stopping = False
        self._dirty = False  # something changed since the sweep last looked
        self._sweeping = threading.Lock()  # one sweep at a time (the thread, or a test calling sweep())
        self._thread = threading.Thread(target=self._run, name="dashboard-live-sweep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def open(self, name: str) -> LiveSession:
        """A new session with a new stream job. ValueError if the VAD cannot be made."""
        segmenter = Segmenter(self.settings.vad)  # makes the classifier: fails before any job exists
        job = self.hub.open_stream(name, keep_audio=True)  # played back on the job's page
        max_bytes = int(self.settings.max_duration_s * BYTES_PER_S)
        session = LiveSession(self.hub, job, segmenter, max_bytes - max_bytes % 2, self.clock())
        with self._cond:
            self._sessions[job.id] = session
        self.touched()
        return session

    def get(self, job_id: str) -> LiveSession | None:
        """The session, open or recently ended; None if there is none."""
        with self._cond:
            return self._sessions.get(job_id)

    def touched(self) -> None:
        """A session ended or was used: the sweep recomputes its deadline."""
        with self._cond:
            self._dirty = True
            self._cond.notify_all()

    def sweep(self) -> float | None:
        """End the sessions idle for ``idle_s``; forget long-ended ones. Returns the next deadline, if any."""
        with self._sweeping:
            return self._sweep(self.clock())

    def _sweep(self, now: float) -> float | None:
        with self._cond:
            sessions = list(self._sessions.values())
        deadline = None
        for session in sessions:
            if session.ended:
                ended_at = self._ended.setdefault(session.job.id, now)
                if now - ended_at >= FORGET_S:
                    with self._cond:
                        self._sessions.pop(session.job.id, None)
                    del self._ended[session.job.id]
                    continue
                due = ended_at + FORGET_S
            else:
                due = session.last_seen + self.settings.idle_s
                if now >= due:
                    if session.end(f"no audio for {self.settings.idle_s:g} s: the browser went away"):
                        _LOGGER.warning("live recording %s: no audio for %g s; ended it", session.job.id,
                                        self.settings.idle_s)
                    self._ended.setdefault(session.job.id, now)
                    due = now + FORGET_S
            deadline = due if deadline is None else min(deadline, due)
        return deadline

    def close(self) -> None:
        """Stop the sweep and end every open session (the hub then finishes their chunks)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            sessions = list(self._sessions.values())
        if self._thread.is_alive():
            self._thread.join()
        for session in sessions:
            session.end("the dashboard stopped")

    def _run(self) -> None:  # the dashboard-live-sweep thread
        while True:
            try:
                deadline = self.sweep()
            except Exception:  # noqa: BLE001 - keep sweeping; a failed close is in the log
                _LOGGER.exception("the live-recording sweep failed; trying again")
                deadline = self.clock() + self.settings.idle_s
            with self._cond:
                if self._stopping:
                    return
                if self._dirty:
                    self._dirty = False
                    continue
                # no session: wait until one starts (touched); else until the earliest deadline
                self._cond.wait(None if deadline is None else max(0.01, deadline - self.clock()))
