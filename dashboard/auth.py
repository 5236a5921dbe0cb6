"""Login and rate limits: who may use the dashboard, and how fast.

With a token in the settings, :func:`require_login` (the app's only ``before_request`` hook) lets
through only the endpoints in :data:`OPEN_ENDPOINTS` (the login page and the static files), a
signed session cookie made by POST /login, or ``Authorization: Bearer <token>``. Everything else is
refused: 401 JSON under /api/ (the event stream included), a redirect to /login for pages. Without a
token (allowed only on loopback, :class:`~dashboard.settings.DashboardSettings`) every request passes.

Failed logins and wrong bearer tokens count against the client's address
(:class:`~dashboard.ratelimit.RateLimit`): past ``login_attempts`` a minute it gets 429 until the
oldest failure is a minute old.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math

from flask import (
    Blueprint, Flask, Response, current_app, jsonify, redirect, render_template, request, session, url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask.typing import ResponseReturnValue

from dashboard.app import current

_LOGGER = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)

#: endpoints anyone may reach: they serve no audio, transcript or job
OPEN_ENDPOINTS = frozenset({"static", "auth.login_page", "auth.login", "auth.logout"})
_SESSION_KEY = "login"


def retry_header(wait_s: float) -> dict[str, str]:
    """``Retry-After`` in whole seconds, rounded up."""
    return {"Retry-After": str(max(1, math.ceil(wait_s)))}


def too_many(wait_s: float, what: str) -> tuple[Response, int, dict[str, str]]:
    """429 JSON for the API."""
    headers = retry_header(wait_s)
    return jsonify(error=f"too many {what}; try again in {headers['Retry-After']} s"), 429, headers


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, marked Secure when the request came over https (itself or via a proxy)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        # A client that claims https when it is not only gets a cookie its browser will not send back.
        return request.is_secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def setup(app: Flask, secret: bytes, session_days: float) -> None:
    """Session cookies: signed with ``secret``, HttpOnly, SameSite=Strict, lasting ``session_days``."""
    app.secret_key = secret
    app.session_interface = _SessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME="edgescribe_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=session_days * 86_400,
    )
    app.register_blueprint(bp)
    app.before_request(require_login)


def _token_mark(token: str) -> str:
    """What a session holds to prove a login: an HMAC of the token under the app's secret.

    The cookie is signed but readable, so it holds no token; a new token (or secret) ends every session.
    """
    return hmac.new(current_app.secret_key, token.encode(), hashlib.sha256).hexdigest()  # type: ignore[arg-type]


def _has_session(token: str) -> bool:
    mark = session.get(_SESSION_KEY)
    return isinstance(mark, str) and hmac.compare_digest(mark, _token_mark(token))


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def client_address() -> str:
    """The key of the rate limits: the peer's address (behind a reverse proxy, the proxy's)."""
    return request.remote_addr or "unknown"


def require_login() -> ResponseReturnValue | None:
    """The app's ``before_request`` hook: None lets the request through."""
    dash = current()
    token = dash.settings.token
    if token is None or request.endpoint in OPEN_ENDPOINTS:
        return None
    if _has_session(token):
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and given:
        wait = dash.logins.retry_after(client_address())
        if wait:
            return too_many(wait, "failed logins")
        if _same(given.strip(), token):
            return None
        dash.logins.record(client_address())
        _LOGGER.warning("wrong bearer token from %s for %s", client_address(), request.path)
        return _unauthorized("wrong token")
    if request.path.startswith("/api/"):
        return _unauthorized("log in first: POST /login, or send Authorization: Bearer <token>")
    return redirect(url_for("auth.login_page"))


def _unauthorized(message: str) -> tuple[Response, int, dict[str, str]]:
    return jsonify(error=message), 401, {"WWW-Authenticate": 'Bearer realm="edgescribe"'}


def _login_form(error: str = "", status: int = 200, headers: dict[str, str] | None = None) -> ResponseReturnValue:
    return render_template("login.html", error=error), status, headers or {}


@bp.get("/login")
def login_page() -> ResponseReturnValue:
    token = current().settings.token
    # nothing to log in to, or logged in already (SameSite=Strict sends no cookie on a link from another site)
    if token is None or _has_session(token):
        return redirect(url_for("pages.index"))
    return _login_form()


@bp.post("/login")
def login() -> ResponseReturnValue:
    dash = current()
    token = dash.settings.token
    if token is None:
        return redirect(url_for("pages.index"), 303)
    wait = dash.logins.retry_after(client_address())
    if wait:
        headers = retry_header(wait)
        return _login_form(f"Too many failed attempts. Try again in {headers['Retry-After']} s.", 429, headers)
    if not _same(request.form.get("token", ""), token):
        dash.logins.record(client_address())
        _LOGGER.warning("failed login from %s", client_address())
        return _login_form("That is not the dashboard's token.", 401)
    session.clear()
    session.permanent = True
    session[_SESSION_KEY] = _token_mark(token)
    _LOGGER.info("login from %s", client_address())
    return redirect(url_for("pages.index"), 303)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    session.clear()
    return redirect(url_for("auth.login_page"), 303)
