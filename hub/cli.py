"""The hub's command line.

    python -m hub transcribe FILE... [--broker URL] [--local-nodes N] [--format text|json|srt|vtt]
    python -m hub serve --store DIR [--broker URL] [--local-nodes N]
    python -m hub up [--local-nodes N] [--port PORT]
    python -m hub listen [--device NAME|INDEX] [--broker URL] [--local-nodes N] [--output FILE]

Without ``--broker``, a private Mosquitto is started from the repository's
mosquitto.conf on a loopback port, with ``--local-nodes`` edge nodes (default 2): a free port
for ``transcribe``, ``serve`` and ``listen``; for ``up``, ``--port`` (1883) when it is free. Every
process started here is stopped on exit, Ctrl-C included.
Transcripts go to stdout, progress to stderr: a bar (percent of the audio done, elapsed, time left)
when stderr is a terminal, else a line each time a job's count of finished chunks changes. A
recording without speech prints nothing (JSON: its document, with no text) and ``hub: no speech
heard`` on stderr; it is no error. SIGINT or SIGTERM on ``transcribe`` prints what is finished, in
``--format``, each unfinished stretch marked ``[gap 01:20-05:00: interrupted]``, then stops everything.

Exit codes: 0 done (``listen``: stopped by Ctrl-C or SIGTERM, transcript complete); 1 a job
finished with gaps or failed (``listen``: also the device went away; ``listen --list-devices``: no
input device); 2 bad input or configuration (``listen``: no such device, or it cannot be opened);
130 interrupted by SIGINT (Ctrl-C), 143 by SIGTERM.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from hub.audio import AudioError, load_recording
from hub.capture import NO_INPUT, DeviceError, default_input, find_input, list_inputs, sounddevice
from hub.inbox import Inbox, atomic_write
from hub.jobs import ChunkState, ChunkWork, Job, JobState
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

if TYPE_CHECKING:
    from tqdm import tqdm

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
    except Interrupted as exc:
        say("hub: interrupted")
        return exc.exit_code


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
    progress = _Progress(bar_of_s=sum(len(audio) for _, audio in recordings) / 1000 if sys.stderr.isatty() else None)
    try:
        # node ids of their own, so that local nodes of several hubs on one broker never collide
        with local_hub(args, local, settings, name=f"local-{uuid.uuid4().hex[:4]}") as (hub, cluster):
            jobs: list[Job] = []
            try:
                hub.add_listener(progress)
                hub.start()
                for name, audio in recordings:
                    jobs.append(hub.submit(audio, name))
                for job in jobs:
                    while not job.finished.wait(1.0):
                        progress.tick()  # the bar's elapsed and remaining time move on between chunks
            except Interrupted as exc:  # the finished text is printed, the rest marked as a gap; then teardown
                progress.close()
                if not jobs:
                    raise
                return _report_interrupted([hub.job(job.id) or job for job in jobs], args.format, exc)
            progress.close()
            return _report(jobs, args.format, cluster)
    except StartError as exc:
        say(f"hub: {exc}")
        return 2
    finally:
        progress.close()


def _silent(job: Job) -> bool:
    """A recording without speech: it prints nothing (JSON: its document, with no text), and is no error."""
    return job.state is JobState.DONE and not to_text(job)


def _print(jobs: list[Job], fmt: str) -> None:
    """The transcripts on stdout in ``fmt``, each under its name when there are several; flushed."""
    if fmt == "json":
        docs = [json.loads(render(job, "json")) for job in jobs]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2, ensure_ascii=False))
    else:
        for job in jobs:
            if not _silent(job):
                if len(jobs) > 1:
                    print(f"==> {job.name} <==")
                print(render(job, fmt))
    sys.stdout.flush()


def _report(jobs: list[Job], fmt: str, cluster: LocalCluster) -> int:
    """Print the transcripts; say on stderr which jobs failed, left gaps, or heard no speech. The exit code."""
    _print(jobs, fmt)
    code = 0
    for job in jobs:
        if _silent(job):
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


INTERRUPTED = "interrupted"  #: the reason in the gap marker of what a signal left unfinished


def interrupted(job: Job) -> Job:
    """A copy of ``job`` as far as it got: each run of unfinished chunks becomes one failed chunk,
    whose gap (``[gap 01:20-05:00: interrupted]``) covers their time range. Chunks that failed on their
    own keep their gap and reason. A job with unfinished chunks is ``partial``, its error ``interrupted``."""
    if all(c.state in (ChunkState.DONE, ChunkState.FAILED) for c in job.chunks):
        return job
    chunks: list[ChunkWork] = []
    for chunk in job.chunks:
        if chunk.state in (ChunkState.DONE, ChunkState.FAILED):
            chunks.append(chunk)
            continue
        last = chunks[-1] if chunks else None
        if last is not None and last.state is ChunkState.FAILED and last.reason == INTERRUPTED:
            spec = dataclasses.replace(last.spec, end_ms=chunk.spec.end_ms, tail_ms=chunk.spec.tail_ms,
                                       context_ms=chunk.spec.context_ms)
            chunks[-1] = dataclasses.replace(last, spec=spec)
        else:
            chunks.append(ChunkWork(chunk.seq, chunk.spec, state=ChunkState.FAILED, reason=INTERRUPTED))
    return dataclasses.replace(job, audio=None, chunks=chunks, state=JobState.PARTIAL, error=INTERRUPTED)


def _report_interrupted(jobs: list[Job], fmt: str, by: Interrupted) -> int:
    """Print what ``jobs`` had finished when the signal came, the rest marked; the signal's exit code."""
    _print([interrupted(job) for job in jobs], fmt)
    done = sum(job.count(ChunkState.DONE) for job in jobs)
    total = sum(len(job.chunks) for job in jobs)
    say(f"hub: interrupted by {by.name} with {done} of {total} chunk(s) done; the rest is marked as a gap")
    return by.exit_code


def _terminal_size() -> tuple[int, int]:
    """Columns and lines of the terminal on stderr; 80 x 24 where it says 0 (a pseudo-terminal never sized)."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except OSError:
        return 80, 24
    return size.columns or 80, size.lines or 24


class _Progress:
    """Progress on stderr, as the hub's job listener (called from its thread).

    With ``bar_of_s`` (the seconds of audio of all the jobs; given when stderr is a terminal) a bar
    (tqdm) of the audio done: percent, elapsed and estimated time left; :meth:`tick` redraws it from
    the main thread between chunks. Without, one line each time a job's count of finished chunks
    changes, as a log or a pipe wants it.
    """

    def __init__(self, bar_of_s: float | None = None) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[int, str]] = {}
        self._done_s: dict[str, float] = {}
        self._chunks: dict[str, tuple[int, int]] = {}
        self._bar: tqdm | None = None
        self._closed = False
        if bar_of_s is not None:
            from tqdm import tqdm  # only for a terminal: importing it costs every hub start about 30 ms

            columns, lines = _terminal_size()
            self._bar = tqdm(
                ncols=columns, nrows=lines, total=round(bar_of_s, 1), file=sys.stderr, smoothing=0, mininterval=0.2,
                bar_format="{percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s of audio "
                           "[{elapsed} elapsed, {remaining} left{postfix}]",
            )

    def __call__(self, job: Job) -> None:
        done = job.count(ChunkState.DONE) + job.count(ChunkState.FAILED)
        with self._lock:
            if self._closed:
                return
            if self._bar is not None:
                self._done_s[job.id] = sum(c.spec.duration_ms for c in job.chunks
                                           if c.state in (ChunkState.DONE, ChunkState.FAILED)) / 1000
                self._chunks[job.id] = (done, len(job.chunks))
                self._bar.set_postfix_str(f"{sum(d for d, _ in self._chunks.values())}/"
                                          f"{sum(n for _, n in self._chunks.values())} chunks", refresh=False)
                self._bar.update(round(sum(self._done_s.values()), 1) - self._bar.n)
                return
            key = (done, job.state.value)
            if self._seen.get(job.id) == key:
                return
            self._seen[job.id] = key
        say(f"{job.name}: {done}/{len(job.chunks)} chunks, {job.state.value}")

    def tick(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.refresh()

    def close(self) -> None:
        """Leave the bar as it is, on a line of its own; later changes print nothing more."""
        with self._lock:
            self._closed = True
            if self._bar is not None:
                self._bar.close()
                self._bar = None


def _up(args: argparse.Namespace, local: int) -> int:
    settings = HubSettings(broker=BrokerAddress.parse("mqtt://127.0.0.1"), topics=Topics(args.prefix))
    try:
        with local_hub(args, local, settings, name="local", prefer_port=args.port) as (watcher, cluster):
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
            if not devices:
                say(f"hub: {NO_INPUT}")
                return 1
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

