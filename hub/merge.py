"""Joining the words of two chunks that overlap, at a cut made inside speech.

Where the planner finds no pause within ``max_s`` it cuts inside speech (a hard
cut), and both neighbours hear ``overlap_s`` of audio on the other side of the
cut (see :mod:`hub.chunking`). Both then transcribe the words around the cut;
the earlier chunk garbles what its window cuts off at its end, the later one
what its window cuts off at its start. :func:`join` keeps each word exactly
once:

1. The candidates are the earlier chunk's words from ``cut - overlap`` on, and
   the later chunk's words up to ``cut + overlap`` (word midpoints, with a
   little slack for word-time jitter).
2. A word of each is the same word when they are spelled alike (case and
   punctuation aside), their times agree within ``tolerance_s``, and each is
   the other's nearest such word in time: "the" said twice a second apart is
   two words, and in a run of repeats each pairs with its own reading.
3. The junction is one of the matched pairs. The earlier chunk's words up to
   and including that word are kept, then the later chunk's words after it.
   No word of the overlap is dropped or doubled as long as both chunks heard
   it: before the junction it comes from the earlier chunk, after it from the
   later one. Between two matched pairs the chunks may disagree (one garbled
   a word the other heard). Where the engine gave word confidences, the
   junction is the pair that keeps the more confident reading of those
   stretches (the largest total confidence kept). Otherwise, and on a tie, it
   is the pair nearest the cut, the middle of the overlap, where both chunks
   heard the audio with context on both sides.
4. Without a single agreeing pair (one side heard nothing, or nothing alike),
   the cut itself is the junction: each word goes to the chunk whose own span
   holds its midpoint.

:func:`join_after_context` handles the other case where two chunks heard the
same words: a cut in a pause, after which the earlier chunk heard the start of
the next one as trailing context (rule 6 of docs/chunking.md).

Words are ``(start_s, end_s, text[, confidence])`` in recording time; the functions are pure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import NamedTuple

_SLACK_S = 0.25  #: word times jitter by this much around the overlap's edges
DEFAULT_TOLERANCE_S = 0.6  #: two readings of one word agree in time within this
#: after trailing context, a word both chunks heard within this of each other is one word (times drift more there)
_SAME_WORD_S = 1.0


class Timed(NamedTuple):
    start_s: float
    end_s: float
    text: str
    confidence: float | None = None  #: the engine's 0-1 estimate, where it gives one

    @property
    def mid_s(self) -> float:
        return (self.start_s + self.end_s) / 2


def spelling(word: str) -> str:
    """A word's comparable form: lower case, letters, digits and apostrophes only."""
    return re.sub(r"[^\w']+", "", word.lower())


#: The confidence of a reading with no words in a stretch where the other chunk heard some: as likely right as wrong.
_EMPTY_READING = 0.5


def _reading(words: Sequence[Timed]) -> float | None:
    """A chunk's confidence in its reading of a stretch: the mean of its words', None if any is unknown."""
    if not words:
        return _EMPTY_READING
    if any(w.confidence is None for w in words):
        return None
    return sum(w.confidence or 0.0 for w in words) / len(words)


def _confidence_gain(earlier: Sequence[Timed], later: Sequence[Timed], chain: list[tuple[int, int, float]]) -> list[float]:
    """For a junction at each matched pair, the confidence kept beyond joining at the first pair.

    Between consecutive pairs, a junction after the stretch keeps the earlier
    chunk's reading of it, one before keeps the later chunk's. Stretches where
    a confidence is unknown, or the pairs cross, count for nothing.
    """
    gain = [0.0]
    for (i1, j1, _), (i2, j2, _) in zip(chain, chain[1:]):
        mine = _reading(earlier[i1 + 1:i2])
        theirs = _reading(later[j1 + 1:j2]) if j2 > j1 else None
        step = mine - theirs if mine is not None and theirs is not None else 0.0
        gain.append(round(gain[-1] + step, 6))
    return gain


def join(
    earlier: Sequence[Timed],
    later: Sequence[Timed],
    cut_s: float,
    overlap_s: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> tuple[int, int]:
    """Where to join two overlapping chunks' words.

    Returns ``(keep, skip)``: keep ``earlier[:keep]`` then ``later[skip:]``.
    """
    head = next((i for i, w in enumerate(earlier) if w.mid_s >= cut_s - overlap_s - _SLACK_S), len(earlier))
    tail = [w for w in later if w.mid_s < cut_s + overlap_s + _SLACK_S]
    a = [spelling(w.text) for w in earlier[head:]]
    b = [spelling(w.text) for w in tail]
    pairs = [
        (i, j, abs(earlier[head + i].mid_s - tail[j].mid_s))
        for i in range(len(a))
        for j in range(len(b))
        if a[i] and a[i] == b[j] and abs(earlier[head + i].mid_s - tail[j].mid_s) <= tolerance_s
    ]
    nearest_for_a: dict[int, tuple[float, int]] = {}
    nearest_for_b: dict[int, tuple[float, int]] = {}
    for i, j, gap in pairs:
        nearest_for_a[i] = min(nearest_for_a.get(i, (gap, j)), (gap, j))
        nearest_for_b[j] = min(nearest_for_b.get(j, (gap, i)), (gap, i))
    same_word = [(i, j, gap) for i, j, gap in pairs if nearest_for_a[i][1] == j and nearest_for_b[j][1] == i]
    if same_word:
        chain = sorted(same_word)
        gain = _confidence_gain(earlier[head:], tail, chain)
        k = min(range(len(chain)), key=lambda k: (-gain[k], abs(earlier[head + chain[k][0]].mid_s - cut_s), chain[k][2]))
        i, j, _ = chain[k]
        return head + i + 1, j + 1
    keep = sum(1 for w in earlier if w.mid_s < cut_s)
    skip = sum(1 for w in later if w.mid_s < cut_s)
    return keep, skip


def join_after_context(earlier: Sequence[Timed], later: Sequence[Timed], cut_s: float, reach_s: float) -> tuple[int, int]:
    """Where to join a chunk that heard trailing context past a cut in a pause, and the next chunk.

    The next chunk starts at the cut and heard its words from a clean start, so it keeps
    them all, while the earlier chunk heard them only as context. The earlier chunk
    keeps its words before the cut, and also those timed past the cut (within
    ``reach_s``) that end before the later chunk's first word begins: word times are
    rough, and a word said just before the cut, which only the earlier chunk heard, can
    be timed just after it. A word past the cut that overlaps the later chunk's words in
    time is the later chunk's, and so is a word that runs past the cut and that the later
    chunk also heard (spelled alike, within ``_SAME_WORD_S``): the earlier chunk's times
    can stretch a word said just after the cut back over the pause.
    """
    first_word_s = min((w.start_s for w in later), default=math.inf)
    near = [(spelling(w.text), w.mid_s) for w in later if w.mid_s < cut_s + reach_s + _SAME_WORD_S]

    def heard_by_later(w: Timed) -> bool:
        return any(text == spelling(w.text) and abs(mid - w.mid_s) <= _SAME_WORD_S for text, mid in near)

    keep = 0
    for w in earlier:
        own = w.mid_s < cut_s or (w.mid_s < cut_s + reach_s and w.end_s <= first_word_s)
        if not own or (w.end_s > cut_s and heard_by_later(w)):
            break
        keep += 1
    return keep, 0
