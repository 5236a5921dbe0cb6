"""Child processes that never outlive the hub: the local broker and local edge nodes.

Each child runs in its own session (so a Ctrl-C in the terminal reaches only
the hub, which then stops the children in order) and, on Linux, asks the
kernel for SIGTERM when the process that started it dies, even by SIGKILL.

The kernel ties that signal to the *thread* that forked the child, not to the
process: a broker restarted from a short-lived thread would be killed as soon
as that thread ended. So every child is forked by one spawner thread that
lives as long as the process.
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path

_LOGGER = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass


class _Spawner:
    """The one long-lived thread that forks every child (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: queue.Queue[tuple[Callable[[], subprocess.Popen], Future]] = queue.Queue()
        self._thread: threading.Thread | None = None

    def run(self, start: Callable[[], subprocess.Popen]) -> subprocess.Popen:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="procs-spawner", daemon=True)
                self._thread.start()
        done: Future = Future()
        self._requests.put((start, done))
        return done.result(timeout=60)

    def _serve(self) -> None:
        while True:
            start, done = self._requests.get()
            try:
                done.set_result(start())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                done.set_exception(exc)


_SPAWNER = _Spawner()


def spawn(cmd: Sequence[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Start ``cmd`` with stdout and stderr appended to ``log_path`` (forked by the spawner thread)."""
    proc = _SPAWNER.run(lambda: _popen(cmd, log_path, env, cwd))
    _LOGGER.debug("started pid %d: %s", proc.pid, " ".join(cmd))
    return proc


def _popen(cmd: Sequence[str], log_path: Path, env: dict[str, str] | None, cwd: Path | None) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    return proc


def terminate(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; returns the exit code."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _LOGGER.warning("pid %d did not stop within %.0f s; killing it", proc.pid, timeout)
            proc.kill()
        except ProcessLookupError:
            pass
    return proc.wait()


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def child_env(repo_root: Path) -> dict[str, str]:
    """The environment for a child Python: this one, with the repository importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo_root), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def processes_with_env(name: str, value: str) -> dict[int, str]:
    """Live processes (zombies and this one excluded) whose environment has ``name=value``, with their command.

    Children inherit the environment, so a marker set when a tree of processes was started finds all
    of them later, whoever their parent is by then.
    """
    marker = f"{name}={value}".encode()
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                found[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
    return found


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    """Wait (bounded, on pidfds) for processes that need not be our children to exit; returns those left."""
    deadline = time.monotonic() + timeout
    left = set()
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                left.add(pid)
        finally:
            os.close(fd)
    return left
