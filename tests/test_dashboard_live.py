"""Live recording from the browser (docs/api.md, "Live recording"): PCM blocks to a growing stream job.

A real hub, Mosquitto and two PocketSphinx nodes (the fixtures of tests/test_dashboard_api.py). The
clips of tests/data, with pauses between them, go in half-second blocks as the page sends them; the
clock of the idle sweep is moved by hand, so nothing here sleeps.
"""

from __future__ import annotations

import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bench.wer import wer
from dashboard.app import EXTENSION
from dashboard.live import BYTES_PER_S
from hub.service import Hub
from tests.chainkit import wait_online, wait_until
from tests.test_dashboard_api import finished, serving, wav_frames

BLOCK = BYTES_PER_S // 2  # half a second, as the page sends
PAUSE = bytes(int(1.5 * BYTES_PER_S))  # 1.5 s of silence: longer than the 0.8 s that ends an utterance
CLIPS = ("ps_librivox_0870", "ps_goforward", "ps_librivox_0880")


class Clock:
    """Monotonic time that a test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def dash(broker, clock, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flask, Hub]]:
    with serving(broker.url, tmp_path_factory.mktemp("store"), nodes=2, clock=clock, max_duration_s=60) as served:
        wait_online(served[1], 2)
        yield served


@pytest.fixture
def client(dash) -> FlaskClient:
    return dash[0].test_client()


def pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2), path
        return w.readframes(w.getnframes())


@pytest.fixture(scope="module")
def speech(corpus) -> tuple[bytes, str]:
    """The clips, each followed by 1.5 s of silence, as 16 kHz PCM, and their reference text."""
    audio = b"".join(pcm(corpus[name][0]) + PAUSE for name in CLIPS)
    return audio, " ".join(corpus[name][1] for name in CLIPS)


def start(client: FlaskClient, name: str = "") -> str:
    answer = client.post("/api/live", json={"name": name} if name else None)
    assert answer.status_code == 201, answer.json
    return answer.json["id"]


def send(client: FlaskClient, job_id: str, offset: int, block: bytes):
    return client.post(f"/api/live/{job_id}/audio?offset={offset}", data=block,
                       content_type="application/octet-stream")


def test_the_transcript_grows_while_the_browser_records(dash, client, speech):
    app, hub = dash
    audio, reference = speech
    job_id = start(client, "Live test")
    body = client.get(f"/api/jobs/{job_id}").json
    assert body["name"] == "Live test" and body["open"] is True and body["chunks"] == []

    changed = threading.Event()
    hub.add_listener(lambda job: changed.set() if job.id == job_id else None)
    for offset in range(0, len(audio), BLOCK):
        block = audio[offset:offset + BLOCK]
        assert send(client, job_id, offset, block).status_code == 204
        if offset == BLOCK * 4:  # a retried block that had already come is taken once
            assert send(client, job_id, offset, block).status_code == 204
    # every utterance ended with a pause, so each is a chunk already, before the end
    job = hub.job(job_id)
    assert job is not None and job.open and len(job.chunks) == len(CLIPS), [c.spec for c in job.chunks]
    assert job.chunks[-1].spec.end_ms <= len(audio) * 1000 // BYTES_PER_S
    wait_until(lambda: bool(client.get(f"/api/jobs/{job_id}").json["text"]), changed, 120,
               "text while the recording is still open")
    assert client.get(f"/api/jobs/{job_id}").json["open"] is True

    ended = client.post(f"/api/live/{job_id}/end")
    assert ended.status_code == 200 and ended.json == {"id": job_id, "seconds": round(len(audio) / BYTES_PER_S, 3)}
    finished(hub, job_id)
    body = client.get(f"/api/jobs/{job_id}").json
    assert body["state"] == "done" and body["open"] is False and len(body["chunks"]) == len(CLIPS)
    assert wer(reference, body["text"]) < 0.35, body["text"]
    assert body["duration_s"] <= len(audio) / BYTES_PER_S
    # the recording is kept to be played back: every utterance where it was said, up to the last one's end
    assert body["audio"] is True
    kept = wav_frames(client.get(f"/api/jobs/{job_id}/audio").data)
    spans = [(c.spec.audio_start_ms * 32, c.spec.audio_end_ms * 32) for c in hub.job(job_id).chunks]  # 32 bytes a ms
    assert len(kept) == spans[-1][1]
    assert all(kept[start:end] == audio[start:end] for start, end in spans)
    seek = client.get(f"/api/jobs/{job_id}/audio", headers={"Range": "bytes=44-"})
    assert seek.status_code == 206 and seek.data == kept

    again = send(client, job_id, len(audio), audio[:BLOCK])
    assert again.status_code == 410 and "has ended" in again.json["error"]
    assert client.post(f"/api/live/{job_id}/end").status_code == 200  # ending twice is harmless


def test_speech_longer_than_a_chunk_is_cut_with_overlap(dash, client, corpus):
    """Speech without a pause past the hub's --max-chunk (10 s here) goes as pieces that overlap."""
    app, hub = dash
    audio = pcm(corpus["jfk"][0]) + pcm(corpus["lhotse_2412-153948-0000"][0]) + PAUSE  # 22.7 s of speech
    job_id = start(client)
    for offset in range(0, len(audio), BLOCK):
        assert send(client, job_id, offset, audio[offset:offset + BLOCK]).status_code == 204
    chunks = hub.job(job_id).chunks
    assert len(chunks) >= 3 and all(c.spec.end_ms - c.spec.start_ms <= 10_000 for c in chunks), [c.spec for c in chunks]
    overlap = chunks[0].spec.tail_ms  # the hub's --chunk-overlap (0.5 s here), in whole 30 ms frames
    assert abs(overlap - hub.settings.chunking.overlap_s * 1000) < 30 and chunks[1].spec.lead_ms == overlap
    assert client.post(f"/api/live/{job_id}/end").status_code == 200
    finished(hub, job_id)
    body = client.get(f"/api/jobs/{job_id}").json
    assert body["state"] == "done" and "country" in body["text"] and "native country" in body["text"], body["text"]


def test_refused_blocks(dash, client):
    app, hub = dash
    job_id = start(client)
    assert client.get(f"/api/jobs/{job_id}").json["name"].startswith("Recording 20")
    silence = bytes(BLOCK)
    assert send(client, job_id, 0, silence).status_code == 204

    gap = send(client, job_id, 3 * BLOCK, silence)
    assert gap.status_code == 409 and gap.json["expected"] == BLOCK, gap.json
    odd = send(client, job_id, BLOCK, silence[:-1])
    assert odd.status_code == 400 and "even number of bytes" in odd.json["error"]
    assert send(client, job_id, 1, silence).status_code == 400  # an odd offset
    assert send(client, job_id, BLOCK, bytes(10 * BYTES_PER_S + 2)).status_code == 413
    # a block that overlaps the end of what came: only its new part is taken
    assert send(client, job_id, BLOCK // 2, silence).status_code == 204
    assert app.extensions[EXTENSION].live.get(job_id).received == BLOCK + BLOCK // 2

    unknown = send(client, "0123456789abcdef", 0, silence)
    assert unknown.status_code == 404 and unknown.json == {"error": "no live recording 0123456789abcdef"}
    assert client.post("/api/live/0123456789abcdef/end").status_code == 404

    assert client.post(f"/api/live/{job_id}/end").status_code == 200
    finished(hub, job_id)
    body = client.get(f"/api/jobs/{job_id}").json
    assert body["state"] == "done" and body["chunks"] == [] and body["text"] == ""


def test_the_duration_limit_ends_a_session(dash, client):
    app, hub = dash
    job_id = start(client)
    second = bytes(BYTES_PER_S)
    for n in range(60):  # the fixture's limit: 60 s
        assert send(client, job_id, n * BYTES_PER_S, second).status_code == 204
    over = send(client, job_id, 60 * BYTES_PER_S, bytes(2))
    assert over.status_code == 422 and "60 s limit" in over.json["error"]
    assert send(client, job_id, 60 * BYTES_PER_S, bytes(2)).status_code == 410
    finished(hub, job_id)


def test_an_abandoned_session_is_ended_by_the_sweep(dash, client, clock, speech):
    app, hub = dash
    live = app.extensions[EXTENSION].live
    job_id = start(client)
    audio, _ = speech
    first = pcm(Path(__file__).parent / "data" / "ps_goforward.wav")  # speech, then the browser goes away
    for offset in range(0, len(first), BLOCK):
        assert send(client, job_id, offset, first[offset:offset + BLOCK]).status_code == 204
    assert hub.job(job_id).chunks == []  # still in the utterance: no pause has ended it

    clock.offset += live.settings.idle_s + 1
    live.touched()  # the sweep thread looks again now, instead of at its own (real-time) deadline
    finished(hub, job_id)  # the sweep flushed the utterance and closed the stream
    body = client.get(f"/api/jobs/{job_id}").json
    assert body["state"] == "done" and len(body["chunks"]) == 1 and "forward" in body["text"], body
    late = send(client, job_id, len(first), first[:BLOCK])
    assert late.status_code == 410 and "browser went away" in late.json["error"]


def test_starting_sessions_counts_against_the_upload_rate(broker, tmp_path):
    with serving(broker.url, tmp_path / "store", upload_rate=2) as (app, hub):
        client = app.test_client()
        ids = [start(client), start(client)]
        refused = client.post("/api/live")
        assert refused.status_code == 429 and refused.headers["Retry-After"]
        for n in range(5):  # the blocks of a session are not counted
            assert send(client, ids[0], n * BLOCK, bytes(BLOCK)).status_code == 204
        assert client.post(f"/api/live/{ids[0]}/end").status_code == 200
        app.extensions[EXTENSION].live.close()  # what close_app does first when the dashboard stops
        assert not hub.job(ids[1]).open
        assert send(client, ids[1], 0, bytes(BLOCK)).status_code == 410


def test_live_recording_needs_the_login(broker, tmp_path):
    token = "live-test-token-0123456789"
    with serving(broker.url, tmp_path / "store", token=token) as (app, hub):
        client = app.test_client()
        assert client.post("/api/live").status_code == 401
        assert send(client, "0123456789abcdef", 0, bytes(BLOCK)).status_code == 401
        assert client.post("/api/live/0123456789abcdef/end").status_code == 401
        bearer = {"Authorization": f"Bearer {token}"}
        job_id = client.post("/api/live", headers=bearer).json["id"]
        assert client.post(f"/api/live/{job_id}/end", headers=bearer).status_code == 200
