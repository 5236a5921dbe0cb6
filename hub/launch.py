"""Starting a hub the way every command does: its flags, its settings, and what runs beside it.

Shared by ``python -m hub`` (:mod:`hub.cli`) and ``python -m dashboard``, so that both take the
same flags and the same embedded default: without ``--broker``, a private Mosquitto on a loopback
port (see :class:`hub.local.LocalCluster`: a free one, or the port a command prefers when that is
free) and ``DEFAULT_LOCAL_NODES`` local edge nodes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_node.engines import DEFAULT_ENGINE, available_engines
from hub.chunking import ChunkingSettings
from hub.dispatcher import DispatchSettings
from hub.local import LocalCluster, NodeOptions
from hub.service import Hub, HubSettings
from hub.store import StoreError
from protocol.cli import add_common_args, broker_from_args, env_default
from protocol.messages import NodeStatus
from protocol.topics import Topics, check_id

DEFAULT_LOCAL_NODES = 2


class Interrupted(Exception):
    """Raised in the main thread by SIGINT or SIGTERM once :func:`stop_on_signals` is installed."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = int(signum)
        super().__init__(self.name)

    @property
    def name(self) -> str:
        """The signal's name, e.g. ``SIGTERM``."""
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's code for a process its signal stopped: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


class StartError(RuntimeError):
    """The private broker, a local node or the hub could not start; the message is one line."""


def _raise_interrupt(signum: int, frame: object) -> None:
    # Teardown is bounded (SIGTERM, then SIGKILL after a timeout): further signals must not cut it short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signum)


def stop_on_signals() -> None:
    """Make SIGINT (Ctrl-C) and SIGTERM raise :class:`Interrupted` in the main thread, once."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)


def default_store_dir() -> Path:
    """``EDGESCRIBE_STORE``, else ``$XDG_DATA_HOME/edgescribe``, else ``~/.local/share/edgescribe``."""
    stated = env_default("--store")
    if stated:
        return Path(stated)
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "edgescribe"


def add_hub_args(parser: argparse.ArgumentParser, log_level: str) -> None:
    """Broker, prefix and log level, plus the local nodes: how many, their engine and model."""
    add_common_args(parser, broker_required=False, log_level=log_level)
    parser.add_argument(
        "--local-nodes", type=int, default=None,
        help=f"start N edge nodes on this machine (default {DEFAULT_LOCAL_NODES} when there is no --broker, else 0)",
    )
    # the test engines (chaos, simulated) are choices only with EDGESCRIBE_TEST_ENGINES=1, as for a node
    parser.add_argument("--engine", default=env_default("--engine", DEFAULT_ENGINE), choices=available_engines(),
                        help=f"engine of the local nodes (default {DEFAULT_ENGINE}, model tiny.en; sphinx: PocketSphinx, less accurate)")
    parser.add_argument("--model", default=env_default("--model", ""), help="model of the local nodes")
    parser.add_argument(
        "--local-node-name", default=env_default("--local-node-name"), metavar="NAME",
        help="local nodes are NAME-node1, NAME-node2, ... (default: one per command, random for transcribe and "
             "listen); on a broker with accounts each needs its own, with its password in EDGESCRIBE_PASSWORD_<ID>",
    )


def add_job_args(p: argparse.ArgumentParser) -> None:
    """How recordings are accepted, cut and dispatched."""
    p.add_argument("--max-chunk", type=float, default=30.0,
                   help="the most audio one chunk carries, seconds: the engine's decoding window (Whisper: 30); "
                        "recordings are cut into as few chunks as fit, at pauses (docs/chunking.md)")
    p.add_argument("--chunk-overlap", type=float, default=1.0,
                   help="where no pause is in reach, audio both neighbours hear across the cut, seconds (docs/chunking.md)")
    p.add_argument("--chunk-window", type=float, default=0.0,
                   help="fill each chunk's audio up to this length with what follows, as context for Whisper "
                        "(default 0: none; it costs decoding work, docs/chunking.md)")
    p.add_argument("--max-duration", type=float, default=float(env_default("--max-duration", "14400")), help="longest recording accepted, seconds")
    p.add_argument("--no-node-timeout", type=float, default=float(env_default("--no-node-timeout", "60")), help="fail a job that waits this long with no usable node, seconds")
    p.add_argument("--lease", type=float, default=15.0, help="fixed part of a chunk's lease, seconds")
    p.add_argument("--max-attempts", type=int, default=3)
    p.add_argument("--prefer-engine", default=env_default("--prefer-engine", ""),
                   help="give chunks to free nodes with this engine first (e.g. whisper); others still help")
    p.add_argument("--prefer-model", default=env_default("--prefer-model", ""), help="and among them, this model")


def check_args(args: argparse.Namespace) -> int:
    """Check the flags of :func:`add_hub_args`; return how many local nodes to start.

    Raises ValueError with a one-line reason.
    """
    engines = available_engines()
    if args.engine not in engines:  # a default from EDGESCRIBE_ENGINE skips argparse's choices check
        raise ValueError(f"unknown engine {args.engine!r}; choose one of: {', '.join(engines)}")
    Topics(args.prefix)
    if args.local_node_name:
        check_id(args.local_node_name + "-node1", "local node name")
    if args.broker:
        broker_from_args(args)
    local = args.local_nodes if args.local_nodes is not None else (0 if args.broker else DEFAULT_LOCAL_NODES)
    if local < 0 or (args.broker is None and local == 0):
        raise ValueError("without --broker, --local-nodes must be at least 1")
    return local


def hub_settings(args: argparse.Namespace, store_dir: Path | None = None) -> HubSettings:
    """Settings from the flags of :func:`add_hub_args` and :func:`add_job_args` (ValueError if invalid).

    The broker is a placeholder without ``--broker``: :func:`local_hub` puts in the private one.
    """
    return HubSettings(
        broker=broker_from_args(args, fallback="mqtt://127.0.0.1"),
        chunking=ChunkingSettings(max_s=args.max_chunk, overlap_s=args.chunk_overlap, window_s=args.chunk_window),
        dispatch=DispatchSettings(
            lease_base_s=args.lease, max_attempts=args.max_attempts, no_node_timeout_s=args.no_node_timeout,
            prefer_engine=args.prefer_engine, prefer_model=args.prefer_model,
        ),
        topics=Topics(args.prefix),
        store_dir=store_dir,
    )


@contextmanager
def local_hub(
    args: argparse.Namespace, local: int, settings: HubSettings, name: str, prefer_port: int | None = None,
) -> Iterator[tuple[Hub, LocalCluster]]:
    """Start the private broker (without ``--broker``) and ``local`` nodes, then make a hub on that broker.

    The hub is made, not started: add listeners, then call ``hub.start()``. On leaving, the hub stops
    first, then the nodes (each drains), then the broker. Raises :class:`StartError` if the broker,
    a node or the hub's store cannot be used. Local nodes are named ``<name>-node1``, ..., where
    ``--local-node-name`` overrides ``name``. The private broker takes ``prefer_port`` when it is
    free on 127.0.0.1 (the dashboard and ``hub up``: :data:`hub.broker.MQTT_PORT`), else a free port.
    """
    name = args.local_node_name or name
    options = NodeOptions(engine=args.engine, model=args.model, prefix=args.prefix)
    # shared: one process hosts the local nodes, with one engine process and one model (hub.local)
    cluster = LocalCluster(
        local, settings.broker if args.broker else None, options, name=name, prefer_port=prefer_port, shared=True,
    )
    hub = None
    try:
        try:
            cluster.start()
            # with --broker the settings already hold it, TLS files included
            hub = Hub(dataclasses.replace(settings, broker=cluster.address))
        except (RuntimeError, StoreError) as exc:  # mosquitto missing or unable to start; store locked
            raise StartError(str(exc)) from exc
        yield hub, cluster
    finally:
        if hub is not None:
            hub.stop()
        cluster.stop()


class NodeLog:
    """Prints a line to stderr when a node comes online or goes offline."""

    def __init__(self) -> None:
        self._state: dict[str, str] = {}

    def __call__(self, status: NodeStatus) -> None:
        if self._state.get(status.node_id) != status.state.value:
            self._state[status.node_id] = status.state.value
            model = f" ({status.engine} {status.model})" if status.state.value == "online" else ""
            print(f"node {status.node_id}: {status.state.value}{model}", file=sys.stderr, flush=True)
