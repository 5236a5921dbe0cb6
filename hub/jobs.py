"""Jobs and their chunks as the hub tracks them (in memory; :mod:`hub.store` makes them durable)."""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field

from pydub import AudioSegment

from hub.chunking import ChunkSpec
from hub.recording import Recording
from protocol.messages import Result


class ChunkState(str, enum.Enum):
    QUEUED = "queued"  #: waiting for a node with free capacity
    ASSIGNED = "assigned"  #: sent to ``node_id``, leased until ``lease_deadline``
    DONE = "done"  #: a node answered ``ok`` or ``no-speech``
    FAILED = "failed"  #: gave up after ``max_attempts``; the transcript shows a gap


class JobState(str, enum.Enum):
    QUEUED = "queued"  #: no chunk has been assigned yet (e.g. no node online)
    RUNNING = "running"
    DONE = "done"  #: every chunk done
    PARTIAL = "partial"  #: finished, but some chunks failed (gaps in the transcript)
    FAILED = "failed"  #: gave up as a whole, see ``Job.error``


@dataclass
class ChunkWork:
    seq: int
    spec: ChunkSpec
    state: ChunkState = ChunkState.QUEUED
    node_id: str | None = None
    attempt: int = 0  #: number of the current (or last) assignment
    failures: int = 0  #: errors, lease expiries and nodes lost so far
    rejections: int = 0  #: rejections counted towards the next lost attempt (``max_rejections``)
    lease_deadline: float = 0.0  #: monotonic seconds
    tried: set[str] = field(default_factory=set)
    result: Result | None = None
    reason: str = ""  #: why it failed
    #: this chunk's own audio (overlap included) in a stream, whose job holds no whole recording;
    #: dropped once the chunk is done or failed
    audio: AudioSegment | None = field(default=None, repr=False)

    @property
    def offset_s(self) -> float:
        """Where the audio sent for this chunk starts in the recording (overlap included)."""
        return self.spec.audio_start_ms / 1000

    @property
    def duration_s(self) -> float:
        """Length of the audio sent for this chunk (overlap and context included)."""
        return (self.spec.audio_end_ms - self.spec.audio_start_ms) / 1000

    @property
    def heard_s(self) -> float:
        """Length of the audio sent for this chunk without its trailing context."""
        return (self.spec.heard_end_ms - self.spec.audio_start_ms) / 1000


@dataclass
class Job:
    id: str
    name: str
    #: None once finished (dropped then: only results matter), and while a stream is open (its chunks
    #: carry their own audio; a stream resumed from the store has its audio here). A recording from a
    #: file is read by range (:class:`hub.recording.Recording`), never held whole.
    audio: AudioSegment | Recording | None
    chunks: list[ChunkWork]
    language: str = "en-US"
    created: float = field(default_factory=time.time)
    created_mono: float = field(default_factory=time.monotonic)
    state: JobState = JobState.QUEUED
    error: str = ""
    idle_since: float | None = None  #: monotonic; since when it has waited with no node online
    finished: threading.Event = field(default_factory=threading.Event, repr=False)
    #: a stream still growing (:meth:`hub.service.Hub.open_stream`): it cannot finish until it is closed
    open: bool = False

    @property
    def duration_s(self) -> float:
        return self.chunks[-1].spec.end_ms / 1000 if self.chunks else 0.0

    def count(self, state: ChunkState) -> int:
        return sum(1 for c in self.chunks if c.state is state)

    @property
    def is_finished(self) -> bool:
        return self.state in (JobState.DONE, JobState.PARTIAL, JobState.FAILED)
