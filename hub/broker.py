"""Run a private Mosquitto broker derived from the repository's ``mosquitto.conf``.

Used by tests, benchmarks and single-machine setups: the broker gets its own port, data directory
and log file under a work directory, so it never touches a system broker on port 1883. A broker
that people address by hand (the dashboard's, ``hub up``'s) prefers :data:`MQTT_PORT`: it takes it
when it is free on its host, else a free port (:func:`choose_port`), so that the usual
``--broker mqtt://127.0.0.1:1883`` reaches it from a second terminal.
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from hub.procs import spawn, terminate

_LOGGER = logging.getLogger(__name__)

REPO_CONF = Path(__file__).resolve().parent.parent / "mosquitto.conf"

# Options that LocalBroker replaces with its own values.
_REPLACED_OPTIONS = frozenset({"listener", "persistence_location", "log_dest", "pid_file", "user"})
# Debian installs mosquitto in /usr/sbin, which is not on a normal user's PATH.
_FALLBACK_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_POLL_INTERVAL = 0.02
_START_ATTEMPTS = 5
_LOG_TAIL_LINES = 20
MQTT_PORT = 1883  #: MQTT's registered port, which a broker people type the address of prefers


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_mosquitto() -> str:
    """Return the path of the ``mosquitto`` executable or raise RuntimeError."""
    found = shutil.which("mosquitto")
    if found is None:
        found = shutil.which("mosquitto", path=os.pathsep.join(_FALLBACK_DIRS))
    if found is None:
        raise RuntimeError("mosquitto not found: install it with apt-get install mosquitto")
    return found


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a listening socket could be bound to ``host:port`` (same SO_REUSEADDR as mosquitto)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
        return True


def choose_port(preferred: int | None, host: str = "127.0.0.1") -> int:
    """``preferred`` when nothing holds it on ``host``, else a free port (logged as a warning)."""
    if preferred is None:
        return free_port(host)
    if port_is_free(preferred, host):
        return preferred
    port = free_port(host)
    _LOGGER.warning("port %d on %s is taken (a system mosquitto?); the private broker takes port %d instead",
                    preferred, host, port)
    return port


def _can_connect(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class _AddressInUse(RuntimeError):
    """Mosquitto could not bind its listener because another process holds the port."""


class LocalBroker:
    """A Mosquitto process with its own port, data directory and log under ``workdir``.

    ``start()`` after ``stop()`` or ``kill()`` reuses the same port and data directory, so retained
    messages and persistent sessions survive restarts (after ``kill()`` only what the broker saved,
    see ``autosave_interval`` in the repository conf). ``port`` is that port, or None for a free one;
    ``prefer_port`` (without ``port``) is tried first, if it is free.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        conf: Path = REPO_CONF,
        prefer_port: int | None = None,
    ) -> None:
        self._workdir = Path(workdir)
        self._host = host
        self._base_conf = Path(conf)
        self._port = port
        # An explicit port, or one a broker has already run on, is never replaced by another.
        self._port_fixed = port is not None
        self._prefer_port = prefer_port
        self._proc: subprocess.Popen[bytes] | None = None

    # -- properties -------------------------------------------------------------------------

    @property
    def workdir(self) -> Path:
        return self._workdir

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("broker port not chosen yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"mqtt://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running broker, None when it is not running."""
        if self._proc is None or self._proc.poll() is not None:
            return None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def conf_path(self) -> Path:
        """The generated configuration file."""
        return self._workdir / "mosquitto.conf"

    @property
    def data_dir(self) -> Path:
        return self._workdir / "data"

    @property
    def log_path(self) -> Path:
        """Mosquitto's stderr (its log goes there too), appended to across restarts."""
        return self._workdir / "mosquitto.log"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> LocalBroker:
        """Start the broker and wait until its port accepts TCP connections.

        Raises RuntimeError (with the tail of the broker log) if mosquitto is missing, exits, or
        does not listen within ``timeout`` seconds.
        """
        if self.running:
            raise RuntimeError(f"broker already running (pid {self.pid}) on {self.url}")
        executable = find_mosquitto()
        self._workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        attempts = 1 if self._port_fixed else _START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            if not self._port_fixed:  # the preferred port first, if free; then any free one
                self._port = choose_port(self._prefer_port if attempt == 1 else None, self._host)
            try:
                self._launch(executable, deadline)
            except _AddressInUse as exc:
                if attempt == attempts:
                    raise RuntimeError(str(exc)) from None
                _LOGGER.warning("port %d taken, retrying with another one (attempt %d of %d)",
                                self.port, attempt + 1, attempts)
                continue
            self._port_fixed = True
            return self
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the broker (it saves its database), SIGKILL it after ``timeout`` seconds."""
        proc = self._proc
        if proc is None:
            return
        terminate(proc, timeout)
        _LOGGER.debug("mosquitto on port %d stopped (exit code %s)", self.port, proc.returncode)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the broker, as in a crash: changes since its last autosave are lost."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        _LOGGER.debug("mosquitto on port %d killed", self.port)
        self._proc = None

    def __enter__(self) -> LocalBroker:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        port = self._port if self._port is not None else "?"
        return f"LocalBroker(host={self._host!r}, port={port}, pid={self.pid}, workdir={str(self._workdir)!r})"

    def render_conf(self) -> str:
        """The repository conf with listener, persistence location, log and user replaced."""
        lines: list[str] = []
        for line in self._base_conf.read_text(encoding="utf-8").splitlines():
            words = line.split()
            if words and words[0] in _REPLACED_OPTIONS:
                continue
            lines.append(line)
        user = pwd.getpwuid(os.geteuid()).pw_name
        lines += [
            "",
            "# --- added by hub.broker.LocalBroker ---",
            f"listener {self.port} {self._host}",
            # Trailing slash: mosquitto appends the file name to this string as it is.
            f"persistence_location {self.data_dir}/",
            # stderr is redirected to mosquitto.log: that also catches errors mosquitto prints
            # before its logging is set up (such as "Address already in use").
            "log_dest stderr",
            # Started as root, mosquitto would drop to user "mosquitto" (a no-op for other users)
            # and could then no longer write the data directory.
            f"user {user}",
            "",
        ]
        return "\n".join(lines)

    # -- internals ---------------------------------------------------------------------------

    def _launch(self, executable: str, deadline: float) -> None:
        port = self.port
        if not port_is_free(port, self._host):
            raise _AddressInUse(f"mosquitto cannot listen on {self._host}:{port}: address already in use")
        self.conf_path.write_text(self.render_conf(), encoding="utf-8")
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        proc = spawn([executable, "-c", str(self.conf_path)], self.log_path, cwd=self._workdir)
        _LOGGER.debug("started mosquitto pid %d on %s:%d", proc.pid, self._host, port)
        while True:
            returncode = proc.poll()
            if returncode is not None:
                tail = self._log_tail(log_offset)
                if "Address already in use" in tail:
                    raise _AddressInUse(
                        f"mosquitto cannot listen on {self._host}:{port}: address already in use\n{tail}"
                    )
                raise RuntimeError(f"mosquitto exited with code {returncode} during start-up:\n{tail}")
            # The port was free just before the launch (checked above), so a connection that
            # succeeds while the process is alive reaches this broker.
            if _can_connect(self._host, port) and proc.poll() is None:
                self._proc = proc
                _LOGGER.info("mosquitto pid %d listening on %s", proc.pid, self.url)
                return
            if time.monotonic() >= deadline:
                proc.kill()
                proc.wait()
                tail = self._log_tail(log_offset)
                raise RuntimeError(f"mosquitto did not listen on {self._host}:{port} in time:\n{tail}")
            try:
                proc.wait(timeout=_POLL_INTERVAL)
            except subprocess.TimeoutExpired:
                pass

    def _log_tail(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        lines = text.strip().splitlines()[-_LOG_TAIL_LINES:]
        return "\n".join(lines) if lines else "(log is empty)"
