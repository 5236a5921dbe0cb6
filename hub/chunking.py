"""Planning where to cut a recording into chunks for the edge nodes.

Pure planning: :func:`plan_chunks` looks at a :class:`pydub.AudioSegment` or a
:class:`hub.recording.Recording` (read in blocks, never whole) and returns
millisecond spans; it never copies the recording.

The spans always tile the recording: the first starts at 0 ms, each starts
where the previous one ended and the last ends at ``len(segment)``, so no
audio is ever lost, and no word is kept twice (see rule 4 for overlaps).
Why these rules and numbers: ``docs/chunking.md``.

The rules:

1. Candidate cuts are the midpoints of pauses (from
   :func:`hub.pauses.detect_silence`, with a threshold relative to the
   recording's average loudness).
2. Where two candidates (or a candidate and an end of the recording) lie
   further apart than one chunk may be, hard cuts are added between them:
   each in the middle of the quietest 20 ms window (searched every 10 ms) in
   the last quarter of the reach, so that a chunk between two hard cuts,
   overlaps included, still fits ``max_s``.
3. Of all the plans that cut only at these points, with every chunk's audio
   (its span, plus ``overlap_s`` on each side that is a hard cut) at most
   ``max_s`` and every span at least ``min_s`` long, the planner takes one
   with the fewest chunks; among those, the one whose cuts lie in the longest
   pauses (a pause counts up to 2 s). A dynamic programme over the points
   finds it. Fewest chunks because an engine's cost is per decoding window,
   not per second: Whisper decodes 30 s windows, so a 20 s chunk costs as
   much as a 30 s one, and a plan of chunks that fill the window decodes no
   more windows than the whole file would. If no plan keeps every span at
   least ``min_s`` long, shorter spans are allowed.
4. Around a hard cut both neighbours also hear ``overlap_s`` across it
   (``ChunkSpec.lead_ms``/``tail_ms``), so that a word the cut goes through is
   heard whole by at least one of them; :mod:`hub.merge` later keeps each word
   of the overlap once. A cut in a pause needs no overlap: each side already
   has half the pause as silence.
5. Optionally (``window_s`` > 0, off by default) each chunk's audio then runs
   on past its own end with what follows, up to ``window_s`` in all
   (``ChunkSpec.context_ms``). That is context only: Whisper hears what comes
   next, and the hub drops the words it hears there, which are the next
   chunk's. Engines that gain nothing from it (PocketSphinx) have it cut off
   on the node. It costs decoding work (docs/chunking.md).

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

import logging
import math
from dataclasses import dataclass

from pydub import AudioSegment

from hub.pauses import Loudness, detect_silence, scan
from hub.recording import Recording

_LOGGER = logging.getLogger(__name__)

_SEEK_STEP_MS = 10  # resolution of pause detection and of the hard-cut search, in ms
_MAX_PAUSE_QUALITY_MS = 2000  # a pause longer than this is no better a place to cut
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
    """How long chunks may be and what counts as a pause.

    Attributes:
        max_s: the most audio one chunk carries, in seconds, the overlaps of hard cuts included:
            the engine's decoding window (Whisper decodes 30 s windows, so a chunk of 30 s costs it
            as much as one of 10 s).
        min_s: shortest chunk the planner cuts on purpose, in seconds.
        min_silence_ms: shortest stretch of quiet that counts as a pause, in ms.
        silence_thresh_db: how far below the recording's average loudness
            (its dBFS) audio must be to count as quiet, in dB; negative.
            The absolute threshold is ``segment.dBFS + silence_thresh_db``.
        overlap_s: at a hard cut, how much audio each neighbour also hears
            on the other side of the cut, in seconds (0 for none).
        window_s: each chunk's audio is filled up to this length with the
            audio that follows it, as context (0, the default, for none).
    """

    max_s: float = 30.0
    min_s: float = 2.0
    min_silence_ms: int = 300
    silence_thresh_db: float = -16.0
    overlap_s: float = 1.0
    window_s: float = 0.0

    @property
    def longest_audio_s(self) -> float:
        """The most audio one chunk carries: ``max_s``, or the context window if it is longer."""
        return max(self.max_s, self.window_s)

    def __post_init__(self) -> None:
        for field_name in ("max_s", "min_s", "silence_thresh_db", "overlap_s", "window_s"):
            value = getattr(self, field_name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{field_name} must be a finite number, got {value!r}")
        if not self.min_s * 1000 >= 1:
            raise ValueError(f"min_s must be at least 0.001 s, got {self.min_s!r}")
        if isinstance(self.min_silence_ms, bool) or not isinstance(self.min_silence_ms, int):
            raise ValueError(f"min_silence_ms must be an int, got {self.min_silence_ms!r}")
        if self.min_silence_ms <= 0:
            raise ValueError(f"min_silence_ms must be positive, got {self.min_silence_ms!r}")
        if not 0 <= self.overlap_s <= self.min_s / 2:
            raise ValueError(f"overlap_s must be between 0 and min_s / 2 ({self.min_s / 2:g} s), got {self.overlap_s!r}")
        if not self.max_s > 2 * self.overlap_s or not self.max_s >= self.min_s:
            raise ValueError(f"max_s must exceed 2 x overlap_s and be at least min_s, got {self.max_s!r}")
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
    max_ms = _to_ms(settings.max_s)
    window_ms = _to_ms(settings.window_s)

    loudness = scan(segment.blocks(), segment.frame_rate, _SEEK_STEP_MS)
    if loudness.total == 0:
        _LOGGER.debug("recording of %d ms is digitally silent; cutting every %d ms", total_ms, max_ms)
        cuts = list(range(max_ms, total_ms, max_ms))
        return _spans(cuts, [False] * len(cuts), 0, total_ms, window_ms)

    pauses = _find_pauses(segment, loudness, settings)
    points = _cut_points(segment, pauses, total_ms, settings)
    overlap_ms = _to_ms(settings.overlap_s)
    plan = _fewest_chunks(points, total_ms, max_ms, _to_ms(settings.min_s), overlap_ms)
    if plan is None:  # no plan keeps every chunk at least min_s long: allow shorter ones
        plan = _fewest_chunks(points, total_ms, max_ms, 1, overlap_ms)
    assert plan is not None, "a plan always exists: hard cuts leave no gap longer than a chunk"
    cuts = [points[i].ms for i in plan]
    hard = [points[i].hard for i in plan]
    _LOGGER.debug(
        "planned %d chunks for %d ms: %d pauses found, %d hard cuts", len(cuts) + 1, total_ms, len(pauses), sum(hard)
    )
    return _spans(cuts, hard, overlap_ms, total_ms, window_ms)


@dataclass(frozen=True)
class _Point:
    """A place the plan may cut: the middle of a pause (its length in ``quality``) or a hard cut."""

    ms: int
    quality: int
    hard: bool = False


def _cut_points(segment: Recording, pauses: list[tuple[int, int]], total_ms: int, settings: ChunkingSettings) -> list[_Point]:
    """The middles of the pauses inside the recording, and hard cuts in every stretch between two of
    them (or an end) too long for one chunk, each within reach of the one before even with overlap on
    both sides; sorted by time."""
    max_ms = _to_ms(settings.max_s)
    overlap_ms = _to_ms(settings.overlap_s)
    limit = max_ms - 2 * overlap_ms  # a chunk between two hard cuts hears overlap on both sides
    mids = [_Point((a + b) // 2, min(b - a, _MAX_PAUSE_QUALITY_MS)) for a, b in pauses if 0 < (a + b) // 2 < total_ms]
    points: list[_Point] = []
    previous = _Point(0, 0)
    for point in [*mids, _Point(total_ms, 0)]:
        # no pause within reach (a chunk that starts at a hard cut also hears the overlap before it)
        while point.ms - previous.ms > max_ms - (overlap_ms if previous.hard else 0):
            low = previous.ms + min(_to_ms(settings.min_s), limit // 2)
            previous = _Point(_quiet_cut(segment, low, previous.ms + limit, limit), 0, hard=True)
            points.append(previous)
        if point.ms < total_ms:
            points.append(point)
        previous = point
    return points


def _fewest_chunks(points: list[_Point], total_ms: int, max_ms: int, min_ms: int, overlap_ms: int) -> list[int] | None:
    """Indices into ``points`` of the cuts of the plan with the fewest chunks whose audio fits ``max_ms``
    (overlaps included) and whose spans last at least ``min_ms``; among those, the one whose cuts lie in
    the longest pauses. None if no such plan exists. Dynamic programming over the points, in time order."""
    positions = [0, *(p.ms for p in points), total_ms]
    hard = [False, *(p.hard for p in points), False]
    quality = [0, *(p.quality for p in points), 0]
    # best[j]: (chunks, -quality) of the best plan of [0, positions[j]) that cuts at j, and the cut before it
    best: list[tuple[tuple[int, int], int] | None] = [((0, 0), -1)] + [None] * (len(positions) - 1)
    first = 0  # the earliest point still within max_ms of the current one
    for j in range(1, len(positions)):
        while positions[j] - positions[first] > max_ms:
            first += 1
        for i in range(first, j):
            if best[i] is None:
                continue
            span = positions[j] - positions[i]
            heard = span + (overlap_ms if hard[i] else 0) + (overlap_ms if hard[j] and j < len(positions) - 1 else 0)
            if heard > max_ms or (span < min_ms and total_ms >= min_ms):
                continue
            (chunks, minus_quality), _ = best[i]
            score = (chunks + 1, minus_quality - quality[j])
            if best[j] is None or score < best[j][0]:
                best[j] = (score, i)
    if best[-1] is None:
        return None
    plan = []
    j = best[-1][1]
    while j > 0:
        plan.append(j - 1)
        j = best[j][1]
    return plan[::-1]


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
