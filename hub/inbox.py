"""A hot folder for a long-running hub (``python -m hub serve``).

    <store>/inbox/   drop recordings here (write to a name starting with "." and rename when complete)
    <store>/done/    <name>.txt and <name>.json for each finished job, written atomically
    <store>/failed/  <name>.txt with the one-line reason a file was refused (not audio, too long, ...)

A file is taken in three steps: decoded, kept as a job in the store, then removed
from the inbox. A crash between the last two leaves the file in the inbox; on the
next scan its name and digest match the stored job and it is only removed, never
transcribed twice. (The same bytes under another name are a new job.) Outputs
are written for finished jobs whose outputs are missing when the hub starts
(:meth:`Inbox.export_missing`, before the hub resumes its jobs), and by a job
listener as jobs finish; one lock serialises the writers.

The folder is scanned every ``interval_s`` (a timer, not a synchronisation: the
standard library has no file-system events).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

from hub.audio import AudioError, load_recording
from hub.jobs import Job
from hub.service import Hub
from hub.transcript import render

_LOGGER = logging.getLogger(__name__)


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it, so that a reader never sees half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Inbox:
    def __init__(self, hub: Hub, root: Path, max_duration_s: float, interval_s: float = 1.0) -> None:
        if hub.store is None:
            raise ValueError("the inbox needs a hub with a store")
        self._hub = hub
        self.inbox = root / "inbox"
        self.done = root / "done"
        self.failed = root / "failed"
        for folder in (self.inbox, self.done, self.failed):
            folder.mkdir(parents=True, exist_ok=True)
        self._max_duration_s = max_duration_s
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._export_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="hub-inbox", daemon=True)
        hub.add_listener(self._on_job)

    def export_missing(self) -> None:
        """Write the outputs of finished jobs that have none (call before the hub resumes its jobs)."""
        for summary in self._hub.store.summaries():
            job = self._hub.store.load(str(summary["id"]))
            if job is not None and job.is_finished:
                self._export(job, only_if_missing=True)

    def start(self) -> None:
        """Scan the inbox now and every ``interval_s`` (call after the hub started)."""
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def scan(self) -> int:
        """Take every complete file in the inbox; returns how many jobs were made."""
        made = 0
        for path in sorted(self.inbox.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            try:
                made += self._take(path)
            except OSError as exc:
                _LOGGER.error("inbox: cannot take %s: %s", path.name, exc)
        return made

    def _take(self, path: Path) -> int:
        digest = _digest(path)
        if self._hub.store.find(digest, path.name) is not None:
            _LOGGER.info("inbox: %s is already a job; removing it", path.name)
            path.unlink()
            return 0
        try:
            audio = load_recording(path, max_duration_s=self._max_duration_s)  # decoded to disk, not memory
        except AudioError as exc:
            _LOGGER.warning("inbox: refused %s: %s", path.name, exc)
            atomic_write(self.failed / f"{path.name}.txt", f"{exc}\n")
            path.unlink()
            return 0
        job = self._hub.submit(audio, path.name, digest=digest)
        path.unlink()
        _LOGGER.info("inbox: %s is job %s", path.name, job.id)
        return 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.scan()
            self._stop.wait(self._interval_s)

    def _on_job(self, job: Job) -> None:
        if job.is_finished:
            self._export(job)

    def _output(self, job: Job, suffix: str) -> Path:
        return self.done / f"{job.name}{suffix}"

    def _export(self, job: Job, only_if_missing: bool = False) -> None:
        with self._export_lock:
            if only_if_missing and self._output(job, ".json").exists():
                return
            atomic_write(self._output(job, ".txt"), render(job, "text") + "\n")
            atomic_write(self._output(job, ".json"), render(job, "json") + "\n")  # last: marks it written
        _LOGGER.info("job %s (%s) %s: wrote %s", job.id, job.name, job.state.value, self._output(job, ".txt"))
