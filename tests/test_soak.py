"""bench.soak: a 60-second chaos soak over real processes (about 2 minutes on 2 cores), and its helpers."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from bench.accuracy import CorpusFile, read_manifest
from bench.soak import PlannedJob, Settings, plan_jobs

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
SEED = 7
SOAK_TIMEOUT_S = 230  # chaos 60 s, baseline about 25 s, start, drain and teardown: about 100 s measured


def test_plan_uses_short_clips_in_rounds_and_the_long_file_once_per_300_s() -> None:
    clips = read_manifest(DATA / "manifest.tsv")
    settings = Settings(600, 3, DATA, ("manifest.tsv",), 1, 8, 4, Path("x.json"), 300, False)
    jobs = plan_jobs(clips, settings, random.Random(1))
    assert len(jobs) == 150 and jobs[0].at_s == 0 and jobs[1].at_s == 4
    assert sorted(j.clip.name for j in jobs[:9]) == sorted(c.name for c in clips)  # one round: each clip once
    assert len({j.name for j in jobs}) == len(jobs) and jobs[0].name.startswith("j0001-")
    long = CorpusFile("long_lj001_0001-0032.wav", DATA / "long.wav", 221.75, "long")
    with_long: list[PlannedJob] = plan_jobs(clips + [long], settings, random.Random(1))
    assert [i for i, j in enumerate(with_long) if j.clip is long] == [15, 75]


def test_a_60_second_soak_loses_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    cmd = [
        sys.executable, "-m", "bench.soak", "--duration", "60", "--corpus", "tests/data", "--nodes", "3",
        "--seed", str(SEED), "--fault-every", "6", "--jobs-every", "3", "--drain-timeout", "90", "--out", str(out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=SOAK_TIMEOUT_S, check=False)
    assert out.is_file(), f"exit code {proc.returncode}\n{proc.stderr[-4000:]}"
    doc = json.loads(out.read_text(encoding="utf-8"))
    s = doc["summary"]
    context = f"{proc.stdout}\n{proc.stderr[-4000:]}\nproblems: {json.dumps(doc['problems'])[:4000]}"
    assert not doc["error"], context
    assert s["baseline_complete"], context
    assert s["jobs_submitted"] == 20, context
    assert s["completed_done"] == s["jobs_submitted"], context
    assert all(j["state"] == "done" for j in doc["jobs"]), context
    assert s["words_baseline"] > 0
    assert s["words_lost"] == 0, context
    assert s["words_duplicated"] == 0, context
    assert s["words_changed"] == 0 and s["exact"] == s["jobs_submitted"], context
    kinds = {f["kind"].split("-")[0] for f in doc["faults"]}
    assert kinds == {"node", "broker", "hub"}, doc["faults"]
    assert all(f["whole_s"] is not None for f in doc["faults"])
    assert s["processes_before"] == 0 and s["processes_peak"] >= 2 + 2 * 3  # broker, hub, nodes and their engines
    assert s["processes_after"] == 0, doc["processes"]
    assert proc.returncode == 0, context
    assert "| words lost | 0 |" in proc.stdout
