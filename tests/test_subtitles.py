"""Subtitle cues from word times: each rule of hub/subtitles.py, by example and as properties."""

from __future__ import annotations

import re
from datetime import timedelta

import srt
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.merge import Timed
from hub.subtitles import LINE_BREAK_BONUS, MAX_CHARS, MAX_LINES, MAX_MS, MIN_MS, Cue, Gap, cues, sentence_end, to_srt, to_vtt


def timed(text: str, start_s: float = 0.0, step_s: float = 0.4) -> list[Timed]:
    """The words of ``text``, each ``step_s`` long, one after the other from ``start_s``."""
    return [Timed(round(start_s + k * step_s, 3), round(start_s + (k + 1) * step_s, 3), w) for k, w in enumerate(text.split())]


def check_invariants(items: list[Timed | Gap], cs: list[Cue]) -> None:
    """What holds for any input: lines, durations, order, no overlap, every word once."""
    check_cues(cs, " ".join(item.text for item in items).split())


def check_cues(cs: list[Cue], words: list[str]) -> None:
    """The cues hold ``words`` once each, in order, in at most two lines of 42 characters and 7 s, without overlaps."""
    for cue in cs:
        assert 0 < cue.end_ms - cue.start_ms <= MAX_MS, cue
        assert 1 <= len(cue.lines) <= MAX_LINES, cue
        if len(cue.lines) > 1 or " " in cue.lines[0]:  # only a word of its own may be longer than a line
            assert all(len(line) <= MAX_CHARS for line in cue.lines), cue
        assert all(line == line.strip() and line for line in cue.lines), cue
    for a, b in zip(cs, cs[1:]):
        assert a.end_ms <= b.start_ms, (a, b)
    assert " ".join(line for c in cs for line in c.lines).split() == words


def parse_srt(text: str) -> list[Cue]:
    """An SRT file's cues, numbered 1, 2, 3...; SRT's own parser refuses anything malformed."""
    subs = list(srt.parse(text, ignore_errors=False))
    assert [s.index for s in subs] == list(range(1, len(subs) + 1))
    ms = timedelta(milliseconds=1)
    # the file's trailing newlines (the CLI prints one more) end up in the last cue's content: not a line
    return [Cue(s.start // ms, s.end // ms, tuple(s.content.rstrip("\n").split("\n"))) for s in subs]


_VTT_CUE = re.compile(r"(\d\d):(\d\d):(\d\d)\.(\d\d\d) --> (\d\d):(\d\d):(\d\d)\.(\d\d\d)\n((?:.+\n)+)")


def parse_vtt(text: str) -> list[Cue]:
    """A WebVTT file's cues: a ``WEBVTT`` header, then timed blocks split by blank lines (no styles or notes)."""
    assert text.startswith("WEBVTT\n\n")
    blocks = [b + "\n" for b in text[len("WEBVTT\n\n"):].strip("\n").split("\n\n") if b]
    out = []
    for block in blocks:
        m = _VTT_CUE.fullmatch(block)
        assert m, block
        h, mi, s, ms, h2, mi2, s2, ms2 = map(int, m.groups()[:8])
        start, end = ((h * 60 + mi) * 60 + s) * 1000 + ms, ((h2 * 60 + mi2) * 60 + s2) * 1000 + ms2
        lines = m.group(9).rstrip("\n").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        out.append(Cue(start, end, tuple(lines.split("\n"))))
    return out


def test_a_sentence_is_cut_into_readable_cues_at_its_clauses():
    words = timed("And so my fellow Americans, ask not what your country can do for you, "
                  "ask what you can do for your country.", step_s=0.5)
    cs = cues(words)
    check_invariants(words, cs)
    assert [c.lines for c in cs] == [
        ("And so my fellow Americans,", "ask not what your country can do for you,"),  # 7 s at most
        ("ask what you can do for your country.",),
    ]
    assert [(c.start_ms, c.end_ms) for c in cs] == [(0, 7000), (7000, 11000)]


def test_a_new_sentence_starts_a_new_cue():
    words = timed("It was a bright cold day. The clocks were striking thirteen.")
    assert [c.text for c in cues(words)] == ["It was a bright cold day.", "The clocks were striking thirteen."]
    # unless that leaves a cue too short to read: "Yes." takes 0.4 s and the next word follows at once
    words = timed("Yes. The clocks were striking thirteen.")
    assert [c.text for c in cues(words)] == ["Yes. The clocks were striking thirteen."]
    assert not sentence_end("Mr.") and sentence_end('thirteen."') and sentence_end("why?")


def test_a_break_falls_at_a_clause_mark_or_a_pause_before_anywhere_else():
    # 115 characters said in 5.4 s: one break, anywhere from the 31st to the 84th character
    words = timed("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
                  "seventeen eighteen", step_s=0.3)
    assert [c.lines[-1].split()[-1] for c in cues(words)] == ["ten", "eighteen"]  # the most even cues
    paused = words[:8] + [Timed(w.start_s + 0.5, w.end_s + 0.5, w.text) for w in words[8:]]
    assert [c.lines[-1].split()[-1] for c in cues(paused)] == ["eight", "eighteen"]
    comma = [Timed(w.start_s, w.end_s, w.text + ("," if w.text == "eleven" else "")) for w in paused]
    assert [c.lines[-1].split()[-1] for c in cues(comma)] == ["eleven,", "eighteen"]  # a clause mark beats a short pause
    check_invariants(comma, cues(comma))


def test_lines_are_even_unless_punctuation_or_an_article_says_otherwise():
    [cue] = cues(timed("the quick brown fox jumps over the lazy dog and runs off into the dark woods"))
    assert cue.lines == ("the quick brown fox jumps over the lazy", "dog and runs off into the dark woods")
    [cue] = cues(timed("And so my fellow Americans, ask not what your country can do for you,"))
    assert cue.lines == ("And so my fellow Americans,", "ask not what your country can do for you,")
    [cue] = cues(timed("we walked along the river for an hour and then went home for tea"))
    assert cue.lines == ("we walked along the river for an hour", "and then went home for tea")
    assert cues(timed("short enough for one line"))[0].lines == ("short enough for one line",)


def test_a_word_longer_than_a_line_gets_a_cue_of_its_own():
    long = "Pneumonoultramicroscopicsilicovolcanoconiosis-like"
    words = timed(f"he said {long} twice")
    cs = cues(words)
    check_invariants(words, cs)
    assert (long,) in [c.lines for c in cs]


def test_a_failed_chunk_is_a_cue_of_its_own():
    marker = "[gap 00:20-00:40: pi-2: engine process died (exit code -6)]"
    items = [*timed("before the gap", 17.0), Gap(20.0, 40.0, marker), *timed("after it", 40.0)]
    cs = cues(items)
    check_invariants(items, cs)
    assert [c.lines for c in cs] == [
        ("before the gap",), ("[gap 00:20-00:40: pi-2:", "engine process died (exit code -6)]"), ("after it",),
    ]
    assert (cs[1].start_ms, cs[1].end_ms) == (20000, 27000)  # at most 7 s like any cue
    # a marker too long for two lines is shortened, still bracketed
    long = cues([Gap(0.0, 5.0, "[gap 00:00-00:05: " + "no node finished it " * 6 + "]")])
    assert len(long) == 1 and len(long[0].lines) == 2 and long[0].lines[1].endswith("…]")


def test_a_cue_stays_up_long_enough_to_read_but_not_over_the_next():
    cs = cues([Timed(1.0, 1.2, "Hi."), Timed(5.0, 5.3, "Hello"), Timed(5.5, 5.9, "again.")])
    assert [(c.start_ms, c.end_ms) for c in cs] == [(1000, 2000), (5000, 6000)]
    # out-of-order or overlapping word times (a clamped word) still give ordered cues that do not overlap
    messy = [Timed(3.0, 9.0, "first."), Timed(2.0, 2.5, "second."), Timed(2.0, 2.0, "third")]
    check_invariants(messy, cues(messy))
    # a "word" with spaces in it is words, spread over its time
    spaced = [Timed(0.0, 3.0, "a phrase that an engine gave as one word, far longer than a line")]
    check_invariants(spaced, cues(spaced))


def test_nothing_gives_no_cues():
    assert cues([]) == [] and cues([Timed(0.0, 1.0, "  ")]) == []
    assert to_srt([]) == "" and to_vtt([]) == "WEBVTT\n\n"


def test_srt_and_vtt():
    cs = [Cue(0, 1500, ("one",)), Cue(3_723_004, 3_725_000, ("a <b> & c", "d"))]
    assert to_srt(cs) == "1\n00:00:00,000 --> 00:00:01,500\none\n\n2\n01:02:03,004 --> 01:02:05,000\na <b> & c\nd\n\n"
    assert to_vtt(cs) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\none\n\n01:02:03.004 --> 01:02:05.000\na &lt;b&gt; &amp; c\nd\n\n"
    )
    assert parse_srt(to_srt(cs)) == cs and parse_vtt(to_vtt(cs)) == cs


# --- properties -------------------------------------------------------------------------------------

_PUNCT = st.sampled_from(["", "", "", "", ",", ".", "?", ";", ":", "—"])
_WORD = st.tuples(
    st.text("abcdefghijklmnopqrstuvwxyz'", min_size=1, max_size=13), _PUNCT,
    st.integers(0, 1500),  # the pause before it, ms
    st.integers(40, 100),  # ms per character: from fast to slow speech
)


@st.composite
def speech(draw, max_words: int = 120) -> list[Timed]:
    """Words as speech would time them: one after another, longer words taking longer."""
    out, t = [], draw(st.integers(0, 5000))
    for letters, punct, pause, per_char in draw(st.lists(_WORD, max_size=max_words)):
        start = t + pause
        t = start + 60 + per_char * len(letters)
        out.append(Timed(start / 1000, t / 1000, letters + punct))
    return out


_ANY_WORD = st.tuples(
    st.floats(0, 600, allow_nan=False), st.floats(0, 20, allow_nan=False),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=60),
)
_ANY_GAP = st.tuples(st.floats(0, 600, allow_nan=False), st.floats(0, 30, allow_nan=False), st.text("abc -:()", max_size=40))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    _ANY_WORD.map(lambda w: Timed(w[0], w[0] + w[1], w[2])),
    _ANY_GAP.map(lambda g: Gap(g[0], g[0] + g[1], f"[gap 01:00-01:20: {g[2]}]")),
), max_size=60))
def test_any_words_give_ordered_cues_of_at_most_two_lines_and_7_s(items):
    # times out of order, overlapping, zero-long; any text, words longer than a line, gap markers anywhere
    cs = cues(items)
    check_invariants(items, cs)
    markers = [c for c in cs if c.text.startswith("[gap 01:00-01:20:")]
    assert len(markers) == sum(isinstance(item, Gap) for item in items)
    assert all(c.text.replace("\n", " ").endswith("]") for c in markers)


@settings(max_examples=300, deadline=None)
@given(speech())
def test_speech_gives_cues_of_1_to_7_s_holding_every_word_once(words):
    cs = cues(words)
    check_invariants(words, cs)
    for cue in cs:
        assert cue.end_ms - cue.start_ms >= MIN_MS, cue
    starts = {round(w.start_s * 1000) for w in words}
    assert all(c.start_ms in starts for c in cs)  # each cue starts when its first word is said


@st.composite
def sentences(draw) -> list[list[Timed]]:
    """Sentences that each fit one line and take at most 7 s, each with at least 1 s before the next begins."""
    out, t = [], 0
    for _ in range(draw(st.integers(1, 8))):
        texts = draw(st.lists(st.text("abcdefghij", min_size=1, max_size=6), min_size=1, max_size=5))  # <= 39 chars
        texts = [w + draw(st.sampled_from(["", "", ","])) for w in texts[:-1]] + [texts[-1] + draw(st.sampled_from(".?!"))]
        sentence = []
        for text in texts:  # at most 5 * 1.3 s
            begin = t + draw(st.integers(0, 500))
            t = begin + draw(st.integers(100, 800))
            sentence.append(Timed(begin / 1000, t / 1000, text))
        t = max(t, round(sentence[0].start_s * 1000) + MIN_MS)  # the next one begins at least 1 s after this one
        out.append(sentence)
    return out


@settings(max_examples=300, deadline=None)
@given(sentences())
def test_sentences_that_fit_a_cue_get_a_cue_each(said):
    words = [w for sentence in said for w in sentence]
    cs = cues(words)
    check_invariants(words, cs)
    assert [c.text for c in cs] == [" ".join(w.text for w in sentence) for sentence in said]


@settings(max_examples=200, deadline=None)
@given(speech(max_words=60))
def test_two_lines_only_when_one_does_not_do_and_as_even_as_the_words_allow(words):
    for cue in cues(words):
        if len(cue.lines) == 2:
            said = cue.text.split()
            top, bottom = map(len, cue.lines)
            assert top + 1 + bottom > MAX_CHARS
            laid = [(len(" ".join(said[:k])), len(" ".join(said[k:]))) for k in range(1, len(said))]
            evenest = min(abs(a - b) for a, b in laid if a <= MAX_CHARS and b <= MAX_CHARS)
            # punctuation may buy a break LINE_BREAK_BONUS of a line less even, on either side
            assert abs(top - bottom) <= evenest + 2 * LINE_BREAK_BONUS * MAX_CHARS, cue
