"""Engine factory: pick a backend by name; a bad choice fails at start-up with one line."""

from __future__ import annotations

import os

from edge_node.engines.base import Engine, EngineError, EngineUnavailable, NoSpeech

ENGINES = ("sphinx", "whisper", "vosk", "google")
#: only with EDGESCRIBE_TEST_ENGINES=1 in the environment: fault injection (chaos) and a benchmark
#: engine that only sleeps (simulated)
TEST_ENGINES = ("chaos", "simulated")
TEST_ENGINES_ENV = "EDGESCRIBE_TEST_ENGINES"
#: Whisper tiny.en (edge_node.models finds the model); PocketSphinx stays for the smallest devices
DEFAULT_ENGINE = "whisper"
#: engines that decode a chunk's trailing context (audio after its own, see hub.chunking): Whisper reads
#: a 30 s window and hears each word better with what follows; the others have it cut off on the node
CONTEXT_ENGINES = frozenset({"whisper"})
#: engines whose one loaded copy may serve several workers at once (edge_node.runner.SharedEngine):
#: they release the GIL while decoding and take ``workers`` (CTranslate2 decodes that many in parallel
#: on one copy of the weights); PocketSphinx holds the GIL, so each of its workers has a process of its own
SHARED_ENGINES = frozenset({"whisper"})

__all__ = [
    "ENGINES",
    "TEST_ENGINES",
    "TEST_ENGINES_ENV",
    "DEFAULT_ENGINE",
    "CONTEXT_ENGINES",
    "SHARED_ENGINES",
    "Engine",
    "EngineError",
    "EngineUnavailable",
    "NoSpeech",
    "available_engines",
    "create_engine",
    "engines_for_tests_enabled",
    "runs_inline",
]


def engines_for_tests_enabled() -> bool:
    return os.environ.get(TEST_ENGINES_ENV) == "1"


def available_engines() -> tuple[str, ...]:
    """The engines this environment may select: :data:`ENGINES`, plus :data:`TEST_ENGINES` when enabled."""
    return ENGINES + TEST_ENGINES if engines_for_tests_enabled() else ENGINES


def runs_inline(name: str) -> bool:
    """Does engine ``name`` run in the node's worker thread rather than in a child process?

    Only the simulated engine does: it sleeps, so it cannot hold the GIL, crash or hang.
    """
    return name == "simulated" and engines_for_tests_enabled()


def create_engine(name: str, model: str = "", language: str = "en-US", workers: int = 1) -> Engine:
    """Load engine ``name``; raise :class:`EngineUnavailable` with a one-line reason.

    ``workers``: how many threads may call it at once; only the engines of :data:`SHARED_ENGINES` read it
    (the others are never shared, see :func:`edge_node.runner.make_engines`).
    """
    if name == "sphinx":
        from edge_node.engines.sphinx import SphinxEngine

        return SphinxEngine(model, language)
    if name == "whisper":
        from edge_node.engines.whisper import WhisperEngine

        return WhisperEngine(model, language, workers=workers)
    if name == "vosk":
        from edge_node.engines.vosk import VoskEngine

        return VoskEngine(model, language)
    if name == "google":
        from edge_node.engines.google import GoogleEngine

        return GoogleEngine(model, language)
    if name == "chaos":
        if not engines_for_tests_enabled():
            raise EngineUnavailable(f"engine chaos is for tests: set {TEST_ENGINES_ENV}=1")
        from edge_node.engines.chaos import ChaosEngine

        return ChaosEngine(model, language)
    if name == "simulated":
        if not engines_for_tests_enabled():
            raise EngineUnavailable(f"engine simulated is for benchmarks and tests: set {TEST_ENGINES_ENV}=1")
        from edge_node.engines.simulated import SimulatedEngine

        return SimulatedEngine(model, language)
    raise EngineUnavailable(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
