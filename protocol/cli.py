"""Command-line helpers shared by every program: flags with environment overrides.

A flag ``--some-thing`` that reads :func:`env_default` can also be set with
``EDGESCRIBE_SOME_THING``; an explicit flag wins over the environment, which
wins over the default. docs/operations.md lists which flags do.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from protocol.broker import BrokerAddress
from protocol.topics import DEFAULT_PREFIX

ENV_PREFIX = "EDGESCRIBE_"


def env_default(flag: str, default: str | None = None) -> str | None:
    """The environment's value for ``--flag`` (``EDGESCRIBE_FLAG``), or ``default``."""
    return os.environ.get(ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper(), default)


def add_common_args(parser: argparse.ArgumentParser, broker_required: bool, log_level: str = "INFO") -> None:
    """Add the flags every program shares: broker, its TLS files, topic prefix, log level."""
    broker = env_default("--broker")
    parser.add_argument(
        "--broker",
        default=broker,
        required=broker_required and broker is None,
        help="broker URL, mqtt://HOST[:PORT] or mqtts://USER:PASSWORD@HOST[:PORT] (env EDGESCRIBE_BROKER)",
    )
    parser.add_argument(
        "--ca-file", default=env_default("--ca-file"),
        help="with mqtts://: CA certificate that signed the broker's (default: the system's CAs)",
    )
    parser.add_argument("--cert-file", default=env_default("--cert-file"), help="with mqtts://: client certificate")
    parser.add_argument("--key-file", default=env_default("--key-file"), help="with mqtts://: client private key")
    parser.add_argument(
        "--prefix",
        default=env_default("--prefix", DEFAULT_PREFIX),
        help="topic prefix shared by the hub and its nodes (default %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default=env_default("--log-level", log_level),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
    )


def broker_from_args(args: argparse.Namespace, fallback: str | None = None) -> BrokerAddress:
    """The broker of :func:`add_common_args`' flags, with its TLS files (ValueError if invalid)."""
    url = args.broker or fallback
    if url is None:
        raise ValueError("no broker URL given")
    return BrokerAddress.parse(url).with_tls_files(args.ca_file, args.cert_file, args.key_file)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def say(line: str) -> None:
    """A line for the user on stderr, written in one call and flushed, so no log line from
    another thread lands inside it (``print`` writes the text and the newline separately)."""
    sys.stderr.write(f"{line}\n")
    sys.stderr.flush()
