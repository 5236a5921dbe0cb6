"""bench.registry_corpus: the pure parts (transcript lines, grouping, joining, sonnet text, manifest, WAV)."""

from __future__ import annotations

import wave

import pytest

from bench.registry_corpus import (
    GAP_S,
    SAMPLE_RATE,
    Row,
    group,
    is_spoken,
    join,
    long_name,
    main,
    manifest_text,
    parse_transcript,
    sonnet_text,
    write_wav,
)

TRANSCRIPT = """; Core Asterisk Sounds in English

activated: Activated.
agent-alreadyon: That agent is already logged on.  Please enter your agent number followed by the pound key.
ascending-2tone: [ascending tones]
confbridge-join: <beep ascending>
letters/at: at [@]
silence/1: (1 second of silence)
vm-intro: Please leave your message after the tone. (simple tone sound plays)
digits/1: one
empty:
not a transcript line
activated: Activated again.
conf-star: Press *.
"""


def test_transcript_keeps_spoken_prompts_in_order() -> None:
    prompts = parse_transcript(TRANSCRIPT.splitlines(keepends=True))
    assert [p.key for p in prompts] == ["activated", "agent-alreadyon", "digits/1", "conf-star"]
    # the text is kept as written, inner double spaces included
    assert prompts[1].text == "That agent is already logged on.  Please enter your agent number followed by the pound key."
    assert prompts[0].text == "Activated."  # a repeated name keeps its first line


@pytest.mark.parametrize(
    "text, spoken",
    [("Activated.", True), ("", False), ("[beep]", False), ("(10 seconds of silence)", False),
     ("<beep ascending>", False), ("dash [-]", False), ("Press 1.", True)],
)
def test_is_spoken(text: str, spoken: bool) -> None:
    assert is_spoken(text) is spoken


def test_group_cuts_at_the_target_counting_gaps() -> None:
    # 49.7 + 0.3 = 50 s per clip: three clips reach 150 s
    assert group([49.7] * 7, target_s=150.0, gap_s=0.3, min_last_s=60.0) == [[0, 1, 2], [3, 4, 5, 6]]


def test_group_keeps_a_long_enough_remainder() -> None:
    assert group([49.7] * 8, target_s=150.0, gap_s=0.3, min_last_s=60.0) == [[0, 1, 2], [3, 4, 5], [6, 7]]


def test_group_of_few_clips_is_one_group() -> None:
    assert group([1.0, 2.0]) == [[0, 1]]
    assert group([]) == []


def test_join_puts_silence_between_clips_only() -> None:
    gap = b"\0" * (round(GAP_S * SAMPLE_RATE) * 2)
    assert join([b"\1\0", b"\2\0"], GAP_S) == b"\1\0" + gap + b"\2\0"
    assert join([b"\1\0", b"\2\0"], 0.0) == b"\1\0\2\0"


def test_long_name() -> None:
    assert long_name("asterisk_allison", 1, 28) == "long_asterisk_allison_001-028.wav"


def test_sonnet_text_drops_the_title_line() -> None:
    xhtml = (
        '<p><span id="f001">I</span></p>\n<p><span id="f002">From fairest creatures we desire increase,</span></p>\n'
        '<p><span id="f003">That thereby beauty\u2019s rose might never die,</span></p>'
    )
    assert sonnet_text(xhtml) == "From fairest creatures we desire increase, That thereby beauty\u2019s rose might never die,"


def test_manifest_text() -> None:
    rows = [Row("a.wav", 1.5, "src", "CC0", "Hello there.")]
    assert manifest_text(rows) == "file\tduration_s\tsource\tlicense\treference\na.wav\t1.5\tsrc\tCC0\tHello there.\n"
    with pytest.raises(ValueError):
        manifest_text([Row("b.wav", 1.0, "src", "CC0", "tab\there")])


def test_write_wav_is_16k_mono_16bit(tmp_path) -> None:
    path = tmp_path / "x.wav"
    write_wav(path, b"\1\0" * 160)
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (SAMPLE_RATE, 1, 2, 160)


def test_missing_tools_exit_2(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main([str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing tool" in err[0] and "ffmpeg" in err[0]
    assert not (tmp_path / "out").exists()
