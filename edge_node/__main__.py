"""``python -m edge_node``: run a node, or transcribe one file locally.

    python -m edge_node --broker mqtt://HOST:PORT [--node-id ID ...] [--engine whisper] [--model M] [--concurrency N]
    python -m edge_node transcribe FILE [--engine whisper] [--model M]
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from edge_node.engines import DEFAULT_ENGINE, EngineError, EngineUnavailable, NoSpeech, available_engines, create_engine
from edge_node.settings import NodeSettings, default_node_id
from protocol.cli import add_common_args, broker_from_args, env_default, say, setup_logging
from protocol.topics import Topics

_LOGGER = logging.getLogger("edge_node")


def _engine_args(parser: argparse.ArgumentParser) -> None:
    # the test engines (chaos) are choices only with EDGESCRIBE_TEST_ENGINES=1, so --help stays clean
    parser.add_argument(
        "--engine", default=env_default("--engine", DEFAULT_ENGINE), choices=available_engines(),
        help="whisper (the default: faster-whisper, model tiny.en), sphinx (PocketSphinx: far less accurate, "
        "lighter on memory; for 32-bit ARM and small boards), vosk (offline, a local model directory) or google (online: the "
        "audio is sent to Google); docs/operations.md says which suits which device",
    )
    parser.add_argument(
        "--model", default=env_default("--model", ""),
        help="model name or local model directory (whisper: default tiny.en, found as docs/operations.md says; "
        "vosk: a directory only; google: an optional API key)",
    )
    parser.add_argument("--language", default=env_default("--language", "en-US"))


def serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_node", description="Run an edgescribe edge node.")
    add_common_args(parser, broker_required=True)
    parser.add_argument(
        "--node-id", action="append", dest="node_ids",
        help="this node's id (default: the host name); repeat it to host several nodes in this process, "
        "which then share one engine process and one loaded model when the engine allows it (whisper)",
    )
    _engine_args(parser)
    parser.add_argument("--concurrency", type=int, default=int(env_default("--concurrency", "1")))
    parser.add_argument("--keepalive", type=int, default=int(env_default("--keepalive", "5")), help="seconds")
    parser.add_argument(
        "--drain-timeout", type=float, default=float(env_default("--drain-timeout", "30")),
        help="on SIGTERM, seconds to finish chunks in hand before handing them back",
    )
    args = parser.parse_args(argv)
    engines = available_engines()
    if args.engine not in engines:  # a default from EDGESCRIBE_ENGINE skips argparse's choices check
        parser.error(f"unknown engine {args.engine!r}; choose one of: {', '.join(engines)}")
    node_ids = args.node_ids or [env_default("--node-id") or default_node_id()]
    if len(set(node_ids)) != len(node_ids):
        parser.error(f"a node id is given twice: {' '.join(node_ids)}")
    setup_logging(args.log_level)
    try:
        broker = broker_from_args(args)
        all_settings = [
            NodeSettings(
                broker=broker,
                node_id=node_id,
                topics=Topics(args.prefix),
                engine=args.engine,
                model=args.model,
                language=args.language,
                concurrency=args.concurrency,
                keepalive_s=args.keepalive,
                drain_s=args.drain_timeout,
            )
            for node_id in node_ids
        ]
    except ValueError as exc:
        say(f"edge_node: {exc}")
        return 2

    from edge_node.node import EdgeNode  # after argument checks: keeps --help fast
    from edge_node.runner import EngineSpec, EngineStartError, make_engines

    # every worker of every hosted node: one shared engine process when the engine allows it
    workers = args.concurrency
    engines = make_engines(EngineSpec(args.engine, args.model, args.language), len(node_ids) * workers)
    nodes = [EdgeNode(s, engines[i * workers:(i + 1) * workers]) for i, s in enumerate(all_settings)]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    for i, node in enumerate(nodes):
        try:
            node.start()
        except EngineStartError as exc:
            say(f"edge_node: {exc}")
            _stop_all(nodes[:i])
            for engine in engines:
                engine.close()
            return 2
    while not stop.wait(3600):
        pass
    _LOGGER.info("stopping: no new chunks; finishing the ones in hand")
    _stop_all(nodes)
    return 0


def _stop_all(nodes: list) -> None:
    """Stop the hosted nodes at once (each drains its chunks in hand), in a thread each; bounded."""
    threads = [threading.Thread(target=n.stop, name=f"stop-{n.settings.node_id}", daemon=True) for n in nodes]
    for thread in threads:
        thread.start()
    for thread, node in zip(threads, nodes):
        thread.join(node.settings.drain_s + 30)  # drain, then hand back, go offline and disconnect


def transcribe(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_node transcribe",
        description="Transcribe one file here, whole, with the same engine a node uses (the one-machine baseline).",
    )
    parser.add_argument("file", type=Path)
    _engine_args(parser)
    parser.add_argument("--log-level", default="WARNING", type=str.upper)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    from edge_node.audiofile import AudioFileError, read_audio_file

    try:
        engine = create_engine(args.engine, args.model, args.language)
        audio = read_audio_file(args.file)
    except (EngineUnavailable, AudioFileError) as exc:
        say(f"edge_node: {exc}")
        return 2
    from edge_node import speech

    try:
        if not speech.hear(audio.get_raw_data(), audio.sample_rate, audio.sample_width).speech:
            raise NoSpeech()  # as a node answers: the engine would hear words in silence or hum
        text = engine.transcribe(audio)
    except NoSpeech:
        text = ""
    except EngineError as exc:
        say(f"edge_node: {exc}")
        return 1
    if not text:
        say("edge_node: no speech heard")
        return 0
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["transcribe"]:
        return transcribe(argv[1:])
    return serve(argv)


if __name__ == "__main__":
    sys.exit(main())
