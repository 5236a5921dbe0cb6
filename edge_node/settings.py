"""Node settings: flags and environment, validated once into a frozen object."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from edge_node.engines import DEFAULT_ENGINE
from protocol.broker import BrokerAddress
from protocol.topics import Topics, check_id


def default_node_id() -> str:
    """The host name, made safe for a topic."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()).strip("-_.") or "node"
    return name[:64]


@dataclass(frozen=True)
class NodeSettings:
    broker: BrokerAddress
    node_id: str
    topics: Topics
    engine: str = DEFAULT_ENGINE
    model: str = ""
    language: str = "en-US"
    concurrency: int = 1  #: chunks transcribed at once
    keepalive_s: int = 5  #: MQTT keepalive; the broker declares a frozen node offline after 1.5-2.5x this (11.5 s measured for 5 s)
    status_interval_s: float = 10.0  #: the status is re-published this often even when nothing changes
    drain_s: float = 30.0  #: on SIGTERM, how long to finish the chunks in hand before handing them back
    engine_timeout_s: float = 30.0  #: fixed part of the time an engine may spend on a chunk before it is killed
    engine_timeout_factor: float = 10.0  #: plus this many seconds per second of audio

    def __post_init__(self) -> None:
        check_id(self.node_id, "node id")
        if not 1 <= self.concurrency <= 64:
            raise ValueError(f"concurrency must be 1..64, not {self.concurrency}")
        if not 1 <= self.keepalive_s <= 600:
            raise ValueError(f"keepalive must be 1..600 s, not {self.keepalive_s}")
        if self.engine_timeout_s <= 0 or self.engine_timeout_factor < 0:
            raise ValueError("engine timeout must be positive")
        if self.status_interval_s <= 0:
            raise ValueError("status interval must be positive")
        if self.drain_s < 0:
            raise ValueError("drain time must not be negative")
