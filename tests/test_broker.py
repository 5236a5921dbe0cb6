"""hub.broker.LocalBroker: a private Mosquitto started from the repository's mosquitto.conf."""

from __future__ import annotations

import queue
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

import hub.broker
from hub.broker import REPO_CONF, LocalBroker, free_port

TIMEOUT = 5.0


class Client:
    """A paho MQTT v5 client with its network loop in a thread and bounded waits."""

    def __init__(self, broker: LocalBroker) -> None:
        self.broker = broker
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.connect_reason: ReasonCode | None = None
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.paho.on_connect = self._on_connect
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_message = self._on_message

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Properties | None
    ) -> None:
        self.connect_reason = reason
        self.connected.set()

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], props: Properties | None
    ) -> None:
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def connect(self) -> Client:
        self.paho.connect(self.broker.host, self.broker.port, keepalive=10)
        self.paho.loop_start()
        assert self.connected.wait(TIMEOUT), "no CONNACK"
        assert self.connect_reason is not None and not self.connect_reason.is_failure, self.connect_reason
        return self

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subscribed.clear()
        result, _ = self.paho.subscribe(topic, qos=qos)
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert self.subscribed.wait(TIMEOUT), "no SUBACK"

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.paho.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout=TIMEOUT)
        assert info.is_published(), "no PUBACK"

    def next_message(self) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError("no message received") from None

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


@pytest.fixture
def make_client() -> Iterator[Callable[[LocalBroker], Client]]:
    clients: list[Client] = []

    def make(broker: LocalBroker) -> Client:
        client = Client(broker).connect()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _topic() -> str:
    return f"test/broker/{uuid.uuid4().hex}"


def test_broker_starts_and_accepts_mqtt5(broker: LocalBroker, make_client: Callable[[LocalBroker], Client]) -> None:
    assert broker.running and broker.pid is not None
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
    client = make_client(broker)
    assert client.paho.protocol == mqtt.MQTTv5


def test_qos1_round_trip(broker: LocalBroker, make_client: Callable[[LocalBroker], Client]) -> None:
    topic = _topic()
    receiver = make_client(broker)
    receiver.subscribe(topic, qos=1)
    sender = make_client(broker)
    payload = bytes(range(256)) * 256  # 64 KiB, every byte value
    sender.publish(topic, payload, qos=1)
    message = receiver.next_message()
    assert message.topic == topic
    assert message.qos == 1
    assert message.payload == payload


def test_generated_conf(broker: LocalBroker) -> None:
    words = [line.split() for line in broker.conf_path.read_text(encoding="utf-8").splitlines()]
    options = [w for w in words if w and not w[0].startswith("#")]
    assert ["set_tcp_nodelay", "true"] in options
    assert ["persistence", "true"] in options
    assert [w for w in options if w[0] == "listener"] == [["listener", str(broker.port), "127.0.0.1"]]
    assert [w for w in options if w[0] == "persistence_location"] == [
        ["persistence_location", f"{broker.data_dir}/"]
    ]
    assert len([w for w in options if w[0] == "user"]) == 1
    assert len([w for w in options if w[0] == "log_dest"]) == 1
    assert broker.port != 1883
    # The derived conf keeps everything else from the repository file.
    repo_options = [line.split() for line in REPO_CONF.read_text(encoding="utf-8").splitlines()]
    kept = [w for w in repo_options if w and not w[0].startswith("#") and w[0] not in hub.broker._REPLACED_OPTIONS]
    assert all(w in options for w in kept)


def test_restart_keeps_retained_message(
    fresh_broker: LocalBroker, make_client: Callable[[LocalBroker], Client]
) -> None:
    topic = _topic()
    port = fresh_broker.port
    publisher = make_client(fresh_broker)
    publisher.publish(topic, b"kept", qos=1, retain=True)
    publisher.close()

    fresh_broker.stop()
    assert not fresh_broker.running
    # SIGTERM makes mosquitto save its database; the data dir must be writable by the broker,
    # also when the tests run as root (mosquitto would otherwise switch to user "mosquitto").
    assert (fresh_broker.data_dir / "mosquitto.db").is_file()
    fresh_broker.start()
    assert fresh_broker.port == port

    subscriber = make_client(fresh_broker)
    subscriber.subscribe(topic, qos=1)
    message = subscriber.next_message()
    assert message.payload == b"kept"
    assert message.retain


def test_kill_and_restart_on_same_port(
    fresh_broker: LocalBroker, make_client: Callable[[LocalBroker], Client]
) -> None:
    port = fresh_broker.port
    old_pid = fresh_broker.pid
    make_client(fresh_broker)  # an open connection while the broker dies

    fresh_broker.kill()
    assert fresh_broker.pid is None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()

    fresh_broker.start()
    assert fresh_broker.port == port
    assert fresh_broker.pid not in (None, old_pid)
    topic = _topic()
    client = make_client(fresh_broker)
    client.subscribe(topic)
    client.publish(topic, b"after crash")
    assert client.next_message().payload == b"after crash"


def test_context_manager_stops_broker(tmp_path: Path) -> None:
    with LocalBroker(tmp_path) as local:
        port = local.port
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    assert not local.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()


def test_retries_when_chosen_port_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy, busy])
        monkeypatch.setattr(hub.broker, "free_port", lambda host="127.0.0.1": next(ports, None) or free_port(host))
        with LocalBroker(tmp_path) as local:
            assert local.port != busy
            socket.create_connection(("127.0.0.1", local.port), timeout=1.0).close()


def test_explicit_port_taken_raises(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        local = LocalBroker(tmp_path, port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="address already in use"):
            local.start()
        assert not local.running


def test_mosquitto_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub.broker.shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(RuntimeError, match="apt-get install mosquitto"):
        LocalBroker(tmp_path).start()


def test_start_failure_reports_log(tmp_path: Path) -> None:
    bad_conf = tmp_path / "bad.conf"
    bad_conf.write_text("no_such_option 1\n", encoding="utf-8")
    local = LocalBroker(tmp_path / "broker", conf=bad_conf)
    with pytest.raises(RuntimeError, match="no_such_option"):
        local.start()
    assert not local.running
