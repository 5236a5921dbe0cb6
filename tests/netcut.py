"""A TCP forwarder for tests that can cut a client off its broker and restore the link.

One thread runs a selector loop: it accepts on a free loopback port, opens a
connection to the target for each client and copies bytes both ways. The test
thread only sends commands (cut, restore, close); the loop carries them out
and acknowledges, so sockets are only ever touched by the loop's thread.

Two kinds of cut:

- ``reset``: both sockets of every connection are closed at once and the
  listening port is closed (new connections are refused) until ``restore``.
  Both ends learn of the cut at once, as after a router restart.
- ``silent``: no byte moves in either direction, but nothing is closed: as
  with a pulled cable, each end finds out only through its own keepalive. New
  connections are refused. On ``restore`` what was held back flows again
  (including a close that happened meanwhile).
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Callable

_LOGGER = logging.getLogger(__name__)
_ACK_TIMEOUT_S = 5.0
CUTS = ("reset", "silent")


class CuttableLink:
    """Forward ``127.0.0.1:<port>`` to ``target`` until told to cut."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._commands: list[tuple[Callable[[], None], threading.Event]] = []
        self._lock = threading.Lock()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._cut: str | None = None
        self._running = True
        self.connections = 0  #: connections accepted so far
        self._thread = threading.Thread(target=self._loop, name="netcut", daemon=True)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> CuttableLink:
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._thread.start()
        return self

    # -- commands (any thread) ----------------------------------------------------
    def cut(self, how: str) -> None:
        if how not in CUTS:
            raise ValueError(f"cut must be one of {CUTS}, not {how!r}")
        self._command(lambda: self._do_cut(how))

    def restore(self) -> None:
        self._command(self._do_restore)

    def close(self) -> None:
        if self._thread.is_alive():
            self._command(self._do_close)
            self._thread.join(_ACK_TIMEOUT_S)
        else:
            self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    def _command(self, action: Callable[[], None]) -> None:
        done = threading.Event()
        with self._lock:
            self._commands.append((action, done))
        self._wake_w.send(b"x")
        if not done.wait(_ACK_TIMEOUT_S):
            raise RuntimeError("the forwarding thread did not answer")

    # -- the loop's own thread --------------------------------------------------------
    def _loop(self) -> None:
        while self._running:
            for key, _ in self._selector.select():
                sock = key.fileobj
                if sock is self._wake_r:
                    self._wake_r.recv(4096)
                    with self._lock:
                        commands, self._commands = self._commands, []
                    for action, done in commands:
                        action()
                        done.set()
                elif self._cut is not None:
                    continue  # an event from before a cut in this same batch
                elif sock is self._listener:
                    self._accept()
                elif sock in self._peers:
                    self._forward(sock)
        self._selector.close()

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError as exc:
            _LOGGER.warning("netcut: cannot reach %s: %s", self.target, exc)
            client.close()
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._peers[client], self._peers[upstream] = upstream, client
        self._selector.register(client, selectors.EVENT_READ)
        self._selector.register(upstream, selectors.EVENT_READ)
        self.connections += 1

    def _forward(self, sock: socket.socket) -> None:
        peer = self._peers[sock]
        try:
            data = sock.recv(65536)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        """Close a connection: both of its sockets."""
        peer = self._peers.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._peers.pop(s, None)
            try:
                self._selector.unregister(s)
            except (KeyError, ValueError):
                pass
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _do_cut(self, how: str) -> None:
        self._cut = how
        if how == "reset":
            for sock in list(self._peers):
                self._drop(sock)
        else:  # silent: the connections stay open, but no byte moves
            for sock in self._peers:
                self._selector.unregister(sock)
        # New connections are refused either way. (Leaving them in the listen backlog would let a
        # connection the client gave up long ago reach the broker on restore, which no real network does.)
        self._selector.unregister(self._listener)
        self._listener.close()
        _LOGGER.info("netcut: %s cut of %s", how, self.target)

    def _do_restore(self) -> None:
        if self._cut is None:
            return
        if self._cut == "silent":
            for sock in self._peers:
                self._selector.register(sock, selectors.EVENT_READ)
        self._listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the same port again
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._cut = None
        _LOGGER.info("netcut: link to %s restored", self.target)

    def _do_close(self) -> None:
        for sock in list(self._peers):
            self._drop(sock)
        self._listener.close()
        self._running = False
