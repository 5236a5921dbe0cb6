"""The hub's command line.

    python -m hub transcribe FILE... [--broker URL] [--local-nodes N] [--format text|json|srt|vtt]
    python -m hub serve --store DIR [--broker URL] [--local-nodes N]
    python -m hub up [--local-nodes N] [--port PORT]
    python -m hub listen [--device NAME|INDEX] [--broker URL] [--local-nodes N] [--output FILE]

Without ``--broker``, a private Mosquitto is started from the repository's
mosquitto.conf on a free loopback port, with ``--local-nodes`` edge nodes
(default 2). Every process started here is stopped on exit, Ctrl-C included.
Transcripts go to stdout, progress to stderr. A recording without speech prints nothing (JSON: its
document, with no text) and ``hub: no speech heard`` on stderr; it is no error.

Exit codes: 0 done (``listen``: stopped by Ctrl-C or SIGTERM, transcript complete); 1 a job
finished with gaps or failed (``listen``: also the device went away); 2 bad input or
configuration (``listen``: no such device, or it cannot be opened); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import uuid
from pathlib import Path

from hub.audio import AudioError, load_recording
from hub.broker import port_is_free
from hub.capture import DeviceError, default_input, find_input, list_inputs, sounddevice
from hub.inbox import Inbox, atomic_write
from hub.jobs import ChunkState, Job, JobState
from hub.launch import (
    Interrupted, NodeLog, StartError, add_hub_args, add_job_args, check_args, default_store_dir, hub_settings,
    local_hub, stop_on_signals,
)
from hub.listen import Latency, ListenSession, add_capture_args, listen_settings
from hub.local import LocalCluster
from hub.service import HubSettings
from hub.transcript import FORMATS, render, to_text
from protocol.broker import BrokerAddress
from protocol.cli import env_default, say, setup_logging
from protocol.topics import Topics

_LOGGER = logging.getLogger("hub")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hub", description="The edgescribe hub.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("transcribe", help="transcribe recordings through the nodes and print the transcripts")
    t.add_argument("files", nargs="+", type=Path)
    add_hub_args(t, "WARNING")
    t.add_argument("--format", choices=FORMATS, default="text")
    add_job_args(t)
    s = sub.add_parser("serve", help="run a hub with a durable store and an inbox folder until stopped")
    add_hub_args(s, "INFO")
    s.add_argument("--store", type=Path, required=env_default("--store") is None, default=env_default("--store"),
                   help="directory of the job store; recordings dropped in STORE/inbox are transcribed to STORE/done")
    add_job_args(s)
    u = sub.add_parser("up", help="run a broker and local nodes until stopped")
    add_hub_args(u, "INFO")
    u.add_argument("--port", type=int, default=1883, help="broker port on 127.0.0.1 (a free one if taken)")
    m = sub.add_parser("listen", help="transcribe from a microphone, a line per utterance, until Ctrl-C or SIGTERM")
    add_hub_args(m, "WARNING")
    m.add_argument("--list-devices", action="store_true", help="list the input devices and exit")
    add_capture_args(m)
    m.add_argument("--output", type=Path, help="write the final transcript here (format from --format or the extension)")
    m.add_argument("--format", choices=FORMATS, default=None, help="of --output (default: from its extension, else text)")
    m.add_argument("--store", type=Path, default=default_store_dir(),
                   help="the hub's job store, where the session is kept as a job (default: EDGESCRIBE_STORE, else "
                        "$XDG_DATA_HOME/edgescribe, else ~/.local/share/edgescribe; here %(default)s)")
    add_job_args(m)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        local = check_args(args)
    except ValueError as exc:
        say(f"hub: {exc}")
        return 2
    setup_logging(args.log_level)
    stop_on_signals()
    try:
        if args.command == "transcribe":
            return _transcribe(args, local)
        if args.command == "serve":
            return _serve(args, local)
        if args.command == "listen":
            return _listen(args, local)
        return _up(args, local)
    except Interrupted:
        say("hub: interrupted")
        return 130


def _transcribe(args: argparse.Namespace, local: int) -> int:
    try:
        settings = hub_settings(args)
        recordings = [(path.name, load_recording(path, max_duration_s=args.max_duration)) for path in args.files]
    except (ValueError, AudioError) as exc:
        say(f"hub: {exc}")
        return 2
    except OSError as exc:  # ffmpeg or ffprobe missing or not runnable
        say(f"hub: cannot run {exc.filename or 'ffmpeg'}: {exc.strerror}; install ffmpeg (apt-get install ffmpeg)")
        return 2
    try:
        # node ids of their own, so that local nodes of several hubs on one broker never collide
        with local_hub(args, local, settings, name=f"local-{uuid.uuid4().hex[:4]}") as (hub, cluster):
            hub.add_listener(_Progress())
            hub.start()
            jobs = [hub.submit(audio, name) for name, audio in recordings]
            for job in jobs:
                job.finished.wait()
            return _report(jobs, args.format, cluster)
    except StartError as exc:
        say(f"hub: {exc}")
        return 2


def _report(jobs: list[Job], fmt: str, cluster: LocalCluster) -> int:
    """Print the transcripts; say on stderr which jobs failed, left gaps, or heard no speech. The exit code."""
    code = 0
    if fmt == "json":
        docs = [json.loads(render(job, "json")) for job in jobs]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2, ensure_ascii=False))
    for job in jobs:
        # a recording without speech prints nothing (JSON: its document, with no text), and is no error
        silent = job.state is JobState.DONE and not to_text(job)
        if fmt != "json" and not silent:
            if len(jobs) > 1:
                print(f"==> {job.name} <==")
            print(render(job, fmt))
        if silent:
            say(f"hub: {job.name}: no speech heard" if len(jobs) > 1 else "hub: no speech heard")
        elif job.state is JobState.FAILED:
            say(f"hub: {job.name}: {job.error}")
            for node_id, tail in cluster.dead_nodes().items():
                say(f"hub: local node {node_id} exited:\n{tail}")
            code = 1
        elif job.state is JobState.PARTIAL:
            say(f"hub: {job.name}: {job.count(ChunkState.FAILED)} chunk(s) failed; gaps are marked")
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
        say(f"{job.name}: {done}/{len(job.chunks)} chunks, {job.state.value}")


def _up(args: argparse.Namespace, local: int) -> int:
    port = args.port if args.broker is None and port_is_free(args.port) else None
    if args.broker is None and port is None:
        _LOGGER.warning("port %d is taken (a system mosquitto?); using a free port instead", args.port)
    settings = HubSettings(broker=BrokerAddress.parse("mqtt://127.0.0.1"), topics=Topics(args.prefix))
    try:
        with local_hub(args, local, settings, name="local", broker_port=port) as (watcher, cluster):
            url = cluster.broker_url
            say(f"edgescribe is up: broker {url}, {local} local edge node(s). Ctrl-C stops everything.")
            say(f"  transcribe a file:  .venv/bin/python -m hub transcribe FILE --broker {url}")
            say(f"  another node here:  .venv/bin/python -m edge_node --broker {url} --node-id NAME")
            watcher.add_node_listener(NodeLog())
            watcher.start()
            try:
                cluster.supervise(threading.Event())  # restarts a local node or the broker that dies
            except Interrupted:
                say("hub: stopping")
    except StartError as exc:
        say(f"hub: {exc}")
        return 2
    return 0


def _serve(args: argparse.Namespace, local: int) -> int:
    try:
        settings = hub_settings(args, store_dir=args.store)
    except ValueError as exc:
        say(f"hub: {exc}")
        return 2
    try:
        with local_hub(args, local, settings, name="serve") as (hub, cluster):
            inbox = Inbox(hub, args.store, max_duration_s=args.max_duration)
            try:
                hub.add_node_listener(NodeLog())
                hub.add_listener(_Progress())
                inbox.export_missing()
                hub.start()
                inbox.start()
                say(f"hub {hub.hub_id} serving {args.store}/inbox -> {args.store}/done (broker {cluster.broker_url})")
                try:
                    cluster.supervise(threading.Event())  # restarts a local node or private broker that dies
                except Interrupted:
                    say("hub: stopping")
            finally:
                inbox.stop()
    except StartError as exc:
        say(f"hub: {exc}")
        return 2
    return 0


_EXTENSIONS = {".txt": "text", ".json": "json", ".srt": "srt", ".vtt": "vtt"}


def _listen(args: argparse.Namespace, local: int) -> int:
    try:
        settings = hub_settings(args, store_dir=args.store)
        listen = listen_settings(args)
        sd = sounddevice()
        devices = list_inputs(sd)
        if args.list_devices:
            default = default_input(sd)
            for device in devices:
                print(f"{'*' if device.index == default else ' '} {device.describe()}")
            return 0
        device = find_input(args.device, devices, default_input(sd))  # before anything starts
    except (ValueError, DeviceError) as exc:
        say(f"hub: {exc}")
        return 2
    fmt = args.format or (_EXTENSIONS.get(args.output.suffix.lower(), "text") if args.output else "text")
    try:
        with local_hub(args, local, settings, name=f"listen-{uuid.uuid4().hex[:4]}") as (hub, cluster):
            hub.add_node_listener(NodeLog())
            hub.start()
            session = ListenSession(hub, listen, emit=lambda line: print(line, flush=True))
            try:
                job = session.start()
            except DeviceError as exc:
                say(f"hub: {exc}")
                return 2

            def finish(signum: int, frame: object) -> None:
                session.stop()
                stop_on_signals()  # a second signal interrupts at once

            signal.signal(signal.SIGINT, finish)
            signal.signal(signal.SIGTERM, finish)
            say(f"hub: listening to {device}, session {job.id} in {args.store} (broker {cluster.broker_url}); "
                "Ctrl-C stops")
            session.join()
            say("hub: finishing the chunks in flight")
            job.finished.wait()
            final = hub.job(job.id) or job
            if args.output:
                atomic_write(args.output, render(final, fmt) + "\n")
            lines = session.printer.lines if session.printer else 0
            say(f"hub: {lines} line(s) from {len(final.chunks)} utterance chunk(s); {Latency.of(session).describe()}; "
                f"{session.overruns} overrun(s) ({session.overflows} overflowed, {session.dropped} dropped blocks)")
            if session.ended:
                say(f"hub: the session ended early: {session.ended}")
                return 1
            return _report_state(final)
    except StartError as exc:
        say(f"hub: {exc}")
        return 2


def _report_state(job: Job) -> int:
    if job.state is JobState.FAILED:
        say(f"hub: {job.name}: {job.error}")
        return 1
    if job.state is JobState.PARTIAL:
        say(f"hub: {job.name}: {job.count(ChunkState.FAILED)} chunk(s) failed; gaps are marked")
        return 1
    return 0

