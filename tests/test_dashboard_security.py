"""The dashboard's login, rate limits and secrets (docs/security.md, "The dashboard"), against a real hub.

Rate limits run on a clock the tests move by hand: nothing here sleeps. Each test uses client
addresses of its own, since the limits count per address and the app is shared by the module.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient

from dashboard.app import EXTENSION
from dashboard.auth import OPEN_ENDPOINTS
from dashboard.ratelimit import RateLimit
from dashboard.settings import DashboardSettings, is_loopback
from hub.service import Hub
from tests.chainkit import tagged_env, unique_prefix
from tests.test_dashboard_api import ROOT, EventReader, serving, tone_wav, upload

TOKEN = "tok-7Qx9-security-test-token"
SECRET = "sec-3Fv8-security-test-secret"
UPLOAD_RATE = 3
LOGIN_ATTEMPTS = 5


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def secured(broker, tmp_path_factory: pytest.TempPathFactory, clock: FakeClock) -> Iterator[tuple[Flask, Hub]]:
    """A dashboard with a login token, 3 uploads and 5 failed logins a minute per client, no nodes."""
    with serving(broker.url, tmp_path_factory.mktemp("store"), clock=clock, token=TOKEN,
                 upload_rate=UPLOAD_RATE, login_attempts=LOGIN_ATTEMPTS) as served:
        yield served


def client_at(app: Flask, address: str) -> FlaskClient:
    """A test client that comes from ``address`` (the rate limits' key)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def logged_in(app: Flask, address: str) -> FlaskClient:
    client = client_at(app, address)
    response = client.post("/login", data={"token": TOKEN})
    assert response.status_code == 303 and response.headers["Location"] == "/"
    return client


def every_request(app: Flask) -> Iterator[tuple[str, str, str]]:
    """(endpoint, method, path) for every route of the app but the open ones, ids filled in."""
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if rule.endpoint in OPEN_ENDPOINTS:
                continue
            path = url_for(rule.endpoint, **{arg: "0123456789abcdef" for arg in rule.arguments})
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                yield rule.endpoint, method, path


def assert_refused(response, path: str) -> None:
    if path.startswith("/api/"):
        assert response.status_code == 401, (path, response.status_code)
        assert response.mimetype == "application/json" and response.json["error"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    else:
        assert response.status_code == 302 and response.headers["Location"] == "/login", path


def test_every_route_but_login_and_static_files_needs_a_login(secured):
    app, _ = secured
    assert OPEN_ENDPOINTS == {"static", "auth.login_page", "auth.login", "auth.logout"}
    client = client_at(app, "10.0.1.1")
    checked = set()
    for endpoint, method, path in every_request(app):
        assert_refused(client.open(path, method=method), path)
        checked.add(endpoint)
    assert {"pages.index", "api.create_job", "api.jobs", "api.job", "api.transcript", "api.delete_job",
            "api.nodes", "api.events"} <= checked
    for path in ("/api/nope", "/nope"):  # unknown paths do not say whether they exist
        assert_refused(client.get(path), path)
    assert client.get("/static/app.js").status_code == 200
    page = client.get("/login")
    assert page.status_code == 200 and b'name="token"' in page.data and b"dashboard.css" in page.data


def test_a_session_or_a_bearer_token_opens_every_route(secured):
    app, hub = secured
    session = logged_in(app, "10.0.2.1")
    cookie = session.get_cookie("edgescribe_session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Strict" and not cookie.secure
    assert TOKEN not in cookie.value
    assert session.get("/login").headers["Location"] == "/"  # logged in already
    bearer = client_at(app, "10.0.2.2")
    headers = {"Authorization": f"Bearer {TOKEN}"}

    created = upload(session, tone_wav(1), "tone.wav")
    assert created.status_code == 201, created.json
    job_id = created.json["id"]
    for client, extra in ((session, {}), (bearer, headers)):
        for endpoint, method, path in every_request(app):
            if method == "DELETE" or endpoint == "api.events":
                continue
            response = client.open(path.replace("0123456789abcdef", job_id), method=method, headers=extra)
            assert response.status_code not in (401, 302), (endpoint, response.status_code)
        assert client.get(f"/api/jobs/{job_id}", headers=extra).json["id"] == job_id
        download = client.get(f"/api/jobs/{job_id}/transcript?format=json", headers=extra)
        assert download.status_code == 200 and json.loads(download.data)["id"] == job_id
        page = client.get("/", headers=extra)
        assert page.status_code == 200 and b'id="logout"' in page.data

    assert session.post("/logout").headers["Location"] == "/login"
    assert_refused(session.get(f"/api/jobs/{job_id}"), "/api/")
    assert hub.job(job_id) is not None


def test_a_wrong_token_is_refused(secured):
    app, _ = secured
    client = client_at(app, "10.0.3.1")
    for value in ("Bearer wrong-token-of-some-length", f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer "):
        response = client.get("/api/jobs", headers={"Authorization": value})
        assert response.status_code == 401, value
    page = client.post("/login", data={"token": TOKEN[:-1]})
    assert page.status_code == 401 and b"not the dashboard&#39;s token" in page.data
    assert client.get_cookie("edgescribe_session") is None
    assert_refused(client.get("/"), "/")


def test_the_session_cookie_is_secure_behind_https(secured):
    app, _ = secured
    client = client_at(app, "10.0.4.1")
    client.post("/login", data={"token": TOKEN}, headers={"X-Forwarded-Proto": "https"})
    assert client.get_cookie("edgescribe_session").secure


def test_a_session_from_another_token_or_secret_is_worthless(secured, broker, tmp_path):
    app, _ = secured
    session = logged_in(app, "10.0.5.1")
    cookie = session.get_cookie("edgescribe_session").value
    with serving(broker.url, tmp_path, token=TOKEN + "-new", session_secret=SECRET) as (other, _):
        client = client_at(other, "10.0.5.1")
        client.set_cookie("edgescribe_session", cookie)
        assert_refused(client.get("/api/jobs"), "/api/")


def test_failed_logins_are_throttled_per_address(secured, clock):
    app, _ = secured
    client = client_at(app, "10.0.6.1")
    for i in range(LOGIN_ATTEMPTS - 1):
        assert client.post("/login", data={"token": f"guess-number-{i}"}).status_code == 401
    assert client.get("/api/jobs", headers={"Authorization": "Bearer guess-by-api"}).status_code == 401  # counts too
    clock.advance(30)

    refused = client.post("/login", data={"token": TOKEN})  # even the right token, while throttled
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
    assert b"Too many failed attempts" in refused.data
    by_api = client.get("/api/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert by_api.status_code == 429 and by_api.headers["Retry-After"] == "30" and "failed logins" in by_api.json["error"]
    logged_in(app, "10.0.6.2")  # another address is not held up

    clock.advance(30)
    logged_in(app, "10.0.6.1")


def test_uploads_are_rate_limited_per_address(secured, clock):
    app, _ = secured
    client = logged_in(app, "10.0.7.1")
    for i in range(UPLOAD_RATE):
        clock.advance(10)
        assert upload(client, tone_wav(1), f"tone{i}.wav").status_code == 201
    refused = upload(client, tone_wav(1), "one-too-many.wav")
    assert refused.status_code == 429 and refused.mimetype == "application/json"
    assert refused.headers["Retry-After"] == "40"
    assert refused.json == {"error": "too many uploads; try again in 40 s"}
    assert upload(logged_in(app, "10.0.7.2"), tone_wav(1), "elsewhere.wav").status_code == 201

    clock.advance(39.5)
    assert upload(client, tone_wav(1), "still.wav").headers["Retry-After"] == "1"  # rounded up
    clock.advance(0.5)  # the first upload is a minute old
    assert upload(client, tone_wav(1), "again.wav").status_code == 201


def test_rate_limit_alone():
    clock = FakeClock()
    limit = RateLimit(2, window_s=60, clock=clock)
    assert limit.take("a") == 0 and limit.take("a") == 0
    assert limit.take("a") == 60 and limit.retry_after("a") == 60
    assert limit.retry_after("b") == 0
    clock.advance(60)
    assert limit.retry_after("a") == 0
    limit.record("a")
    limit.record("a")
    assert limit.take("a") == 60

    counted = RateLimit(1000, clock=clock)
    threads = [threading.Thread(target=lambda: [counted.take("k") for _ in range(200)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert counted.retry_after("k") > 0 and sum(counted.take("k") == 0 for _ in range(10)) == 0


def test_the_event_stream_refuses_unauthenticated_clients(secured):
    app, _ = secured
    fanout = app.extensions[EXTENSION].events
    refused = client_at(app, "10.0.8.1").get("/api/events", buffered=False)
    assert refused.status_code == 401 and refused.json["error"]
    assert fanout.subscribers() == 0

    response = logged_in(app, "10.0.8.2").get("/api/events", buffered=False)
    try:
        assert response.status_code == 200 and response.mimetype == "text/event-stream"
        name, _ = EventReader(response).next(time.monotonic() + 30)
        assert name == "hello"
    finally:
        response.close()


def test_settings_never_show_the_token_or_secret(tmp_path):
    settings = DashboardSettings(store_dir=tmp_path, host="0.0.0.0", token=TOKEN, session_secret=SECRET)
    for text in (repr(settings), str(settings), settings.redacted()):
        assert TOKEN not in text and SECRET not in text
    assert "login token required" in settings.redacted()
    with pytest.raises(ValueError, match="login token is required"):
        DashboardSettings(store_dir=tmp_path, host="192.168.1.10")
    with pytest.raises(ValueError, match="at least 12 characters"):
        DashboardSettings(store_dir=tmp_path, token="short")
    assert DashboardSettings(store_dir=tmp_path, host="::1").token is None
    assert [is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost")] == [True] * 5
    assert [is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.10", "hub.lan", "localhost.evil")] == [False] * 5


def untokened_env(tag: str = "") -> dict[str, str]:
    env = tagged_env(tag)
    for name in ("EDGESCRIBE_DASHBOARD_TOKEN", "EDGESCRIBE_DASHBOARD_SECRET", "EDGESCRIBE_BROKER"):
        env.pop(name, None)
    return env


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_beyond_loopback_without_a_token_it_refuses_to_start(tmp_path, host):
    proc = subprocess.run([sys.executable, "-m", "dashboard", "--host", host, "--store", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, env=untokened_env())
    assert proc.returncode == 2
    assert proc.stderr == (f"dashboard: --host {host} reaches beyond this machine, so a login token is required: "
                           "set EDGESCRIBE_DASHBOARD_TOKEN or --token-file (docs/security.md)\n")


def test_bad_token_flags_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for args, message in ((["--token-file", str(tmp_path / "absent")], "cannot read --token-file"),
                          (["--token-file", str(empty)], "is empty"),
                          (["--token", "short"], "at least 12 characters"),
                          (["--token", TOKEN, "--token-file", str(empty)], "not allowed with argument")):
        proc = subprocess.run([sys.executable, "-m", "dashboard", *args, "--store", str(tmp_path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=30, env=untokened_env())
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_python_m_dashboard_logs_no_secret(broker, tmp_path):
    """A token, a session secret and a broker password: none of them in anything it prints, even at DEBUG."""
    password = "pw-5Kd2-broker-password"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    tag = unique_prefix()
    env = {**untokened_env(tag), "EDGESCRIBE_DASHBOARD_SECRET": SECRET}
    broker_url = broker.url.replace("mqtt://", f"mqtt://dashboard:{password}@")  # the test broker takes any account
    proc = subprocess.Popen(
        [sys.executable, "-m", "dashboard", "--broker", broker_url, "--prefix", tag, "--port", "0",
         "--store", str(tmp_path / "store"), "--token-file", str(token_file), "--log-level", "DEBUG"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not any(line.startswith("  login token required") for line in lines):
            assert time.monotonic() < deadline, "".join(lines)
            line = proc.stderr.readline()
            assert line, f"the dashboard exited early: {proc.wait()}\n{''.join(lines)}"
            lines.append(line)
        url = next(line for line in lines if line.startswith("edgescribe dashboard: ")).split(": ", 1)[1].strip()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "api/jobs", timeout=10)
        assert refused.value.code == 401
        request = urllib.request.Request(url + "api/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response) == {"jobs": []}
        with pytest.raises(urllib.error.HTTPError):  # a failed login is logged: without what was tried
            urllib.request.urlopen(urllib.request.Request(url + "login", data=f"token={TOKEN}x".encode()), timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out, err = proc.communicate(timeout=10)
    printed = "".join(lines) + err + out
    assert "mqtt://dashboard:***@" in printed and "failed login from 127.0.0.1" in printed
    for secret in (TOKEN, SECRET, password):
        assert secret not in printed
