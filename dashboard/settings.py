"""The dashboard's own settings, checked once when they are made."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


MB = 1024 * 1024  #: what ``max_upload_mb`` counts in


@dataclass(frozen=True)
class DashboardSettings:
    store_dir: Path  #: the hub's job store: the history the dashboard shows
    host: str = "127.0.0.1"  #: address the web server listens on
    port: int = 8080  #: its TCP port; 0 picks a free one
    max_upload_mb: float = 200.0  #: largest upload request, in MB of 2**20 bytes
    max_duration_s: float = 14_400.0  #: longest recording accepted, seconds
    heartbeat_s: float = 15.0  #: an event stream gets a comment line after this long without an event
    client_queue: int = 1000  #: events held for one slow event-stream client before it must resync

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("the host must not be empty (0.0.0.0 listens on every interface)")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not between 0 and 65535")
        for what, value in (("max upload", self.max_upload_mb), ("max duration", self.max_duration_s),
                            ("heartbeat", self.heartbeat_s)):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"the {what} must be a positive number, got {value!r}")
        if self.client_queue < 1:
            raise ValueError("client_queue must be at least 1")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)
