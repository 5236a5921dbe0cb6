"""Engine factory: pick a backend by name; a bad choice fails at start-up with one line."""

from __future__ import annotations

from edge_node.engines.base import Engine, EngineUnavailable, NoSpeech

ENGINES = ("sphinx",)
DEFAULT_ENGINE = "sphinx"

__all__ = ["ENGINES", "DEFAULT_ENGINE", "Engine", "EngineUnavailable", "NoSpeech", "create_engine"]


def create_engine(name: str, model: str = "", language: str = "en-US") -> Engine:
    """Load engine ``name``; raise :class:`EngineUnavailable` with a one-line reason."""
    if name == "sphinx":
        from edge_node.engines.sphinx import SphinxEngine

        return SphinxEngine(model, language)
    raise EngineUnavailable(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
