"""hub.merge: two chunks that overlap at a hard cut give every word exactly once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.merge import Timed, join, join_after_context, spelling

CUT = 10.0
OVERLAP = 1.0


def said(*words: tuple[str, float]) -> list[Timed]:
    """Words of 0.3 s each, starting at the given times."""
    return [Timed(start, start + 0.3, text) for text, start in words]


def joined(earlier: list[Timed], later: list[Timed], cut: float = CUT, overlap: float = OVERLAP) -> list[str]:
    keep, skip = join(earlier, later, cut, overlap)
    return [w.text for w in earlier[:keep] + later[skip:]]


def test_words_both_chunks_heard_are_kept_once() -> None:
    truth = said(("we", 8.6), ("cut", 9.0), ("inside", 9.4), ("a", 9.8), ("long", 10.1), ("sentence", 10.5))
    earlier = truth[:5] + said(("sen", 10.6))  # the window ends inside "sentence"
    later = said(("ide", 9.3)) + truth[2:]  # the window starts inside "inside"

    assert joined(earlier, later) == ["we", "cut", "inside", "a", "long", "sentence"]


def test_spelling_and_punctuation_do_not_matter() -> None:
    earlier = said(("Hello,", 9.2), ("World.", 9.7), ("Again", 10.2))
    later = said(("hello", 9.25), ("world", 9.75), ("again", 10.25), ("friends", 10.6))

    assert joined(earlier, later) == ["Hello,", "World.", "again", "friends"]
    assert spelling("It's,") == "it's" and spelling("—") == ""


def test_the_same_word_at_another_time_is_not_a_match() -> None:
    # "the" at 9.2 in the earlier chunk and "the" at 10.4 in the later one are two different words.
    earlier = said(("of", 8.9), ("the", 9.2), ("year", 9.6))
    later = said(("ear", 9.7), ("and", 10.0), ("the", 10.4), ("next", 10.8))

    assert joined(earlier, later) == ["of", "the", "year", "and", "the", "next"]


def test_without_agreement_the_cut_decides() -> None:
    earlier = said(("alpha", 9.0), ("beta", 9.6), ("gamma", 10.2))
    later = said(("delta", 9.5), ("epsilon", 10.1), ("zeta", 10.7))

    # Midpoints before 10.0 belong to the earlier chunk, the rest to the later one.
    assert joined(earlier, later) == ["alpha", "beta", "epsilon", "zeta"]
    assert joined([], later) == ["epsilon", "zeta"]
    assert joined(earlier, []) == ["alpha", "beta"]


def sure(text: str, start: float, confidence: float) -> Timed:
    return Timed(start, start + 0.3, text, confidence)


def test_word_confidences_keep_the_reading_the_engine_was_sure_of() -> None:
    # The earlier chunk misheard "inside" just before the cut; the pair nearest the cut ("a") would keep its reading.
    earlier = [sure("we", 8.6, 0.9), sure("cut", 9.0, 0.9), sure("insight", 9.4, 0.3), sure("a", 9.8, 0.9),
               sure("long", 10.1, 0.8), sure("sentence", 10.5, 0.7)]
    later = [sure("cut", 9.0, 0.6), sure("inside", 9.4, 0.9), sure("a", 9.8, 0.9), sure("long", 10.1, 0.9),
             sure("sentence", 10.5, 0.9), sure("today", 10.9, 0.9)]
    assert joined(earlier, later) == ["we", "cut", "inside", "a", "long", "sentence", "today"]
    # the later chunk misheard "long" just after the cut: the earlier chunk's reading is kept
    earlier[2] = sure("inside", 9.4, 0.9)
    later[3] = sure("lung", 10.1, 0.2)
    assert joined(earlier, later) == ["we", "cut", "inside", "a", "long", "sentence", "today"]
    # a word only one chunk heard counts as a reading against "nothing" (0.5): kept when it is likelier right
    later[3] = sure("long", 10.1, 0.9)
    del earlier[2]
    assert joined(earlier, later) == ["we", "cut", "inside", "a", "long", "sentence", "today"]
    later[1] = sure("inside", 9.4, 0.1)  # a word the later chunk made up, unsure; the earlier heard nothing there
    assert joined(earlier, later) == ["we", "cut", "a", "long", "sentence", "today"]


def test_without_confidences_the_pair_nearest_the_cut_is_the_junction() -> None:
    earlier = said(("we", 8.6), ("cut", 9.0), ("insight", 9.4), ("a", 9.8), ("long", 10.1))
    later = said(("cut", 9.0), ("inside", 9.4), ("a", 9.8), ("long", 10.1), ("sentence", 10.5))
    assert joined(earlier, later) == ["we", "cut", "insight", "a", "long", "sentence"]
    # one unknown confidence in a stretch makes that stretch count for nothing
    earlier[2] = Timed(9.4, 9.7, "insight", None)
    later = [Timed(w.start_s, w.end_s, w.text, 0.9) for w in later]
    assert joined(earlier, later) == ["we", "cut", "insight", "a", "long", "sentence"]


def test_after_trailing_context_the_later_chunks_readings_are_kept() -> None:
    # the earlier chunk heard on past the cut at 10 s, as context; the later one starts there
    earlier = said(("a", 9.0), ("cold", 9.4), ("day", 10.3), ("were", 10.8), ("in", 11.0), ("june", 11.5))
    later = said(("day", 10.35), ("within", 10.8), ("june", 11.5), ("walked", 11.9))
    keep, skip = join_after_context(earlier, later, CUT, 2.0)
    assert [w.text for w in earlier[:keep] + later[skip:]] == ["a", "cold", "day", "within", "june", "walked"]


def test_after_trailing_context_a_word_timed_past_the_cut_that_only_the_earlier_chunk_heard_is_kept() -> None:
    earlier = said(("bright", 9.5), ("day", 10.05))  # said before the cut, timed just after it
    later = said(("we", 11.0), ("walked", 11.4))
    keep, skip = join_after_context(earlier, later, CUT, 2.0)
    assert [w.text for w in earlier[:keep] + later[skip:]] == ["bright", "day", "we", "walked"]
    # but not a word the later chunk heard too, in other words at the same time
    later = said(("today", 10.1), ("we", 11.0))
    keep, skip = join_after_context(earlier, later, CUT, 2.0)
    assert [w.text for w in earlier[:keep] + later[skip:]] == ["bright", "today", "we"]
    # nor a word the later chunk heard too, though their times disagree: "by" once, not "by by"
    earlier = said(("netherlands", 9.2), ("by", 10.0))
    later = said(("by", 10.6), ("a", 10.9))
    keep, skip = join_after_context(earlier, later, CUT, 2.0)
    assert [w.text for w in earlier[:keep] + later[skip:]] == ["netherlands", "by", "a"]
    # the earlier chunk stretched "by", said just after the cut, back over the pause (as Whisper base did)
    earlier = [Timed(9.08, 9.84, "Netherlands"), Timed(9.84, 10.6, "by"), Timed(10.6, 10.8, "a")]
    later = [Timed(10.57, 10.89, "by"), Timed(10.89, 11.0, "a")]
    keep, skip = join_after_context(earlier, later, CUT, 2.0)
    assert [w.text for w in earlier[:keep] + later[skip:]] == ["Netherlands", "by", "a"]
    # but a word that ends before the cut is the earlier chunk's, even when the next one repeats it
    earlier = said(("of", 9.2), ("the", 9.55))
    later = said(("the", 10.1), ("next", 10.5))
    keep, skip = join_after_context(earlier + [Timed(10.1, 10.3, "the")], later, CUT, 2.0)
    assert [w.text for w in (earlier + [Timed(10.1, 10.3, "the")])[:keep] + later[skip:]] == ["of", "the", "the", "next"]


def test_without_words_past_the_cut_nothing_is_aligned() -> None:
    # "the" just before the cut and "the" just after it are two words: an engine that read no context
    earlier = said(("of", 9.2), ("the", 9.6))
    later = said(("the", 10.1), ("next", 10.5))
    keep, skip = join_after_context(earlier, later, CUT, 2.0)
    assert [w.text for w in earlier[:keep] + later[skip:]] == ["of", "the", "the", "next"]


_VOCABULARY = ["the", "a", "cat", "sat", "on", "mat", "and", "then"]


@st.composite
def _overlapping(draw: st.DrawFn, repeats: bool) -> tuple[list[Timed], list[Timed], list[Timed]]:
    """A true word sequence across the cut, as two chunks heard it: garbled at their outer edges, jittered,
    with random word confidences or none.

    With ``repeats`` the words come from a small vocabulary (runs such as "the the the") and
    the two readings' times differ by up to 0.1 s; without, words differ and times by up to 0.5 s.
    """
    jitter = 0.05 if repeats else 0.25
    t = CUT - 3.0
    truth = []
    while t < CUT + 3.0:
        length = draw(st.floats(0.25, 0.6))
        text = draw(st.sampled_from(_VOCABULARY)) if repeats else f"w{len(truth)}"
        truth.append(Timed(t, t + length, text))
        t += length + draw(st.floats(0.0, 0.2))

    confidences = draw(st.booleans())  # an engine gives a confidence for every word, or for none

    def heard(words: list[Timed]) -> list[Timed]:
        return [
            Timed(w.start_s + d, w.end_s + d, w.text, draw(st.floats(0.0, 1.0)) if confidences else None)
            for w in words
            for d in [draw(st.floats(-jitter, jitter))]
        ]

    earlier = heard([w for w in truth if w.start_s < CUT + OVERLAP])
    later = heard([w for w in truth if w.end_s > CUT - OVERLAP])
    if draw(st.booleans()):  # the earlier window cut its last word off: a wrong word there
        earlier[-1] = earlier[-1]._replace(text="xyzzy")
    if draw(st.booleans()):
        later[0] = later[0]._replace(text="plugh")
    return truth, earlier, later


@settings(max_examples=600, deadline=None)
@given(case=st.booleans().flatmap(lambda repeats: _overlapping(repeats)))
def test_no_word_of_the_overlap_is_lost_or_doubled(case: tuple[list[Timed], list[Timed], list[Timed]]) -> None:
    truth, earlier, later = case

    assert joined(earlier, later) == [w.text for w in truth]


@st.composite
def _heard_across_a_pause(draw: st.DrawFn) -> tuple[list[Timed], list[Timed], list[Timed]]:
    """True words around a cut in the middle of a pause of 0.3-1 s, as two chunks heard them: the earlier
    on into its trailing context, the later from the cut; times jittered by up to 0.15 s either way, and
    sometimes the first word after the cut stretched back over the pause by the earlier chunk."""
    repeats = draw(st.booleans())
    half_pause = draw(st.floats(0.15, 0.5))
    truth: list[Timed] = []
    for side, start, stop in ((-1, CUT - 3.0, CUT - half_pause), (1, CUT + half_pause, CUT + 3.0)):
        t = start
        while True:
            length = draw(st.floats(0.25, 0.6))
            if t + length > stop and side < 0:
                break
            text = draw(st.sampled_from(_VOCABULARY)) if repeats else f"w{len(truth)}"
            truth.append(Timed(t, t + length, text))
            t += length + draw(st.floats(0.0, 0.2))
            if side > 0 and t > stop:
                break

    def heard(words: list[Timed]) -> list[Timed]:
        return [Timed(w.start_s + d, w.end_s + d, w.text) for w in words for d in [draw(st.floats(-0.15, 0.15))]]

    earlier = heard([w for w in truth if w.start_s < CUT + 2.5])  # the context ends inside speech
    later = heard([w for w in truth if w.start_s > CUT])
    after = next((i for i, w in enumerate(earlier) if w.start_s > CUT), None)
    if after is not None and draw(st.booleans()):  # the earlier chunk stretched the word after the cut back over the pause
        earlier[after] = earlier[after]._replace(start_s=CUT - half_pause + draw(st.floats(0.0, 0.1)))
    return truth, earlier, later


@settings(max_examples=400, deadline=None)
@given(case=_heard_across_a_pause())
def test_after_trailing_context_no_word_is_lost_or_doubled(case: tuple[list[Timed], list[Timed], list[Timed]]) -> None:
    truth, earlier, later = case
    keep, skip = join_after_context(earlier, later, CUT, 2.0)
    assert [w.text for w in earlier[:keep] + later[skip:]] == [w.text for w in truth]
