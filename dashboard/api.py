"""The JSON API under /api and the event stream (docs/api.md has every route, body and error).

Uploads are decoded in the request's own thread (the server runs one thread per request), so
several may be decoded at once; ``Hub.submit`` then takes the audio. Each client address may start
``upload_rate`` uploads a minute (refused ones count too: decoding them costs the same); past that
it gets 429 without its body being decoded.

A live recording (``/api/live``) is a stream job that grows while the browser sends PCM blocks;
:mod:`dashboard.live` does the work, in the request's thread. Starting one counts as an upload; its
blocks do not. Who may call these routes at all is :mod:`dashboard.auth`'s
business.

The store keeps the audio of the jobs made here (uploads and live recordings, ``keep_audio``) until
they are deleted, and ``GET /api/jobs/<id>/audio`` serves it, with range requests, for the page's
player.
"""

from __future__ import annotations

import io
import logging
import re
import tempfile
import time
from pathlib import Path

from flask import Blueprint, Response, abort, jsonify, request, send_file, url_for
from flask.typing import ResponseReturnValue

from dashboard import payloads
from dashboard.app import Dashboard, current
from dashboard.auth import client_address, too_many
from dashboard.events import stream
from dashboard.live import BYTES_PER_S, MAX_BLOCK_BYTES, DurationLimit, Ended, Gap, LiveSession
from hub.audio import AudioError, TooLong, load_recording
from hub.jobs import Job
from hub.service import JobRunning
from hub.transcript import render

_LOGGER = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api")

#: ?format= -> (hub.transcript format, mimetype)
DOWNLOADS = {
    "txt": ("text", "text/plain"),
    "json": ("json", "application/json"),
    "srt": ("srt", "application/x-subrip"),
    "vtt": ("vtt", "text/vtt"),
}
_NAME_CHARS = 200


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify(error=message), status


def _no_job(job_id: str) -> tuple[Response, int]:
    return _error(404, f"no job {job_id}")


_JOB_ID = re.compile(r"[0-9a-f]{16}")  #: as the hub makes them (hub.service: 16 hex digits of a uuid4)


@bp.url_value_preprocessor
def _refuse_malformed_job_ids(endpoint: str | None, values: dict | None) -> None:
    """A job id that the hub cannot have made (a NUL byte, a dot, any length) is a 404 before it reaches
    the store, whose file names are made from job ids."""
    job_id = (values or {}).get("job_id")
    if job_id is not None and not _JOB_ID.fullmatch(job_id):
        abort(404, description="no such job")


def _job_or_404(job_id: str) -> Job:
    """The job as it is now; a 404 (JSON, by the app's handler) if there is none."""
    found = current().hub.job(job_id)
    if found is None:
        abort(404, description=f"no job {job_id}")
    return found


def _clean_name(name: str) -> str:
    """A file or job name as a user gave it, without directories or control characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in name if ch.isprintable()).strip()[:_NAME_CHARS]


def _discard_body() -> None:
    """Read the request's body into nothing: a browser still sending it when the server closes
    the connection may see the reset, not the answer. The size limit (413) still holds."""
    while request.stream.read(1 << 20):
        pass


def _over_upload_rate(dash: Dashboard) -> ResponseReturnValue | None:
    """Count an upload (or a live recording's start) for the client; 429 if it is over its rate."""
    wait = dash.uploads.take(client_address())
    if not wait:
        return None
    _discard_body()
    return too_many(wait, "uploads")


@bp.post("/jobs")
def create_job() -> ResponseReturnValue:
    dash = current()
    if (refused := _over_upload_rate(dash)) is not None:
        return refused
    upload = request.files.get("audio")  # over MAX_CONTENT_LENGTH: 413, answered by the app's handler
    if upload is None:
        return _error(400, "no file in the form field 'audio'")
    filename = _clean_name(upload.filename or "")
    name = _clean_name(request.form.get("name", "")) or filename or "recording"
    with tempfile.TemporaryDirectory(prefix="edgescribe-upload-") as tmp:
        path = Path(tmp) / "upload"
        upload.save(path)
        upload.close()
        try:
            audio = load_recording(path, max_duration_s=dash.settings.max_duration_s, name=filename or name)
        except TooLong as exc:
            return _error(422, str(exc))
        except AudioError as exc:
            return _error(400, str(exc))
        except OSError as exc:  # ffmpeg or ffprobe missing: the server's fault, not the upload's
            _LOGGER.error("cannot decode uploads: %s", exc)
            return _error(500, f"cannot run {exc.filename or 'ffmpeg'} on the server: {exc.strerror}")
    job = dash.hub.submit(audio, name, keep_audio=True)  # kept to be played back on the job's page
    return jsonify(id=job.id), 201, {"Location": url_for(".job", job_id=job.id)}


@bp.post("/live")
def start_live() -> ResponseReturnValue:
    """A live recording: a stream job that grows while the browser sends its audio."""
    dash = current()
    if (refused := _over_upload_rate(dash)) is not None:  # a session counts as one upload; its blocks do not
        return refused
    body = request.get_json(silent=True) if request.content_length else None
    given = body.get("name") if isinstance(body, dict) else None
    name = _clean_name(given) if isinstance(given, str) else ""
    try:
        session = dash.live.open(name or time.strftime("Recording %Y-%m-%d %H:%M"))
    except ValueError as exc:  # the VAD's package is missing
        _LOGGER.error("cannot start a live recording: %s", exc)
        return _error(500, f"live recording is unavailable on the server: {exc}")
    job_id = session.job.id
    return jsonify(id=job_id), 201, {"Location": url_for(".job", job_id=job_id)}


def _live_session(dash: Dashboard, job_id: str) -> LiveSession:
    """The live session, open or recently ended; a 404 (JSON, by the app's handler) if there is none."""
    session = dash.live.get(job_id)
    if session is None:
        abort(404, description=f"no live recording {job_id}")
    return session


@bp.post("/live/<job_id>/audio")
def live_audio(job_id: str) -> ResponseReturnValue:
    dash = current()
    session = _live_session(dash, job_id)
    offset = request.args.get("offset", "")
    if not offset.isdigit() or int(offset) % 2:
        return _error(400, "?offset= must be the block's byte offset in the recording: an even whole number")
    too_large = f"a block is at most {MAX_BLOCK_BYTES} bytes ({MAX_BLOCK_BYTES // BYTES_PER_S} s of audio)"
    if (request.content_length or 0) > MAX_BLOCK_BYTES:
        _discard_body()
        return _error(413, too_large)
    pcm = request.get_data(cache=False)  # without a length (chunked): at most MAX_CONTENT_LENGTH
    if len(pcm) > MAX_BLOCK_BYTES:
        return _error(413, too_large)
    if len(pcm) % 2:
        return _error(400, f"a block is 16-bit samples: an even number of bytes, not {len(pcm)}")
    try:
        session.add(int(offset), pcm, dash.live.clock())
    except Gap as exc:
        return jsonify(error=str(exc), expected=exc.expected), 409
    except DurationLimit as exc:
        dash.live.touched()
        return _error(422, str(exc))
    except Ended as exc:
        dash.live.touched()
        return _error(410, str(exc))
    return "", 204


@bp.post("/live/<job_id>/end")
def end_live(job_id: str) -> ResponseReturnValue:
    """Send the utterance in progress and close the stream; the job finishes when its chunks do."""
    dash = current()
    session = _live_session(dash, job_id)
    session.end("the browser ended it")
    dash.live.touched()
    return jsonify(id=job_id, seconds=round(session.received / BYTES_PER_S, 3))


@bp.get("/jobs")
def jobs() -> ResponseReturnValue:
    return jsonify(jobs=[payloads.summary_of_row(row) for row in current().hub.summaries()])


@bp.get("/jobs/<job_id>")
def job(job_id: str) -> ResponseReturnValue:
    body = payloads.detail(_job_or_404(job_id))
    body["audio"] = current().hub.audio_file(job_id) is not None  # GET .../audio plays it
    return jsonify(body)


@bp.get("/jobs/<job_id>/audio")
def audio(job_id: str) -> ResponseReturnValue:
    """The job's audio as the store keeps it (16 kHz mono WAV), with range requests for seeking."""
    hub = current().hub
    found = _job_or_404(job_id)
    for _ in range(2):  # the file moves from audio/ to kept/ as the job finishes: look again once
        path = hub.audio_file(job_id)
        if path is None:
            break
        try:
            return send_file(path, mimetype="audio/wav", conditional=True, max_age=0,
                             download_name=f"{Path(found.name).stem or 'recording'}.wav")
        except FileNotFoundError:
            continue
    return _error(404, f"no audio kept for job {job_id}")


@bp.get("/jobs/<job_id>/transcript")
def transcript(job_id: str) -> ResponseReturnValue:
    ext = request.args.get("format", "txt")
    if ext not in DOWNLOADS:
        return _error(400, f"unknown format {ext!r}; choose one of {', '.join(DOWNLOADS)}")
    found = _job_or_404(job_id)
    fmt, mimetype = DOWNLOADS[ext]
    body = render(found, fmt)
    if not body.endswith("\n"):
        body += "\n"
    stem = Path(found.name).stem or "transcript"
    return send_file(io.BytesIO(body.encode("utf-8")), mimetype=mimetype, as_attachment=True,
                     download_name=f"{stem}.{ext}", max_age=0)


@bp.delete("/jobs/<job_id>")
def delete_job(job_id: str) -> ResponseReturnValue:
    try:
        deleted = current().hub.delete(job_id)
    except JobRunning as exc:
        return _error(409, str(exc))
    if not deleted:
        return _no_job(job_id)
    current().events.job_deleted(job_id)
    return "", 204


@bp.get("/nodes")
def nodes() -> ResponseReturnValue:
    return jsonify(nodes=payloads.nodes(current().hub))


@bp.get("/events")
def events() -> Response:
    dash = current()
    return Response(
        stream(dash.events, dash.settings.heartbeat_s),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
