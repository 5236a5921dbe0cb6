"""Subtitle cues a viewer can read, built from word times: words in, cues out.

Rules (each has a test in tests/test_subtitles.py):
- A cue holds at most ``MAX_LINES`` lines of at most ``MAX_CHARS`` characters.
  A single word longer than a line cannot be split: it gets a cue of its own.
- A cue is shown for at most ``MAX_MS`` and, where the next cue leaves room,
  at least ``MIN_MS`` and long enough to read (``READING_CPS``). It starts when
  its first word is said; it never overlaps the next cue, and cues come in order.
- The cues hold every word exactly once, in order. Words without text are left out.
- Where to break: the breaks are chosen together (dynamic programming), first
  so that no cue is shorter than ``MIN_MS``, then at the least cost, then with
  the most even layout. A break at a sentence end costs nothing, and a sentence
  end left inside a cue costs as much as the cheapest other break, so a new
  sentence starts a new cue unless that leaves a cue too short. Any other break
  costs more the less it looks like one: less after a long pause between the
  words, or after a clause mark (comma, semicolon, colon, dash), more after an
  article, a preposition or a conjunction.
- The lines of a cue: one line when the text fits, else two lines as even as
  possible, preferably broken after punctuation, not after an article.
- A :class:`Gap` (a failed chunk's marker) is a cue of its own, wrapped to the
  same two lines (shortened with an ellipsis if it is longer).

Times are whole milliseconds; words are :class:`hub.merge.Timed` in seconds.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import srt

from hub.merge import Timed

MAX_CHARS = 42  #: characters on one line
MAX_LINES = 2
MAX_MS = 7000  #: longest a cue is shown
MIN_MS = 1000  #: shortest a cue is shown, where the next one leaves room
READING_CPS = 20  #: characters a viewer reads in a second: a cue stays up that long, room allowing
PAUSE_MS = 1000  #: a pause this long between words makes a break as good as a clause mark
#: two lines may differ by this part of a line more to break after punctuation, or less to not break after "the"
LINE_BREAK_BONUS = 0.3

_CLOSERS = "'\"’”)]"
_SENTENCE_END = re.compile(rf"[.!?…][{re.escape(_CLOSERS)}]*$")
_CLAUSE_END = re.compile(rf"(?:[,;:–—]|-{{1,2}})[{re.escape(_CLOSERS)}]*$")
_ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "etc.", "e.g.", "i.e.", "no.", "prof."})
#: words a line or cue should not end on: they lean on the word after them
_WEAK = frozenset(
    "a an the of to in on at by for from with into onto about as and or but nor so if than that "
    "my your his her its our their this these those".split()
)


@dataclass(frozen=True)
class Gap:
    """A stretch with no words that the viewer must see (a failed chunk's marker): a cue of its own."""

    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class _Token:
    start_ms: int
    end_ms: int
    text: str
    gap: bool = False  #: a gap marker, which stands alone


def sentence_end(word: str) -> bool:
    """Whether a sentence ends with this word ("Mr." and "e.g." do not end one)."""
    return bool(_SENTENCE_END.search(word)) and word.lower().lstrip(_CLOSERS) not in _ABBREVIATIONS


def clause_end(word: str) -> bool:
    """Whether a clause ends with this word: a comma, semicolon, colon or dash after it."""
    return bool(_CLAUSE_END.search(word))


def _weak(word: str) -> bool:
    return word.lower().strip(_CLOSERS) in _WEAK


def spread(text: str, start_s: float, end_s: float) -> list[Timed]:
    """Text without word times, as words with estimated times: spread evenly from ``start_s`` to ``end_s``."""
    texts = text.split()
    step = (end_s - start_s) / max(1, len(texts))
    return [Timed(start_s + k * step, start_s + (k + 1) * step, t) for k, t in enumerate(texts)]


def _tokens(items: Sequence[Timed | Gap]) -> list[_Token]:
    """Gap markers, and words in milliseconds, a "word" with spaces in it taken apart."""
    out = []
    for item in items:
        words = [item] if isinstance(item, Gap) else spread(item.text, item.start_s, item.end_s)
        for word in words:
            if text := " ".join(word.text.split()):
                start = max(0, round(word.start_s * 1000))
                out.append(_Token(start, max(start, round(word.end_s * 1000)), text, isinstance(word, Gap)))
    return out


def _break_cost(before: _Token, after: _Token) -> float:
    """What a cue break between two words costs: nothing at a sentence end, 1 to 3.5 elsewhere."""
    if before.gap or after.gap or sentence_end(before.text):
        return 0.0
    pause = min(max(0, after.start_ms - before.end_ms), PAUSE_MS) / PAUSE_MS
    cost = 2.0 - math.floor(pause * 4) / 4  # in quarters, so that nearly equal pauses tie and layout decides
    cost -= 1.0 if clause_end(before.text) else 0.0
    return cost + 1.0 + (0.5 if _weak(before.text) else 0.0)


def _lines(texts: Sequence[str]) -> tuple[tuple[str, ...], float] | None:
    """The best lines for a run of words and their unevenness, or None if they do not fit in ``MAX_LINES``."""
    whole = " ".join(texts)
    if len(whole) <= MAX_CHARS or len(texts) == 1:
        return (whole,), 0.0
    best: tuple[float, int] | None = None
    first = -1
    for k in range(1, len(texts)):
        first += len(texts[k - 1]) + 1
        second = len(whole) - first - 1
        if first > MAX_CHARS:
            break
        if second > MAX_CHARS:
            continue
        word = texts[k - 1]
        cost = abs(first - second) / MAX_CHARS
        cost += -LINE_BREAK_BONUS if clause_end(word) or sentence_end(word) else LINE_BREAK_BONUS if _weak(word) else 0.0
        if best is None or cost < best[0]:
            best = (cost, k)
    if best is None:
        return None
    cost, k = best
    return (" ".join(texts[:k]), " ".join(texts[k:])), cost


def _gap_lines(text: str) -> tuple[str, ...]:
    """A gap marker's lines: even where it fits, else shortened to fit."""
    laid = _lines(text.split())
    if laid is not None and all(len(line) <= MAX_CHARS for line in laid[0]):
        return laid[0]
    return tuple(textwrap.wrap(text, MAX_CHARS, max_lines=MAX_LINES, placeholder=" …]"))


def _groups(tokens: list[_Token]) -> list[tuple[int, int, tuple[str, ...]]]:
    """The best split of the tokens into cues, as ``(first, stop, lines)``."""
    n = len(tokens)
    sentence_inside = [0] * (n + 1)  # sentence ends among tokens[:k], the break after them not counted yet
    for k, tok in enumerate(tokens):
        sentence_inside[k + 1] = sentence_inside[k] + (not tok.gap and sentence_end(tok.text))
    best: list[tuple[float, float, float]] = [(0, 0.0, 0.0)] + [(math.inf, math.inf, math.inf)] * n
    back: list[tuple[int, tuple[str, ...]]] = [(0, ())] * (n + 1)
    for stop in range(1, n + 1):
        room = tokens[stop].start_ms if stop < n else math.inf
        brk = _break_cost(tokens[stop - 1], tokens[stop]) if stop < n else 0.0
        chars = -1
        for first in range(stop - 1, -1, -1):
            tok = tokens[first]
            chars += len(tok.text) + 1
            alone = first == stop - 1
            if not alone and (
                tok.gap or tokens[stop - 1].gap or chars > MAX_CHARS * MAX_LINES
                or tokens[stop - 1].end_ms - tok.start_ms > MAX_MS
            ):
                break
            if tok.gap:
                lines, uneven = _gap_lines(tok.text), 0.0
            else:
                laid = _lines([t.text for t in tokens[first:stop]])
                if laid is None:
                    break
                lines, uneven = laid
            short, cost, layout = best[first]
            inside = sentence_inside[stop - 1] - sentence_inside[first]
            total = (
                short + (room - tok.start_ms < MIN_MS),
                cost + brk + inside,
                layout + uneven + (chars / (MAX_CHARS * MAX_LINES)) ** 2,  # even cues
            )
            if total < best[stop]:
                best[stop], back[stop] = total, (first, lines)
    groups = []
    stop = n
    while stop > 0:
        first, lines = back[stop]
        groups.append((first, stop, lines))
        stop = first
    return groups[::-1]


def cues(items: Sequence[Timed | Gap]) -> list[Cue]:
    """Readable cues for words (and gap markers) in order, by the rules in the module docstring."""
    tokens = _tokens(items)
    groups = _groups(tokens)
    out: list[Cue] = []
    for index, (first, stop, lines) in enumerate(groups):
        start = max(tokens[first].start_ms, out[-1].end_ms if out else 0)
        reading = max(MIN_MS, round(sum(map(len, lines)) * 1000 / READING_CPS))
        end = min(max(max(t.end_ms for t in tokens[first:stop]), start + reading), start + MAX_MS)
        if index + 1 < len(groups) and (following := tokens[groups[index + 1][0]].start_ms) > start:
            end = min(end, following)  # else the next cue starts late, after this one
        out.append(Cue(start, end, lines))
    return out


def _timestamp(ms: int) -> timedelta:
    return timedelta(milliseconds=ms)


def to_srt(cues: Sequence[Cue]) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm`` times."""
    return srt.compose(
        [srt.Subtitle(i, _timestamp(c.start_ms), _timestamp(c.end_ms), c.text) for i, c in enumerate(cues, start=1)]
    )


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(cues: Sequence[Cue]) -> str:
    """WebVTT: a ``WEBVTT`` header, ``HH:MM:SS.mmm`` times, text with ``&``, ``<`` and ``>`` escaped."""
    stamp = lambda ms: srt.timedelta_to_srt_timestamp(_timestamp(ms)).replace(",", ".")  # noqa: E731
    blocks = [f"{stamp(c.start_ms)} --> {stamp(c.end_ms)}\n{_vtt_escape(c.text)}\n\n" for c in cues]
    return "WEBVTT\n\n" + "".join(blocks)
