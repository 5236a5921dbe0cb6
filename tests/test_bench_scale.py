"""bench.scale: the ideal, the summary, tables and goals from fabricated runs; the simulated engine;
and one small real run (4 simulated nodes, 60 s of speech, then the memory run) end to end.

No test here asserts a speed: timings depend on the machine and on whatever else runs on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import speech_recognition as sr

from bench import scale_report as report
from bench.accuracy import Summary as RealSummary
from bench.scale import main
from edge_node.engines import EngineUnavailable, create_engine, runs_inline
from edge_node.engines.simulated import SimulatedEngine
from edge_node.runner import EngineProcess, EngineSpec, InlineEngine, make_engine
from protocol.messages import ResultStatus

DATA = Path(__file__).parent / "data"


def _sim(nodes: int, wall: float, repeat: int = 0, kind: str = "nodes", slow: int = 0, cpu: float = 0.06) -> report.SimRun:
    audio, rtf, longest = 3600.0, 0.05, 30.0
    return report.SimRun(
        kind=kind, nodes=nodes, slow=slow, slowdown=5.0, repeat=repeat, audio_s=audio, rtf=rtf, chunks=180,
        longest_chunk_s=longest, wall_s=wall, ideal_s=report.ideal_s(audio, rtf, longest, nodes, slow, 5.0),
        schedule_s=wall * 0.95, hub_cpu_s=cpu, steps={"publish": {"count": 180, "cpu_s": 0.18, "wall_s": 0.27}},
        overhead_ms=4.0,
    )


# --- the ideal ---------------------------------------------------------------------------------


def test_the_ideal_is_the_work_spread_over_the_capacity_plus_one_chunk() -> None:
    assert report.capacity(4, slow=1, slowdown=5.0) == pytest.approx(3.2)
    assert report.ideal_s(3600, 0.05, 30, 32) == pytest.approx(180 / 32 + 1.5)
    assert report.ideal_s(3600, 0.05, 30, 4, slow=1, slowdown=5.0) == pytest.approx(180 / 3.2 + 1.5)


def test_the_no_overhead_schedule_gives_each_chunk_to_the_node_free_first() -> None:
    assert report.schedule_s([10.0] * 4, [0.1, 0.1]) == pytest.approx(2.0)
    assert report.schedule_s([10.0] * 5, [0.1, 0.1]) == pytest.approx(3.0)
    # a free node takes the next chunk even when it is five times slower: it holds the end back
    assert report.schedule_s([10.0] * 3, [0.5, 0.1]) == pytest.approx(5.0)


# --- summary, tables, goals ----------------------------------------------------------------------


def test_summary_takes_medians_and_the_share_of_the_ideal() -> None:
    runs = [_sim(32, 8.0), _sim(32, 7.0, repeat=1), _sim(32, 9.0, repeat=2), _sim(1, 185.0)]
    rows = report.summarise(runs)
    assert [(r.nodes, r.runs) for r in rows] == [(32, 3), (1, 1)]
    row = rows[0]
    assert row.wall_s == 8.0
    assert row.efficiency == pytest.approx(row.ideal_s / 8.0)
    assert row.speedup == pytest.approx(180 / 8.0)
    assert row.ideal_speedup == pytest.approx(180 / row.ideal_s)
    assert row.hub_cpu_ms_per_chunk == pytest.approx(1000 * 0.06 / 180)


def test_tables_are_markdown_with_one_row_per_pool() -> None:
    rows = report.summarise([_sim(4, 50.0), _sim(4, 60.0, kind="hetero", slow=1)])
    lines = report.sim_table(rows).splitlines()
    assert lines[0].startswith("| nodes | chunks | wall s | ideal s |")
    assert len(lines) == 4
    assert lines[2].startswith("| 4 | 180 | 50.00 | 46.50 |")
    assert lines[3].startswith("| 3 fast + 1 slow | 180 | 60.00 | 57.75 |")
    steps = report.step_costs([_sim(4, 50.0)])
    assert steps == {"publish": {"cpu_ms": pytest.approx(1.0), "wall_ms": pytest.approx(1.5)}}
    assert report.steps_table(steps).splitlines()[2] == "| publish | 1.000 | 1.500 |"
    memory = [report.MemoryRun(audio_s=7200, nodes=4, repeat=0, wall_s=40.0, peak_rss_mb=95.4, chunks=361, exit_code=0)]
    assert report.memory_table(memory).splitlines()[2] == "| 120 min | 4 | 361 | 40.0 | 95 |"


def test_goals_say_honestly_which_are_met() -> None:
    real = [RealSummary(file="f", duration_s=222, mode="distributed", nodes=2, runs=1, wall_s=40, wer=0.2,
                        substitutions=0, deletions=0, insertions=0, words=10, chunks=11, failed_chunks=0,
                        node_seconds=70, speedup=1.7)]
    sims = report.summarise([_sim(32, 6.0), _sim(64, 6.0), _sim(4, 63.0, kind="hetero", slow=1, cpu=1.0)])
    memory = [report.MemoryRun(audio_s=7200, nodes=4, repeat=i, wall_s=40.0, peak_rss_mb=95.0 + i, chunks=361, exit_code=0)
              for i in range(3)]
    assert [g["goal"] for g in report.goals([], [], memory)] == ["hub peak memory, 2 h recording"]
    assert report.goals([], [], memory)[0]["value"] == 97.0
    by_goal = {g["goal"]: g for g in report.goals(real, sims, memory)}
    assert not by_goal["real engine, 2 nodes vs whole file on one"]["met"]
    assert by_goal["simulated, 32 nodes: share of the ideal speed-up"]["met"]  # 7.125 s ideal / 6 s
    assert not by_goal["simulated, 64 nodes: share of the ideal speed-up"]["value"] < 50
    hetero = by_goal["heterogeneous pool (3 fast + 1 slow): time over its ideal"]
    assert hetero["met"] and hetero["value"] == pytest.approx(100 * (63 / 57.75 - 1), abs=1e-3)
    assert by_goal["hub CPU per chunk (worst pool)"]["met"]
    assert by_goal["hub peak memory, 2 h recording"]["met"]
    table = report.goals_table(report.goals(real, sims, memory))
    assert "| real engine, 2 nodes vs whole file on one | >= 1.8x | 1.70× | **no** |" in table


# --- the simulated engine --------------------------------------------------------------------------


def test_the_simulated_engine_is_only_for_benchmarks_and_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGESCRIBE_TEST_ENGINES", raising=False)
    with pytest.raises(EngineUnavailable, match="for benchmarks and tests: set EDGESCRIBE_TEST_ENGINES=1"):
        create_engine("simulated", "0.1")
    assert not runs_inline("simulated")
    monkeypatch.setenv("EDGESCRIBE_TEST_ENGINES", "1")
    for bad in ("", "fast", "-1", "nan", "11"):
        with pytest.raises(EngineUnavailable, match="engine simulated needs"):
            create_engine("simulated", bad)
    assert create_engine("simulated", "0.1").rtf == pytest.approx(0.1)
    assert runs_inline("simulated") and not runs_inline("sphinx")


def test_the_simulated_engine_sleeps_its_real_time_factor_of_the_audio() -> None:
    slept: list[float] = []
    engine = SimulatedEngine("0.05", sleep=slept.append)
    text, spans = engine.transcribe_timed(sr.AudioData(b"\0\0" * 16000 * 20, 16000, 2))
    assert slept == [pytest.approx(1.0)]
    assert text == "simulated 20000 ms" and spans == ()


def test_a_node_runs_the_simulated_engine_in_its_own_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESCRIBE_TEST_ENGINES", "1")
    assert isinstance(make_engine(EngineSpec("sphinx")), EngineProcess)
    engine = make_engine(EngineSpec("simulated", "0"))
    assert isinstance(engine, InlineEngine)
    engine.start()
    outcome = engine.transcribe(b"\0\0" * 1600, 16000, 2, timeout=1.0)
    assert (outcome.status, outcome.text) == (ResultStatus.OK, "simulated 100 ms")
    engine.close()


# --- end to end ------------------------------------------------------------------------------------


def test_a_small_run_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGESCRIBE_TEST_ENGINES", raising=False)
    out, plot = tmp_path / "scale.json", tmp_path / "speedup.png"
    code = main([
        "--only", "nodes", "memory", "--nodes", "4", "--sim-audio", "60", "--rtf", "0.02",
        "--memory-audio", "60", "--memory-nodes", "2", "--sim-file", str(DATA / "jfk.wav"),
        "--out", str(out), "--plot", str(plot), "--log-level", "WARNING",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Simulated nodes:" in printed and "Memory:" in printed and "Goals:" in printed
    doc = json.loads(out.read_text())
    assert doc["machine"]["nproc"] >= 1 and doc["settings"]["nodes"] == [4]
    (row,) = doc["simulated"]["summary"]
    assert row["nodes"] == 4 and row["chunks"] >= 2 and row["failed_chunks"] == 0
    assert row["audio_s"] == pytest.approx(60, abs=0.1)
    (run,) = doc["simulated"]["runs"]
    assert sum(run["per_node"].values()) == run["chunks"]
    assert {"split", "publish", "result", "assign", "assemble"} <= set(doc["simulated"]["steps"])
    (memory,) = doc["memory"]
    assert memory["exit_code"] == 0 and memory["chunks"] >= 2 and memory["peak_rss_mb"] > 0
    pytest.importorskip("matplotlib")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
