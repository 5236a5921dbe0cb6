"""Byte framing: a compact JSON header, optionally followed by a newline and a binary payload.

``json.dumps`` never emits a raw newline, so the first ``b"\\n"`` always ends
the header. Audio therefore travels as raw WAV bytes after the header, never
pickled and never base64-encoded inside the JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

from protocol import PROTOCOL_VERSION
from protocol.errors import ProtocolError

MAX_HEADER_BYTES = 1024 * 1024


def pack(header: dict[str, Any], payload: bytes | None = None) -> bytes:
    """Serialise ``header`` (plus ``v``) and append ``payload`` if given."""
    body = json.dumps({"v": PROTOCOL_VERSION, **header}, separators=(",", ":"), allow_nan=False).encode()
    if len(body) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header is {len(body)} bytes, over the {MAX_HEADER_BYTES} byte limit")
    if payload is None:
        return body
    return body + b"\n" + payload


def unpack(data: bytes, expected_type: str, max_bytes: int) -> tuple[dict[str, Any], bytes]:
    """Split and check a framed message; raise :class:`ProtocolError` on anything wrong."""
    if not isinstance(data, (bytes, bytearray)):
        raise ProtocolError("payload is not bytes")
    if len(data) > max_bytes:
        raise ProtocolError(f"message is {len(data)} bytes, over the {max_bytes} byte limit")
    head, sep, payload = bytes(data).partition(b"\n")
    if len(head) > MAX_HEADER_BYTES:
        raise ProtocolError("header too long")
    try:
        header = json.loads(head.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, and an
        # integer of more digits than Python converts (sys.get_int_max_str_digits, 4300)
        raise ProtocolError(f"header is not JSON: {str(exc)[:200]}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    version = header.get("v")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolError(f"unsupported protocol version {version!r} (this side speaks {PROTOCOL_VERSION})")
    if header.get("type") != expected_type:
        raise ProtocolError(f"expected a {expected_type!r} message, got {header.get('type')!r}")
    return header, payload if sep else b""


def _reject_constant(name: str) -> float:
    raise ProtocolError(f"{name} is not allowed in a message")


class Fields:
    """Typed, bounded access to a decoded header; every getter raises ProtocolError."""

    def __init__(self, header: dict[str, Any]) -> None:
        self._h = header

    def _get(self, key: str, default: Any) -> Any:
        if key not in self._h:
            if default is _REQUIRED:
                raise ProtocolError(f"missing field {key!r}")
            return default
        return self._h[key]

    def text(self, key: str, max_len: int = 256, default: Any = None) -> str:
        value = self._get(key, _REQUIRED if default is None else default)
        if not isinstance(value, str):
            raise ProtocolError(f"field {key!r} must be a string")
        if len(value) > max_len:
            raise ProtocolError(f"field {key!r} is longer than {max_len} characters")
        return value

    def integer(self, key: str, low: int, high: int, default: Any = None) -> int:
        value = self._get(key, _REQUIRED if default is None else default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(f"field {key!r} must be an integer")
        if not low <= value <= high:
            raise ProtocolError(f"field {key!r}={value} is outside [{low}, {high}]")
        return value

    def number(self, key: str, low: float, high: float, default: Any = None) -> float:
        value = self._get(key, _REQUIRED if default is None else default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProtocolError(f"field {key!r} must be a number")
        value = float(value)
        if not math.isfinite(value) or not low <= value <= high:
            raise ProtocolError(f"field {key!r}={value} is outside [{low}, {high}]")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise ProtocolError(f"field {key!r} must be true or false")
        return value

    def optional_number(self, key: str, low: float, high: float) -> float | None:
        if self._h.get(key) is None:
            return None
        return self.number(key, low, high)

    def choice(self, key: str, choices: tuple[str, ...], default: Any = None) -> str:
        value = self.text(key, 64, default)
        if value not in choices:
            raise ProtocolError(f"field {key!r}={value!r} is not one of {', '.join(choices)}")
        return value


_REQUIRED = object()
