"""Planning where to cut a recording into chunks for the edge nodes.

Pure planning: :func:`plan_chunks` looks at a :class:`pydub.AudioSegment` or a
:class:`hub.recording.Recording` (read in blocks, never whole) and returns
millisecond spans; it never copies the recording.

The spans always tile the recording: the first starts at 0 ms, each starts
where the previous one ended and the last ends at ``len(segment)``, so no
audio is ever lost, and no word is kept twice (see step 5 for overlaps).
Why these rules and numbers: ``docs/chunking.md``.

The walk, from the current start ``s`` while more than ``max_s`` remains:

1. Candidate cuts are the midpoints of pauses (from
   :func:`pydub.silence.detect_silence`, with a threshold relative to the
   recording's average loudness) that lie in ``(s + min_s, s + max_s]``.
   Each is scored ``pause_ms - 20 * |midpoint_ms - (s + target_s)| / 1000``:
   the longest pause wins, and a pause loses 20 ms of effective length per
   second of distance from the target, so a 1 s sentence break anywhere in
   the window beats a 300 ms hesitation at the target, while equal pauses go
   to the one nearest the target.
2. Candidates that would leave a final piece shorter than ``min_s`` are only
   used when no other pause qualifies.  This is how short tails are "merged":
   merging a tail into its predecessor afterwards could never fit, because a
   cut is only made when more than ``max_s`` remains, so it is avoided up
   front instead.  A short tail remains only where the sole pause in reach
   leaves one (better than cutting inside a word).
3. With no pause in reach, a hard cut is made in the middle of the quietest
   20 ms window (searched every 10 ms) in the last quarter of the reachable
   range, i.e. within ``[s + 0.75 * max_s, s + max_s]``, leaving at least
   ``min_s`` after it where possible.  Chunks therefore never exceed ``max_s``.
4. Once at most ``max_s`` remains, the rest is the last chunk.
5. Around a hard cut both neighbours also hear ``overlap_s`` across it
   (``ChunkSpec.lead_ms``/``tail_ms``), so that a word the cut goes through is
   heard whole by at least one of them; :mod:`hub.merge` later keeps each word
   of the overlap once. A cut in a pause needs no overlap: each side already
   has half the pause as silence.

6. Each chunk's audio then runs on past its own end with what follows, up to
   ``window_s`` in all (``ChunkSpec.context_ms``). That is context only:
   Whisper hears what comes next, as it does in a whole-file decoding window,
   and the hub drops the words it hears there, which are the next chunk's.
   Engines that gain nothing from it (PocketSphinx) have it cut off on the node.
A digitally silent recording (all samples zero) is cut every ``max_s``.

Speed: pause detection dominated.  Measured on a 2-hour 16 kHz mono 16-bit
recording (tone bursts of 2-10 s between pauses of 0.1-1.5 s; 2-core
container, Python 3.11): pydub's ``detect_silence`` with ``seek_step=10`` took
9-14 s over several runs.  :mod:`hub.pauses` finds the same pauses in one
streaming pass (per-10 ms sums of squares, then prefix sums), which also lets
the recording stay on disk (:class:`hub.recording.Recording`); figures in
docs/benchmarks.md.
"""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass

from pydub import AudioSegment

from hub.pauses import Loudness, detect_silence, scan
from hub.recording import Recording

_LOGGER = logging.getLogger(__name__)

_SEEK_STEP_MS = 10  # resolution of pause detection and of the hard-cut search, in ms
_TARGET_PENALTY_MS_PER_S = 20.0  # pause length (ms) a candidate loses per second away from the target
_HARD_CUT_WINDOW_MS = 20  # length of the loudness window for hard cuts, in ms
_HARD_CUT_SEARCH_FRACTION = 0.25  # hard cuts are searched in this last fraction of max_s


@dataclass(frozen=True)
class ChunkSpec:
    """One chunk of a recording: the half-open span ``[start_ms, end_ms)``, in milliseconds.

    The spans of a plan tile the recording. Next to a hard cut a chunk also
    hears ``lead_ms`` of audio before its span and ``tail_ms`` after it (the
    overlap). After that come ``context_ms`` of the audio that follows, as
    context whose words are not kept. Its audio is ``[audio_start_ms, audio_end_ms)``;
    words are kept from ``[audio_start_ms, heard_end_ms)``.
    """

    start_ms: int
    end_ms: int
    lead_ms: int = 0
    tail_ms: int = 0
    context_ms: int = 0

    def __post_init__(self) -> None:
        if self.start_ms < 0 or self.end_ms <= self.start_ms:
            raise ValueError(f"invalid chunk span [{self.start_ms}, {self.end_ms}) ms")
        if not 0 <= self.lead_ms <= self.start_ms or self.tail_ms < 0 or self.context_ms < 0:
            raise ValueError(
                f"invalid overlap {self.lead_ms}/{self.tail_ms} ms or context {self.context_ms} ms"
                f" around [{self.start_ms}, {self.end_ms})"
            )

    @property
    def duration_ms(self) -> int:
        """Length of the chunk's own span, in milliseconds."""
        return self.end_ms - self.start_ms

    @property
    def audio_start_ms(self) -> int:
        """Where the audio sent for this chunk starts."""
        return self.start_ms - self.lead_ms

    @property
    def heard_end_ms(self) -> int:
        """Where the audio whose words this chunk keeps ends (its span and the overlap of a hard cut)."""
        return self.end_ms + self.tail_ms

    @property
    def audio_end_ms(self) -> int:
        """Where the audio sent for this chunk ends (context included)."""
        return self.end_ms + self.tail_ms + self.context_ms


@dataclass(frozen=True)
class ChunkingSettings:
    """How long chunks should be and what counts as a pause.

    Attributes:
        target_s: preferred chunk length, in seconds.
        max_s: hard upper bound on a chunk's length, in seconds.
        min_s: shortest chunk the planner cuts on purpose, in seconds.
        min_silence_ms: shortest stretch of quiet that counts as a pause, in ms.
        silence_thresh_db: how far below the recording's average loudness
            (its dBFS) audio must be to count as quiet, in dB; negative.
            The absolute threshold is ``segment.dBFS + silence_thresh_db``.
        overlap_s: at a hard cut, how much audio each neighbour also hears
            on the other side of the cut, in seconds (0 for none).
        window_s: each chunk's audio is filled up to this length with the
            audio that follows it, as context (0 for none). Whisper decodes
            30 s windows.
    """

    target_s: float = 20.0
    max_s: float = 30.0
    min_s: float = 2.0
    min_silence_ms: int = 300
    silence_thresh_db: float = -16.0
    overlap_s: float = 1.0
    window_s: float = 30.0

    @property
    def longest_audio_s(self) -> float:
        """The most audio one chunk carries: ``max_s`` plus the overlap of a hard cut on each side, or the window."""
        return max(self.max_s + 2 * self.overlap_s, self.window_s)

    def __post_init__(self) -> None:
        for field_name in ("target_s", "max_s", "min_s", "silence_thresh_db", "overlap_s", "window_s"):
            value = getattr(self, field_name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{field_name} must be a finite number, got {value!r}")
        if not self.min_s * 1000 >= 1:
            raise ValueError(f"min_s must be at least 0.001 s, got {self.min_s!r}")
        if not self.min_s <= self.target_s <= self.max_s:
            raise ValueError(
                f"need min_s <= target_s <= max_s, got {self.min_s!r}, {self.target_s!r}, {self.max_s!r}"
            )
        if isinstance(self.min_silence_ms, bool) or not isinstance(self.min_silence_ms, int):
            raise ValueError(f"min_silence_ms must be an int, got {self.min_silence_ms!r}")
        if self.min_silence_ms <= 0:
            raise ValueError(f"min_silence_ms must be positive, got {self.min_silence_ms!r}")
        if not 0 <= self.overlap_s <= self.min_s / 2:
            raise ValueError(f"overlap_s must be between 0 and min_s / 2 ({self.min_s / 2:g} s), got {self.overlap_s!r}")
        if self.window_s < 0:
            raise ValueError(f"window_s must not be negative, got {self.window_s!r}")
        if self.silence_thresh_db >= 0:
            raise ValueError(
                f"silence_thresh_db must be negative (dB below average), got {self.silence_thresh_db!r}"
            )


def plan_chunks(audio: AudioSegment | Recording, settings: ChunkingSettings) -> list[ChunkSpec]:
    """Return spans that tile ``[0, len(audio)]`` ms, cut at pauses where possible.

    See the module docstring for the rules.  An empty recording gives ``[]``.
    """
    total_ms = len(audio)
    if total_ms <= 0:
        return []
    segment = audio if isinstance(audio, Recording) else Recording.from_segment(audio)
    min_ms = _to_ms(settings.min_s)
    target_ms = _to_ms(settings.target_s)
    max_ms = _to_ms(settings.max_s)

    loudness = scan(segment.blocks(), segment.frame_rate, _SEEK_STEP_MS)
    if loudness.total == 0:
        _LOGGER.debug("recording of %d ms is digitally silent; cutting every %d ms", total_ms, max_ms)
        cuts = list(range(max_ms, total_ms, max_ms))
        return _spans(cuts, [False] * len(cuts), 0, total_ms, _to_ms(settings.window_s))

    pauses = _find_pauses(segment, loudness, settings)
    mids = [(start + end) // 2 for start, end in pauses]

    cuts: list[int] = []
    hard: list[bool] = []
    start = 0
    while total_ms - start > max_ms:
        low = start + min_ms
        high = start + max_ms
        safe_high = min(high, total_ms - min_ms)  # a cut at or before this leaves >= min_s
        target = start + target_ms
        cut = _pause_cut(pauses, mids, low, safe_high, target)
        if cut is None:
            cut = _pause_cut(pauses, mids, low, high, target)
        hard.append(cut is None)
        if cut is None:
            cut = _quiet_cut(segment, low, safe_high if safe_high > low else high, max_ms)
        cuts.append(cut)
        start = cut

    _LOGGER.debug(
        "planned %d chunks for %d ms: %d pauses found, %d hard cuts",
        len(cuts) + 1,
        total_ms,
        len(pauses),
        sum(hard),
    )
    return _spans(cuts, hard, _to_ms(settings.overlap_s), total_ms, _to_ms(settings.window_s))


def _to_ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def _find_pauses(segment: Recording, loudness: Loudness, settings: ChunkingSettings) -> list[tuple[int, int]]:
    """Quiet stretches as sorted, disjoint ``(start_ms, end_ms)`` pairs (pydub's ``detect_silence``)."""
    threshold_dbfs = loudness.dbfs + settings.silence_thresh_db
    return detect_silence(
        loudness,
        segment.pcm,
        min_silence_len=settings.min_silence_ms,
        silence_thresh=threshold_dbfs,
        seek_step=_SEEK_STEP_MS,
    )


def _pause_cut(
    pauses: list[tuple[int, int]], mids: list[int], low: int, high: int, target: int
) -> int | None:
    """Midpoint of the best-scoring pause whose midpoint is in ``(low, high]``, or None."""
    first = bisect.bisect_right(mids, low)
    last = bisect.bisect_right(mids, high)
    best: int | None = None
    best_score = -math.inf
    for index in range(first, last):
        start, end = pauses[index]
        score = (end - start) - _TARGET_PENALTY_MS_PER_S * abs(mids[index] - target) / 1000.0
        if score > best_score:
            best, best_score = mids[index], score
    return best


def _quiet_cut(segment: Recording, low: int, high: int, max_ms: int) -> int:
    """A cut in ``(low, high]``: the middle of the quietest window near ``high`` (latest on ties)."""
    search_from = max(low, high - int(max_ms * _HARD_CUT_SEARCH_FRACTION))
    if high - search_from < _HARD_CUT_WINDOW_MS:
        return high
    region = segment[search_from:high]  # read once; windows are sliced from it
    best_start = search_from
    best_rms = math.inf
    for window_start in range(search_from, high - _HARD_CUT_WINDOW_MS + 1, _SEEK_STEP_MS):
        offset = window_start - search_from
        rms = region[offset : offset + _HARD_CUT_WINDOW_MS].rms
        if rms <= best_rms:
            best_start, best_rms = window_start, rms
    return best_start + _HARD_CUT_WINDOW_MS // 2


def _spans(cuts: list[int], hard: list[bool], overlap_ms: int, total_ms: int, window_ms: int) -> list[ChunkSpec]:
    bounds = [0, *cuts, total_ms]
    # the same overlap on both sides of a cut, clipped to the recording at either end
    overlaps = [0, *(min(overlap_ms, cut, total_ms - cut) if h else 0 for cut, h in zip(cuts, hard)), 0]
    specs = []
    for a, b, lead, tail in zip(bounds, bounds[1:], overlaps, overlaps[1:]):
        heard = b + tail - (a - lead)
        context = max(0, min(window_ms - heard, total_ms - (b + tail)))  # what follows, up to the window
        specs.append(ChunkSpec(a, b, lead_ms=lead, tail_ms=tail, context_ms=context))
    return specs
