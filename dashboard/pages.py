"""The page: GET / renders templates/index.html; its scripts and styles are under /static.
The login page is :mod:`dashboard.auth`'s."""

from __future__ import annotations

from flask import Blueprint, render_template

from dashboard.app import current

bp = Blueprint("pages", __name__)


@bp.get("/")
def index() -> str:
    settings = current().settings
    # the limits, for a page that wants to check a file before it uploads it
    return render_template("index.html", max_upload_mb=settings.max_upload_mb, max_duration_s=settings.max_duration_s,
                           login_required=settings.login_required)
