"""The dashboard's own settings, checked once when they are made.

The login token and the session secret are secrets: they are left out of the repr, and
:meth:`DashboardSettings.redacted` is the summary to log.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from pathlib import Path


MB = 1024 * 1024  #: what ``max_upload_mb`` counts in
MIN_TOKEN_CHARS = 12  #: a shorter token could be guessed even at ``login_attempts`` a minute


def is_loopback(host: str) -> bool:
    """True if ``host`` reaches only this machine: ``localhost`` or a loopback address (127.0.0.0/8, ::1).

    Any other name counts as reaching beyond it, since it may resolve to anything.
    """
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class DashboardSettings:
    store_dir: Path  #: the hub's job store: the history the dashboard shows
    host: str = "127.0.0.1"  #: address the web server listens on
    port: int = 8080  #: its TCP port; 0 picks a free one
    max_upload_mb: float = 200.0  #: largest upload request, in MB of 2**20 bytes
    max_duration_s: float = 14_400.0  #: longest recording accepted, seconds
    heartbeat_s: float = 15.0  #: an event stream gets a comment line after this long without an event
    client_queue: int = 1000  #: events held for one slow event-stream client before it must resync
    #: the login token (a password); None: no login, allowed only on a loopback ``host``
    token: str | None = field(default=None, repr=False)
    #: signs the session cookies; None: a random one per process (a restart logs everyone out)
    session_secret: str | None = field(default=None, repr=False)
    upload_rate: int = 30  #: uploads one client address may start per minute
    login_attempts: int = 5  #: failed logins (or wrong bearer tokens) one client address may make per minute
    session_days: float = 7.0  #: how long a login lasts
    live_idle_s: float = 30.0  #: a live recording whose browser sent nothing for this long is ended

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("the host must not be empty (0.0.0.0 listens on every interface)")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not between 0 and 65535")
        for what, value in (("max upload", self.max_upload_mb), ("max duration", self.max_duration_s),
                            ("heartbeat", self.heartbeat_s), ("session length", self.session_days),
                            ("live idle limit", self.live_idle_s)):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"the {what} must be a positive number, got {value!r}")
        if self.client_queue < 1:
            raise ValueError("client_queue must be at least 1")
        if self.upload_rate < 1 or self.login_attempts < 1:
            raise ValueError("the upload rate and the login attempts must be at least 1 a minute")
        if self.token is not None and (len(self.token) < MIN_TOKEN_CHARS or self.token != self.token.strip()):
            raise ValueError(f"the login token must have at least {MIN_TOKEN_CHARS} characters and no spaces "
                             "around it")
        if self.session_secret is not None and len(self.session_secret) < MIN_TOKEN_CHARS:
            raise ValueError(f"the session secret must have at least {MIN_TOKEN_CHARS} characters")
        if self.token is None and not is_loopback(self.host):
            raise ValueError(f"--host {self.host} reaches beyond this machine, so a login token is required: "
                             "set EDGESCRIBE_DASHBOARD_TOKEN or --token-file (docs/security.md)")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def login_required(self) -> bool:
        return self.token is not None

    def redacted(self) -> str:
        """A one-line summary safe to log: whether there is a token, never the token itself."""
        login = "login token required" if self.login_required else "no login (loopback only)"
        secret = "from EDGESCRIBE_DASHBOARD_SECRET" if self.session_secret else "random per process"
        return (f"{login}, session secret {secret}, uploads up to {self.max_upload_mb:g} MB and "
                f"{self.upload_rate} a minute per client, {self.login_attempts} failed logins a minute per client")
