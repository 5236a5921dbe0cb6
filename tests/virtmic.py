"""A virtual microphone for the capture tests: a private PulseAudio with a pipe source, fed by the test.

What worked here and why is in ../shared/research/virtual-microphone.md. The daemon is the test's
own (its own runtime directory, no system instance, no D-Bus), started with ``--daemonize=yes``,
which returns once the daemon is ready. Its source ``virtmic`` reads raw PCM from a FIFO at
``rate`` Hz with ``channels`` channels (48 kHz stereo by default, so that the capture resamples),
and an ALSA PCM of the same name in ``$HOME/.asoundrc`` makes PortAudio list it as a device named
``virtmic``. :class:`Feeder` writes 20 ms blocks into the FIFO in real time, silence when it has
nothing to say, as a live microphone would: a pipe source whose writer stops leaves its last
blocks stuck in a buffer.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from pydub import AudioSegment

SOURCE = "virtmic"
BLOCK_S = 0.02


def pulseaudio_missing() -> str:
    """Why a private PulseAudio cannot run here, or "" if it can."""
    if shutil.which("pulseaudio") is None:
        return "pulseaudio is not installed (apt-get install pulseaudio; scripts/install does)"
    return ""


class VirtualMic:
    def __init__(self, directory: Path, rate: int = 48_000, channels: int = 2) -> None:
        self.directory = directory
        self.runtime = directory / "run"
        self.fifo = self.runtime / "mic.fifo"
        self.rate = rate
        self.channels = channels
        self.pid: int | None = None

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to see the virtual device (PortAudio reads it when sounddevice is imported)."""
        return {
            "HOME": str(self.runtime),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "PULSE_SERVER": f"unix:{self.runtime / 'native'}",
        }

    def start(self) -> None:
        """Start the daemon; RuntimeError with its log if it does not come up."""
        self.runtime.mkdir(parents=True, exist_ok=True)
        self.runtime.chmod(0o700)
        config = self.directory / "pulse.pa"
        config.write_text(
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.runtime / 'native'}\n"
            "load-module module-null-sink sink_name=dummy rate=48000\n"
            f"load-module module-pipe-source source_name={SOURCE} file={self.fifo} format=s16le"
            f" rate={self.rate} channels={self.channels}\n"
            f"set-default-source {SOURCE}\n"
        )
        (self.runtime / ".asoundrc").write_text(
            f'pcm.{SOURCE} {{\n    type pulse\n    device {SOURCE}\n    hint {{ show on description "test microphone" }}\n}}\n'
        )
        log = self.directory / "pulse.log"
        proc = subprocess.run(
            ["pulseaudio", "-n", "-F", str(config), "--daemonize=yes", "--exit-idle-time=-1", "--use-pid-file=yes",
             f"--log-target=file:{log}"],
            env={**os.environ, **self.env}, capture_output=True, text=True, timeout=30,
        )
        pidfile = self.runtime / "pulse" / "pid"
        if proc.returncode != 0 or not pidfile.exists():
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else proc.stderr
            raise RuntimeError(f"pulseaudio did not start (exit {proc.returncode}): {tail}")
        self.pid = int(pidfile.read_text().split()[0])

    def kill(self) -> None:
        """Stop the daemon now, as if the microphone were unplugged."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.pid = None

    def pcm(self, audio: AudioSegment) -> bytes:
        """``audio`` in the source's raw format."""
        return audio.set_frame_rate(self.rate).set_channels(self.channels).set_sample_width(2).raw_data


class Feeder:
    """Writes to the FIFO in real time from a thread: silence, then what :meth:`say` gives, then silence."""

    def __init__(self, mic: VirtualMic) -> None:
        self._mic = mic
        self._block = int(mic.rate * BLOCK_S) * 2 * mic.channels
        self._lock = threading.Lock()
        self._pending = b""
        self._stop = threading.Event()
        self.said = threading.Event()  #: set when everything given to say() has been written
        self.said_at: float | None = None  #: monotonic time it was
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="test-feeder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def say(self, pcm: bytes) -> None:
        with self._lock:
            self._pending += pcm
            self.said.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            fd = os.open(self._mic.fifo, os.O_WRONLY)
        except OSError as exc:
            self.error = exc
            return
        start = time.monotonic()
        blocks = 0
        try:
            while not self._stop.is_set():
                with self._lock:
                    block, self._pending = self._pending[: self._block], self._pending[self._block :]
                    if not block and not self.said.is_set():
                        self.said_at = time.monotonic()
                        self.said.set()
                os.write(fd, block.ljust(self._block, b"\0"))
                blocks += 1
                self._stop.wait(max(0.0, start + blocks * BLOCK_S - time.monotonic()))  # the pace of a real microphone
        except OSError as exc:  # the daemon went away
            self.error = exc
        finally:
            os.close(fd)
