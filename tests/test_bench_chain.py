"""bench.chain: summary and table from fabricated runs (no subprocess), manifest selection, --help."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chain import BenchError, Run, load_corpus, main, select_files, summarise, table


def _run(mode: str, nodes: int, wall: float, wer: float, repeat: int = 0, chunks: int = 0) -> Run:
    return Run(
        file="long.wav", mode=mode, nodes=nodes, repeat=repeat, wall_s=wall, wer=wer,
        substitutions=10, deletions=2, insertions=1, words=100, chunks=chunks, node_seconds=wall * 0.8,
    )


def _runs() -> list[Run]:
    return [
        _run("whole", 0, 90.0, 0.20),
        _run("whole", 0, 100.0, 0.20, repeat=1),
        _run("whole", 0, 95.0, 0.20, repeat=2),
        _run("distributed", 2, 50.0, 0.22, chunks=11),
        _run("distributed", 2, 60.0, 0.24, repeat=1, chunks=11),
        _run("distributed", 2, 40.0, 0.23, repeat=2, chunks=11),
    ]


def test_summary_takes_medians_and_compares_with_the_baseline() -> None:
    rows = summarise(_runs(), {"long.wav": 221.75})
    assert [(r.mode, r.nodes, r.runs) for r in rows] == [("whole", 0, 3), ("distributed", 2, 3)]
    whole, dist = rows
    assert whole.wall_s == 95.0 and whole.speedup == pytest.approx(1.0)
    assert dist.wall_s == 50.0 and dist.wer == pytest.approx(0.23)
    assert dist.speedup == pytest.approx(95.0 / 50.0)
    assert dist.wer_delta_points == pytest.approx(3.0)
    assert dist.chunks == 11 and dist.node_seconds == pytest.approx(40.0)


def test_table_is_markdown_with_one_row_per_configuration() -> None:
    text = table(summarise(_runs(), {"long.wav": 221.75}))
    lines = text.splitlines()
    assert lines[0].startswith("| file | duration s | mode | nodes | wall s | speed-up | WER % | ΔWER points | chunks |")
    assert len(lines) == 4
    assert lines[2] == "| long.wav | 221.8 | whole | — | 95.0 | 1.00× | 20.0 | — | — |"
    assert lines[3] == "| long.wav | 221.8 | distributed | 2 | 50.0 | 1.90× | 23.0 | +3.0 | 11 |"


def test_default_selection_is_files_of_a_minute_or_more(tmp_path: Path) -> None:
    header = "file\tduration_s\tsource\tlicense\treference\n"
    (tmp_path / "manifest.tsv").write_text(header + 'short.wav\t5.0\ts\tl\tsay "hi"\nlong.wav\t221.7\ts\tl\tlong one\n')
    (tmp_path / "tts").mkdir()
    (tmp_path / "tts" / "manifest.tsv").write_text(header + "t1.wav\t72.2\ts\tl\tgenerated\n")
    corpus = load_corpus(tmp_path)
    assert [f.name for f in select_files(corpus, None)] == ["long.wav", "t1.wav"]
    assert select_files(corpus, ["short.wav"])[0].reference == 'say "hi"'
    assert select_files(corpus, None)[1].path == tmp_path / "tts" / "t1.wav"
    with pytest.raises(BenchError):
        select_files(corpus, ["nope.wav"])


def test_missing_corpus_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--corpus", str(tmp_path / "absent"), "--quick", "--out", str(tmp_path / "o.json")]) == 2
    assert "corpus not found" in capsys.readouterr().err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--corpus", "--files", "--nodes", "--engine", "--repeat", "--out", "--quick"):
        assert flag in out
