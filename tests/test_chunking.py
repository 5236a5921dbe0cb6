"""Tests for hub.chunking: cuts at pauses, contiguous coverage, hard cuts, short tails."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydub import AudioSegment
from pydub.generators import Sine, WhiteNoise

from hub.chunking import ChunkingSettings, ChunkSpec, _fewest_chunks, _Point, plan_chunks

RATE = 16000
DEFAULTS = ChunkingSettings()


@lru_cache(maxsize=None)
def _long_tone(volume_db: float) -> AudioSegment:
    """70 s of 220 Hz tone at 16 kHz mono 16-bit (generated once; pieces are sliced from it)."""
    return Sine(220, sample_rate=RATE).to_audio_segment(duration=70_000, volume=volume_db)


def tone(ms: int, volume_db: float = -6.0) -> AudioSegment:
    return _long_tone(volume_db)[:ms]


def silence(ms: int) -> AudioSegment:
    return AudioSegment.silent(ms, frame_rate=RATE)


def build(*pieces: tuple[str, int]) -> tuple[AudioSegment, list[tuple[int, int]]]:
    """Concatenate ("tone"|"pause", ms) pieces; return the audio and the pauses' [start, end) in ms."""
    parts: list[AudioSegment] = []
    pauses: list[tuple[int, int]] = []
    position = 0
    for kind, ms in pieces:
        parts.append(tone(ms) if kind == "tone" else silence(ms))
        if kind == "pause":
            pauses.append((position, position + ms))
        position += ms
    audio = sum(parts[1:], parts[0])
    assert len(audio) == position
    return audio, pauses


def cuts_of(spans: list[ChunkSpec]) -> list[int]:
    return [span.end_ms for span in spans[:-1]]


def assert_tiles(spans: list[ChunkSpec], total_ms: int) -> None:
    assert spans[0].start_ms == 0
    assert spans[-1].end_ms == total_ms
    for before, after in zip(spans, spans[1:]):
        assert after.start_ms == before.end_ms
    assert sum(span.duration_ms for span in spans) == total_ms


def test_cuts_land_in_the_middle_of_the_pauses() -> None:
    audio, pauses = build(
        ("tone", 8000), ("pause", 600), ("tone", 7000), ("pause", 900), ("tone", 9000),
        ("pause", 600), ("tone", 8000), ("pause", 600), ("tone", 6000),
    )  # fmt: skip

    spans = plan_chunks(audio, DEFAULTS)

    assert_tiles(spans, 40_700)
    # Pause midpoints: 8.3, 16.05, 25.8, 34.4 s. Two chunks of at most 30 s must cut between
    # 10.7 and 30 s: at 16.05 or 25.8 s; the 900 ms pause is the longer.
    assert len(spans) == 2
    (cut,) = cuts_of(spans)
    assert abs(cut - 16_050) <= 20


def test_the_longest_pause_wins_among_plans_of_as_few_chunks() -> None:
    audio, pauses = build(("tone", 5000), ("pause", 1500), ("tone", 12_000), ("pause", 400), ("tone", 15_000))

    spans = plan_chunks(audio, DEFAULTS)

    assert_tiles(spans, 33_900)
    assert cuts_of(spans) == [pytest.approx(5750, abs=20)]


def test_fewer_chunks_beat_a_longer_pause() -> None:
    # Cutting in the 1.5 s pause at 5.75 s would leave 46 s: three chunks. Two chunks of at most
    # 30 s must cut after 21.9 s, and only the short pause there lets them.
    audio, pauses = build(("tone", 5000), ("pause", 1500), ("tone", 20_000), ("pause", 400), ("tone", 25_000))

    spans = plan_chunks(audio, DEFAULTS)

    assert_tiles(spans, 51_900)
    assert cuts_of(spans) == [pytest.approx(26_700, abs=20)]


def test_silence_threshold_is_relative_to_the_recording() -> None:
    # Everything here is below -16 dBFS; only a threshold relative to the recording's
    # average loudness (-40 dB tone -> about -59 dBFS) tells the -70 dB hiss from the tone.
    hiss = WhiteNoise(sample_rate=RATE).to_audio_segment(duration=800, volume=-70.0)
    pieces = [tone(ms, volume_db=-40.0) for ms in (12_000, 7000, 10_000, 4000)]
    audio = pieces[0] + hiss + pieces[1] + hiss + pieces[2] + hiss + pieces[3]  # hiss mids: 12.4, 20.2, 31.0 s

    spans = plan_chunks(audio, DEFAULTS)

    assert_tiles(spans, 35_400)
    (cut,) = cuts_of(spans)  # in one of the two hisses that leave two chunks of at most 30 s, not in a tone
    assert cut == pytest.approx(12_400, abs=20) or cut == pytest.approx(20_200, abs=20)


def test_hard_cut_only_when_no_pause_is_in_reach() -> None:
    reachable, _ = build(("tone", 29_000), ("pause", 600), ("tone", 20_000))
    unreachable, _ = build(("tone", 31_000), ("pause", 600), ("tone", 10_000))

    at_pause = plan_chunks(reachable, DEFAULTS)
    hard = plan_chunks(unreachable, DEFAULTS)

    assert cuts_of(at_pause) == [pytest.approx(29_300, abs=20)]
    assert [(s.lead_ms, s.tail_ms) for s in at_pause] == [(0, 0), (0, 0)]  # a pause needs no overlap
    assert_tiles(hard, 41_600)
    assert len(hard) == 2
    assert 21_000 <= hard[0].duration_ms <= 28_000  # in the last quarter of the reach, overlaps included
    assert all(span.audio_end_ms - span.audio_start_ms <= 30_000 for span in hard)
    # Inside speech both neighbours hear overlap_s across the cut, so the words there can be aligned.
    assert [(s.lead_ms, s.tail_ms) for s in hard] == [(0, 1000), (1000, 0)]
    assert hard[0].audio_end_ms == hard[1].start_ms + 1000
    assert hard[1].audio_start_ms == hard[0].end_ms - 1000


def test_long_pauseless_audio_is_hard_cut_within_max() -> None:
    audio = tone(70_000)

    spans = plan_chunks(audio, DEFAULTS)

    assert_tiles(spans, 70_000)
    assert len(spans) == 3
    for span in spans[:-1]:
        assert 21_000 <= span.duration_ms <= 28_000  # in the last quarter of the reach
    assert all(span.audio_end_ms - span.audio_start_ms <= 30_000 for span in spans)  # overlaps included


def test_hard_cut_picks_the_quietest_spot() -> None:
    dip = (26_000, 26_200)  # 200 ms of quiet: shorter than min_silence_ms, so not a pause
    audio, _ = build(("tone", 26_000), ("pause", 200), ("tone", 18_800))

    spans = plan_chunks(audio, DEFAULTS)

    assert_tiles(spans, 45_000)
    (cut,) = cuts_of(spans)
    assert dip[0] + 10 <= cut <= dip[1] - 10


def test_a_pause_that_would_leave_a_short_tail_is_passed_over() -> None:
    # The long pause at 28.95 s would leave a 1.75 s tail (< min_s); the tail cannot be merged
    # back (31 s > max_s), so the planner cuts in the longer of the other two pauses (16.9 s).
    audio, pauses = build(
        ("tone", 8000), ("pause", 500), ("tone", 8000), ("pause", 600), ("tone", 11_000),
        ("pause", 1500), ("tone", 1000),
    )  # fmt: skip

    spans = plan_chunks(audio, DEFAULTS)

    assert_tiles(spans, 30_600)
    assert cuts_of(spans) == [pytest.approx(16_800, abs=20)]
    assert min(span.duration_ms for span in spans) >= 2000


def test_a_short_tail_stays_when_the_only_pause_leaves_it() -> None:
    audio, _ = build(("tone", 29_200), ("pause", 600), ("tone", 1000))

    spans = plan_chunks(audio, DEFAULTS)

    # Cutting in the pause (and keeping a 1.3 s tail) beats cutting inside the tone.
    assert cuts_of(spans) == [pytest.approx(29_500, abs=20)]
    assert spans[-1].duration_ms == pytest.approx(1300, abs=20)


def test_recording_shorter_than_max_is_one_chunk() -> None:
    audio, _ = build(("tone", 9000), ("pause", 600), ("tone", 9000), ("pause", 600), ("tone", 700))

    assert plan_chunks(audio, DEFAULTS) == [ChunkSpec(0, 19_900)]
    assert plan_chunks(tone(500), DEFAULTS) == [ChunkSpec(0, 500)]


def test_all_silence_is_cut_every_max_s() -> None:
    spans = plan_chunks(silence(65_000), DEFAULTS)

    assert spans == [ChunkSpec(0, 30_000), ChunkSpec(30_000, 60_000), ChunkSpec(60_000, 65_000)]


def test_empty_recording_has_no_chunks() -> None:
    assert plan_chunks(AudioSegment.empty(), DEFAULTS) == []


def test_espeak_speech_is_cut_between_sentences(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path / "speech.wav"
    text = (
        "The hub cuts recordings into chunks at pauses. Edge nodes transcribe them. "
        "Each chunk is short. The results are joined again. Nothing is lost on the way."
    )
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
    speech = AudioSegment.from_wav(path).set_frame_rate(RATE)
    short = ChunkingSettings(max_s=5.0, min_s=1.0, overlap_s=0.5)

    spans = plan_chunks(speech, short)

    assert_tiles(spans, len(speech))
    assert len(spans) >= 2
    assert all(span.duration_ms <= 5000 for span in spans)
    for cut in cuts_of(spans):
        assert speech[cut - 10 : cut + 10].dBFS < speech.dBFS - 20  # in a pause, not in a word


_PIECES = st.lists(
    st.tuples(st.sampled_from(["tone", "pause"]), st.integers(min_value=20, max_value=14_000)),
    min_size=1,
    max_size=8,
)


@st.composite
def _settings(draw: st.DrawFn) -> ChunkingSettings:
    min_s = draw(st.floats(min_value=0.2, max_value=4.0))
    overlap_s = draw(st.floats(min_value=0.0, max_value=min_s / 2))
    max_s = draw(st.floats(min_value=max(min_s, 2 * overlap_s + 0.1), max_value=min_s + 30.0))
    min_silence_ms = draw(st.integers(min_value=50, max_value=800))
    window_s = draw(st.sampled_from([0.0, 5.0, 30.0, 60.0]))
    return ChunkingSettings(max_s=max_s, min_s=min_s, min_silence_ms=min_silence_ms, overlap_s=overlap_s, window_s=window_s)


@settings(max_examples=60, deadline=None)
@given(pieces=_PIECES, chunking=_settings())
def test_spans_always_tile_the_recording(pieces: list[tuple[str, int]], chunking: ChunkingSettings) -> None:
    audio, _ = build(*pieces)
    max_ms = round(chunking.max_s * 1000)

    spans = plan_chunks(audio, chunking)

    assert_tiles(spans, len(audio))
    assert all(span.heard_end_ms - span.audio_start_ms <= max_ms + 1 for span in spans)  # overlaps included
    overlap_ms = round(chunking.overlap_s * 1000)
    assert spans[0].lead_ms == 0 and spans[-1].tail_ms == 0
    for before, after in zip(spans, spans[1:]):
        clipped = min(overlap_ms, after.start_ms, len(audio) - after.start_ms)  # by the recording's ends
        assert before.tail_ms == after.lead_ms in (0, clipped)  # symmetric, and only at hard cuts
    assert all(0 <= s.audio_start_ms and s.audio_end_ms <= len(audio) for s in spans)
    # trailing context fills each chunk's audio up to the window with what follows, and no further
    window_ms = round(chunking.window_s * 1000)
    for s in spans:
        heard = s.heard_end_ms - s.audio_start_ms
        assert s.context_ms == max(0, min(window_ms - heard, len(audio) - s.heard_end_ms))
    assert spans[-1].context_ms == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_s": 0.0},
        {"min_s": -1.0},
        {"min_s": 40.0},  # more than max_s
        {"max_s": 1.5},  # not more than 2 x overlap_s
        {"max_s": float("nan")},
        {"min_silence_ms": 0},
        {"min_silence_ms": 2.5},
        {"silence_thresh_db": 0.0},
        {"silence_thresh_db": 6.0},
        {"overlap_s": -0.5},
        {"overlap_s": 1.5},  # more than min_s / 2
        {"window_s": -1.0},
        {"window_s": float("inf")},
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ChunkingSettings(**kwargs)


def test_chunk_spec() -> None:
    assert ChunkSpec(1500, 4000).duration_ms == 2500
    with pytest.raises(ValueError):
        ChunkSpec(4000, 4000)
    with pytest.raises(ValueError):
        ChunkSpec(-1, 10)
    assert (ChunkSpec(1500, 4000, lead_ms=500, tail_ms=700).audio_start_ms, ChunkSpec(1500, 4000, 0, 700).audio_end_ms) == (1000, 4700)
    with pytest.raises(ValueError):
        ChunkSpec(100, 4000, lead_ms=200)  # would start before the recording
    with_context = ChunkSpec(1500, 4000, 0, 700, context_ms=2000)
    assert (with_context.heard_end_ms, with_context.audio_end_ms) == (4700, 6700)
    with pytest.raises(ValueError):
        ChunkSpec(100, 4000, context_ms=-1)


def test_chunks_carry_what_follows_as_context_up_to_the_window() -> None:
    audio, _ = build(("tone", 8000), ("silence", 600), ("tone", 8000), ("silence", 600), ("tone", 8000))
    spans = plan_chunks(audio, ChunkingSettings(max_s=10.0, window_s=12.0))
    assert len(spans) == 3
    assert [s.audio_end_ms - s.audio_start_ms for s in spans[:2]] == [12000, 12000]  # filled to the window
    assert spans[-1].context_ms == 0 and spans[-1].audio_end_ms == len(audio)
    assert all(s.context_ms == 0 for s in plan_chunks(audio, ChunkingSettings(max_s=10.0, window_s=0.0)))


def _brute_force(points: list[_Point], total_ms: int, max_ms: int, min_ms: int, overlap_ms: int) -> tuple[int, int] | None:
    """(chunks, -quality) of the best plan, trying every subset of the points."""
    best = None
    for n in range(len(points) + 1):
        for chosen in itertools.combinations(range(len(points)), n):
            bounds = [(0, False), *((points[i].ms, points[i].hard) for i in chosen), (total_ms, False)]
            ok = all(
                b - a + (overlap_ms if ha else 0) + (overlap_ms if hb else 0) <= max_ms and (b - a >= min_ms or total_ms < min_ms)
                for (a, ha), (b, hb) in zip(bounds, bounds[1:])
            )
            if ok:
                score = (n + 1, -sum(points[i].quality for i in chosen))
                best = score if best is None or score < best else best
    return best


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=200, max_value=12_000), min_size=1, max_size=8),
    qualities=st.lists(st.integers(min_value=0, max_value=2000), min_size=8, max_size=8),
    hard=st.lists(st.booleans(), min_size=8, max_size=8),
    max_ms=st.integers(min_value=5000, max_value=30_000),
)
def test_the_plan_has_the_fewest_chunks_then_the_longest_pauses(gaps, qualities, hard, max_ms) -> None:
    positions = list(itertools.accumulate(gaps))
    total_ms = positions.pop() + 500
    points = [_Point(p, 0 if h else q, h) for p, q, h in zip(positions, qualities, hard)]

    plan = _fewest_chunks(points, total_ms, max_ms, 1000, 500)

    expected = _brute_force(points, total_ms, max_ms, 1000, 500)
    if expected is None:
        assert plan is None
    else:
        assert plan is not None and plan == sorted(plan)
        assert (len(plan) + 1, -sum(points[i].quality for i in plan)) == expected
