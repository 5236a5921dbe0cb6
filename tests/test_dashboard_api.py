"""The dashboard's API (docs/api.md) against a real hub, a real Mosquitto and real nodes.

Every wait is bounded and driven by an event (a hub listener, the event stream's own lines).
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydub import AudioSegment

from dashboard.app import EXTENSION, close_app, create_app
from dashboard.events import Event, EventFanout
from dashboard.settings import DashboardSettings
from hub.procs import wait_gone
from hub.service import Hub
from hub.subtitles import MIN_MS
from tests.conftest import DATA
from tests.chainkit import processes_tagged, start_hub, start_nodes, tagged_env, unique_prefix, wait_online, wait_until
from tests.test_subtitles import check_cues, parse_srt, parse_vtt

ROOT = Path(__file__).resolve().parent.parent
MAX_UPLOAD_MB = 2
MAX_DURATION_S = 20


@contextmanager
def serving(broker_url: str, store: Path, nodes: int = 0, clock: Callable[[], float] = time.monotonic,
            **settings: Any) -> Iterator[tuple[Flask, Hub]]:
    """A dashboard app over a real hub with a store and ``nodes`` sphinx nodes; ``settings`` as in
    :class:`DashboardSettings` (2 MB and 20 s limits, 1 s heartbeats unless given)."""
    prefix = unique_prefix()
    cluster = start_nodes(broker_url, prefix, nodes, name="dash")
    hub = None
    app = None
    try:
        hub = start_hub(broker_url, prefix, store_dir=store)
        settings = {"max_upload_mb": MAX_UPLOAD_MB, "max_duration_s": MAX_DURATION_S, "heartbeat_s": 1.0, **settings}
        app = create_app(DashboardSettings(store_dir=store, **settings), hub, clock=clock)
        app.testing = True
        yield app, hub
    finally:
        if app is not None:
            close_app(app)
        if hub is not None:
            hub.stop()
        cluster.stop()


@pytest.fixture(scope="module")
def dash(broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, Hub]]:
    """A dashboard over a hub with a store, two sphinx nodes, 2 MB and 20 s limits, 1 s heartbeats."""
    with serving(broker.url, tmp_path_factory.mktemp("store"), nodes=2) as served:
        yield served


@pytest.fixture
def client(dash: tuple[Flask, Hub]) -> FlaskClient:
    return dash[0].test_client()


def finished(hub: Hub, job_id: str, timeout: float = 120) -> None:
    changed = threading.Event()
    hub.add_listener(lambda job: changed.set() if job.id == job_id else None)

    def done() -> bool:
        job = hub.job(job_id)
        return job is not None and job.is_finished

    wait_until(done, changed, timeout, f"job {job_id} to finish")


def upload(client: FlaskClient, data: bytes, filename: str, headers: dict[str, str] | None = None, **form: str):
    return client.post("/api/jobs", data={"audio": (io.BytesIO(data), filename), **form},
                       content_type="multipart/form-data", headers=headers)


def tone_wav(seconds: float, rate: int = 8000) -> bytes:
    """8-bit mono WAV of a quiet square wave: long recordings in few bytes."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(rate)
        w.writeframes(bytes(120 if (i // 20) % 2 else 136 for i in range(int(seconds * rate))))
    return buffer.getvalue()


def test_the_page(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"


def test_upload_transcribe_download_delete(dash, client, corpus):
    app, hub = dash
    wait_online(hub, 2)
    path, _ = corpus["jfk"]
    created = upload(client, path.read_bytes(), "jfk.wav", name="JFK speech.wav")
    assert created.status_code == 201, created.json
    job_id = created.json["id"]
    assert created.headers["Location"] == f"/api/jobs/{job_id}"

    running = client.delete(f"/api/jobs/{job_id}")
    assert running.status_code == 409 and "still" in running.json["error"]

    finished(hub, job_id)
    body = client.get(f"/api/jobs/{job_id}").json
    assert body["name"] == "JFK speech.wav" and body["state"] == "done" and body["error"] == ""
    assert "country" in body["text"]
    assert body["duration_s"] == 11.0 and body["created"] <= time.time()
    assert body["progress"] == {"done": len(body["chunks"]), "failed": 0, "total": len(body["chunks"])}
    assert [c["seq"] for c in body["chunks"]] == list(range(len(body["chunks"])))
    assert all(c["state"] == "done" and c["node_id"].startswith("dash-node") for c in body["chunks"])
    assert body["chunks"][-1]["end_s"] == 11.0
    assert body["segments"] and all(s["status"] == "ok" for s in body["segments"])
    assert any(w["text"] == "country" for s in body["segments"] for w in s["words"])

    listed = client.get("/api/jobs").json["jobs"]
    mine = next(j for j in listed if j["id"] == job_id)
    assert mine == {k: body[k] for k in ("id", "name", "state", "created", "duration_s", "progress")}
    assert [j["created"] for j in listed] == sorted((j["created"] for j in listed), reverse=True)

    expected = {"txt": "text/plain; charset=utf-8", "json": "application/json", "srt": "application/x-subrip",
                "vtt": "text/vtt; charset=utf-8"}
    for ext, content_type in expected.items():
        got = client.get(f"/api/jobs/{job_id}/transcript?format={ext}")
        assert got.status_code == 200 and got.content_type == content_type
        assert got.headers["Content-Disposition"] == f'attachment; filename="JFK speech.{ext}"'
        assert "country" in got.get_data(as_text=True)
    assert json.loads(client.get(f"/api/jobs/{job_id}/transcript?format=json").data)["state"] == "done"
    assert client.get(f"/api/jobs/{job_id}/transcript?format=vtt").data.startswith(b"WEBVTT\n")
    assert client.get(f"/api/jobs/{job_id}/transcript?format=srt").data.startswith(b"1\n00:00:")
    # the subtitles hold the job's words once each, in order, in readable cues (tests/test_subtitles.py)
    cues = parse_srt(client.get(f"/api/jobs/{job_id}/transcript?format=srt").get_data(as_text=True))
    check_cues(cues, [w["text"] for s in body["segments"] for w in s["words"]])
    assert len(cues) >= 2 and all(c.end_ms - c.start_ms >= MIN_MS for c in cues)
    assert parse_vtt(client.get(f"/api/jobs/{job_id}/transcript?format=vtt").get_data(as_text=True)) == cues
    assert client.get(f"/api/jobs/{job_id}/transcript").data == client.get(f"/api/jobs/{job_id}/transcript?format=txt").data

    # the nodes' own counts arrive with their next status, just after the results
    changed = threading.Event()
    hub.add_node_listener(lambda status: changed.set())
    nodes = lambda: client.get("/api/nodes").json["nodes"]  # noqa: E731
    wait_until(lambda: sum(n["done"] for n in nodes()) >= len(body["chunks"]), changed, 30, "the nodes' counts")
    assert [n["node_id"] for n in nodes()] == ["dash-node1", "dash-node2"]
    for node in nodes():
        assert node["state"] == "online" and node["engine"] == "sphinx" and node["model"]
        assert node["capacity"] == 1 and node["chunks"] == []
        assert set(node) == {"node_id", "state", "engine", "model", "capacity", "active", "done", "rtf", "chunks"}
    assert any(isinstance(n["rtf"], float) for n in nodes())

    assert client.delete(f"/api/jobs/{job_id}").status_code == 204
    assert client.get(f"/api/jobs/{job_id}").status_code == 404
    assert client.delete(f"/api/jobs/{job_id}").status_code == 404
    assert client.get(f"/api/jobs/{job_id}/transcript").status_code == 404
    assert all(j["id"] != job_id for j in client.get("/api/jobs").json["jobs"])


def wav_frames(data: bytes) -> bytes:
    """The samples of a 16 kHz mono 16-bit WAV."""
    with wave.open(io.BytesIO(data), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return w.readframes(w.getnframes())


def test_the_audio_of_an_upload_is_kept_and_served_with_ranges(dash, client, corpus):
    app, hub = dash
    wait_online(hub, 2)
    path, _ = corpus["ps_goforward"]
    job_id = upload(client, path.read_bytes(), "go.wav").json["id"]
    finished(hub, job_id)
    assert client.get(f"/api/jobs/{job_id}").json["audio"] is True

    whole = client.get(f"/api/jobs/{job_id}/audio")
    assert whole.status_code == 200 and whole.mimetype == "audio/wav"
    assert whole.headers["Accept-Ranges"] == "bytes" and "no-cache" in whole.headers["Cache-Control"]
    data = whole.data
    assert int(whole.headers["Content-Length"]) == len(data)
    with wave.open(str(path), "rb") as original:  # 16 kHz mono already: the same samples, kept whole
        assert wav_frames(data) == original.readframes(original.getnframes())

    part = client.get(f"/api/jobs/{job_id}/audio", headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.data == data[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}" and part.headers["Content-Length"] == "1000"
    tail = client.get(f"/api/jobs/{job_id}/audio", headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.data == data[-100:]
    beyond = client.get(f"/api/jobs/{job_id}/audio", headers={"Range": f"bytes={len(data) + 10}-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(data)}" and beyond.json["error"]

    store = app.extensions[EXTENSION].settings.store_dir
    assert (store / "kept" / f"{job_id}.wav").is_file() and not (store / "audio" / f"{job_id}.wav").exists()
    assert client.delete(f"/api/jobs/{job_id}").status_code == 204
    assert not (store / "kept" / f"{job_id}.wav").exists()  # deleted with the job
    gone = client.get(f"/api/jobs/{job_id}/audio")
    assert gone.status_code == 404 and gone.json == {"error": f"no job {job_id}"}
    unknown = client.get("/api/jobs/0123456789abcdef/audio", headers={"Range": "bytes=0-9"})
    assert unknown.status_code == 404 and unknown.json == {"error": "no job 0123456789abcdef"}


def test_a_job_not_made_by_the_dashboard_keeps_no_audio(dash, client, corpus):
    """hub serve's inbox or hub listen: the audio goes when the job finishes, as before."""
    app, hub = dash
    wait_online(hub, 2)
    job = hub.submit(AudioSegment.from_wav(corpus["ps_goforward"][0]), "from the inbox")
    finished(hub, job.id)
    assert client.get(f"/api/jobs/{job.id}").json["audio"] is False
    answer = client.get(f"/api/jobs/{job.id}/audio")
    assert answer.status_code == 404 and answer.json == {"error": f"no audio kept for job {job.id}"}
    assert client.delete(f"/api/jobs/{job.id}").status_code == 204


def test_the_audio_needs_the_login_and_plays_while_the_job_waits(broker, tmp_path):
    token = "audio-test-token-0123456789"
    with serving(broker.url, tmp_path / "store", token=token) as (app, hub):  # no node: the job waits
        client = app.test_client()
        bearer = {"Authorization": f"Bearer {token}"}
        job_id = upload(client, tone_wav(2), "tone.wav", headers=bearer).json["id"]
        refused = client.get(f"/api/jobs/{job_id}/audio")
        assert refused.status_code == 401 and refused.json["error"] and refused.headers["WWW-Authenticate"]
        wrong = client.get(f"/api/jobs/{job_id}/audio", headers={"Authorization": "Bearer not-the-token-at-all"})
        assert wrong.status_code == 401 and wrong.json == {"error": "wrong token"}
        assert client.get("/api/jobs/0123456789abcdef/audio").status_code == 401  # before it says whether it exists
        waiting = client.get(f"/api/jobs/{job_id}/audio", headers=bearer)  # from the store's working copy
        assert waiting.status_code == 200 and len(wav_frames(waiting.data)) == 2 * 16000 * 2
        assert client.get(f"/api/jobs/{job_id}/audio", headers={**bearer, "Range": "bytes=0-43"}).data == waiting.data[:44]
        client.post("/login", data={"token": token})  # a session opens it as well
        assert client.get(f"/api/jobs/{job_id}/audio").status_code == 200


def test_refused_uploads_say_why_and_leave_no_files(client, corpus, monkeypatch, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    wav = corpus["jfk"][0].read_bytes()
    before = client.get("/api/jobs").json["jobs"]

    def refused(response, status: int, message: str) -> None:
        assert response.status_code == status, response.data
        assert response.mimetype == "application/json"
        assert message in response.json["error"], response.json

    refused(client.post("/api/jobs", data={"name": "x"}, content_type="multipart/form-data"), 400,
            "no file in the form field 'audio'")
    refused(client.post("/api/jobs", data={"name": "x"}), 400, "no file in the form field 'audio'")
    refused(upload(client, b"", "empty.wav"), 400, "empty file: empty.wav")
    refused(upload(client, b"these are my notes\n" * 100, "notes.txt"), 400, "not an audio file: notes.txt")
    refused(upload(client, wav[:30], "cut.wav"), 400, "not an audio file: cut.wav")
    refused(upload(client, wav[:44], "header.wav"), 400, "no audio in file: header.wav")
    refused(upload(client, wav[:20] + b"\xff" * 4000, "corrupt.wav"), 400, "not an audio file: corrupt.wav")
    refused(upload(client, os.urandom(MAX_UPLOAD_MB * 1024 * 1024 + 1), "huge.wav"), 413,
            f"the upload is larger than the {MAX_UPLOAD_MB} MB limit")
    refused(upload(client, tone_wav(MAX_DURATION_S + 5), "long.wav"), 422,
            f"recording is 25 s long, over the {MAX_DURATION_S} s limit")
    assert client.get("/api/jobs").json["jobs"] == before
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(
    ("filename", "export"),
    [
        ("talk.mp3", {"format": "mp3"}),
        ("talk.ogg", {"format": "ogg", "codec": "libopus"}),
        ("talk.m4a", {"format": "ipod", "codec": "aac"}),
    ],
)
def test_every_listed_format_is_accepted_and_transcribed(dash, client, corpus, filename, export):
    speech = AudioSegment.from_wav(corpus["ps_goforward"][0])
    data = speech.export(io.BytesIO(), **export).getvalue()

    response = upload(client, data, filename)

    assert response.status_code == 201, response.get_json()
    job_id = response.get_json()["id"]
    finished(dash[1], job_id)
    body = client.get(f"/api/jobs/{job_id}").get_json()
    assert body["state"] == "done" and abs(body["duration_s"] - len(speech) / 1000) < 0.2
    assert "forward" in body["text"].lower(), body["text"]


def test_unknown_ids_formats_and_routes(client):
    refused = client.get("/api/jobs/0123456789abcdef/transcript?format=doc")  # a well-formed id: the format is checked first
    assert refused.status_code == 400 and refused.json == {"error": "unknown format 'doc'; choose one of txt, json, srt, vtt"}
    for response in (client.get("/api/jobs/nope"), client.get("/api/jobs/nope/transcript?format=txt"),
                     client.get("/api/jobs/nope/audio"), client.delete("/api/jobs/nope"), client.get("/api/nope")):
        assert response.status_code == 404 and response.json["error"]
    assert client.put("/api/jobs").status_code == 405 and client.put("/api/jobs").json["error"]


class EventReader:
    """Reads a streamed text/event-stream response into (event, data) pairs; every read is bounded."""

    def __init__(self, response) -> None:
        self.response = response
        self._chunks = response.iter_encoded()
        self._text = ""
        self.heartbeats = 0

    def next(self, deadline: float) -> tuple[str, dict]:
        while "\n\n" not in self._text:
            assert time.monotonic() < deadline, "timed out reading the event stream"
            self._text += next(self._chunks).decode()  # a heartbeat comes at least every second
        block, self._text = self._text.split("\n\n", 1)
        if block.startswith(":"):
            self.heartbeats += 1
            return self.next(deadline)
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        return fields["event"], json.loads(fields["data"])


def test_the_event_stream_says_hello_then_follows_uploads(dash, client, corpus, tmp_path):
    app, hub = dash
    wait_online(hub, 2)
    fanout = app.extensions[EXTENSION].events
    speech = AudioSegment.from_wav(corpus["ps_goforward"][0])
    browser = speech.export(io.BytesIO(), format="webm", codec="libopus").getvalue()  # as MediaRecorder sends
    flac = AudioSegment.from_wav(corpus["ps_librivox_0880"][0]).export(io.BytesIO(), format="flac").getvalue()

    response = client.get("/api/events", buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    reader = EventReader(response)
    try:
        deadline = time.monotonic() + 120
        name, hello = reader.next(deadline)
        assert name == "hello" and {n["node_id"] for n in hello["nodes"]} >= {"dash-node1", "dash-node2"}

        ids: dict[str, str] = {}  # several uploads at once, each decoded in its own request thread
        threads = [
            threading.Thread(target=lambda f=f, d=d: ids.update({f: upload(app.test_client(), d, f).json["id"]}))
            for f, d in (("recording.webm", browser), ("talk.flac", flac))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(ids) == ["recording.webm", "talk.flac"]

        seen: dict[str, list[dict]] = {job_id: [] for job_id in ids.values()}
        nodes_with_chunks = set()
        while not all(events and events[-1]["state"] == "done" for events in seen.values()):
            name, data = reader.next(deadline)
            if name == "job" and data["id"] in seen:
                assert "segments" not in data and {"text", "chunks", "progress", "error"} <= set(data)
                seen[data["id"]].append(data)
            elif name == "node" and data["chunks"]:
                nodes_with_chunks.add(data["node_id"])
        assert "forward" in seen[ids["recording.webm"]][-1]["text"]
        assert "man" in seen[ids["talk.flac"]][-1]["text"]
        assert all(len(events) >= 2 for events in seen.values())  # queued or running, then done
        assert nodes_with_chunks  # a node event named the chunk it held
        for job_id in ids.values():
            assert client.delete(f"/api/jobs/{job_id}").status_code == 204
        gone = set()  # every open stream hears of a deletion, so other tabs can drop the job
        while gone != set(ids.values()):
            name, data = reader.next(deadline)
            if name == "deleted":
                gone.add(data["id"])
    finally:
        response.close()
    assert fanout.subscribers() == 0


def test_a_client_that_falls_behind_is_told_to_resync(dash):
    app, hub = dash
    fanout = EventFanout(hub, client_queue=3)  # not started: events are put in by hand
    sub = fanout.subscribe()
    fanout._publish([Event("node", {"node_id": "a", "done": 1})])
    fanout._publish([Event("job", {"id": str(i)}) for i in range(5)])
    events = sub.take(1)  # hello, node a and job 0 filled the queue: job 1 did not fit
    assert [e.name for e in events] == ["resync", "hello", "job", "job", "job", "job"]
    assert events[1].data == {"nodes": [{"node_id": "a", "done": 1}]}
    assert [e.data["id"] for e in events[2:]] == ["1", "2", "3", "4"]
    fanout.stop()
    assert sub.take(1) is None


def run_dashboard(*args: str, tag: str = "", timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dashboard", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=tagged_env(tag))


def test_help_and_one_line_errors(tmp_path):
    shown = run_dashboard("--help")
    assert shown.returncode == 0
    for flag in ("--broker", "--local-nodes", "--host", "--port", "--store", "--max-upload-mb", "--max-duration",
                 "--engine", "--model", "EDGESCRIBE_STORE", "--token-file", "--upload-rate",
                 "EDGESCRIBE_DASHBOARD_TOKEN"):
        assert flag in shown.stdout
    for args, message in ((["--bogus"], "unrecognized arguments: --bogus"),
                          (["--port", "http"], "invalid int value: 'http'"),
                          (["--max-upload-mb", "0"], "the max upload must be a positive number"),
                          (["--broker", "http://x"], "scheme")):
        proc = run_dashboard(*args, "--store", str(tmp_path))
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_dashboard("--port", str(port), "--store", str(tmp_path))
        assert proc.returncode == 2 and proc.stderr == f"dashboard: port {port} on 127.0.0.1 is taken; choose another with --port\n"


@contextmanager
def dashboard_process(store: Path, *flags: str, ready: str = "") -> Iterator[tuple[subprocess.Popen, str, str]]:
    """``python -m dashboard`` with one local node on a free port, as ``(process, its URL, its tag)``
    once it has printed its URL (and a line containing ``ready``, if given). On leaving, SIGTERM must
    stop it with exit code 0 and leave nothing it started running."""
    tag = unique_prefix()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dashboard", "--local-nodes", "1", "--port", "0", "--store", str(store), *flags],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=tagged_env(tag),
    )
    try:
        deadline = time.monotonic() + 60
        url, seen = "", not ready
        while not (url and seen):
            assert time.monotonic() < deadline
            line = proc.stderr.readline()
            assert line, f"the dashboard exited early: {proc.wait()}"
            if line.startswith("edgescribe dashboard: "):
                url = line.split(": ", 1)[1].strip()
            seen = seen or ready in line
        yield proc, url, tag
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_gone(processes_tagged(tag), 10) == set()


def test_python_m_dashboard_serves_and_sigterm_stops_everything(tmp_path):
    with dashboard_process(tmp_path / "store") as (proc, url, tag):
        with urllib.request.urlopen(url + "api/jobs", timeout=10) as response:
            assert json.load(response) == {"jobs": []}
        started = processes_tagged(tag) - {proc.pid}
        assert len(started) >= 2  # the broker and the node (and its engine process)


def test_python_m_dashboard_with_inbox_transcribes_a_dropped_file(tmp_path):
    """--inbox: a recording renamed into STORE/inbox becomes a job of the page and done/jfk.wav.txt."""
    store = tmp_path / "store"
    with dashboard_process(store, "--inbox", ready=f"dropped into {store / 'inbox'}") as (_, url, _):
        with urllib.request.urlopen(url + "api/events", timeout=120) as events:  # the page's own live updates
            hidden = store / "inbox" / ".jfk.wav"  # written under a hidden name, then renamed: taken whole
            hidden.write_bytes((DATA / "jfk.wav").read_bytes())
            hidden.rename(store / "inbox" / "jfk.wav")
            for raw in events:  # bounded by the socket timeout
                line = raw.decode("utf-8")
                if line.startswith("data: {") and '"name":"jfk.wav"' in line and '"state":"done"' in line:
                    break
            else:
                pytest.fail("the event stream ended before the dropped file was done")
        done = store / "done" / "jfk.wav.txt"
        assert "country" in done.read_text(encoding="utf-8")
        assert not (store / "inbox" / "jfk.wav").exists()
        with urllib.request.urlopen(url + "api/jobs", timeout=10) as response:
            jobs = json.load(response)["jobs"]
        assert [(j["name"], j["state"]) for j in jobs] == [("jfk.wav", "done")]


@pytest.mark.parametrize("job_id", ["x%00y", "x\x00y", "..", "abc", "0123456789abcdef0", "0123456789ABCDEF"])
def test_a_job_id_the_hub_cannot_have_made_is_a_404(client, job_id):
    """A NUL byte in a job id reached the store's file names: 500 with a traceback. Now every job route
    answers 404 in JSON before the store is asked."""
    for method, path in (("delete", ""), ("get", ""), ("get", "/audio"), ("get", "/transcript")):
        answer = getattr(client, method)(f"/api/jobs/{job_id}{path}")
        assert answer.status_code == 404, (method, path, answer.status_code)
        assert answer.is_json and answer.get_json()["error"]
