"""bench.wer: the normaliser treats reference and hypothesis alike, so only real word differences count."""

from __future__ import annotations

import pytest

from bench.wer import boundary_errors, cut_errors, normalise, ordinal_words, wer, word_errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("In the 15th century", "in the fifteenth century"),
        ("1st 2nd 3rd 21st 40th 12th", "first second third twenty first fortieth twelfth"),
        ("in 1455, Mr. Smith", "in fourteen fifty five mister smith"),
        ("1,000 well-known", "one thousand well known"),
        ("It's done.", "its done"),
        ("Printed at Lübeck, a café in Malmö", "printed at lubeck a cafe in malmo"),
        ("Thy beauty’s use, feed’st thy light‘s flame", "thy beautys use feedst thy lights flame"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_ordinals() -> None:
    assert [ordinal_words(n) for n in (1, 5, 9, 20, 101)] == ["first", "fifth", "ninth", "twentieth", "one hundred first"]


def test_wer_counts_real_differences_only() -> None:
    assert wer("The 15th century.", "the fifteenth Century") == 0.0
    assert wer("a b c d", "a x c") == pytest.approx(0.5)
    assert word_errors("a b c d", "a x c e d") == {"substitutions": 1, "deletions": 0, "insertions": 1, "words": 4}
    assert wer("", "") == 0.0 and wer("", "noise") == 1.0


def test_boundary_errors_count_words_lost_or_doubled_at_junctions() -> None:
    ref = "one two three four five six"
    assert boundary_errors(ref, [(0, "one two three"), (1, "four five six")]) == 0
    assert boundary_errors(ref, [(0, "one two three"), (1, "three four five six")]) == 1  # doubled
    assert boundary_errors(ref, [(0, "one two"), (1, "four five six")]) == 1  # lost at the junction
    assert boundary_errors(ref, [(0, "one three"), (1, "four five six")]) == 0  # lost, but far from it
    assert boundary_errors(ref, [(0, "one two three four five six")]) == 0
    assert boundary_errors(ref, [(0, "one two three"), (1, "three three four five six")], reach=2) == 2


def test_cut_errors_leave_out_what_the_whole_file_gets_wrong_too() -> None:
    ref = "one two three four five six"
    lost = [(0, "one two"), (1, "four five six")]
    assert cut_errors(ref, lost, whole=ref) == 1  # the whole file heard "three": the cut lost it
    assert cut_errors(ref, lost, whole="one two four five six") == 0  # the engine drops it anyway
    garbled = [(0, "one two three"), (1, "uh four five six")]  # a misrecognition beside the junction
    assert (boundary_errors(ref, garbled), cut_errors(ref, garbled, whole=ref)) == (1, 0)
    doubled = [(0, "one two three"), (1, "three four five six")]
    assert cut_errors(ref, doubled, whole=ref) == 1
    assert cut_errors(ref, doubled, whole="one two three three four five six") == 0
    twice = [(0, "one two three"), (1, "three three four five six")]
    assert cut_errors(ref, twice, whole="one two three three four five six", reach=2) == 1  # once is the engine's
