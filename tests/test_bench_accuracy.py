"""bench.accuracy: summary and table from fabricated runs, manifest selection, the commands it runs, --help."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import bench.accuracy
from bench.accuracy import BenchError, Run, default_manifests, load_manifests, main, select_files, summarise, table

HEADER = "file\tduration_s\tsource\tlicense\treference\n"


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
    assert lines[0] == (
        "| file | audio s | run | WER % | ΔWER points | wall s | speed-up | chunks | failed chunks | boundary errors | cut errors |"
    )
    assert len(lines) == 4
    assert lines[2] == "| long.wav | 221.8 | whole file | 20.0 | — | 95.0 | 1.00× | — | — | — | — |"
    assert lines[3] == "| long.wav | 221.8 | 2 nodes | 23.0 | +3.0 | 50.0 | 1.90× | 11 | 0 | 0 | 0 |"


def test_pooled_rows_count_errors_over_words_of_all_recordings() -> None:
    def run(file: str, mode: str, errors: int, words: int, wall: float, cut: int = 0) -> Run:
        return Run(
            file=file, mode=mode, nodes=2 if mode == "distributed" else 0, repeat=0, wall_s=wall, wer=errors / words,
            substitutions=errors, deletions=0, insertions=0, words=words, boundary_errors=2 * cut, cut_errors=cut,
        )

    runs = [
        run("a.wav", "whole", 10, 100, 20.0), run("a.wav", "distributed", 14, 100, 10.0, cut=1),
        run("b.wav", "whole", 30, 300, 60.0), run("b.wav", "distributed", 27, 300, 40.0, cut=2),
    ]
    rows = summarise(runs, {"a.wav": 60.0, "b.wav": 180.0})
    whole, dist = rows[-2:]
    assert (whole.file, whole.mode, dist.file, dist.mode) == ("all 2 recordings", "whole", "all 2 recordings", "distributed")
    assert whole.wer == pytest.approx(0.1) and dist.wer == pytest.approx(41 / 400)
    assert dist.wer_delta_points == pytest.approx(0.25)  # not the mean of +4 and -1
    assert dist.speedup == pytest.approx(80 / 50) and dist.duration_s == 240.0
    assert (dist.boundary_errors, dist.cut_errors) == (6, 3)
    assert table(rows).splitlines()[-1] == "| all 2 recordings | 240.0 | 2 nodes | 10.2 | +0.2 | 50.0 | 1.60× | 0 | 0 | 6 | 3 |"


def test_long_recordings_come_from_every_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.tsv").write_text(HEADER + 'short.wav\t5.0\ts\tl\tsay "hi"\nlong.wav\t221.7\ts\tl\tlong one\n')
    assert default_manifests(tmp_path) == [tmp_path / "manifest.tsv"]
    (tmp_path / "tts").mkdir()
    (tmp_path / "tts" / "manifest.tsv").write_text(HEADER + "t1.wav\t72.2\ts\tl\tgenerated\n")
    corpus = load_manifests(default_manifests(tmp_path))
    assert [f.name for f in select_files(corpus, None, 60)] == ["long.wav", "t1.wav"]
    assert [f.name for f in select_files(corpus, None, 100)] == ["long.wav"]
    assert select_files(corpus, None, 60)[1].path == tmp_path / "tts" / "t1.wav"
    assert select_files(corpus, ["short.wav"], 0)[0].reference == 'say "hi"'
    with pytest.raises(BenchError, match="shorter than --min-duration 60: short.wav"):
        select_files(corpus, ["short.wav"], 60)
    with pytest.raises(BenchError, match="not in the manifests: nope.wav"):
        select_files(corpus, ["nope.wav"], 0)


def test_missing_manifest_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    absent = tmp_path / "absent.tsv"
    assert main(["--manifest", str(absent), "--quick", "--out", str(tmp_path / "o.json")]) == 2
    assert f"manifest not found: {absent}" in capsys.readouterr().err


def test_engine_and_model_reach_both_runs_and_the_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "manifest.tsv").write_text(HEADER + "a.wav\t90.0\ts\tl\tone two three\n")
    model = tmp_path / "model"
    model.mkdir()
    commands: list[list[str]] = []
    # a timed chunk has one segment per span, each carrying the chunk's node seconds
    segments = [{"seq": 0, "status": "ok", "text": "one", "seconds": 1.0}, {"seq": 0, "status": "ok", "text": "two", "seconds": 1.0}]

    def fake_timed(cmd: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
        commands.append(cmd)
        out = json.dumps({"segments": segments}) if "hub" in cmd else "one two three"
        return subprocess.CompletedProcess(cmd, 0, out, ""), 2.0

    monkeypatch.setattr(bench.accuracy, "_timed", fake_timed)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "o.json"
    args = ["--manifest", "manifest.tsv", "--engine", "whisper", "--model", "model", "--nodes", "1", "2"]
    assert main([*args, "--out", str(out)]) == 0
    assert [c[2:4] for c in commands] == [["edge_node", "transcribe"], ["hub", "transcribe"], ["hub", "transcribe"]]
    for cmd in commands:
        assert cmd[4] == str(tmp_path / "a.wav")
        assert cmd[-4:] == ["--engine", "whisper", "--model", str(model)]
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["settings"]["engine"] == "whisper" and doc["settings"]["model"] == str(model)
    assert doc["settings"]["manifests"] == [str(tmp_path / "manifest.tsv")]
    assert [(r["mode"], r["nodes"]) for r in doc["summary"]] == [("whole", 0), ("distributed", 1), ("distributed", 2)]
    assert doc["summary"][1]["wer_delta_points"] == pytest.approx(100 / 3)
    assert len(doc["runs"]) == 3 and doc["machine"]["nproc"]
    assert (doc["runs"][1]["chunks"], doc["runs"][1]["node_seconds"]) == (1, 1.0)


def test_shifted_baseline_decodes_the_recording_after_some_silence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydub import AudioSegment
    from pydub.generators import Sine

    Sine(440).to_audio_segment(duration=1000).set_frame_rate(16000).set_channels(1).export(tmp_path / "a.wav", format="wav")
    (tmp_path / "manifest.tsv").write_text(HEADER + "a.wav\t90.0\ts\tl\tone two three\n")
    heard: list[int] = []  # length in ms of what each whole-file run decoded

    def fake_timed(cmd: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
        if "hub" in cmd:
            return subprocess.CompletedProcess(cmd, 0, json.dumps({"segments": []}), ""), 1.0
        heard.append(len(AudioSegment.from_file(cmd[4])))
        return subprocess.CompletedProcess(cmd, 0, "one two three" if len(heard) == 1 else "one two", ""), 2.0

    monkeypatch.setattr(bench.accuracy, "_timed", fake_timed)
    out = tmp_path / "o.json"
    assert main(["--manifest", str(tmp_path / "manifest.tsv"), "--nodes", "1", "--shift-ms", "250", "--out", str(out)]) == 0
    assert heard == [1000, 1250]
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert [r["mode"] for r in doc["summary"]] == ["whole", "shifted", "distributed"]
    assert doc["summary"][1]["wer_delta_points"] == pytest.approx(100 / 3)
    assert doc["settings"]["shift_ms"] == 250


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--manifest", "--engine", "--model", "--nodes", "--min-duration", "--files", "--repeat", "--out", "--quick"):
        assert flag in out
