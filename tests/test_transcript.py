"""Transcript assembly and formats: order, recording time, word times, gaps."""

from __future__ import annotations

import json

from hub.chunking import ChunkSpec
from hub.jobs import ChunkState, ChunkWork, Job, JobState
from hub.transcript import render, segments
from protocol.messages import Result, ResultStatus, Span, Word


def job() -> Job:
    chunks = [ChunkWork(i, ChunkSpec(i * 20_000, (i + 1) * 20_000)) for i in range(3)]
    c0, c1, c2 = chunks
    c0.state, c0.result = ChunkState.DONE, Result("j", 0, 1, "pi-1", ResultStatus.OK, text="hello there", engine="sphinx")
    c1.state, c1.reason = ChunkState.FAILED, "pi-2: engine process died (exit code -6)"
    c2.state = ChunkState.DONE
    c2.result = Result(
        "j", 2, 1, "pi-3", ResultStatus.OK, text="one two. three", engine="whisper",
        spans=(
            Span(1.0, 2.5, "one two.", (Word(1.0, 1.5, "one", 0.9), Word(1.6, 2.5, "two.", 0.6))),
            Span(3.0, 25.0, "three", (Word(3.0, 25.0, "three"),), 0.25),  # past the chunk's end: clamped
        ),
    )
    return Job(id="j", name="talk.wav", audio=None, chunks=chunks, state=JobState.PARTIAL)


def test_segments_are_in_recording_time_with_a_marked_gap():
    segs = segments(job())
    assert [(s.seq, s.start_s, s.end_s, s.status) for s in segs] == [
        (0, 0.0, 20.0, "ok"), (1, 20.0, 40.0, "failed"), (2, 41.0, 42.5, "ok"), (2, 43.0, 60.0, "ok"),
    ]
    assert [(w.start_s, w.end_s, w.text) for w in segs[2].words] == [(41.0, 41.5, "one"), (41.6, 42.5, "two.")]
    assert segs[3].words[0].end_s == 60.0


def test_formats():
    j = job()
    assert render(j, "text") == "hello there [gap 00:20-00:40: pi-2: engine process died (exit code -6)] one two. three"
    doc = json.loads(render(j, "json"))
    assert doc["state"] == "partial" and doc["duration_s"] == 60.0
    assert doc["segments"][2]["words"][1] == {"start_s": 41.6, "end_s": 42.5, "text": "two.", "confidence": 0.6}
    # the engine's own figure for a span where it gives one, else the mean of its words'; none for untimed text
    assert [seg["confidence"] for seg in doc["segments"]] == [None, None, 0.75, 0.25]
    # subtitles from word times (tests/test_subtitles.py): the untimed "hello there" spread over its 20 s,
    # so a word every 10 s, each shown for at most 7 s; the gap a cue of its own
    assert render(j, "srt") == (
        "1\n00:00:00,000 --> 00:00:07,000\nhello\n\n"
        "2\n00:00:10,000 --> 00:00:17,000\nthere\n\n"
        "3\n00:00:20,000 --> 00:00:27,000\n[gap 00:20-00:40: pi-2:\nengine process died (exit code -6)]\n\n"
        "4\n00:00:41,000 --> 00:00:42,500\none two.\n\n"
        "5\n00:00:43,000 --> 00:00:50,000\nthree\n\n"
    )
    vtt = render(j, "vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:07.000\nhello\n\n00:00:10.000 --> 00:00:17.000\nthere\n\n")
    assert "00:00:43.000 --> 00:00:50.000\nthree\n" in vtt


def test_subtitles_spread_untimed_text_over_its_segment_in_readable_cues():
    said = ("it was a bright cold day in april and the clocks were striking thirteen winston smith his chin nuzzled "
            "into his breast in an effort to escape the vile wind slipped quickly through the glass doors")
    chunk = ChunkWork(0, ChunkSpec(30_000, 45_000), state=ChunkState.DONE)
    chunk.result = Result("j", 0, 1, "pi-1", ResultStatus.OK, text=said, engine="google",
                          spans=(Span(0.0, 15.0, said),))  # one span, no word times
    cues = [block.split("\n") for block in render(Job("j", "talk.wav", None, [chunk]), "srt").strip().split("\n\n")]
    assert " ".join(" ".join(lines[2:]) for lines in cues) == said
    assert len(cues) > 2 and all(len(lines) <= 4 and all(len(line) <= 42 for line in lines[2:]) for lines in cues)
    assert cues[0][1].startswith("00:00:30,000 --> ") and cues[-1][1].endswith(" --> 00:00:45,000")


def _two_chunks(first: ChunkSpec, heard: Result, later: ChunkSpec, second: Result | None) -> Job:
    """A job of two chunks: the first done with ``heard``, the second done with ``second`` or still waiting."""
    chunks = [ChunkWork(0, first, state=ChunkState.DONE, result=heard), ChunkWork(1, later)]
    if second is not None:
        chunks[1].state, chunks[1].result = ChunkState.DONE, second
    return Job(id="j", name="talk.wav", audio=None, chunks=chunks, state=JobState.RUNNING)


def _hard_cut_job(second: Result | None) -> Job:
    """Two chunks cut at 10 s inside speech, each hearing 1 s across the cut."""
    heard = Result(
        "j", 0, 1, "pi-1", ResultStatus.OK, text="it was a cold brig", engine="whisper",
        spans=(
            Span(8.0, 9.0, "It was", (Word(8.0, 8.4, "It"), Word(8.5, 9.0, "was"))),
            Span(9.1, 11.0, "a cold brig", (Word(9.1, 9.3, "a"), Word(9.4, 10.2, "cold"), Word(10.4, 11.0, "brig"))),
        ),
    )
    return _two_chunks(ChunkSpec(0, 10_000, tail_ms=1000), heard, ChunkSpec(10_000, 20_000, lead_ms=1000), second)


def test_a_hard_cut_keeps_each_word_of_the_overlap_once():
    # The later chunk's audio starts at 9 s: its times are 9 s behind the recording's.
    later = Result(
        "j", 1, 1, "pi-2", ResultStatus.OK, text="ha cold bright day", engine="whisper",
        spans=(Span(0.0, 3.0, "ha cold bright day", (
            Word(0.0, 0.3, "ha"), Word(0.45, 1.2, "cold"), Word(1.4, 2.0, "bright"), Word(2.1, 3.0, "day"),
        )),),
    )
    segs = segments(_hard_cut_job(later))

    assert render(_hard_cut_job(later), "text") == "It was a cold bright day"
    assert [(s.seq, s.start_s, s.end_s, s.text) for s in segs] == [
        (0, 8.0, 9.0, "It was"),  # untouched span: the engine's own text and times
        (0, 9.1, 10.2, "a cold"),  # trimmed at the junction ("cold", heard by both)
        (1, 10.4, 12.0, "bright day"),
    ]
    assert [w.text for s in segs for w in s.words] == ["It", "was", "a", "cold", "bright", "day"]


def test_until_both_sides_are_done_each_keeps_its_own_span():
    assert render(_hard_cut_job(None), "text") == "It was a cold"
    untimed = Result("j", 1, 1, "g-1", ResultStatus.OK, text="cold bright day", engine="google",
                     spans=(Span(0.0, 3.0, "cold bright day"),))  # no word times: spread over the span
    segs = segments(_hard_cut_job(untimed))
    assert " ".join(s.text for s in segs) == "It was a cold bright day"
    assert segs[-1].words == ()  # estimated times are not published as word times


def test_at_a_hard_cut_the_surer_reading_wins_and_segments_carry_confidences():
    # Both chunks heard "It was a cold bright day" across the cut at 10 s; the earlier one was unsure of "cold".
    heard = Result(
        "j", 0, 1, "pi-1", ResultStatus.OK, text="it was a coal bright", engine="whisper",
        spans=(Span(8.0, 10.8, "It was a coal bright", (
            Word(8.0, 8.4, "It", 0.9), Word(8.5, 9.0, "was", 0.9), Word(9.1, 9.3, "a", 0.9),
            Word(9.4, 9.8, "coal", 0.2), Word(10.0, 10.8, "bright", 0.8),
        ), 0.7),),
    )
    second = Result(
        "j", 1, 1, "pi-2", ResultStatus.OK, text="a cold bright day", engine="whisper",
        spans=(Span(0.1, 3.0, "a cold bright day", (
            Word(0.1, 0.3, "a", 0.8), Word(0.4, 0.8, "cold", 0.9), Word(1.0, 1.8, "bright", 0.9), Word(2.1, 3.0, "day", 0.6),
        ), 0.85),),
    )
    job = _two_chunks(ChunkSpec(0, 10_000, tail_ms=1000), heard, ChunkSpec(10_000, 20_000, lead_ms=1000), second)

    assert render(job, "text") == "It was a cold bright day"
    segs = segments(job)
    assert [(s.seq, s.text, s.confidence) for s in segs] == [
        (0, "It was a", 0.9),  # trimmed: the mean of the words kept
        (1, "cold bright day", 0.8),
    ]
    assert [w.confidence for s in segs for w in s.words] == [0.9, 0.9, 0.9, 0.9, 0.9, 0.6]


def _context_job(later_result: Result | None) -> Job:
    """Chunk 0 is [0, 10) s and its audio runs on to 14 s as context. It timed "day." just past the
    cut, though it was said before it; the next chunk, which starts at the cut, never heard it."""
    heard = Result(
        "j", 0, 1, "pi-1", ResultStatus.OK, text="It was a cold bright day. We", engine="whisper",
        spans=(
            Span(8.0, 10.3, "It was a cold bright day.", (
                Word(8.0, 8.4, "It"), Word(8.5, 9.0, "was"), Word(9.1, 9.3, "a"), Word(9.4, 9.6, "cold"),
                Word(9.6, 9.8, "bright"), Word(10.0, 10.3, "day."),
            )),
            Span(11.0, 11.5, "We", (Word(11.0, 11.5, "We"),)),
        ),
    )
    return _two_chunks(ChunkSpec(0, 10_000, context_ms=4000), heard, ChunkSpec(10_000, 20_000), later_result)


def test_after_trailing_context_a_word_timed_past_the_cut_is_kept_once():
    later = Result(
        "j", 1, 1, "pi-2", ResultStatus.OK, text="We walked home", engine="whisper",
        spans=(Span(1.0, 4.0, "We walked home", (Word(1.1, 1.5, "We"), Word(2.0, 2.5, "walked"), Word(3.0, 4.0, "home"))),),
    )
    job = _context_job(later)
    assert render(job, "text") == "It was a cold bright day. We walked home"  # "day." kept, "We" once
    segs = segments(job)
    assert [(s.seq, s.text) for s in segs] == [(0, "It was a cold bright day."), (1, "We walked home")]


def test_until_the_next_chunk_is_done_words_heard_in_context_are_not_shown():
    assert render(_context_job(None), "text") == "It was a cold bright"


def test_untimed_text_of_a_chunk_with_context_is_all_kept():
    # an engine that gives no spans: its words are spread over the chunk's own audio, not its context
    chunk = ChunkWork(0, ChunkSpec(0, 10_000, context_ms=20_000), state=ChunkState.DONE)
    chunk.result = Result("j", 0, 1, "pi-1", ResultStatus.OK, text="one two three four five six", engine="old")
    job = Job(id="j", name="talk.wav", audio=None, chunks=[chunk], state=JobState.DONE)
    assert render(job, "text") == "one two three four five six"
