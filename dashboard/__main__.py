"""``python -m dashboard``: the web dashboard, with a hub inside it.

    python -m dashboard [--broker URL] [--local-nodes N] [--host HOST] [--port PORT] [--store DIR]
                        [--token-file FILE] [--upload-rate N] [--listen [--device NAME|INDEX]]

Without ``--broker`` a private Mosquitto and 2 local edge nodes start beside it, exactly as for
``python -m hub`` (:mod:`hub.launch`); that broker takes port 1883 when it is free on 127.0.0.1,
else a free port, and its URL is printed for a second terminal's commands. The hub keeps its jobs
in ``--store``: that is the history.
The web server is werkzeug's threaded server, one thread per request (docs/architecture.md says
why). Ctrl-C or SIGTERM stops the web server, the event streams, the hub, the local nodes and the
broker, in that order. With ``--listen`` the hub also transcribes a microphone of this machine
(:mod:`hub.listen`), a live job like any other; Ctrl-C closes it first. With ``--inbox`` it also
takes recordings dropped into ``STORE/inbox``, as ``hub serve`` does (:mod:`hub.inbox`).

The login token comes from ``EDGESCRIBE_DASHBOARD_TOKEN``, ``--token-file`` or ``--token`` (which
``ps`` shows to every user); without one the dashboard refuses a ``--host`` beyond loopback.
``EDGESCRIBE_DASHBOARD_SECRET`` signs the session cookies (default: random, so a restart logs
everyone out). Neither is ever printed or logged (docs/security.md).

Exit codes: 0 stopped by a signal; 2 bad flags, or something could not start; 130 (SIGINT) or 143
(SIGTERM) a signal while it was starting.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path
from typing import NoReturn

from werkzeug.serving import make_server

from dashboard.app import close_app, create_app
from dashboard.settings import DashboardSettings
from hub.broker import MQTT_PORT, port_is_free
from hub.capture import DeviceError
from hub.launch import (
    Interrupted, NodeLog, StartError, add_hub_args, add_job_args, check_args, default_store_dir, hub_settings,
    local_hub, stop_on_signals,
)
from hub.inbox import Inbox
from hub.listen import ListenSession, ListenSettings, add_capture_args, listen_settings
from hub.service import HubSettings
from protocol.cli import env_default, say, setup_logging


TOKEN_ENV = "EDGESCRIBE_DASHBOARD_TOKEN"
SECRET_ENV = "EDGESCRIBE_DASHBOARD_SECRET"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not argparse's usage block."""
        self.exit(2, f"{self.prog}: {message} (--help lists the flags)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m dashboard", description="The edgescribe web dashboard, with a hub inside it.")
    add_hub_args(parser, "INFO")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address the web server listens on (default %(default)s; 0.0.0.0 for the LAN, "
                             "which needs a login token: docs/security.md)")
    parser.add_argument("--port", type=int, default=8080, help="web server port (default %(default)s; 0 picks a free one)")
    parser.add_argument("--store", type=Path, default=default_store_dir(),
                        help="the hub's job store, which holds the history (default: EDGESCRIBE_STORE, else "
                             "$XDG_DATA_HOME/edgescribe, else ~/.local/share/edgescribe; here %(default)s)")
    parser.add_argument("--max-upload-mb", type=float, default=env_default("--max-upload-mb", "200"),
                        help="largest upload, in MB of 2^20 bytes (default %(default)s; env EDGESCRIBE_MAX_UPLOAD_MB)")
    parser.add_argument("--upload-rate", type=int, default=env_default("--upload-rate", "30"),
                        help="uploads one client address may start per minute (default %(default)s; "
                             "env EDGESCRIBE_UPLOAD_RATE)")
    login = parser.add_mutually_exclusive_group()
    login.add_argument("--token-file", type=Path,
                       help="file whose first line is the login token (default: env EDGESCRIBE_DASHBOARD_TOKEN; "
                            "without either there is no login, allowed only on a loopback --host)")
    login.add_argument("--token", help="the login token itself; every user of this machine sees it in ps: "
                                       "prefer --token-file or EDGESCRIBE_DASHBOARD_TOKEN")
    parser.add_argument("--inbox", action="store_true", default=env_default("--inbox", "") not in ("", "0"),
                        help="also transcribe recordings dropped into STORE/inbox, as hub serve does (env "
                             "EDGESCRIBE_INBOX=1; docs/operations.md)")
    parser.add_argument("--listen", action="store_true",
                        help="also transcribe from a microphone on this machine, shown live as a job (docs/capture.md)")
    add_capture_args(parser)
    add_job_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        local = check_args(args)
        settings = DashboardSettings(
            store_dir=args.store, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
            max_duration_s=args.max_duration, upload_rate=args.upload_rate, token=_token(args),
            session_secret=os.environ.get(SECRET_ENV) or None,
        )
        hub = hub_settings(args, store_dir=args.store)
        listen = listen_settings(args) if args.listen else None
    except ValueError as exc:
        say(f"dashboard: {exc}")
        return 2
    try:  # before anything starts
        free = settings.port == 0 or port_is_free(settings.port, settings.host)
    except OSError as exc:  # e.g. an address this machine does not have
        say(f"dashboard: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}")
        return 2
    if not free:
        say(f"dashboard: port {settings.port} on {settings.host} is taken; choose another with --port")
        return 2
    setup_logging(args.log_level)
    stop_on_signals()
    try:
        return _run(args, local, settings, hub, listen)
    except Interrupted as exc:  # a signal while starting
        say("dashboard: interrupted")
        return exc.exit_code


def _token(args: argparse.Namespace) -> str | None:
    """The login token of --token, --token-file or the environment, in that order; None: no login."""
    if args.token is not None:
        return args.token
    if args.token_file is not None:
        try:
            lines = args.token_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ValueError(f"cannot read --token-file {args.token_file}: {exc.strerror or exc}") from None
        if not lines or not lines[0].strip():
            raise ValueError(f"--token-file {args.token_file} is empty")
        return lines[0].strip()
    return os.environ.get(TOKEN_ENV) or None


def _run(args: argparse.Namespace, local: int, settings: DashboardSettings, hub_settings: HubSettings,
         listen: ListenSettings | None) -> int:
    try:
        with local_hub(args, local, hub_settings, name="dashboard", prefer_port=MQTT_PORT) as (hub, cluster):
            # the inbox's job listener comes first: done/<name>.txt is written before the page hears "done"
            inbox = Inbox(hub, settings.store_dir, max_duration_s=settings.max_duration_s) if args.inbox else None
            app = create_app(settings, hub)
            try:
                hub.add_node_listener(NodeLog())
                if inbox is not None:
                    inbox.export_missing()  # before the hub resumes its jobs, as hub serve does
                hub.start()
                if inbox is not None:
                    inbox.start()
                try:
                    server = make_server(settings.host, settings.port, app, threaded=True)
                except OSError as exc:  # taken since the check
                    say(f"dashboard: cannot listen on {settings.host}:{settings.port}: {exc.strerror}")
                    return 2
                http = threading.Thread(target=server.serve_forever, name="dashboard-http", daemon=True)
                http.start()
                say(f"edgescribe dashboard: {_url(settings.host, server.server_port)}")
                # str() of the BrokerAddress hides the password; so does redacted() the token and secret
                say(f"  hub {hub.hub_id}, broker {hub.settings.broker}, {local} local edge node(s), "
                    f"store {settings.store_dir}. Ctrl-C stops everything.")
                say(f"  {settings.redacted()}")
                if args.broker is None:
                    say(f"  from another terminal: .venv/bin/python -m hub transcribe FILE --broker {cluster.broker_url}")
                if inbox is not None:
                    say(f"  transcribing what is dropped into {settings.store_dir / 'inbox'} "
                        f"-> {settings.store_dir / 'done'}")
                session = ListenSession(hub, listen) if listen is not None else None
                try:
                    if session is not None:
                        try:
                            job = session.start()
                        except DeviceError as exc:
                            say(f"dashboard: {exc}")
                            return 2
                        say(f"  listening to {session.device}: job {job.id}")
                    cluster.supervise(threading.Event())  # restarts a local node or the private broker that dies
                except Interrupted:
                    say("dashboard: stopping")
                finally:
                    if session is not None and session.job is not None:  # closed; the store keeps what is in flight
                        session.stop()
                        session.join(10)
                    server.shutdown()
                    server.server_close()
            finally:
                if inbox is not None:
                    inbox.stop()
                close_app(app)
    except StartError as exc:
        say(f"dashboard: {exc}")
        return 2
    return 0


def _url(host: str, port: int) -> str:
    """Where a browser on this machine finds the page."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


if __name__ == "__main__":
    sys.exit(main())
