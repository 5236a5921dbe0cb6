"""A paho-mqtt 2.x (MQTT v5) connection that supervises itself.

Threading: paho's own network thread (``loop_start``) runs every callback.
Handlers registered here must be quick and thread-safe; they hand work to the
owner's own threads. The link reconnects forever with exponential backoff
(1 s doubling to 30 s), re-subscribes on every connect, and publishes with
QoS 1: paho keeps unacknowledged QoS 1 messages and re-sends them after a
reconnect.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol.broker import BrokerAddress

_LOGGER = logging.getLogger(__name__)

Handler = Callable[[str, bytes, bool], None]  # topic, payload, retained (sent on subscribe)
QOS = 1
MIN_RECONNECT_S = 1
MAX_RECONNECT_S = 30


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True


class MqttLink:
    """One MQTT client: connect, keep connected, route messages to handlers."""

    def __init__(
        self,
        broker: BrokerAddress,
        client_id: str,
        subscriptions: dict[str, Handler],
        *,
        clean_start: bool = True,
        session_expiry_s: int = 0,
        keepalive_s: int = 5,
        will: Will | None = None,
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.connected = threading.Event()
        self._stopping = False
        self._subscriptions = dict(subscriptions)
        self._clean_start = clean_start
        self._session_expiry_s = session_expiry_s
        self._keepalive_s = keepalive_s
        self._on_connected = on_connected
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.reconnect_delay_set(MIN_RECONNECT_S, MAX_RECONNECT_S)
        client.max_queued_messages_set(0)  # unbounded: nothing published while disconnected is dropped
        if broker.username:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            client.tls_set(ca_certs=broker.ca_file, certfile=broker.cert_file, keyfile=broker.key_file)
        if will is not None:
            client.will_set(will.topic, will.payload, qos=QOS, retain=will.retain)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_socket_open = _set_nodelay
        client.on_message = self._handle_unrouted
        for topic_filter, handler in self._subscriptions.items():
            client.message_callback_add(topic_filter, self._guard(handler))
        self._client = client

    # -- life cycle ----------------------------------------------------------
    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._session_expiry_s
        self._client.connect_async(
            self.broker.host,
            self.broker.port,
            keepalive=self._keepalive_s,
            clean_start=self._clean_start,
            properties=props,
        )
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def stop(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()

    # -- publishing ------------------------------------------------------------
    def publish(self, topic: str, payload: bytes, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self._client.publish(topic, payload, qos=QOS, retain=retain)

    def publish_and_wait(self, topic: str, payload: bytes, retain: bool = False, timeout: float = 5.0) -> bool:
        """Publish and wait (bounded) for the broker's acknowledgement."""
        info = self.publish(topic, payload, retain)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            _LOGGER.warning("publish to %s not confirmed: %s", topic, exc)
            return False
        return info.is_published()

    # -- callbacks (paho's network thread) -----------------------------------------
    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            _LOGGER.warning("broker %s refused the connection: %s", self.broker, reason_code)
            return
        _LOGGER.info("connected to %s as %s (session present: %s)", self.broker, self.client_id, flags.session_present)
        for topic_filter in self._subscriptions:
            client.subscribe(topic_filter, qos=QOS)
        self.connected.set()
        if self._on_connected is not None:
            try:
                self._on_connected()
            except Exception:  # noqa: BLE001 - a hook must never kill the network thread
                _LOGGER.exception("on_connected hook failed")

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set() and not self._stopping:
            _LOGGER.warning("disconnected from %s (%s); reconnecting", self.broker, reason_code)
        self.connected.clear()

    @staticmethod
    def _handle_unrouted(client, userdata, message) -> None:
        _LOGGER.debug("ignoring message on unexpected topic %s", message.topic)

    @staticmethod
    def _guard(handler: Handler):
        def callback(client, userdata, message) -> None:
            try:
                handler(message.topic, message.payload, bool(message.retain))
            except Exception:  # noqa: BLE001 - one bad message must never kill the network thread
                _LOGGER.exception("handler for %s failed; message dropped", message.topic)

        return callback


def _set_nodelay(client, userdata, sock) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not a TCP socket (e.g. a websocket wrapper)
        pass
