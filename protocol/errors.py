"""The one exception raised for anything wrong on the wire."""


class ProtocolError(ValueError):
    """A message or topic that is malformed, oversized, hostile or of an unknown version.

    Receivers log it and drop the message; it never propagates into a crash.
    """
