"""Putting chunk results back together, in sequence order, and writing them out.

Formats: plain text, JSON (segments with times, node, engine, and word times
where the engine gives them), SRT and WebVTT. A chunk whose engine timed its
text becomes one segment per timed span, moved from chunk time to recording
time; otherwise the chunk is one segment.
A chunk that failed leaves a visible gap, ``[gap 01:20-01:40: reason]``, with
its time range in the original recording; nothing is silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from hub.jobs import ChunkState, Job
from protocol.messages import Word

FORMATS = ("text", "json", "srt", "vtt")


@dataclass(frozen=True)
class Segment:
    seq: int
    start_s: float
    end_s: float
    status: str  #: ok, no-speech, failed, or pending (not finished yet)
    text: str = ""
    node_id: str = ""
    engine: str = ""
    model: str = ""
    reason: str = ""
    seconds: float = 0.0  #: processing time on the node
    words: tuple[Word, ...] = ()  #: word times in the recording, where the engine gives them


def segments(job: Job) -> list[Segment]:
    out = []
    for chunk in job.chunks:
        base = {"seq": chunk.seq, "start_s": round(chunk.offset_s, 3), "end_s": round(chunk.offset_s + chunk.duration_s, 3)}
        if chunk.state is ChunkState.DONE and chunk.result is not None:
            r = chunk.result
            about = {"status": r.status.value, "node_id": r.node_id, "engine": r.engine, "model": r.model, "seconds": r.seconds}
            if not r.spans:
                out.append(Segment(**base, text=r.text, **about))
                continue
            start, end = chunk.offset_s, chunk.offset_s + chunk.duration_s

            def place(t: float, start: float = start, end: float = end) -> float:
                return round(min(end, start + t), 3)

            for span in r.spans:
                words = tuple(Word(place(w.start_s), place(w.end_s), w.text) for w in span.words)
                out.append(
                    Segment(chunk.seq, place(span.start_s), place(span.end_s), text=span.text, words=words, **about)
                )
        elif chunk.state is ChunkState.FAILED:
            out.append(Segment(**base, status="failed", reason=chunk.reason))
        else:
            out.append(Segment(**base, status="pending"))
    return out


def clock(seconds: float, sep: str = ".", hours: bool = False) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    if hours:
        return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"
    return f"{h * 60 + m:02d}:{s:02d}"


def _line(seg: Segment) -> str:
    if seg.status == "failed":
        return f"[gap {clock(seg.start_s)}-{clock(seg.end_s)}: {seg.reason}]"
    return seg.text


def to_text(job: Job) -> str:
    return " ".join(line for seg in segments(job) if (line := _line(seg)))


def to_json(job: Job) -> str:
    doc = {
        "id": job.id,
        "name": job.name,
        "state": job.state.value,
        "error": job.error,
        "duration_s": round(job.duration_s, 3),
        "text": to_text(job),
        "segments": [asdict(s) for s in segments(job)],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _cues(job: Job, sep: str) -> list[str]:
    cues = []
    for seg in segments(job):
        line = _line(seg)
        if line:
            cues.append(f"{clock(seg.start_s, sep, True)} --> {clock(seg.end_s, sep, True)}\n{line}\n")
    return cues


def to_srt(job: Job) -> str:
    return "\n".join(f"{i}\n{cue}" for i, cue in enumerate(_cues(job, ","), start=1))


def to_vtt(job: Job) -> str:
    return "WEBVTT\n\n" + "\n".join(_cues(job, "."))


def render(job: Job, fmt: str) -> str:
    if fmt == "text":
        return to_text(job)
    if fmt == "json":
        return to_json(job)
    if fmt == "srt":
        return to_srt(job)
    if fmt == "vtt":
        return to_vtt(job)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
