"""Every MQTT topic is built and parsed here, and nowhere else.

Layout under a configurable prefix (default ``edgescribe``)::

    <prefix>/node/<node_id>/status   retained NodeStatus (and the node's Last Will)
    <prefix>/node/<node_id>/chunk    Chunk messages a hub assigns to that node
    <prefix>/hub/<hub_id>/result/<node_id>
                                     Result messages from that node for the hub that sent the chunk

Every topic a node writes ends in its own id, so a broker ACL keyed on the node's user name
(``pattern write .../%u``) stops one node from speaking for another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from protocol.errors import ProtocolError

DEFAULT_PREFIX = "edgescribe"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


def check_id(value: object, what: str = "id") -> str:
    """Return ``value`` if it is a safe identifier (no MQTT wildcards, no slashes), else raise."""
    if not isinstance(value, str) or not _ID.match(value):
        raise ProtocolError(f"invalid {what} {value!r}: use 1-64 of A-Z a-z 0-9 _ . - (not starting with _ . -)")
    return value


@dataclass(frozen=True)
class Topics:
    """Topic names for one deployment, identified by its prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if len(self.prefix) > 128 or not _PREFIX.match(self.prefix):
            raise ValueError(f"invalid topic prefix {self.prefix!r}: use path segments of A-Z a-z 0-9 _ . -")

    # -- builders --------------------------------------------------------
    def node_status(self, node_id: str) -> str:
        return f"{self.prefix}/node/{check_id(node_id, 'node id')}/status"

    def node_chunks(self, node_id: str) -> str:
        return f"{self.prefix}/node/{check_id(node_id, 'node id')}/chunk"

    def hub_results(self, hub_id: str, node_id: str) -> str:
        """Where ``node_id`` publishes its results for ``hub_id``."""
        return f"{self.prefix}/hub/{check_id(hub_id, 'hub id')}/result/{check_id(node_id, 'node id')}"

    # -- subscription filters ---------------------------------------------
    @property
    def all_node_status(self) -> str:
        return f"{self.prefix}/node/+/status"

    def all_hub_results(self, hub_id: str) -> str:
        """A hub's subscription: its results from every node."""
        return f"{self.prefix}/hub/{check_id(hub_id, 'hub id')}/result/+"

    # -- parsers -----------------------------------------------------------
    def parse_node_status(self, topic: str) -> str:
        """Return the node id of a status topic, or raise ProtocolError."""
        return self._parse(topic, "node", "status")

    def parse_hub_results(self, topic: str) -> tuple[str, str]:
        """Return ``(hub_id, node_id)`` of a result topic, or raise ProtocolError."""
        head = f"{self.prefix}/hub/"
        parts = topic[len(head):].split("/") if topic.startswith(head) else []
        if len(parts) != 3 or parts[1] != "result":
            raise ProtocolError(f"topic {topic!r} is not a hub result topic")
        return check_id(parts[0], "hub id"), check_id(parts[2], "node id")

    def parse_node_chunks(self, topic: str) -> str:
        return self._parse(topic, "node", "chunk")

    def _parse(self, topic: str, kind: str, leaf: str) -> str:
        head = f"{self.prefix}/{kind}/"
        tail = f"/{leaf}"
        if not topic.startswith(head) or not topic.endswith(tail):
            raise ProtocolError(f"topic {topic!r} is not a {kind} {leaf} topic")
        return check_id(topic[len(head) : -len(tail)], f"{kind} id")
