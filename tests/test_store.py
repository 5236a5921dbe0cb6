"""The durable store, and a hub that is killed mid-job and resumes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydub import AudioSegment

from bench.wer import wer
from hub.chunking import ChunkSpec
from hub.jobs import ChunkState, ChunkWork, Job, JobState
from hub.store import JobStore, StoreError
from protocol.messages import NodeStatus, Result, ResultStatus
from tests.chainkit import RawClient, speech, start_nodes, tagged_env, unique_prefix, wait_until

ROOT = Path(__file__).resolve().parent.parent


def make_job(job_id: str = "j1") -> Job:
    audio = AudioSegment.silent(duration=3000, frame_rate=16000).set_sample_width(2)
    chunks = [ChunkWork(i, ChunkSpec(i * 1000, (i + 1) * 1000)) for i in range(3)]
    chunks[1].spec = ChunkSpec(1000, 2000, lead_ms=0, tail_ms=400)  # a hard cut between 1 and 2
    chunks[2].spec = ChunkSpec(2000, 3000, lead_ms=400, tail_ms=0)
    return Job(id=job_id, name="three.wav", audio=audio, chunks=chunks, language="en-GB")


def test_a_job_round_trips_through_the_store(tmp_path):
    store = JobStore(tmp_path)
    job = make_job()
    store.save_audio(job)
    store.add(job, digest="abc")
    c0, c1, _ = job.chunks
    c0.state, c0.node_id, c0.attempt, c0.tried = ChunkState.DONE, "n1", 2, {"n1", "n2"}
    c0.result = Result("j1", 0, 2, "n1", ResultStatus.OK, text="hello", engine="sphinx", seconds=0.5)
    c1.state, c1.node_id, c1.attempt, c1.failures, c1.rejections = ChunkState.ASSIGNED, "n2", 1, 1, 4
    job.state = JobState.RUNNING
    store.save(job)
    hub_id = store.hub_id()
    store.close()

    again = JobStore(tmp_path)
    assert again.hub_id() == hub_id, "the hub id must survive a restart"
    (loaded,) = again.unfinished()
    assert (loaded.id, loaded.name, loaded.language, loaded.state) == ("j1", "three.wav", "en-GB", JobState.RUNNING)
    assert len(loaded.audio) == 3000
    for mine, theirs in zip(job.chunks, loaded.chunks):
        for field in PERSISTED:
            assert getattr(mine, field) == getattr(theirs, field), field
    assert again.find("abc", "three.wav") == "j1"
    assert again.find("zzz", "three.wav") is None and again.find("abc", "other.wav") is None


PERSISTED = ("seq", "spec", "state", "node_id", "attempt", "failures", "rejections", "tried", "result", "reason")


def test_a_save_writes_only_changed_chunks_and_every_change_persists(tmp_path):
    """A save skips rows it wrote before unchanged, so each field a change can touch must count as one."""
    store = JobStore(tmp_path)
    job = make_job()
    store.save_audio(job)
    store.add(job)
    writes = []
    store._db.set_trace_callback(lambda sql: writes.append(sql) if sql.startswith("INSERT OR REPLACE INTO chunks") else None)
    c = job.chunks[1]
    changes = [
        ("state", ChunkState.ASSIGNED), ("node_id", "n1"), ("attempt", 2), ("failures", 1), ("rejections", 3),
        ("tried", {"n1", "n2"}), ("reason", "n1: engine gave no answer"), ("spec", ChunkSpec(1000, 2500, 0, 400)),
        ("result", Result("j1", 1, 2, "n1", ResultStatus.OK, text="first")),
        ("result", Result("j1", 1, 2, "n1", ResultStatus.OK, text="second")),
    ]
    for field, value in changes:
        writes.clear()
        setattr(c, field, value)
        store.save(job)
        assert len(writes) == 1, f"changing {field} writes its one row"
        (loaded,) = [j for j in store.unfinished() if j.id == "j1"]
        for name in PERSISTED:
            assert getattr(loaded.chunks[1], name) == getattr(c, name), (field, name)
    c.tried.add("n3")  # a set changed in place
    writes.clear()
    store.save(job)
    assert len(writes) == 1 and store.load("j1").chunks[1].tried == {"n1", "n2", "n3"}
    writes.clear()
    store.save(job)
    assert writes == [], "nothing changed, nothing written"


def test_a_finished_job_drops_its_audio_but_keeps_its_text(tmp_path):
    store = JobStore(tmp_path)
    job = make_job()
    store.save_audio(job)
    store.add(job)
    assert (tmp_path / "audio" / "j1.wav").exists()
    for c in job.chunks:
        c.state, c.result = ChunkState.DONE, Result("j1", c.seq, 1, "n", ResultStatus.OK, text=f"w{c.seq}")
    job.state = JobState.DONE
    store.save(job)
    assert not (tmp_path / "audio" / "j1.wav").exists()
    assert store.unfinished() == []
    loaded = store.load("j1")
    assert loaded.is_finished and loaded.finished.is_set()
    assert [c.result.text for c in loaded.chunks] == ["w0", "w1", "w2"]
    assert loaded.duration_s == 3.0


def test_a_store_from_before_overlaps_is_upgraded(tmp_path):
    db = sqlite3.connect(tmp_path / "hub.sqlite3")
    db.executescript(
        "CREATE TABLE chunks (job_id TEXT NOT NULL, seq INTEGER NOT NULL, start_ms INTEGER NOT NULL,"
        " end_ms INTEGER NOT NULL, state TEXT NOT NULL, node_id TEXT, attempt INTEGER NOT NULL,"
        " failures INTEGER NOT NULL, rejections INTEGER NOT NULL, tried TEXT NOT NULL, result BLOB,"
        " reason TEXT NOT NULL, PRIMARY KEY (job_id, seq));"
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, name TEXT NOT NULL, language TEXT NOT NULL, created REAL NOT NULL,"
        " state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '', digest TEXT NOT NULL DEFAULT '');"
        "INSERT INTO jobs VALUES ('old', 'old.wav', 'en-US', 1.0, 'done', '', '');"
        "INSERT INTO chunks VALUES ('old', 0, 0, 1500, 'done', 'n1', 1, 0, 0, '[]', NULL, '');"
    )
    db.commit()
    db.close()

    store = JobStore(tmp_path)

    (chunk,) = store.load("old").chunks
    assert chunk.spec == ChunkSpec(0, 1500)
    job = make_job("new")
    store.save_audio(job)
    store.add(job)
    assert [c.spec for c in store.load("new").chunks] == [c.spec for c in job.chunks]


def test_one_hub_per_store(tmp_path):
    first = JobStore(tmp_path)
    with pytest.raises(StoreError, match=rf"store {tmp_path} is in use by another hub \(pid {os.getpid()}\); "
                                         r"give another --store DIR"):
        JobStore(tmp_path)
    first.close()
    JobStore(tmp_path).close()


@pytest.mark.parametrize("command", [["hub", "serve"], ["dashboard", "--port", "0"]])
def test_a_second_hub_on_a_store_in_use_names_the_flag(broker, tmp_path, command):
    held = JobStore(tmp_path)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", *command, "--store", str(tmp_path), "--broker", broker.url, "--local-nodes", "0"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )
    finally:
        held.close()
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1] == (f"{command[0]}: store {tmp_path} is in use by another hub (pid {os.getpid()}); "
                         "give another --store DIR"), proc.stderr


def test_a_damaged_result_is_done_again_and_lost_audio_fails_the_job(tmp_path):
    store = JobStore(tmp_path)
    job = make_job()
    store.save_audio(job)
    store.add(job)
    job.chunks[0].state = ChunkState.DONE
    job.chunks[0].result = Result("j1", 0, 1, "n", ResultStatus.OK, text="x")
    job.state = JobState.RUNNING
    store.save(job)
    store.close()
    with sqlite3.connect(tmp_path / "hub.sqlite3") as db:
        db.execute("UPDATE chunks SET result = ? WHERE seq = 0", (b"garbage",))
    store = JobStore(tmp_path)
    (loaded,) = store.unfinished()
    assert loaded.chunks[0].state is ChunkState.QUEUED and loaded.chunks[0].result is None
    (tmp_path / "audio" / "j1.wav").write_bytes(b"not a wav")
    assert store.unfinished() == []
    assert store.load("j1").state is JobState.FAILED


def _statuses(raw: RawClient) -> list[NodeStatus]:
    return [NodeStatus.decode(p) for _, p in list(raw.messages) if p]


def _assigned(db_path: Path) -> dict[int, str]:
    """Chunk seq -> node id of the chunks the store says are assigned."""
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
            return dict(db.execute("SELECT seq, node_id FROM chunks WHERE state = 'assigned'").fetchall())
    except sqlite3.Error:
        return {}


def _busy(raw: RawClient) -> set[str]:
    """Nodes whose latest status says they hold a chunk."""
    latest = {s.node_id: s for s in _statuses(raw)}
    return {node for node, s in latest.items() if s.active > 0}


def _serve(store: Path, broker_url: str, prefix: str, tag: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--store", str(store), "--broker", broker_url, "--prefix", prefix,
         "--max-chunk", "8"],
        cwd=ROOT, env=tagged_env(tag), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def test_a_hub_killed_mid_job_resumes_and_keeps_results_published_while_it_was_away(broker, corpus, tmp_path):
    audio, reference = speech(corpus, ["ps_librivox_0870", "ps_librivox_0890", "ps_librivox_0920", "picovoice_test"])
    prefix = unique_prefix()
    nodes = start_nodes(broker.url, prefix, 2)
    store = tmp_path / "store"
    (store / "inbox").mkdir(parents=True)
    watcher = RawClient(broker.port)
    watcher.subscribe(f"{prefix}/node/+/status")
    hub = _serve(store, broker.url, prefix, prefix)
    try:
        audio.export(store / "inbox" / ".talk.wav", format="wav")
        (store / "inbox" / ".talk.wav").rename(store / "inbox" / "talk.wav")
        deadline = time.monotonic() + 60
        # Kill the hub once two chunks are assigned and their nodes say they hold them. A chunk the
        # hub was still sending (a whole recording's worth of context makes them large) never
        # reached its node, and is rightly done again after the restart.
        while not (
            len(assigned := _assigned(store / "hub.sqlite3")) >= 2 and set(assigned.values()) <= _busy(watcher)
        ):  # another process: poll its store
            assert time.monotonic() < deadline, "no two chunks were assigned and received"
            time.sleep(0.05)
        hub.kill()
        hub.wait(10)
        with sqlite3.connect(store / "hub.sqlite3") as db:
            in_flight = db.execute("SELECT seq, node_id FROM chunks WHERE state = 'assigned'").fetchall()
        assert in_flight
        # the nodes finish those chunks and publish their results to a hub that is not there
        watcher.messages.clear()
        idle = {node for _, node in in_flight}
        wait_until(
            lambda: idle <= {s.node_id for s in _statuses(watcher) if s.active == 0}, watcher.got, 60, "idle nodes"
        )
        hub = _serve(store, broker.url, prefix, prefix)
        done = store / "done" / "talk.wav.json"
        deadline = time.monotonic() + 180
        while not done.exists():
            assert hub.poll() is None, hub.stderr.read()
            assert time.monotonic() < deadline, "the resumed job did not finish"
            time.sleep(0.2)
    finally:
        hub.terminate()
        hub.wait(30)
        watcher.close()
        nodes.stop()
    doc = json.loads(done.read_text())
    assert doc["state"] == "done"
    assert wer(reference, doc["text"]) < 0.35
    by_seq = {s["seq"]: s for s in doc["segments"]}
    with sqlite3.connect(store / "hub.sqlite3") as db:
        attempts = dict(db.execute("SELECT seq, attempt FROM chunks").fetchall())
    # chunks in flight at the kill were answered by their first node, not redone: the broker kept the results
    for seq, node_id in in_flight:
        assert by_seq[seq]["node_id"] == node_id and attempts[seq] == 1


def test_the_inbox_keys_jobs_by_name_and_content(tmp_path, corpus):
    """A file left in the inbox by a crash is not a second job; the same bytes under a new name are."""
    from hub.inbox import Inbox
    from hub.service import Hub, HubSettings
    from protocol.broker import BrokerAddress

    hub = Hub(HubSettings(broker=BrokerAddress.parse("mqtt://127.0.0.1:1"), store_dir=tmp_path))  # never started
    try:
        inbox = Inbox(hub, tmp_path, max_duration_s=60)
        clip = corpus["ps_goforward"][0].read_bytes()
        (inbox.inbox / "a.wav").write_bytes(clip)
        (inbox.inbox / ".b.wav").write_bytes(clip)  # still being written: not taken
        (inbox.inbox / "notes.wav").write_text("not audio")
        assert inbox.scan() == 1
        assert (inbox.failed / "notes.wav.txt").read_text().startswith("not an audio file")
        (inbox.inbox / "a.wav").write_bytes(clip)  # as if the hub died before removing it
        assert inbox.scan() == 0 and not (inbox.inbox / "a.wav").exists()
        (inbox.inbox / ".b.wav").rename(inbox.inbox / "b.wav")
        assert inbox.scan() == 1
        assert sorted(s["name"] for s in hub.store.summaries()) == ["a.wav", "b.wav"]
    finally:
        hub.stop()
