"""``python -m edge_node``: run a node, or transcribe one file locally.

    python -m edge_node --broker mqtt://HOST:PORT [--node-id ID] [--engine whisper] [--model M] [--concurrency N]
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
    parser.add_argument("--node-id", default=env_default("--node-id") or default_node_id())
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
    setup_logging(args.log_level)
    try:
        settings = NodeSettings(
            broker=broker_from_args(args),
            node_id=args.node_id,
            topics=Topics(args.prefix),
            engine=args.engine,
            model=args.model,
            language=args.language,
            concurrency=args.concurrency,
            keepalive_s=args.keepalive,
            drain_s=args.drain_timeout,
        )
    except ValueError as exc:
        say(f"edge_node: {exc}")
        return 2

    from edge_node.node import EdgeNode  # after argument checks: keeps --help fast
    from edge_node.runner import EngineStartError

    node = EdgeNode(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        node.start()
    except EngineStartError as exc:
        say(f"edge_node: {exc}")
        return 2
    while not stop.wait(3600):
        pass
    _LOGGER.info("stopping: no new chunks; finishing the ones in hand")
    node.stop()
    return 0


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
