"""Local edge nodes started by the hub (``--local-nodes N``), and the embedded broker with them.

On a broker with accounts (a user name in its URL), every local node logs in as itself: its account
is named as its node id (the ACL lets a node speak only under its own name) and its password comes
from ``EDGESCRIBE_PASSWORD_<NODE_ID>``, the variable ``scripts/make-broker-accounts`` reads. A node
gets its broker URL through its environment, never its command line, where ``ps`` would show it.

With ``shared`` (the hub's own commands), and a broker without accounts, ONE process hosts every local
node (``python -m edge_node --node-id A --node-id B``): they then share one engine process and one
loaded model (:class:`edge_node.runner.SharedEngine`), since a second copy of the model on one machine
buys nothing. With accounts each node logs in as itself from its own environment, so each keeps a
process of its own; the tests that kill or freeze one node also keep one process per node.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from edge_node.engines import DEFAULT_ENGINE
from hub.broker import LocalBroker
from hub.procs import child_env, log_tail, spawn, terminate
from protocol.broker import PASSWORD_ENV_PREFIX, BrokerAddress, password_env

_LOGGER = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class NodeOptions:
    engine: str = DEFAULT_ENGINE
    model: str = ""
    language: str = "en-US"
    prefix: str = "edgescribe"
    log_level: str = "INFO"
    drain_s: float = 5.0  #: on stop, how long a node may finish its chunk before handing it back


class LocalCluster:
    """An optional private broker plus N edge node processes, torn down together.

    The private broker (when ``broker`` is None) listens on 127.0.0.1, on ``prefer_port`` when that
    is free, else on a free port (:func:`hub.broker.choose_port`). ``shared``: one process hosts all the
    nodes when the broker has no accounts (see the module docstring). ``nodes`` maps each node id to its
    process (with ``shared``, the same one for every id).
    """

    def __init__(
        self, nodes: int, broker: BrokerAddress | None, options: NodeOptions, name: str, prefer_port: int | None = None,
        shared: bool = False,
    ) -> None:
        self._count = nodes
        self._options = options
        self._name = name
        self._prefer_port = prefer_port
        self._tmp = tempfile.TemporaryDirectory(prefix="edgescribe-")
        self.workdir = Path(self._tmp.name)
        self.broker: LocalBroker | None = None
        #: the broker the nodes use (the private one once started); ``str()`` of it hides the password
        self.address = broker
        self.nodes: dict[str, subprocess.Popen] = {}
        self._shared = shared
        self._groups: list[tuple[str, ...]] = []  #: the node ids of each process, set by start()

    @property
    def broker_url(self) -> str:
        """The broker's URL with any password hidden, for messages."""
        return str(self.address)

    def node_ids(self) -> list[str]:
        return [f"{self._name}-node{i}" for i in range(1, self._count + 1)]

    def start(self) -> None:
        if self.address is None:
            self.broker = LocalBroker(self.workdir / "broker", prefer_port=self._prefer_port)
            self.broker.start()
            self.address = BrokerAddress.parse(self.broker.url)
            _LOGGER.info("started a private broker at %s", self.address)
        for node_id in self.node_ids():
            self._node_address(node_id)  # every account is checked before any node starts
        ids = tuple(self.node_ids())
        one_process = self._shared and self.address.username is None and len(ids) > 1
        self._groups = [ids] if one_process else [(node_id,) for node_id in ids]
        for group in self._groups:
            self._start_group(group)

    def _node_address(self, node_id: str) -> BrokerAddress:
        """The broker as ``node_id`` logs in to it; RuntimeError (one line) if its password is not set."""
        assert self.address is not None, "start() sets the broker first"
        if self.address.username is None:
            return self.address
        variable = password_env(node_id)
        password = os.environ.get(variable)
        if not password:
            raise RuntimeError(
                f"local node {node_id} needs its own broker account on {self.address}: create it with "
                f"scripts/make-broker-accounts (node id {node_id}) and set {variable}"
            )
        return dataclasses.replace(self.address, username=node_id, password=password, cert_file=None, key_file=None)

    def _log(self, group: tuple[str, ...]) -> Path:
        """The log of the process that hosts ``group``: ``<node id>.log``, or ``<name>-nodes.log`` for several."""
        return self.workdir / (f"{group[0]}.log" if len(group) == 1 else f"{self._name}-nodes.log")

    def start_node(self, node_id: str) -> subprocess.Popen:
        """(Re)start the process that hosts ``node_id`` (with ``shared``, every node: they are one process)."""
        return self._start_group(next((g for g in self._groups if node_id in g), (node_id,)))

    def _start_group(self, group: tuple[str, ...]) -> subprocess.Popen:
        o = self._options
        address = self._node_address(group[0])  # several ids share a process only without accounts
        # the node's own URL and CA only: not the other accounts' passwords, nor the hub's client certificate
        env = {k: v for k, v in child_env(REPO_ROOT).items()
               if not k.startswith(PASSWORD_ENV_PREFIX) and k not in ("EDGESCRIBE_CERT_FILE", "EDGESCRIBE_KEY_FILE")}
        env["EDGESCRIBE_BROKER"] = address.url(with_password=True)
        cmd = [
            sys.executable, "-m", "edge_node",
            *(arg for node_id in group for arg in ("--node-id", node_id)),
            "--engine", o.engine,
            "--language", o.language,
            "--prefix", o.prefix,
            "--log-level", o.log_level,
            "--drain-timeout", str(o.drain_s),
        ]
        if o.model:
            cmd += ["--model", o.model]
        if address.ca_file:
            cmd += ["--ca-file", address.ca_file]
        proc = spawn(cmd, self._log(group), env=env, cwd=REPO_ROOT)
        for node_id in group:
            self.nodes[node_id] = proc
        _LOGGER.info("started local node%s %s (pid %d)", "s" if len(group) > 1 else "", ", ".join(group), proc.pid)
        return proc

    def _processes(self) -> dict[tuple[str, ...], subprocess.Popen]:
        """Each node process, by the ids it hosts."""
        return {group: self.nodes[group[0]] for group in self._groups if group[0] in self.nodes}

    def dead_nodes(self) -> dict[str, str]:
        """Nodes that exited (every id its process hosted), with the tail of their log."""
        return {nid: log_tail(self._log(group)) for group, p in self._processes().items() if p.poll() is not None
                for nid in group}

    def supervise(self, stop: threading.Event, restart_delay_s: float = 1.0) -> None:
        """Restart the private broker (same port, same data) and local nodes whenever one exits.

        Blocks until ``stop`` is set or a signal handler raises. Waits on pidfds, so an exit is
        seen at once; ``stop`` is checked at least every 5 s.
        """
        while not stop.is_set():
            watched = {f"node {', '.join(g)}": (p.pid, lambda g=g: self._start_group(g)) for g, p in self._processes().items()}
            if self.broker is not None and self.broker.pid is not None:
                watched["the broker"] = (self.broker.pid, self.broker.start)
            elif self.broker is not None:
                watched["the broker"] = (-1, self.broker.start)
            fds: dict[int, str] = {}
            dead: list[str] = []
            try:
                for what, (pid, _) in watched.items():
                    try:
                        fds[os.pidfd_open(pid)] = what
                    except (ProcessLookupError, ValueError, OSError):
                        dead.append(what)
                if not dead:
                    dead = [fds[fd] for fd in select.select(list(fds), [], [], 5.0)[0]]
            finally:
                for fd in fds:
                    os.close(fd)
            for what in dead:
                _LOGGER.warning("%s exited; restarting it in %.0f s", what, restart_delay_s)
            if dead and not stop.wait(restart_delay_s):
                for proc in self.nodes.values():
                    proc.poll()  # reap the exited ones
                for what in dead:
                    try:
                        watched[what][1]()
                    except RuntimeError as exc:  # e.g. the broker's port was taken meanwhile
                        _LOGGER.error("could not restart %s: %s", what, exc)

    def stop(self) -> None:
        processes = self._processes()
        for proc in processes.values():  # all drain at once, then each is waited for
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for group, proc in processes.items():
            code = terminate(proc, timeout=self._options.drain_s + 10)
            _LOGGER.debug("node %s exited with %s", ", ".join(group), code)
        if self.broker is not None:
            self.broker.stop()
        self._tmp.cleanup()

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
