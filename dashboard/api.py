"""The JSON API under /api and the event stream (docs/api.md has every route, body and error).

Uploads are decoded in the request's own thread (the server runs one thread per request), so
several may be decoded at once; ``Hub.submit`` then takes the audio. Each client address may start
``upload_rate`` uploads a minute (refused ones count too: decoding them costs the same); past that
it gets 429 without its body being decoded. Who may call these routes at all is :mod:`dashboard.auth`'s
business.
"""

from __future__ import annotations

import io
import logging
import tempfile
from pathlib import Path

from flask import Blueprint, Response, jsonify, request, send_file, url_for
from flask.typing import ResponseReturnValue

from dashboard import payloads
from dashboard.app import current
from dashboard.auth import client_address, too_many
from dashboard.events import stream
from hub.audio import AudioError, TooLong, load_recording
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


def _clean_name(name: str) -> str:
    """A file or job name as a user gave it, without directories or control characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(ch for ch in name if ch.isprintable()).strip()[:_NAME_CHARS]


def _discard_body() -> None:
    """Read the request's body into nothing: a browser still sending it when the server closes
    the connection may see the reset, not the answer. The size limit (413) still holds."""
    while request.stream.read(1 << 20):
        pass


@bp.post("/jobs")
def create_job() -> ResponseReturnValue:
    dash = current()
    wait = dash.uploads.take(client_address())
    if wait:
        _discard_body()
        return too_many(wait, "uploads")
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
    job = dash.hub.submit(audio, name)
    return jsonify(id=job.id), 201, {"Location": url_for(".job", job_id=job.id)}


@bp.get("/jobs")
def jobs() -> ResponseReturnValue:
    return jsonify(jobs=[payloads.summary_of_row(row) for row in current().hub.summaries()])


@bp.get("/jobs/<job_id>")
def job(job_id: str) -> ResponseReturnValue:
    found = current().hub.job(job_id)
    if found is None:
        return _no_job(job_id)
    return jsonify(payloads.detail(found))


@bp.get("/jobs/<job_id>/transcript")
def transcript(job_id: str) -> ResponseReturnValue:
    ext = request.args.get("format", "txt")
    if ext not in DOWNLOADS:
        return _error(400, f"unknown format {ext!r}; choose one of {', '.join(DOWNLOADS)}")
    found = current().hub.job(job_id)
    if found is None:
        return _no_job(job_id)
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
