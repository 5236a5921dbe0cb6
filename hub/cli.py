"""The hub's command line.

    python -m hub transcribe FILE... [--broker URL] [--local-nodes N] [--format text|json|srt|vtt]
    python -m hub serve --store DIR [--broker URL] [--local-nodes N]
    python -m hub up [--local-nodes N] [--port PORT]

Without ``--broker``, a private Mosquitto is started from the repository's
mosquitto.conf on a free loopback port, with ``--local-nodes`` edge nodes
(default 2). Every process started here is stopped on exit, Ctrl-C included.
Transcripts go to stdout, progress to stderr.

Exit codes: 0 done; 1 a job finished with gaps or failed; 2 bad input or
configuration; 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import sys
import threading
import uuid
from pathlib import Path

from hub.audio import AudioError, load_audio
from hub.broker import port_is_free
from hub.chunking import ChunkingSettings
from hub.dispatcher import DispatchSettings
from edge_node.engines import DEFAULT_ENGINE, ENGINES
from hub.jobs import ChunkState, Job, JobState
from hub.inbox import Inbox
from hub.local import LocalCluster, NodeOptions
from hub.service import Hub, HubSettings
from hub.store import StoreError
from hub.transcript import FORMATS, render
from protocol.broker import BrokerAddress
from protocol.cli import add_common_args, env_default, setup_logging
from protocol.messages import NodeStatus
from protocol.topics import Topics

_LOGGER = logging.getLogger("hub")
DEFAULT_LOCAL_NODES = 2


class Interrupted(Exception):
    pass


def _raise_interrupt(signum: int, frame: object) -> None:
    # Teardown is bounded (SIGTERM, then SIGKILL after a timeout): further signals must not cut it short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted()


def _common(parser: argparse.ArgumentParser, log_level: str) -> None:
    add_common_args(parser, broker_required=False, log_level=log_level)
    parser.add_argument(
        "--local-nodes", type=int, default=None,
        help=f"start N edge nodes on this machine (default {DEFAULT_LOCAL_NODES} when there is no --broker, else 0)",
    )
    parser.add_argument("--engine", default=env_default("--engine", DEFAULT_ENGINE), choices=ENGINES, help="engine of the local nodes")
    parser.add_argument("--model", default=env_default("--model", ""), help="model of the local nodes")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hub", description="The edgescribe hub.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("transcribe", help="transcribe recordings through the nodes and print the transcripts")
    t.add_argument("files", nargs="+", type=Path)
    _common(t, "WARNING")
    t.add_argument("--format", choices=FORMATS, default="text")
    _chunk_args(t)
    s = sub.add_parser("serve", help="run a hub with a durable store and an inbox folder until stopped")
    _common(s, "INFO")
    s.add_argument("--store", type=Path, required=env_default("--store") is None, default=env_default("--store"),
                   help="directory of the job store; recordings dropped in STORE/inbox are transcribed to STORE/done")
    _chunk_args(s)
    u = sub.add_parser("up", help="run a broker and local nodes until stopped")
    _common(u, "INFO")
    u.add_argument("--port", type=int, default=1883, help="broker port on 127.0.0.1 (a free one if taken)")
    return parser


def _chunk_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target-chunk", type=float, default=20.0, help="preferred chunk length, seconds")
    p.add_argument("--max-chunk", type=float, default=30.0, help="longest chunk, seconds")
    p.add_argument("--chunk-overlap", type=float, default=1.0,
                   help="where no pause is in reach, audio both neighbours hear across the cut, seconds (docs/chunking.md)")
    p.add_argument("--max-duration", type=float, default=float(env_default("--max-duration", "14400")), help="longest recording accepted, seconds")
    p.add_argument("--no-node-timeout", type=float, default=float(env_default("--no-node-timeout", "60")), help="fail a job that waits this long with no usable node, seconds")
    p.add_argument("--lease", type=float, default=15.0, help="fixed part of a chunk's lease, seconds")
    p.add_argument("--max-attempts", type=int, default=3)
    p.add_argument("--prefer-engine", default=env_default("--prefer-engine", ""),
                   help="give chunks to free nodes with this engine first (e.g. whisper); others still help")
    p.add_argument("--prefer-model", default=env_default("--prefer-model", ""), help="and among them, this model")


def _hub_settings(args: argparse.Namespace, store_dir: Path | None = None) -> HubSettings:
    """Everything but a private cluster's broker, validated before anything starts (ValueError)."""
    return HubSettings(
        broker=BrokerAddress.parse(args.broker or "mqtt://127.0.0.1"),
        chunking=ChunkingSettings(target_s=args.target_chunk, max_s=args.max_chunk, overlap_s=args.chunk_overlap),
        dispatch=DispatchSettings(
            lease_base_s=args.lease, max_attempts=args.max_attempts, no_node_timeout_s=args.no_node_timeout,
            prefer_engine=args.prefer_engine, prefer_model=args.prefer_model,
        ),
        topics=Topics(args.prefix),
        store_dir=store_dir,
    )


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.engine not in ENGINES:  # a default from EDGESCRIBE_ENGINE skips argparse's choices check
        parser.error(f"unknown engine {args.engine!r}; choose one of: {', '.join(ENGINES)}")
    try:
        Topics(args.prefix)
        if args.broker:
            BrokerAddress.parse(args.broker)
    except ValueError as exc:
        print(f"hub: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level)
    local = args.local_nodes if args.local_nodes is not None else (0 if args.broker else DEFAULT_LOCAL_NODES)
    if local < 0 or (args.broker is None and local == 0):
        print("hub: without --broker, --local-nodes must be at least 1", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        if args.command == "transcribe":
            return _transcribe(args, local)
        if args.command == "serve":
            return _serve(args, local)
        return _up(args, local)
    except Interrupted:
        print("hub: interrupted", file=sys.stderr)
        return 130


def _cluster(args: argparse.Namespace, local: int, name: str, port: int | None = None) -> LocalCluster:
    options = NodeOptions(engine=args.engine, model=args.model, prefix=args.prefix)
    return LocalCluster(local, args.broker, options, name=name, broker_port=port)


def _transcribe(args: argparse.Namespace, local: int) -> int:
    try:
        settings = _hub_settings(args)
        recordings = [(path.name, load_audio(path, max_duration_s=args.max_duration)) for path in args.files]
    except (ValueError, AudioError) as exc:
        print(f"hub: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # ffmpeg or ffprobe missing or not runnable
        print(f"hub: cannot run {exc.filename or 'ffmpeg'}: {exc.strerror}; install ffmpeg (apt-get install ffmpeg)", file=sys.stderr)
        return 2
    # node ids of their own, so that local nodes of several hubs on one broker never collide
    cluster = _cluster(args, local, name=f"local-{uuid.uuid4().hex[:4]}")
    hub = None
    try:
        try:
            cluster.start()
        except RuntimeError as exc:  # mosquitto missing or unable to start
            print(f"hub: {exc}", file=sys.stderr)
            return 2
        hub = Hub(dataclasses.replace(settings, broker=BrokerAddress.parse(str(cluster.broker_url))))
        hub.add_listener(_Progress())
        hub.start()
        jobs = [hub.submit(audio, name) for name, audio in recordings]
        for job in jobs:
            job.finished.wait()
        return _report(jobs, args.format, cluster)
    finally:
        if hub is not None:
            hub.stop()
        cluster.stop()


def _report(jobs: list[Job], fmt: str, cluster: LocalCluster) -> int:
    code = 0
    if fmt == "json":
        docs = [json.loads(render(job, "json")) for job in jobs]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2, ensure_ascii=False))
    for job in jobs:
        if fmt != "json":
            if len(jobs) > 1:
                print(f"==> {job.name} <==")
            print(render(job, fmt))
        if job.state is JobState.FAILED:
            print(f"hub: {job.name}: {job.error}", file=sys.stderr)
            for node_id, tail in cluster.dead_nodes().items():
                print(f"hub: local node {node_id} exited:\n{tail}", file=sys.stderr)
            code = 1
        elif job.state is JobState.PARTIAL:
            print(f"hub: {job.name}: {job.count(ChunkState.FAILED)} chunk(s) failed; gaps are marked", file=sys.stderr)
            code = 1
    return code


class _Progress:
    """Prints one line to stderr each time a job's count of finished chunks changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[int, str]] = {}

    def __call__(self, job: Job) -> None:
        done = job.count(ChunkState.DONE) + job.count(ChunkState.FAILED)
        key = (done, job.state.value)
        with self._lock:
            if self._seen.get(job.id) == key:
                return
            self._seen[job.id] = key
        print(f"{job.name}: {done}/{len(job.chunks)} chunks, {job.state.value}", file=sys.stderr, flush=True)


def _up(args: argparse.Namespace, local: int) -> int:
    port = args.port if args.broker is None and port_is_free(args.port) else None
    if args.broker is None and port is None:
        _LOGGER.warning("port %d is taken (a system mosquitto?); using a free port instead", args.port)
    cluster = _cluster(args, local, name="local", port=port)
    try:
        try:
            cluster.start()
        except RuntimeError as exc:
            print(f"hub: {exc}", file=sys.stderr)
            return 2
        url = cluster.broker_url
        print(f"edgescribe is up: broker {url}, {local} local edge node(s). Ctrl-C stops everything.", file=sys.stderr)
        print(f"  transcribe a file:  .venv/bin/python -m hub transcribe FILE --broker {url}", file=sys.stderr)
        print(f"  another node here:  .venv/bin/python -m edge_node --broker {url} --node-id NAME", file=sys.stderr)
        watcher = Hub(HubSettings(broker=BrokerAddress.parse(str(url)), topics=Topics(args.prefix)))
        watcher.add_node_listener(_NodeLog())
        watcher.start()
        try:
            cluster.supervise(threading.Event())  # restarts a local node or the broker that dies
        except Interrupted:
            print("hub: stopping", file=sys.stderr)
        finally:
            watcher.stop()
    finally:
        cluster.stop()
    return 0


class _NodeLog:
    """Prints a line to stderr when a node comes online or goes offline."""

    def __init__(self) -> None:
        self._state: dict[str, str] = {}

    def __call__(self, status: NodeStatus) -> None:
        if self._state.get(status.node_id) != status.state.value:
            self._state[status.node_id] = status.state.value
            model = f" ({status.engine} {status.model})" if status.state.value == "online" else ""
            print(f"node {status.node_id}: {status.state.value}{model}", file=sys.stderr, flush=True)


def _serve(args: argparse.Namespace, local: int) -> int:
    try:
        settings = _hub_settings(args, store_dir=args.store)
    except ValueError as exc:
        print(f"hub: {exc}", file=sys.stderr)
        return 2
    cluster = _cluster(args, local, name="serve")
    hub = inbox = None
    try:
        try:
            cluster.start()
            hub = Hub(dataclasses.replace(settings, broker=BrokerAddress.parse(str(cluster.broker_url))))
        except (RuntimeError, StoreError) as exc:
            print(f"hub: {exc}", file=sys.stderr)
            return 2
        inbox = Inbox(hub, args.store, max_duration_s=args.max_duration)
        hub.add_node_listener(_NodeLog())
        hub.add_listener(_Progress())
        inbox.export_missing()
        hub.start()
        inbox.start()
        print(f"hub {hub.hub_id} serving {args.store}/inbox -> {args.store}/done (broker {cluster.broker_url})",
              file=sys.stderr, flush=True)
        try:
            cluster.supervise(threading.Event())  # restarts a local node or private broker that dies
        except Interrupted:
            print("hub: stopping", file=sys.stderr)
    finally:
        if inbox is not None:
            inbox.stop()
        if hub is not None:
            hub.stop()
        cluster.stop()
    return 0
