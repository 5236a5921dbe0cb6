"""The secure broker config (mosquitto-secure.conf) against a real Mosquitto: accounts, ACL and TLS.

Every test name contains "security": ``pytest -k security`` selects them.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from chainkit import TEST_CHUNKING, finished, wait_online
from hub.audio import load_audio
from hub.broker import _can_connect, find_mosquitto, free_port
from hub.dispatcher import DispatchSettings
from hub.jobs import JobState
from hub.procs import child_env, log_tail, spawn, terminate
from hub.service import Hub, HubSettings
from hub.transcript import to_text
from protocol.broker import BrokerAddress, password_env
from protocol.mqtt import MqttLink
from protocol.topics import Topics

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "sec"
TOPICS = Topics(PREFIX)
PASSWORDS = {"hub": "hub-pw-1", "dashboard": "dash-pw-2", "n1": "n1-pw-3", "n2": "n2-pw-4", "loc-node1": "loc-pw-5"}
WAIT_S = 5


@dataclass
class SecureBroker:
    dir: Path
    port: int  # plain MQTT on loopback, accounts required
    tls_port: int  # TLS, accounts required
    certs: Path
    other_certs: Path  # a second, unrelated CA

    def url(self, user: str, tls: bool = True) -> BrokerAddress:
        scheme, port = ("mqtts", self.tls_port) if tls else ("mqtt", self.port)
        address = BrokerAddress.parse(f"{scheme}://{user}:{PASSWORDS[user]}@127.0.0.1:{port}")
        return address.with_tls_files(str(self.certs / "ca.crt")) if tls else address


def _render(conf: str, broker_dir: Path, port: int, tls_port: int, certs: Path) -> str:
    """The shipped secure config with this test's paths and ports in place of the documented ones."""
    paths = {
        "password_file": broker_dir / "accounts" / "passwd",
        "acl_file": broker_dir / "accounts" / "acl",
        "cafile": certs / "ca.crt",
        "certfile": certs / "server.crt",
        "keyfile": certs / "server.key",
        "persistence_location": f"{broker_dir / 'data'}/",
    }
    out = []
    for line in conf.splitlines():
        words = line.split()
        if words and words[0] in paths:
            line = f"{words[0]} {paths[words[0]]}"
        elif words[:1] == ["listener"]:
            line = f"listener {port} 127.0.0.1" if words[1] == "1883" else f"listener {tls_port} 127.0.0.1"
        out.append(line)
    # started as root, mosquitto would drop to user "mosquitto", who cannot read the tmp dir
    out.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    work = tmp_path_factory.mktemp("secure")
    env = {**os.environ, **{password_env(u): p for u, p in PASSWORDS.items()}}
    made = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make-broker-accounts"), "--out", str(work / "accounts"),
         "--prefix", PREFIX, "n1", "n2", "loc-node1"],
        env=env, capture_output=True, text=True, check=True, timeout=30,
    )
    assert not any(p in made.stdout + made.stderr for p in PASSWORDS.values()), "passwords from env are never printed"
    for out in ("certs", "other"):
        subprocess.run([str(ROOT / "scripts" / "make-tls-certs"), "--out", str(work / out), "--client", "n1"],
                       check=True, capture_output=True, timeout=60)
    (work / "data").mkdir()
    port, tls_port = free_port(), free_port()
    conf = _render((ROOT / "mosquitto-secure.conf").read_text(encoding="utf-8"), work, port, tls_port, work / "certs")
    (work / "mosquitto.conf").write_text(conf, encoding="utf-8")
    proc = spawn([find_mosquitto(), "-c", str(work / "mosquitto.conf")], work / "mosquitto.log", cwd=work)
    try:
        ready = threading.Event()
        for _ in range(250):  # bounded: 250 x 20 ms
            if proc.poll() is not None:
                pytest.fail(f"mosquitto exited: {log_tail(work / 'mosquitto.log')}")
            if _can_connect("127.0.0.1", port) and _can_connect("127.0.0.1", tls_port):
                break
            ready.wait(0.02)
        else:
            pytest.fail(f"mosquitto did not listen: {log_tail(work / 'mosquitto.log')}")
        yield SecureBroker(work, port, tls_port, work / "certs", work / "other")
    finally:
        terminate(proc, 5)


class Client:
    """A bare paho client that records its CONNACK and the messages it receives."""

    def __init__(self, port: int, user: str | None = None, password: str | None = None,
                 ca_file: Path | None = None) -> None:
        self.connack = threading.Event()
        self.reason: mqtt.ReasonCode | None = None
        self.messages: list[tuple[str, bytes]] = []
        self.got = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if user is not None:
            self.client.username_pw_set(user, password if password is not None else PASSWORDS[user])
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file))
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)  # a TLS handshake failure raises here
        self.client.loop_start()
        assert self.connack.wait(WAIT_S), "no CONNACK"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.reason = reason_code
        self.connack.set()

    def _on_message(self, client, userdata, message) -> None:
        with self.got:
            self.messages.append((message.topic, message.payload))
            self.got.notify_all()

    @property
    def accepted(self) -> bool:
        return self.reason is not None and not self.reason.is_failure

    def subscribe(self, *topics: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe([(t, 1) for t in topics])
        assert done.wait(WAIT_S), "no SUBACK"

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(WAIT_S)  # the broker has handled it (allowed or not) once this returns

    def wait_for(self, payload: bytes) -> list[tuple[str, bytes]]:
        """Wait (bounded) until ``payload`` arrives; return everything received so far."""
        with self.got:
            assert self.got.wait_for(lambda: any(p == payload for _, p in self.messages), WAIT_S), (
                f"{payload!r} never arrived; got {self.messages}")
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_security_anonymous_and_wrong_password_are_refused(secure_broker):
    for port, ca in ((secure_broker.port, None), (secure_broker.tls_port, secure_broker.certs / "ca.crt")):
        anonymous = Client(port, ca_file=ca)
        wrong = Client(port, "n1", "not-the-password", ca_file=ca)
        right = Client(port, "n1", ca_file=ca)
        try:
            assert anonymous.reason is not None and anonymous.reason.is_failure
            assert str(anonymous.reason) in ("Not authorized", "Bad user name or password")
            assert not wrong.accepted
            assert right.accepted
        finally:
            for c in (anonymous, wrong, right):
                c.close()


def test_security_node_reads_only_its_own_chunks(secure_broker):
    hub, n1, n2 = (Client(secure_broker.port, u) for u in ("hub", "n1", "n2"))
    try:
        n1.subscribe(TOPICS.node_chunks("n1"), TOPICS.node_chunks("n2"), f"{PREFIX}/#")
        n2.subscribe(TOPICS.node_chunks("n2"))
        hub.publish(TOPICS.node_chunks("n2"), b"for n2")
        hub.publish(TOPICS.node_chunks("n1"), b"for n1")
        assert n2.wait_for(b"for n2") == [(TOPICS.node_chunks("n2"), b"for n2")], "the hub may assign work"
        # messages from one publisher reach a subscriber in order: n2's chunk would have come first.
        # n1's own chunk matches two of its subscriptions, and the broker may deliver it once per match.
        assert set(n1.wait_for(b"for n1")) == {(TOPICS.node_chunks("n1"), b"for n1")}
    finally:
        for c in (hub, n1, n2):
            c.close()


def test_security_node_cannot_publish_as_another_node_or_assign_work(secure_broker):
    hub, n1, n2 = (Client(secure_broker.port, u) for u in ("hub", "n1", "n2"))
    try:
        hub.subscribe(TOPICS.all_node_status, TOPICS.all_hub_results("h1"))
        n2.subscribe(TOPICS.node_chunks("n2"))
        n1.publish(TOPICS.node_status("n2"), b"forged status")
        n1.publish(TOPICS.hub_results("h1", "n2"), b"forged result")
        n1.publish(TOPICS.node_chunks("n2"), b"forged chunk")
        n1.publish(TOPICS.node_chunks("n1"), b"forged own chunk")
        n1.publish(TOPICS.node_status("n1"), b"own status")
        n1.publish(TOPICS.hub_results("h1", "n1"), b"own result")
        hub.publish(TOPICS.node_chunks("n2"), b"real chunk")
        assert hub.wait_for(b"own result") == [
            (TOPICS.node_status("n1"), b"own status"), (TOPICS.hub_results("h1", "n1"), b"own result")]
        assert n2.wait_for(b"real chunk") == [(TOPICS.node_chunks("n2"), b"real chunk")]
    finally:
        for c in (hub, n1, n2):
            c.close()


def test_security_tls_needs_the_right_ca(secure_broker):
    with pytest.raises(ssl.SSLCertVerificationError):
        Client(secure_broker.tls_port, "hub", ca_file=secure_broker.other_certs / "ca.crt")
    system_cas = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    system_cas.tls_set()  # the system's CAs do not know this one
    with pytest.raises(ssl.SSLCertVerificationError):
        system_cas.connect("127.0.0.1", secure_broker.tls_port)
    link = MqttLink(secure_broker.url("hub"), "tls-check", {})
    link.start()
    try:
        assert link.wait_connected(WAIT_S), "MqttLink over mqtts:// with --ca-file"
    finally:
        link.stop()


def test_security_secure_settings_are_logged_redacted(secure_broker):
    address = secure_broker.url("n1")
    assert PASSWORDS["n1"] not in str(address) and PASSWORDS["n1"] not in repr(address)
    with pytest.raises(ValueError):
        BrokerAddress.parse("mqtt://127.0.0.1").with_tls_files(ca_file="ca.crt")


def test_security_whole_chain_over_tls_with_accounts(secure_broker, corpus, tmp_path):
    env = {
        **child_env(ROOT),
        "EDGESCRIBE_BROKER": f"mqtts://n1:{PASSWORDS['n1']}@127.0.0.1:{secure_broker.tls_port}",
        "EDGESCRIBE_CA_FILE": str(secure_broker.certs / "ca.crt"),
        "EDGESCRIBE_CERT_FILE": str(secure_broker.certs / "n1.crt"),
        "EDGESCRIBE_KEY_FILE": str(secure_broker.certs / "n1.key"),
    }
    log = tmp_path / "n1.log"
    node = spawn([sys.executable, "-m", "edge_node", "--node-id", "n1", "--engine", "sphinx", "--prefix", PREFIX],
                 log, env=env, cwd=ROOT)
    hub = Hub(HubSettings(broker=secure_broker.url("hub"), topics=TOPICS, chunking=TEST_CHUNKING,
                          dispatch=DispatchSettings(no_node_timeout_s=60)))
    hub.start()
    try:
        assert hub.wait_connected(10), "hub did not connect over TLS"
        wait_online(hub, 1, timeout=30)
        job = finished(hub.submit(load_audio(corpus["jfk"][0]), "jfk"), 30)
        assert job.state is JobState.DONE
        assert "country" in to_text(job)
    finally:
        hub.stop()
        terminate(node, 10)
    text = log.read_text(encoding="utf-8")
    assert PASSWORDS["n1"] not in text, "the node never logs its password"
    assert re.search(r"connected to mqtts://n1:\*\*\*@127\.0\.0\.1", text)


def _hub_cli(secure_broker, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``python -m hub`` as the hub account over TLS, with local nodes named loc-node1, ..."""
    url = f"mqtts://hub:{PASSWORDS['hub']}@127.0.0.1:{secure_broker.tls_port}"
    clean = {k: v for k, v in child_env(ROOT).items() if not k.startswith("EDGESCRIBE_")}
    return subprocess.run(
        [sys.executable, "-m", "hub", *args, "--broker", url, "--ca-file", str(secure_broker.certs / "ca.crt"),
         "--prefix", PREFIX, "--local-node-name", "loc", "--local-nodes", "1"],
        env={**clean, **env}, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def test_security_local_nodes_log_in_with_their_own_accounts(secure_broker, corpus):
    done = _hub_cli(secure_broker, "transcribe", "--format", "json", str(corpus["jfk"][0]),
                    env={password_env("loc-node1"): PASSWORDS["loc-node1"]})
    assert done.returncode == 0, done.stderr[-2000:]
    transcript = json.loads(done.stdout)
    assert "country" in transcript["text"]
    assert {s["node_id"] for s in transcript["segments"]} == {"loc-node1"}
    assert not any(p in done.stdout + done.stderr for p in PASSWORDS.values()), "no password is ever printed"


def test_security_local_node_without_an_account_is_a_one_line_error(secure_broker, corpus):
    done = _hub_cli(secure_broker, "transcribe", str(corpus["jfk"][0]), env={})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "local node loc-node1 needs its own broker account" in lines[0], done.stderr
    assert "EDGESCRIBE_PASSWORD_LOC_NODE1" in lines[0] and PASSWORDS["hub"] not in lines[0]


def test_security_local_node_gets_its_password_through_its_environment_only(monkeypatch):
    """A node's command line is visible to every user (ps); its URL and password travel in its environment."""
    from hub.local import LocalCluster, NodeOptions

    cluster = LocalCluster(1, BrokerAddress.parse("mqtt://hub:hub-secret@127.0.0.1:9"), NodeOptions(), name="ps")
    monkeypatch.setenv(password_env("ps-node1"), "node-secret")
    try:
        cluster.start()
        (proc,) = cluster.nodes.values()
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().decode()
    finally:
        cluster.stop()
    assert "secret" not in cmdline and "--node-id\0ps-node1" in cmdline
    assert "EDGESCRIBE_BROKER=mqtt://ps-node1:node-secret@127.0.0.1:9" in environ
    assert "hub-secret" not in environ
    assert "hub-secret" not in cluster.broker_url


def test_security_tls_files_from_flags_and_environment(monkeypatch):
    import argparse

    from hub.launch import add_hub_args, add_job_args, hub_settings

    monkeypatch.setenv("EDGESCRIBE_CA_FILE", "/env/ca.crt")
    parser = argparse.ArgumentParser()
    add_hub_args(parser, "INFO")
    add_job_args(parser)
    args = parser.parse_args(["--broker", "mqtts://hub:pw@hub.lan", "--cert-file", "c.crt", "--key-file", "c.key"])
    broker = hub_settings(args).broker
    assert (broker.ca_file, broker.cert_file, broker.key_file, broker.port) == ("/env/ca.crt", "c.crt", "c.key", 8883)
    assert "pw" not in str(broker) and "pw" not in repr(hub_settings(args))


def test_security_accounts_script_prints_generated_passwords_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGESCRIBE_PASSWORD_")}
    made = subprocess.run([sys.executable, str(ROOT / "scripts" / "make-broker-accounts"), "--out", str(tmp_path),
                           "--no-dashboard", "kitchen-pi"], env=env, capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, made.stderr
    printed = dict(line.split() for line in made.stdout.splitlines())
    assert set(printed) == {"hub", "kitchen-pi"} and all(len(p) >= 20 for p in printed.values())
    written = "".join(f.read_text(encoding="utf-8") for f in tmp_path.iterdir()) + made.stderr
    assert not any(p in written for p in printed.values()), "only hashes are written; stderr has no password"
    assert oct((tmp_path / "passwd").stat().st_mode & 0o777) == "0o600"
    assert "pattern read edgescribe/node/%u/chunk" in (tmp_path / "acl").read_text(encoding="utf-8")
