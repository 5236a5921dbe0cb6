"""Word error rate with one normaliser applied to reference and hypothesis alike.

Lower-case; ``mr``/``mrs``/``dr`` spelled out; digits spelled as words (four-digit
numbers from 1100 to 1999 read as years, "fourteen fifty five"; "15th" as "fifteenth"); hyphens and
punctuation removed (typographic apostrophes count as
plain ones: "beauty’s" is "beautys"). Compound words ("woodcutters" / "wood cutters") still count
as errors.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

import jiwer

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ABBREV = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "etc": "et cetera"}


def _below_100(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])


def number_words(n: int) -> str:
    """Spell a non-negative integer in English words."""
    if n < 100:
        return _below_100(n)
    if 1100 <= n <= 1999 and n % 100 != 0:
        return f"{_below_100(n // 100)} {_below_100(n % 100) if n % 100 >= 10 else 'oh ' + _ONES[n % 100]}"
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            head, rest = divmod(n, size)
            return f"{number_words(head)} {name}" + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError(n)


_ORDINAL_LAST = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def ordinal_words(n: int) -> str:
    """Spell a non-negative integer as an English ordinal: 15 -> "fifteenth", 21 -> "twenty first"."""
    words = number_words(n).split()
    last = words[-1]
    if last in _ORDINAL_LAST:
        words[-1] = _ORDINAL_LAST[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def normalise(text: str) -> str:
    # letters with accents keep their letter ("Lübeck" is "lubeck", not "l beck")
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = text.lower().replace("-", " ").replace("\u2019", "'").replace("\u2018", "'")  # typographic apostrophes
    text = re.sub(r"(\d),(\d)", r"\1\2", text)
    text = re.sub(r"\b(\d+)(?:st|nd|rd|th)\b", lambda m: " " + ordinal_words(int(m.group(1))) + " ", text)
    text = re.sub(r"\d+", lambda m: " " + number_words(int(m.group())) + " ", text)
    text = re.sub(r"[^a-z' ]+", " ", text).replace("'", "")
    words = [_ABBREV.get(w, w) for w in text.split()]
    return " ".join(words)


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return jiwer.wer(ref, hyp)


def word_errors(reference: str, hypothesis: str) -> dict[str, int]:
    """Counts of substitutions, deletions, insertions and reference words."""
    out = jiwer.process_words(normalise(reference), normalise(hypothesis))
    return {
        "substitutions": out.substitutions,
        "deletions": out.deletions,
        "insertions": out.insertions,
        "words": out.substitutions + out.deletions + out.hits,
    }


def boundary_errors(reference: str, pieces: list[tuple[int, str]], reach: int = 1) -> int:
    """Words deleted or inserted next to a junction between chunks: a word lost or doubled by cutting.

    ``pieces`` are ``(chunk seq, text)`` in transcript order. An inserted word counts
    when it is within ``reach`` words of a junction; a deletion when the gap it
    leaves is within ``reach`` words of one.
    """
    return sum(_junction_slips(reference, pieces, reach).values())


def cut_errors(reference: str, pieces: list[tuple[int, str]], whole: str, reach: int = 1) -> int:
    """The :func:`boundary_errors` that are words lost or doubled by the cut, judged against ``whole``.

    ``whole`` is the whole-file transcript of the same recording. A word deleted next to a junction
    counts when the whole-file transcript has that word right: the engine heard it, the cut lost
    it. A word inserted next to a junction counts when it repeats the reference word before or
    after it (heard by both chunks) and the whole-file transcript does not insert it there too.
    Misrecognitions that happen to align as a deletion or an insertion beside a junction, which
    engines with many errors make anywhere, are not the cut's.
    """
    slips = _junction_slips(reference, pieces, reach)
    if not slips:
        return 0
    ref, mine = normalise(reference), normalise(whole)
    out = jiwer.process_words(ref, mine)
    heard = {r for op in out.alignments[0] if op.type == "equal" for r in range(op.ref_start_idx, op.ref_end_idx)}
    words = ref.split()
    count = 0
    for (kind, r, word), n in (slips - _slips(out, mine.split())).items():
        if kind == "delete" and r in heard or kind == "insert" and word in words[max(0, r - 1) : r + 1]:
            count += n
    return count


_Slip = tuple[str, int, str]  #: ("delete", reference index, word) or ("insert", reference index before it, word)


def _slips(out: jiwer.WordOutput, hyp: list[str], keep=lambda kind, hyp_index: True) -> Counter[_Slip]:
    """Deleted and inserted words of one alignment, each with its place in the reference."""
    ref = out.references[0]
    found: Counter[_Slip] = Counter()
    for op in out.alignments[0]:
        if op.type == "insert":  # hypothesis words hyp_start_idx .. hyp_end_idx - 1
            found.update(("insert", op.ref_start_idx, hyp[p]) for p in range(op.hyp_start_idx, op.hyp_end_idx) if keep("insert", p))
        elif op.type == "delete" and keep("delete", op.hyp_start_idx):  # missing before hyp_start_idx
            found.update(("delete", r, ref[r]) for r in range(op.ref_start_idx, op.ref_end_idx))
    return found


def _junction_slips(reference: str, pieces: list[tuple[int, str]], reach: int) -> Counter[_Slip]:
    words: list[str] = []
    owner: list[int] = []
    for seq, text in pieces:
        mine = normalise(text).split()
        words += mine
        owner += [seq] * len(mine)
    junctions = [i for i in range(1, len(owner)) if owner[i] != owner[i - 1]]
    ref = normalise(reference)
    if not junctions or not ref:
        return Counter()

    def near(kind: str, position: int) -> bool:
        low = reach if kind == "insert" else reach - 1
        return any(j - low <= position < j + reach for j in junctions)

    return _slips(jiwer.process_words(ref, " ".join(words)), words, near)
