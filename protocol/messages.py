"""One frozen dataclass per wire message, each with ``encode`` and ``decode``.

Every message carries ``type`` and the protocol version ``v`` in its JSON
header (see :mod:`protocol.codec`). ``decode`` validates every field and raises
:class:`~protocol.errors.ProtocolError` for anything malformed, oversized,
hostile or of an unknown version; receivers log and drop such messages.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import wave
from dataclasses import dataclass
from typing import Any, ClassVar

from protocol.codec import Fields, pack, unpack
from protocol.errors import ProtocolError
from protocol.topics import check_id

#: Largest chunk message (header plus audio) a hub publishes or a node accepts.
#: Kept well below the broker's ``max_packet_size`` in mosquitto.conf (16 MiB).
MAX_CHUNK_BYTES = 8 * 1024 * 1024
#: Largest result or status message accepted (100,000 characters of text, JSON-escaped, fit).
MAX_SMALL_BYTES = 1024 * 1024
MAX_TEXT_CHARS = 100_000
_YEAR_3000 = 32_503_680_000.0


def _header(message: Any, skip: str = "") -> dict[str, Any]:
    """Every field of a message dataclass (enums as their values, nested dataclasses as objects), plus ``type``."""
    header: dict[str, Any] = {"type": message.TYPE}
    for f in dataclasses.fields(message):
        if f.name != skip:
            value = getattr(message, f.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = [dataclasses.asdict(v) for v in value]
            header[f.name] = value
    return header


MAX_SPANS = 1000
MAX_WORDS = 20_000
_MAX_CHUNK_S = 1e5


@dataclass(frozen=True)
class Word:
    """A word and when it was said, in seconds from the start of its chunk."""

    start_s: float
    end_s: float
    text: str
    confidence: float | None = None  #: 0-1, the engine's own estimate that the word is right; None if it gives none

    @property
    def mid_s(self) -> float:
        return (self.start_s + self.end_s) / 2


@dataclass(frozen=True)
class Span:
    """A stretch of text the engine timed (a Whisper segment, a PocketSphinx utterance), chunk-relative."""

    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...] = ()  #: empty when the engine gives no word times
    confidence: float | None = None  #: 0-1, the engine's estimate for the span as a whole; None if it gives none


def _spans(value: Any) -> tuple[Span, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_SPANS:
        raise ProtocolError(f"field 'spans' must be a list of at most {MAX_SPANS} objects")
    spans, words = [], 0
    for item in value:
        if not isinstance(item, dict):
            raise ProtocolError("a span must be an object")
        f = Fields(item)
        raw_words = item.get("words", [])
        if not isinstance(raw_words, list):
            raise ProtocolError("a span's words must be a list")
        words += len(raw_words)
        if words > MAX_WORDS:
            raise ProtocolError(f"more than {MAX_WORDS} timed words")
        timed = []
        for w in raw_words:
            if not isinstance(w, dict):
                raise ProtocolError("a word must be an object")
            g = Fields(w)
            timed.append(
                Word(
                    g.number("start_s", 0.0, _MAX_CHUNK_S), g.number("end_s", 0.0, _MAX_CHUNK_S), g.text("text", 200),
                    g.optional_number("confidence", 0.0, 1.0),
                )
            )
        spans.append(
            Span(
                f.number("start_s", 0.0, _MAX_CHUNK_S), f.number("end_s", 0.0, _MAX_CHUNK_S), f.text("text", MAX_TEXT_CHARS, ""),
                tuple(timed), f.optional_number("confidence", 0.0, 1.0),
            )
        )
    return tuple(spans)


class ResultStatus(str, enum.Enum):
    """Outcome of one chunk on one node."""

    OK = "ok"  #: speech was recognised; ``text`` holds it
    NO_SPEECH = "no-speech"  #: the engine heard nothing it could transcribe
    ERROR = "error"  #: the engine failed; ``reason`` says why
    REJECTED = "rejected"  #: the node did not take the chunk (busy, stopping, other language); reassign at once


def same_language(a: str, b: str) -> bool:
    """True if two language tags share their primary subtag (``en-US`` and ``en``); empty matches any."""
    return not a or not b or a.split("-")[0].lower() == b.split("-")[0].lower()


class NodeState(str, enum.Enum):
    ONLINE = "online"  #: taking chunks
    DRAINING = "draining"  #: stopping: finishing the chunks in hand, taking no new ones
    OFFLINE = "offline"  #: gone; chunks still assigned to it will not be answered


@dataclass(frozen=True)
class Chunk:
    """A piece of a recording that a hub assigns to one node."""

    TYPE: ClassVar[str] = "chunk"

    job_id: str
    seq: int  #: position of the chunk in its job, from 0
    hub_id: str  #: where the result goes: ``Topics.hub_results(hub_id)``
    attempt: int  #: 1 for the first assignment, +1 for each reassignment
    offset_s: float  #: where the chunk starts in the original recording
    duration_s: float
    sample_rate: int
    deadline: float  #: epoch seconds (hub clock) when the lease ends; advisory, clocks may differ
    lease_s: float  #: how long the hub waits for the result before reassigning the chunk
    audio: bytes  #: a complete WAV file, 16-bit PCM mono
    audio_format: str = "wav"
    language: str = "en-US"
    #: the last ``context_s`` of ``audio`` follow the chunk's own audio, as context only: the hub keeps no
    #: word heard there, and a node may cut it off before decoding
    context_s: float = 0.0

    def encode(self) -> bytes:
        data = pack({**_header(self, skip="audio"), "audio_bytes": len(self.audio)}, self.audio)
        if len(data) > MAX_CHUNK_BYTES:
            raise ProtocolError(f"chunk is {len(data)} bytes, over the {MAX_CHUNK_BYTES} byte limit")
        return data

    @classmethod
    def decode(cls, data: bytes, max_bytes: int = MAX_CHUNK_BYTES) -> Chunk:
        header, audio = unpack(data, cls.TYPE, max_bytes)
        f = Fields(header)
        if f.integer("audio_bytes", 0, max_bytes) != len(audio):
            raise ProtocolError("audio length does not match the header (truncated message?)")
        chunk = cls(
            job_id=check_id(header.get("job_id"), "job id"),
            seq=f.integer("seq", 0, 10_000_000),
            hub_id=check_id(header.get("hub_id"), "hub id"),
            attempt=f.integer("attempt", 1, 1000),
            offset_s=f.number("offset_s", 0.0, 1e7),
            duration_s=f.number("duration_s", 0.0, 1e5),
            sample_rate=f.integer("sample_rate", 8000, 192_000),
            deadline=f.number("deadline", 0.0, _YEAR_3000),
            lease_s=f.number("lease_s", 0.0, 1e6),
            audio=audio,
            audio_format=f.choice("audio_format", ("wav",), "wav"),
            language=f.text("language", 32, "en-US"),
            context_s=f.number("context_s", 0.0, 1e5, 0.0),
        )
        if chunk.context_s > chunk.duration_s:
            raise ProtocolError(f"context_s={chunk.context_s} is longer than the chunk's {chunk.duration_s} s")
        chunk.check_audio()
        return chunk

    def check_audio(self) -> None:
        """Raise ProtocolError unless ``audio`` is a readable 16-bit mono WAV at ``sample_rate``."""
        try:
            with wave.open(io.BytesIO(self.audio), "rb") as w:
                ok = w.getnchannels() == 1 and w.getsampwidth() == 2 and w.getframerate() == self.sample_rate
        except (wave.Error, EOFError, ValueError) as exc:
            raise ProtocolError(f"chunk audio is not a WAV file: {exc}") from None
        if not ok:
            raise ProtocolError("chunk audio must be 16-bit mono PCM at the declared sample rate")


@dataclass(frozen=True)
class Result:
    """What a node says about one chunk."""

    TYPE: ClassVar[str] = "result"

    job_id: str
    seq: int
    attempt: int
    node_id: str
    status: ResultStatus
    text: str = ""
    reason: str = ""  #: why, for ``error`` and ``rejected``
    engine: str = ""
    model: str = ""
    seconds: float = 0.0  #: processing time spent on the node
    spans: tuple[Span, ...] = ()  #: the text with times (chunk-relative), where the engine gives them

    def encode(self) -> bytes:
        return pack(_header(self))

    @classmethod
    def decode(cls, data: bytes) -> Result:
        header, _ = unpack(data, cls.TYPE, MAX_SMALL_BYTES)
        f = Fields(header)
        return cls(
            job_id=check_id(header.get("job_id"), "job id"),
            seq=f.integer("seq", 0, 10_000_000),
            attempt=f.integer("attempt", 1, 1000),
            node_id=check_id(header.get("node_id"), "node id"),
            status=ResultStatus(f.choice("status", tuple(s.value for s in ResultStatus))),
            text=f.text("text", MAX_TEXT_CHARS, ""),
            reason=f.text("reason", 1000, ""),
            engine=f.text("engine", 64, ""),
            model=f.text("model", 256, ""),
            seconds=f.number("seconds", 0.0, 1e6, 0.0),
            spans=_spans(header.get("spans")),
        )


@dataclass(frozen=True)
class NodeStatus:
    """A node's presence and abilities; retained, and its Last Will says ``offline``."""

    TYPE: ClassVar[str] = "node-status"

    node_id: str
    state: NodeState
    engine: str = ""
    model: str = ""
    language: str = ""
    capacity: int = 1  #: chunks the node works on at once
    active: int = 0  #: chunks in hand right now, from any hub
    done: int = 0  #: chunks finished since start
    rtf: float | None = None  #: measured processing seconds per audio second (lower is faster)
    hostname: str = ""
    software: str = ""
    #: the engine decodes a chunk's trailing context; if not, the node cuts it off, and the
    #: hub's lease covers only the rest (absent: true, as nodes older than the field decode it all)
    reads_context: bool = True

    def encode(self) -> bytes:
        return pack(_header(self))

    @classmethod
    def decode(cls, data: bytes) -> NodeStatus:
        header, _ = unpack(data, cls.TYPE, MAX_SMALL_BYTES)
        f = Fields(header)
        return cls(
            node_id=check_id(header.get("node_id"), "node id"),
            state=NodeState(f.choice("state", tuple(s.value for s in NodeState))),
            engine=f.text("engine", 64, ""),
            model=f.text("model", 256, ""),
            language=f.text("language", 32, ""),
            capacity=f.integer("capacity", 1, 1024, 1),
            active=f.integer("active", 0, 1_000_000, 0),
            done=f.integer("done", 0, 10**12, 0),
            rtf=f.optional_number("rtf", 0.0, 1e4),
            hostname=f.text("hostname", 256, ""),
            software=f.text("software", 64, ""),
            reads_context=f.flag("reads_context", True),
        )
