"""Helpers for the end-to-end tests: speech recordings, local nodes and hubs on a test broker."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydub import AudioSegment

from hub.audio import load_audio
from hub.chunking import ChunkingSettings
from hub.dispatcher import DispatchSettings
from hub.jobs import Job
from hub.local import LocalCluster, NodeOptions
from hub.procs import processes_with_env
from hub.service import Hub, HubSettings
from protocol.broker import BrokerAddress
from protocol.topics import Topics


def speech(corpus: dict[str, tuple[Path, str]], names: list[str]) -> tuple[AudioSegment, str]:
    """The named clips joined end to end (their own edges are the pauses) and their joined references."""
    audio = AudioSegment.empty()
    refs = []
    for name in names:
        path, ref = corpus[name]
        audio += load_audio(path)
        refs.append(ref)
    return audio, " ".join(refs)


def unique_prefix() -> str:
    """A topic prefix of the test's own, so tests sharing one broker never see each other's traffic."""
    return f"t{uuid.uuid4().hex[:10]}"


def start_nodes(
    broker_url: str,
    prefix: str,
    count: int,
    name: str = "n",
    drain_s: float = 5.0,
    engine: str = "sphinx",
    model: str = "",
) -> LocalCluster:
    """``count`` node processes ``<name>-node1`` ... (a test engine such as chaos needs EDGESCRIBE_TEST_ENGINES=1)."""
    options = NodeOptions(engine=engine, model=model, prefix=prefix, log_level="INFO", drain_s=drain_s)
    cluster = LocalCluster(count, BrokerAddress.parse(broker_url), options, name=name)
    cluster.start()
    return cluster


TEST_CHUNKING = ChunkingSettings(max_s=10, min_s=1, overlap_s=0.5)


def start_hub(
    broker_url: str,
    prefix: str,
    store_dir: Path | None = None,
    chunking: ChunkingSettings = TEST_CHUNKING,
    **dispatch: float,
) -> Hub:
    settings = HubSettings(
        broker=BrokerAddress.parse(broker_url),
        topics=Topics(prefix),
        chunking=chunking,
        dispatch=DispatchSettings(**{"no_node_timeout_s": 60, **dispatch}),
        store_dir=store_dir,
    )
    hub = Hub(settings)
    hub.start()
    assert hub.wait_connected(10), "hub did not connect"
    return hub


def wait_until(predicate: Callable[[], bool], changed: threading.Event, timeout: float, what: str) -> None:
    """Wait, bounded, for ``predicate``; re-check whenever a listener sets ``changed``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        changed.wait(left)
        changed.clear()


def wait_online(hub: Hub, count: int, timeout: float = 60) -> None:
    changed = threading.Event()
    hub.add_node_listener(lambda status: changed.set())
    wait_until(lambda: hub.online_nodes() >= count, changed, timeout, f"{count} node(s) online")


def run_job(hub: Hub, nodes: LocalCluster, audio: AudioSegment, name: str, online: int, timeout: float) -> Job:
    """Wait for ``online`` nodes, transcribe ``audio`` as one job, then stop the hub and the nodes, come what may."""
    try:
        wait_online(hub, online)
        return finished(hub.submit(audio, name), timeout)
    finally:
        hub.stop()
        nodes.stop()


def finished(job: Job, timeout: float) -> Job:
    assert job.finished.wait(timeout), f"job {job.name} did not finish within {timeout:.0f} s: {job.state}"
    return job


def tagged_env(tag: str) -> dict[str, str]:
    """This environment plus a marker that every descendant inherits (see :func:`processes_tagged`)."""
    root = str(Path(__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": root, "EDGESCRIBE_TEST_TAG": tag}


def processes_tagged(tag: str) -> set[int]:
    """Pids of live processes started under :func:`tagged_env` with ``tag``."""
    return set(processes_with_env("EDGESCRIBE_TEST_TAG", tag))


class RawClient:
    """A bare MQTT client for publishing hostile traffic and watching topics."""

    def __init__(self, url_port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.got = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda c, u, m: (self.messages.append((m.topic, m.payload)), self.got.set())
        self.client.connect("127.0.0.1", url_port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos=1)
        assert done.wait(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
