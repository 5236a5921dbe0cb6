"""The command lines as a user runs them: exit codes, one-line errors, nothing left running."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.wer import wer
from hub.procs import processes_with_env, wait_gone
from hub.subtitles import MIN_MS
from tests.chainkit import processes_tagged, tagged_env, unique_prefix
from tests.test_subtitles import check_cues, parse_srt

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, timeout: float = 300, tag: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=tagged_env(tag),
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_missing_file(tmp_path):
    proc = run("-m", "hub", "transcribe", str(tmp_path / "nope.wav"), "--local-nodes", "1")
    assert proc.returncode == 2
    assert "file not found" in one_line_error(proc) and "nope.wav" in proc.stderr
    assert proc.stdout == ""


def test_not_audio(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is a text file, not a recording\n" * 50)
    proc = run("-m", "hub", "transcribe", str(bad), "--local-nodes", "1")
    assert proc.returncode == 2
    assert "notes.wav" in one_line_error(proc)


def test_no_nodes_within_the_timeout(broker, corpus):
    path, _ = corpus["ps_goforward"]
    proc = run("-m", "hub", "transcribe", str(path), "--broker", broker.url, "--prefix", unique_prefix(),
               "--no-node-timeout", "2")
    assert proc.returncode == 1
    assert "no edge node" in proc.stderr


def test_bad_broker_url_and_bad_engine():
    proc = run("-m", "hub", "transcribe", "x.wav", "--broker", "http://nowhere")
    assert proc.returncode == 2 and "scheme" in one_line_error(proc)
    proc = run("-m", "edge_node", "--broker", "mqtt://127.0.0.1:1", "--engine", "sphinx", "--model", "/no/such/model")
    assert proc.returncode == 2 and "not a PocketSphinx model directory" in one_line_error(proc)


def test_local_nodes_transcribe_and_leave_nothing_running(corpus):
    tag = unique_prefix()
    a, ref_a = corpus["picovoice_test"]
    b, ref_b = corpus["ps_librivox_0870"]
    proc = run("-m", "hub", "transcribe", str(a), str(b), "--local-nodes", "2", "--engine", "sphinx", "--format", "json",
               tag=tag)
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    assert [d["name"] for d in docs] == [a.name, b.name]
    assert wer(ref_a, docs[0]["text"]) < 0.35 and wer(ref_b, docs[1]["text"]) < 0.35
    assert all(s["status"] == "ok" for d in docs for s in d["segments"])
    # PocketSphinx's word posteriors reach the JSON transcript, each segment with their mean
    words = [w for d in docs for s in d["segments"] for w in s["words"]]
    assert words and all(0.0 <= w["confidence"] <= 1.0 for w in words) and len({w["confidence"] for w in words}) > 3
    assert all(s["confidence"] is not None for d in docs for s in d["segments"])
    assert "2/" in proc.stderr or "1/1 chunks, done" in proc.stderr  # progress went to stderr
    assert processes_tagged(tag) == set()


def test_srt_of_real_speech_is_readable_cues_of_every_word(corpus):
    # PocketSphinx twice on the same recording hears the same words: once as JSON, once as SubRip
    path, ref = corpus["lhotse_2412-153948-0000"]
    common = ("-m", "hub", "transcribe", str(path), "--local-nodes", "1", "--engine", "sphinx")
    heard = run(*common, "--format", "json")
    proc = run(*common, "--format", "srt")
    assert heard.returncode == 0 and proc.returncode == 0, heard.stderr + proc.stderr
    doc = json.loads(heard.stdout)
    words = [w["text"] for s in doc["segments"] for w in s["words"]]
    assert wer(ref, " ".join(words)) < 0.35
    cues = parse_srt(proc.stdout)
    check_cues(cues, words)  # each word once, in order; two lines of 42 characters and 7 s at most; no overlap
    assert len(cues) >= 3 and all(c.end_ms - c.start_ms >= MIN_MS for c in cues)
    assert cues[0].start_ms == round(doc["segments"][0]["words"][0]["start_s"] * 1000)


def test_edge_node_transcribe_is_the_whole_file_baseline(corpus):
    path, ref = corpus["picovoice_test"]
    proc = run("-m", "edge_node", "transcribe", str(path))
    assert proc.returncode == 0, proc.stderr
    assert wer(ref, proc.stdout) < 0.35


def test_ctrl_c_tears_everything_down(corpus):
    tag = unique_prefix()
    path, _ = corpus["lhotse_2412-153948-0000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "transcribe", str(path), "--local-nodes", "2", "--max-chunk", "4"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=tagged_env(tag),
    )
    try:
        # wait (bounded) for the job to be running: progress lines arrive on stderr
        deadline = time.monotonic() + 120
        seen = ""
        while "running" not in seen:
            assert time.monotonic() < deadline, seen
            line = proc.stderr.readline()
            assert line, f"hub exited early: {proc.wait()}"
            seen += line
        started = processes_tagged(tag) - {proc.pid}
        # the broker, one process hosting both nodes, their one shared engine process (and its resource tracker)
        assert len(started) >= 3
        assert sum("spawn_main" in cmd for cmd in processes_with_env("EDGESCRIBE_TEST_TAG", tag).values()) == 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert processes_tagged(tag) == set()


def test_a_killed_hub_takes_its_children_with_it(corpus):
    """Even SIGKILL of the hub leaves no broker or node behind (they die with their parent)."""
    tag = unique_prefix()
    path, _ = corpus["lhotse_2412-153948-0000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "transcribe", str(path), "--local-nodes", "1"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=tagged_env(tag),
    )
    try:
        assert "running" in proc.stderr.readline() + proc.stderr.readline()
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_gone(processes_tagged(tag), 30) == set()


def test_hub_up_restarts_a_killed_node_and_a_killed_broker():
    import queue
    import threading

    from hub.broker import free_port

    tag = unique_prefix()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "up", "--local-nodes", "2", "--port", str(port), "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=tagged_env(tag),
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()

    def expect(*needles: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        wanted = set(needles)
        while wanted:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            wanted = {n for n in wanted if n not in line}

    def pid_of(needle: str) -> int:
        (pid,) = [p for p, cmd in processes_with_env("EDGESCRIBE_TEST_TAG", tag).items() if needle in cmd and "spawn" not in cmd]
        return pid

    try:
        expect("node local-node1: online", "node local-node2: online")
        os.kill(pid_of("--node-id local-node1"), signal.SIGKILL)
        expect("node local-node1: offline")
        expect("node local-node1: online")  # restarted by hub up
        os.kill(pid_of("mosquitto"), signal.SIGKILL)
        expect("the broker exited")
        # the nodes reconnect to the restarted broker by themselves and say online again
        before = {p for p, cmd in processes_with_env("EDGESCRIBE_TEST_TAG", tag).items() if "mosquitto" in cmd}
        assert wait_until_true(lambda: pid_of("mosquitto") not in before, 30)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_gone(processes_tagged(tag), 30) == set()


def wait_until_true(predicate, timeout: float) -> bool:
    """Bounded wait for another process's state, which offers no event to wait on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except ValueError:  # not exactly one such process yet
            pass
        time.sleep(0.1)
    return False


# --- a recording without speech ---


def write_wav(path: Path, samples: list[int] | bytes) -> Path:
    """A 16 kHz mono 16-bit WAV of ``samples`` (or of raw PCM bytes)."""
    import array
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(samples if isinstance(samples, bytes) else array.array("h", samples).tobytes())
    return path


def silent_wavs(tmp_path: Path) -> tuple[Path, Path]:
    """10 s of digital silence, and 10 s of white noise at -50 dBFS."""
    import random

    rng = random.Random(1)
    noise = [round(rng.gauss(0, 32768 * 10 ** (-50 / 20))) for _ in range(160_000)]
    return write_wav(tmp_path / "silence.wav", bytes(320_000)), write_wav(tmp_path / "hiss.wav", noise)


def test_no_speech_prints_nothing_and_says_so(tmp_path, corpus):
    silence, hiss = silent_wavs(tmp_path)
    proc = run("-m", "hub", "transcribe", str(silence), "--local-nodes", "1", "--engine", "sphinx")
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr
    assert [line for line in proc.stderr.splitlines() if "no speech" in line] == ["hub: no speech heard"]
    # several files: each without speech is named; the one with speech is printed under its name
    speech, ref = corpus["ps_goforward"]
    proc = run("-m", "hub", "transcribe", str(silence), str(speech), str(hiss), "--local-nodes", "1", "--engine", "sphinx")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"==> {speech.name} <==" and len(proc.stdout.splitlines()) == 2
    assert wer(ref, proc.stdout.splitlines()[1]) < 0.35
    said = [line for line in proc.stderr.splitlines() if "no speech" in line]
    assert sorted(said) == ["hub: hiss.wav: no speech heard", "hub: silence.wav: no speech heard"]


def test_no_speech_in_every_format(tmp_path):
    silence, hiss = silent_wavs(tmp_path)
    for fmt in ("json", "srt", "vtt"):
        proc = run("-m", "hub", "transcribe", str(hiss), "--local-nodes", "1", "--engine", "sphinx", "--format", fmt)
        assert proc.returncode == 0 and "hub: no speech heard" in proc.stderr.splitlines(), proc.stderr
        if fmt == "json":  # the normal document, without text
            doc = json.loads(proc.stdout)
            assert doc["state"] == "done" and doc["text"] == ""
            assert {s["status"] for s in doc["segments"]} == {"no-speech"}
        else:
            assert proc.stdout == ""


def test_edge_node_transcribe_of_no_speech_prints_nothing(tmp_path):
    for path in silent_wavs(tmp_path):
        proc = run("-m", "edge_node", "transcribe", str(path), "--engine", "sphinx")
        assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr
        assert one_line_error(proc) == "edge_node: no speech heard"


# --- a signal keeps what is finished (issue 18) ---


def long_clip(corpus, tmp_path: Path) -> Path:
    """36 s of speech: four clips of tests/data back to back."""
    from pydub import AudioSegment

    names = ["lhotse_2412-153948-0000", "jfk", "picovoice_test", "ps_librivox_0870"]
    audio = sum((AudioSegment.from_wav(corpus[n][0]) for n in names), AudioSegment.empty())
    audio.export(tmp_path / "long.wav", format="wav")
    return tmp_path / "long.wav"


#: one sphinx node takes one chunk at a time, in order; no overlap at hard cuts, so each chunk's text
#: is the same whether its neighbours are finished or not
SLOW = ("--engine", "sphinx", "--max-chunk", "4", "--chunk-overlap", "0")


def interrupt_after_a_chunk(path: Path, fmt: str, signum: int, tag: str) -> tuple[int, str, str]:
    """Start ``hub transcribe`` with one local node; once a chunk is done (its stderr says so), send
    ``signum``. Its exit code, stdout and stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "transcribe", str(path), "--local-nodes", "1", *SLOW, "--format", fmt],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=tagged_env(tag),
    )
    try:
        deadline = time.monotonic() + 120  # readline returns at each progress line, or at the end
        seen = ""
        while not re.search(r": [1-9]\d*/\d+ chunks", seen):
            assert time.monotonic() < deadline, seen
            line = proc.stderr.readline()
            assert line, f"hub exited early: {proc.wait()}: {seen}"
            seen += line
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return proc.returncode, out, seen + err


def test_a_signal_prints_the_finished_chunks_and_a_gap_for_the_rest(corpus, tmp_path):
    from hub.audio import load_recording
    from hub.chunking import ChunkingSettings, plan_chunks
    from hub.transcript import clock

    path = long_clip(corpus, tmp_path)
    specs = plan_chunks(load_recording(path), ChunkingSettings(max_s=4, overlap_s=0))
    end = clock(specs[-1].end_ms / 1000)
    # the reference: each chunk's text when the whole recording is done
    full = run("-m", "hub", "transcribe", str(path), "--local-nodes", "2", *SLOW, "--format", "json")
    assert full.returncode == 0, full.stderr
    reference = json.loads(full.stdout)["segments"]
    assert len({s["seq"] for s in reference}) == len(specs) >= 6

    def text_before(k: int) -> str:
        return " ".join(s["text"] for s in reference if s["seq"] < k and s["text"])

    # SIGINT: the text of the chunks done, exactly, then one gap to the end; exit 130
    tag = unique_prefix()
    code, out, err = interrupt_after_a_chunk(path, "text", signal.SIGINT, tag)
    assert code == 130, err
    k = next((k for k in range(1, len(specs)) if out.startswith(text_before(k) + " [gap")), None)
    assert k is not None, out
    assert out == f"{text_before(k)} [gap {clock(specs[k].start_ms / 1000)}-{end}: interrupted]\n".lstrip()
    assert f"interrupted by SIGINT with {k} of {len(specs)} chunk(s) done" in err
    assert wait_gone(processes_tagged(tag), 30) == set()

    # SIGTERM, as JSON: the finished chunks' segments as they are when all is done, one failed segment after them
    tag = unique_prefix()
    code, out, err = interrupt_after_a_chunk(path, "json", signal.SIGTERM, tag)
    assert code == 143, err
    doc = json.loads(out)
    assert (doc["state"], doc["error"]) == ("partial", "interrupted")
    *done, gap = doc["segments"]
    k = gap["seq"]
    assert 1 <= k < len(specs) and [(s["seq"], s["text"]) for s in done] == [
        (s["seq"], s["text"]) for s in reference if s["seq"] < k
    ]
    assert (gap["status"], gap["reason"], gap["start_s"], gap["end_s"]) == (
        "failed", "interrupted", specs[k].start_ms / 1000, specs[-1].end_ms / 1000
    )
    assert doc["text"] == f"{text_before(k)} [gap {clock(gap['start_s'])}-{end}: interrupted]".lstrip()
    assert wait_gone(processes_tagged(tag), 30) == set()


def test_an_interrupted_job_marks_each_unfinished_stretch_once_in_every_format():
    from hub.chunking import ChunkSpec
    from hub.cli import interrupted
    from hub.jobs import ChunkState, ChunkWork, Job, JobState
    from hub.transcript import render
    from protocol.messages import Result, ResultStatus

    chunks = [ChunkWork(i, ChunkSpec(i * 20_000, (i + 1) * 20_000)) for i in range(6)]
    for seq, text in ((0, "hello there"), (3, "later on")):
        chunks[seq].state = ChunkState.DONE
        chunks[seq].result = Result("j", seq, 1, "pi-1", ResultStatus.OK, text=text, engine="sphinx")
    chunks[1].state, chunks[1].node_id = ChunkState.ASSIGNED, "pi-1"
    chunks[4].state, chunks[4].reason = ChunkState.FAILED, "pi-2: engine process died"
    job = Job(id="j", name="talk.wav", audio=None, chunks=chunks, state=JobState.RUNNING)
    cut = interrupted(job)
    assert render(cut, "text") == ("hello there [gap 00:20-01:00: interrupted] later on "
                                   "[gap 01:20-01:40: pi-2: engine process died] [gap 01:40-02:00: interrupted]")
    doc = json.loads(render(cut, "json"))
    assert (doc["state"], doc["error"], doc["duration_s"]) == ("partial", "interrupted", 120.0)
    assert [(s["seq"], s["status"], s["start_s"], s["end_s"]) for s in doc["segments"]] == [
        (0, "ok", 0.0, 20.0), (1, "failed", 20.0, 60.0), (3, "ok", 60.0, 80.0), (4, "failed", 80.0, 100.0),
        (5, "failed", 100.0, 120.0),
    ]
    assert "00:00:20,000 --> 00:00:27,000\n[gap 00:20-01:00: interrupted]\n" in render(cut, "srt")
    assert "00:01:40.000 --> 00:01:47.000\n[gap 01:40-02:00: interrupted]\n" in render(cut, "vtt")
    assert job.chunks[1].state is ChunkState.ASSIGNED  # the job itself is left as it was
    for chunk in chunks:
        chunk.state = ChunkState.DONE if chunk.state is not ChunkState.FAILED else chunk.state
    assert interrupted(job) is job  # nothing unfinished: nothing to mark


# --- progress ---


def test_progress_is_a_bar_on_a_terminal(corpus):
    import pty
    import select
    import termios

    tag = unique_prefix()
    path, ref = corpus["lhotse_2412-153948-0000"]
    master, slave = pty.openpty()
    termios.tcsetwinsize(slave, (24, 100))
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "transcribe", str(path), "--local-nodes", "1", "--engine", "sphinx",
         "--max-chunk", "4"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=slave, text=True, env=tagged_env(tag),
    )
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if not select.select([master], [], [], max(0.0, deadline - time.monotonic()))[0]:
                break
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the terminal's last writer has gone
                break
            if not data:
                break
            seen += data
        out = proc.communicate(timeout=60)[0]
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, seen
    assert wer(ref, out) < 0.35
    frames = [f.strip() for f in seen.decode().replace("\n", "\r").split("\r") if "%|" in f]
    assert len({f.split("%")[0] for f in frames}) >= 3, frames  # 0 %, some way, 100 %
    assert frames[-1].startswith("100%|") and "12/12 s of audio" in frames[-1], frames[-1]
    assert all(" elapsed, " in f and " left" in f and len(f) <= 100 for f in frames)
    assert any(re.search(r"elapsed, \d\d:\d\d left", f) for f in frames[:-1])  # an estimate while it works
    assert "chunks, running" not in seen.decode()  # no plain lines on a terminal


# --- the broker's port ---


def test_a_broker_people_address_takes_its_preferred_port_only_when_free(tmp_path):
    import socket

    from hub.broker import LocalBroker, choose_port, free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        assert choose_port(busy) != busy
        with LocalBroker(tmp_path / "a", prefer_port=busy) as local:
            assert local.port != busy and local.url == f"mqtt://127.0.0.1:{local.port}"
    wanted = free_port()
    assert choose_port(wanted) == wanted
    with LocalBroker(tmp_path / "b", prefer_port=wanted) as local:
        assert local.port == wanted
