"""The hub's durable store: jobs, chunk states and results in SQLite, audio as WAV files.

Layout of a store directory::

    hub.sqlite3     jobs, chunks (state, attempts, result), the hub's own id
    audio/<id>.wav  the recording of each unfinished job (16 kHz mono 16-bit); for a stream, its
                    session audio as it arrives, silent between utterances
    kept/<id>.wav   the same file, moved here when the job finishes, for a job made with
                    ``keep_audio`` (the dashboard's, to play back); deleted with the job. Other jobs'
                    audio is deleted when they finish.
    hub.lock        held (flock) by the one hub process using the store

Every change of a job is written before the hub acknowledges the MQTT message
that caused it (paho acknowledges a QoS 1 message after its callback returns),
so a result is either in the store or still queued at the broker for the hub's
persistent session. SQLite runs in WAL mode with ``synchronous=FULL``.
The hub calls the store under its own lock: one connection, one writer. A save writes only the
chunk rows that changed since the job's last save, so a result costs the same on a job of 10 chunks
as on one of 1000 (rewriting every row made a 2-hour job's last results take 90 ms each).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import struct
import uuid
from pathlib import Path

from hub.audio import SAMPLE_RATE, wav_bytes, write_wav_at
from hub.chunking import ChunkSpec
from hub.jobs import ChunkState, ChunkWork, Job, JobState
from hub.recording import Recording
from protocol.errors import ProtocolError
from protocol.messages import Result

_LOGGER = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    created REAL NOT NULL,
    state TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    digest TEXT NOT NULL DEFAULT '',
    open INTEGER NOT NULL DEFAULT 0,
    keep_audio INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS chunks (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    lead_ms INTEGER NOT NULL DEFAULT 0,
    tail_ms INTEGER NOT NULL DEFAULT 0,
    context_ms INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    node_id TEXT,
    attempt INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    rejections INTEGER NOT NULL,
    tried TEXT NOT NULL,
    result BLOB,
    reason TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX IF NOT EXISTS jobs_by_digest ON jobs(digest);
"""
_FINISHED = tuple(s.value for s in (JobState.DONE, JobState.PARTIAL, JobState.FAILED))


def _row_key(c: ChunkWork) -> tuple[object, ...]:
    """What a chunk's row is made of, cheap to compare: ``tried`` only grows, results are immutable."""
    return (c.spec, c.state, c.node_id, c.attempt, c.failures, c.rejections, len(c.tried), c.result, c.reason)


class StoreError(RuntimeError):
    """The store cannot be used (locked by another hub, unreadable); the message is one line."""


class JobStore:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.audio_dir = self.directory / "audio"
        self.audio_dir.mkdir(parents=True, exist_ok=True)
        self.kept_dir = self.directory / "kept"  #: finished jobs' audio, kept to be played back
        self._lock_file = open(self.directory / "hub.lock", "a+")  # noqa: SIM115 - held for the store's life
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.seek(0)
            owner = self._lock_file.read().strip() or "?"
            self._lock_file.close()
            raise StoreError(
                f"store {self.directory} is in use by another hub (pid {owner}); give another --store DIR"
            ) from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(str(os.getpid()))
        self._lock_file.flush()
        try:
            self._db = sqlite3.connect(self.directory / "hub.sqlite3", check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._upgrade()
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.directory}: {exc}") from None
        #: per unfinished job, the key of each chunk row as last written (see :func:`_row_key`)
        self._written: dict[str, dict[int, tuple[object, ...]]] = {}

    def _upgrade(self) -> None:
        """Bring a store written by an earlier version up to this schema (columns added since)."""
        for table, columns in (("chunks", ("lead_ms", "tail_ms", "context_ms")), ("jobs", ("open", "keep_audio"))):
            have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for column in columns:
                if column not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        self._db.close()
        self._lock_file.close()

    # -- identity -------------------------------------------------------------------
    def hub_id(self) -> str:
        """This store's hub id, made once: the hub's MQTT client id and result topic across restarts."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'hub_id'").fetchone()
        if row:
            return row[0]
        hub_id = f"hub-{uuid.uuid4().hex[:10]}"
        self._db.execute("INSERT INTO meta (key, value) VALUES ('hub_id', ?)", (hub_id,))
        return hub_id

    # -- writing ------------------------------------------------------------------------
    def save_audio(self, job: Job) -> None:
        """Write a new job's audio (whole, then renamed). Touches no table: safe outside the hub's lock.

        A :class:`~hub.recording.Recording` is copied a block at a time, never held whole in memory.
        """
        assert job.audio is not None
        path = self._audio_path(job.id)
        tmp = path.with_suffix(".tmp")
        if isinstance(job.audio, Recording):
            job.audio.write_wav(tmp)
        else:
            tmp.write_bytes(wav_bytes(job.audio))
        os.replace(tmp, path)

    def append_audio(self, job_id: str, start_ms: int, pcm: bytes) -> None:
        """Write a stream's audio from ``start_ms`` on into its file, synced (see :func:`hub.audio.write_wav_at`).

        Touches no table: safe outside the hub's lock. An empty ``pcm`` makes the (empty) file.
        """
        write_wav_at(self._audio_path(job_id), start_ms * SAMPLE_RATE // 1000, pcm)

    def add(self, job: Job, digest: str = "", keep_audio: bool = False) -> None:
        """Keep a new job's rows; :meth:`save_audio` (or :meth:`append_audio`) must have written its audio first.

        With ``keep_audio`` its audio is kept when it finishes (see :meth:`audio_file`), else deleted.
        """
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO jobs (id, name, language, created, state, error, digest, open, keep_audio)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job.id, job.name, job.language, job.created, job.state.value, job.error, digest, int(job.open),
                 int(keep_audio)),
            )
            written = self._write_chunks(job)
        self._written[job.id] = written

    def save(self, job: Job) -> None:
        """Write a job's state and every chunk that changed since; once it is finished, drop its audio
        (or move it to ``kept/`` if the job keeps it)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "UPDATE jobs SET state = ?, error = ?, open = ? WHERE id = ?",
                (job.state.value, job.error, int(job.open), job.id),
            )
            written = self._write_chunks(job)
        self._written.setdefault(job.id, {}).update(written)  # only once the transaction is committed
        if job.is_finished:
            self._written.pop(job.id, None)
            self._finish_audio(job.id)

    def delete(self, job_id: str) -> bool:
        """Remove a job, its chunks and its audio. False if there was no such job."""
        with self._db:
            deleted = self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount
        self._written.pop(job_id, None)
        self._audio_path(job_id).unlink(missing_ok=True)
        self._kept_path(job_id).unlink(missing_ok=True)
        return deleted > 0

    # -- a finished job's audio -------------------------------------------------------------
    def _finish_audio(self, job_id: str) -> None:
        """A finished job's audio: moved to ``kept/`` if the job keeps it, else deleted."""
        working = self._audio_path(job_id)
        if not working.exists():  # already moved or deleted (a save after the job finished)
            return
        row = self._db.execute("SELECT keep_audio FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row and row[0]:
            self.kept_dir.mkdir(exist_ok=True)
            os.replace(working, self._kept_path(job_id))
        else:
            working.unlink(missing_ok=True)

    def audio_file(self, job_id: str) -> Path | None:
        """The WAV (16 kHz mono 16-bit) of a job's audio: a finished job's kept one, else an unfinished
        job's working one (a stream's still growing); None if the store holds neither.

        Touches no table: safe outside the hub's lock. The file may move from ``audio/`` to ``kept/``
        as the job finishes: a reader that finds it gone asks again.
        """
        for path in (self._kept_path(job_id), self._audio_path(job_id)):
            if path.is_file():
                return path
        return None

    def _write_chunks(self, job: Job) -> dict[int, tuple[object, ...]]:
        """Write the chunk rows that differ from their last written state; return their new keys."""
        before = self._written.get(job.id, {})
        changed = [(c, key) for c in job.chunks if before.get(c.seq) != (key := _row_key(c))]
        self._db.executemany(
            "INSERT OR REPLACE INTO chunks (job_id, seq, start_ms, end_ms, lead_ms, tail_ms, context_ms, state, node_id,"
            " attempt, failures, rejections, tried, result, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    job.id, c.seq, c.spec.start_ms, c.spec.end_ms, c.spec.lead_ms, c.spec.tail_ms, c.spec.context_ms, c.state.value,
                    c.node_id, c.attempt, c.failures,
                    c.rejections, json.dumps(sorted(c.tried)), c.result.encode() if c.result else None, c.reason,
                )
                for c, _ in changed
            ],
        )
        return {c.seq: key for c, key in changed}

    # -- reading ------------------------------------------------------------------------
    def unfinished(self) -> list[Job]:
        """Every job not yet finished, with its audio, oldest first."""
        rows = self._db.execute(
            f"SELECT id FROM jobs WHERE state NOT IN ({','.join('?' * len(_FINISHED))}) ORDER BY created", _FINISHED
        ).fetchall()
        jobs = []
        for (job_id,) in rows:
            job = self.load(job_id, with_audio=True)
            if job is not None:
                jobs.append(job)
        return jobs

    def load(self, job_id: str, with_audio: bool = False) -> Job | None:
        row = self._db.execute(
            "SELECT id, name, language, created, state, error, open FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None:
            return None
        audio = None
        if with_audio:
            path = self._audio_path(job_id)
            try:
                audio = Recording.open_wav(path)  # read by range when chunks are sent, never whole
            except (OSError, ValueError, struct.error) as exc:
                _LOGGER.error("job %s: its audio %s is unreadable (%s); marking it failed", job_id, path, exc)
                self._db.execute(
                    "UPDATE jobs SET state = ?, error = ? WHERE id = ?",
                    (JobState.FAILED.value, f"audio lost from the store: {exc}", job_id),
                )
                return None
        job = Job(
            id=row[0], name=row[1], audio=audio, chunks=self._chunks(job_id), language=row[2], created=row[3],
            state=JobState(row[4]), error=row[5], open=bool(row[6]),
        )
        if job.is_finished:
            job.finished.set()
        return job

    def _chunks(self, job_id: str) -> list[ChunkWork]:
        chunks = []
        for seq, start, end, lead, tail, context, state, node, attempt, failures, rejections, tried, result, reason in self._db.execute(
            "SELECT seq, start_ms, end_ms, lead_ms, tail_ms, context_ms, state, node_id, attempt, failures, rejections, tried,"
            " result, reason"
            " FROM chunks WHERE job_id = ? ORDER BY seq",
            (job_id,),
        ):
            try:
                decoded = Result.decode(result) if result else None
            except ProtocolError as exc:  # written by an older version, or damaged
                _LOGGER.error("job %s chunk %d: stored result unreadable (%s); it will be done again", job_id, seq, exc)
                decoded, state = None, ChunkState.QUEUED.value
            chunks.append(
                ChunkWork(
                    seq=seq, spec=ChunkSpec(start, end, lead, tail, context), state=ChunkState(state), node_id=node, attempt=attempt,
                    failures=failures, rejections=rejections, tried=set(json.loads(tried)), result=decoded,
                    reason=reason,
                )
            )
        return chunks

    def find(self, digest: str, name: str) -> str | None:
        """The id of a job made from the same source bytes under the same name, if any."""
        row = self._db.execute(
            "SELECT id FROM jobs WHERE digest = ? AND name = ? ORDER BY created DESC", (digest, name)
        ).fetchone()
        return row[0] if row else None

    def summaries(self) -> list[dict[str, object]]:
        """Every job, newest first: id, name, state, created, error, duration_s and its chunks done, failed, total."""
        rows = self._db.execute(
            "SELECT j.id, j.name, j.state, j.created, j.error, COALESCE(MAX(c.end_ms), 0) / 1000.0,"
            " COUNT(CASE WHEN c.state = ? THEN 1 END), COUNT(CASE WHEN c.state = ? THEN 1 END), COUNT(c.seq)"
            " FROM jobs j LEFT JOIN chunks c ON c.job_id = j.id GROUP BY j.id ORDER BY j.created DESC",
            (ChunkState.DONE.value, ChunkState.FAILED.value),
        ).fetchall()
        keys = ("id", "name", "state", "created", "error", "duration_s", "done", "failed", "total")
        return [dict(zip(keys, r)) for r in rows]

    def _audio_path(self, job_id: str) -> Path:
        return self.audio_dir / f"{job_id}.wav"

    def _kept_path(self, job_id: str) -> Path:
        return self.kept_dir / f"{job_id}.wav"
