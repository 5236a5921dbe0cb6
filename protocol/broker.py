"""Broker addresses: ``mqtt://[user[:password]@]host[:port]`` (``mqtts://`` for TLS).

With ``mqtts://`` the address also carries the TLS files: a CA certificate to check the broker
against (the system's CAs when there is none) and an optional client certificate and key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote, urlsplit

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
PASSWORD_ENV_PREFIX = "EDGESCRIBE_PASSWORD_"


def password_env(account: str) -> str:
    """The variable holding a broker account's password: ``EDGESCRIBE_PASSWORD_<ACCOUNT>``, with every
    character other than A-Z a-z 0-9 as ``_`` (``pi-1.lan`` -> ``EDGESCRIBE_PASSWORD_PI_1_LAN``)."""
    return PASSWORD_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", account).upper()


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int = DEFAULT_PORT
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse a broker URL; raise ValueError with a one-line reason if it is not one."""
        if "://" not in url:
            url = "mqtt://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError(f"broker URL {url!r} has no host")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT)
        except ValueError:
            raise ValueError(f"broker URL {url!r} has an invalid port") from None
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def with_tls_files(
        self, ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
    ) -> BrokerAddress:
        """This address with TLS files; ValueError if they are given for a plain mqtt:// URL."""
        if not (ca_file or cert_file or key_file):
            return self
        if not self.tls:
            raise ValueError(f"broker URL {self}: CA, certificate and key files need an mqtts:// URL")
        if key_file and not cert_file:
            raise ValueError("a client key file needs a client certificate file")
        return replace(self, ca_file=ca_file or None, cert_file=cert_file or None, key_file=key_file or None)

    def url(self, with_password: bool = False) -> str:
        """The URL; its password is ``***`` unless ``with_password`` (never log that one)."""
        auth = ""
        if self.username:
            secret = quote(self.password, safe="") if with_password else "***"
            auth = quote(self.username, safe="") + (f":{secret}" if self.password else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}{host}:{self.port}"

    def __str__(self) -> str:
        """The URL with any password redacted, safe to log."""
        return self.url()
