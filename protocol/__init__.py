"""Wire protocol shared by the hub, the edge nodes and the dashboard.

Everything that crosses the broker is defined here: topic names
(:mod:`protocol.topics`), the message dataclasses (:mod:`protocol.messages`),
the byte framing (:mod:`protocol.codec`), broker addresses
(:mod:`protocol.broker`) and the paho client set-up (:mod:`protocol.mqtt`).
This package imports nothing from ``hub``, ``edge_node`` or ``dashboard``.
"""

PROTOCOL_VERSION = 1
