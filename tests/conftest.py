"""Shared fixtures: private Mosquitto brokers and the test speech corpus."""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Make the repository's packages (hub, protocol, edge_node) importable however pytest is started
# (`.venv/bin/pytest` puts only tests/ on sys.path).
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hub.broker import LocalBroker  # noqa: E402

DATA = Path(__file__).parent / "data"
MANIFEST = DATA / "manifest.tsv"
INTERNET_ENV = "EDGESCRIBE_TEST_INTERNET"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``internet`` (pyproject.toml) run only when asked for: EDGESCRIBE_TEST_INTERNET=1 or -m internet."""
    if os.environ.get(INTERNET_ENV) == "1" or "internet" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason=f"reaches the internet: set {INTERNET_ENV}=1 (or -m internet) to run it")
    for item in items:
        if "internet" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """One Mosquitto for the whole session, on a free loopback port. Do not stop or kill it."""
    local = LocalBroker(tmp_path_factory.mktemp("broker"))
    local.start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A Mosquitto of this test's own, which the test may stop, kill and start again."""
    local = LocalBroker(tmp_path / "broker")
    local.start()
    try:
        yield local
    finally:
        local.stop()


def load_corpus(manifest: Path = MANIFEST) -> dict[str, tuple[Path, str]]:
    """Read a manifest (file, duration_s, source, license, reference) into stem -> (wav path, reference)."""
    corpus: dict[str, tuple[Path, str]] = {}
    with manifest.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            path = manifest.parent / row["file"]
            corpus[path.stem] = (path, row["reference"])
    return corpus


@pytest.fixture(scope="session")
def corpus() -> dict[str, tuple[Path, str]]:
    """Test clips by file stem (e.g. "jfk") -> (path of the 16 kHz mono WAV, reference transcript)."""
    clips = load_corpus()
    missing = [str(path) for path, _ in clips.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"clips listed in {MANIFEST} are missing: {', '.join(missing)}")
    return clips
