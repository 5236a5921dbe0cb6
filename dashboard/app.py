"""The dashboard's Flask application: ``create_app(settings, hub)``.

Everything the request handlers share (the settings, the hub, the event fan-out, the rate limits)
lives in one :class:`Dashboard` in ``app.extensions``; this package keeps no module-level state.
With a login token in the settings, every request but the login page and the static files needs a
login (:mod:`dashboard.auth`). The hub must have a store: the history is read from it. ``create_app``
starts the ``dashboard-events`` and ``dashboard-live-sweep`` threads; :func:`close_app` ends the live recordings, stops both and ends every event stream (before
the hub stops).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

from dashboard.events import EventFanout
from dashboard.live import LiveSessions, LiveSettings, live_vad
from dashboard.ratelimit import RateLimit
from dashboard.settings import DashboardSettings
from hub.service import Hub

_LOGGER = logging.getLogger(__name__)
EXTENSION = "edgescribe"


@dataclass(frozen=True)
class Dashboard:
    settings: DashboardSettings
    hub: Hub
    events: EventFanout
    uploads: RateLimit  #: uploads per client address
    logins: RateLimit  #: failed logins per client address
    live: LiveSessions  #: the browser recordings streaming now


def current() -> Dashboard:
    """The dashboard of the app handling the current request."""
    return current_app.extensions[EXTENSION]


def create_app(settings: DashboardSettings, hub: Hub, clock: Callable[[], float] = time.monotonic) -> Flask:
    """The app; ``clock`` drives the rate limits and the live recordings' idle limit (tests pass one they
    move by hand)."""
    if hub.store is None:
        raise ValueError("the dashboard needs a hub with a store (HubSettings.store_dir): its history lives there")
    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the documented field order
    events = EventFanout(hub, settings.client_queue)
    app.extensions[EXTENSION] = Dashboard(
        settings, hub, events,
        uploads=RateLimit(settings.upload_rate, clock=clock),
        logins=RateLimit(settings.login_attempts, clock=clock),
        live=LiveSessions(hub, LiveSettings(settings.max_duration_s, settings.live_idle_s,
                                            live_vad(hub.settings.chunking)), clock=clock),
    )

    from dashboard import api, auth, pages  # the blueprints reach the dashboard through current()

    secret = settings.session_secret.encode() if settings.session_secret else secrets.token_bytes(32)
    auth.setup(app, secret, settings.session_days)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    app.register_error_handler(HTTPException, _http_error)
    events.start()
    app.extensions[EXTENSION].live.start()
    return app


def close_app(app: Flask) -> None:
    """End the live recordings (their streams closed), stop the event thread and end the event streams;
    the hub is the caller's to stop."""
    dash = app.extensions[EXTENSION]
    dash.live.close()
    dash.events.stop()


def _http_error(exc: HTTPException) -> ResponseReturnValue:
    """Errors under /api/ are JSON ``{"error": "..."}``, with the error's headers; pages keep Flask's HTML."""
    if not request.path.startswith("/api/"):
        return exc
    message = exc.description or exc.name
    if isinstance(exc, RequestEntityTooLarge):
        message = f"the upload is larger than the {current().settings.max_upload_mb:g} MB limit"
    elif isinstance(exc, InternalServerError):
        message = "internal error; the dashboard's log has the details"
    # the error's own headers stay: Content-Range of a 416, Allow of a 405
    headers = [(name, value) for name, value in exc.get_headers() if name.lower() != "content-type"]
    return jsonify(error=message), exc.code or 500, headers
