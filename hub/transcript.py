"""Putting chunk results back together, in sequence order, and writing them out.

Formats: plain text, JSON (segments with times, node, engine, and word times
and confidences where the engine gives them), SRT and WebVTT (cues of at most two lines and
7 s, built from word times by :mod:`hub.subtitles`). A chunk whose engine timed its
text becomes one segment per timed span, moved from chunk time to recording
time; otherwise the chunk is one segment.
A chunk that failed leaves a visible gap, ``[gap 01:20-01:40: reason]``, with
its time range in the original recording; nothing is silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from itertools import groupby

from hub import subtitles
from hub.jobs import ChunkState, ChunkWork, Job
from hub.merge import Timed, join, join_after_context
from hub.subtitles import Gap, spread
from protocol.messages import Span, Word

FORMATS = ("text", "json", "srt", "vtt")
#: after a chunk with trailing context, how far past the cut a word it timed there may still be its own
_CONTEXT_REACH_S = 2.0


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
    confidence: float | None = None  #: 0-1: the engine's for the span, else the mean of its words'; None if unknown


@dataclass(frozen=True)
class _Heard:
    """One word of a finished chunk, in recording time, and the span it came from."""

    word: Timed
    span: int
    timed: bool  #: False when the engine gave no word times and they were spread over the span


def _place(chunk: ChunkWork, t: float) -> float:
    """A time in the chunk's audio as a time in the recording."""
    return round(min(chunk.offset_s + chunk.duration_s, chunk.offset_s + t), 3)


def _heard(chunk: ChunkWork) -> list[_Heard]:
    """A finished chunk's words in recording time; untimed text is spread evenly over its span."""
    assert chunk.result is not None
    own_s = (chunk.spec.heard_end_ms - chunk.spec.audio_start_ms) / 1000  # trailing context left out
    spans = chunk.result.spans or ((Span(0.0, own_s, chunk.result.text),) if chunk.result.text else ())
    out = []
    for index, span in enumerate(spans):
        if span.words:
            out += [
                _Heard(Timed(_place(chunk, w.start_s), _place(chunk, w.end_s), w.text, w.confidence), index, True)
                for w in span.words
            ]
            continue
        out += [
            _Heard(Timed(_place(chunk, w.start_s), _place(chunk, w.end_s), w.text), index, False)
            for w in spread(span.text, span.start_s, span.end_s)
        ]
    return out


def _kept(job: Job) -> dict[int, tuple[list[_Heard], int, int]]:
    """Each finished chunk's words, and the range ``[first, stop)`` of them it keeps.

    At a hard cut both neighbours heard the overlap; :func:`hub.merge.join` decides
    which of them keeps each word there. After a chunk with trailing context
    (``ChunkSpec.context_ms``), :func:`hub.merge.join_after_context` gives the next
    chunk every word it heard, and the earlier one its own, including a word said
    just before the cut but timed just after it. Without a finished neighbour
    (unfinished, failed, or the last chunk), a chunk keeps what falls in its own
    span, never what it heard in context.
    """
    heard = {c.seq: _heard(c) for c in job.chunks if c.state is ChunkState.DONE and c.result is not None}
    kept = {
        c.seq: [words, 0, next((i for i, h in enumerate(words) if h.word.mid_s >= c.spec.heard_end_ms / 1000), len(words))]
        for c in job.chunks
        if (words := heard.get(c.seq)) is not None
    }
    for a, b in zip(job.chunks, job.chunks[1:]):
        overlap_ms = max(a.spec.tail_ms, b.spec.lead_ms)
        if overlap_ms == 0 and a.spec.context_ms == 0:
            continue
        cut = a.spec.end_ms / 1000
        before = [h.word for h in heard.get(a.seq, ())]
        after = [h.word for h in heard.get(b.seq, ())]
        if a.seq in heard and b.seq in heard:
            if overlap_ms:  # a hard cut
                stop, first = join(before, after, cut, overlap_ms / 1000)
            else:  # a cut in a pause, with context after it
                stop, first = join_after_context(before, after, cut, _CONTEXT_REACH_S)
            kept[a.seq][2] = stop
        else:
            stop = sum(1 for w in before if w.mid_s < cut)
            first = sum(1 for w in after if w.mid_s < cut)
            if a.seq in kept:
                kept[a.seq][2] = min(kept[a.seq][2], stop)
        if b.seq in kept:
            kept[b.seq][1] = max(kept[b.seq][1], first)
    return {seq: (words, first, stop) for seq, (words, first, stop) in kept.items()}


def segments(job: Job) -> list[Segment]:
    """The transcript as segments in recording order, each word once, gaps and pending chunks included."""
    kept = _kept(job)
    out = []
    for chunk in job.chunks:
        base = {"seq": chunk.seq, "start_s": round(chunk.spec.start_ms / 1000, 3), "end_s": round(chunk.spec.end_ms / 1000, 3)}
        if chunk.state is ChunkState.DONE and chunk.result is not None:
            r = chunk.result
            about = {"status": r.status.value, "node_id": r.node_id, "engine": r.engine, "model": r.model, "seconds": r.seconds}
            words, first, stop = kept[chunk.seq]
            if not words:
                out.append(Segment(**base, text=r.text, **about))
                continue
            trimmed = {h.span for h in words[:first] + words[stop:]}
            for index, group in groupby(words[first:stop], key=lambda h: h.span):  # words come in span order
                mine = list(group)
                timed = tuple(Word(*h.word) for h in mine if h.timed)
                span = r.spans[index] if r.spans else None
                if index in trimmed:  # part of it belongs to a neighbour: only the words kept here
                    text = " ".join(h.word.text for h in mine)
                    sure = mean_confidence(timed, span.confidence if span else None)
                    out.append(
                        Segment(chunk.seq, mine[0].word.start_s, mine[-1].word.end_s, text=text, words=timed, confidence=sure, **about)
                    )
                elif span is not None:
                    out.append(
                        Segment(
                            chunk.seq, _place(chunk, span.start_s), _place(chunk, span.end_s), text=span.text, words=timed,
                            confidence=span.confidence if span.confidence is not None else mean_confidence(timed), **about,
                        )
                    )
                else:
                    out.append(Segment(**base, text=r.text, **about))
        elif chunk.state is ChunkState.FAILED:
            out.append(Segment(**base, status="failed", reason=chunk.reason))
        else:
            out.append(Segment(**base, status="pending"))
    return out


def mean_confidence(words: tuple[Word, ...], fallback: float | None = None) -> float | None:
    """The mean of the words' confidences when every word has one, else ``fallback``."""
    values = [w.confidence for w in words]
    if not values or any(v is None for v in values):
        return fallback
    return round(sum(v for v in values if v is not None) / len(values), 3)


def clock(seconds: float) -> str:
    """A time in the recording as ``MM:SS`` (minutes past 59 go on counting)."""
    m, s = divmod(int(round(seconds * 1000)) // 1000, 60)
    return f"{m:02d}:{s:02d}"


def line(seg: Segment) -> str:
    """A segment as transcript text: its words, or the marked gap of a failed chunk."""
    if seg.status == "failed":
        return f"[gap {clock(seg.start_s)}-{clock(seg.end_s)}: {seg.reason}]"
    return seg.text


def text_of(segs: list[Segment]) -> str:
    """The transcript text of :func:`segments`, gaps marked."""
    return " ".join(text for seg in segs if (text := line(seg)))


def to_text(job: Job) -> str:
    return text_of(segments(job))


def to_json(job: Job) -> str:
    segs = segments(job)
    doc = {
        "id": job.id,
        "name": job.name,
        "state": job.state.value,
        "error": job.error,
        "duration_s": round(job.duration_s, 3),
        "text": text_of(segs),
        "segments": [asdict(s) for s in segs],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def subtitle_words(segs: list[Segment]) -> list[Timed | Gap]:
    """The words of :func:`segments` in order, for :func:`hub.subtitles.cues`: an engine's word times
    where it gives them, else the segment's text spread over it, and each failed chunk's marked gap."""
    out: list[Timed | Gap] = []
    for seg in segs:
        if seg.status == "failed":
            out.append(Gap(seg.start_s, seg.end_s, line(seg)))
        elif seg.words:
            out += [Timed(w.start_s, w.end_s, w.text) for w in seg.words]
        else:
            out += spread(seg.text, seg.start_s, seg.end_s)
    return out


def to_srt(job: Job) -> str:
    return subtitles.to_srt(subtitles.cues(subtitle_words(segments(job))))


def to_vtt(job: Job) -> str:
    return subtitles.to_vtt(subtitles.cues(subtitle_words(segments(job))))


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
