"""A Flower deployment on loopback, started and stopped by pid: one SuperLink, N SuperNodes.

Every process is started by this module in its own session (so that its
children -- a SuperNode's SuperExec and ClientApp processes, the SuperLink's
ServerApp -- share its process group) and stopped by signalling that group,
whose id is the pid we started. Insecure mode (no TLS) on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def flower_cli_available() -> bool:
    return all((BIN / name).exists() for name in ("flower-superlink", "flower-supernode", "flwr"))


#: The marks of a deployment test module: it needs the Flower commands and runs alone, without xdist (each
#: module starts one federation of processes; xdist would start one per worker on a shared CPU).
DEPLOYMENT_MARKS = [
    pytest.mark.flower,
    pytest.mark.deployment,
    pytest.mark.skipif(not flower_cli_available(),
                       reason="the flower-superlink / flower-supernode / flwr commands are missing"),
    pytest.mark.skipif(bool(os.environ.get("PYTEST_XDIST_WORKER")),
                       reason="the deployment test runs alone, without xdist: "
                              "python -m pytest -q -m deployment tests/integrations"),
]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process group we created for it (its children included)."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, grace: float = 5.0) -> None:
        self.kill(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self.kill(signal.SIGKILL)  # children that outlived the leader, too
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass


@dataclass
class LocalFederation:
    """SuperLink + SuperNodes on loopback under ``root`` (FLWR_HOME, logs, outputs)."""

    root: Path
    processes: list[Process] = field(default_factory=list)
    nodes: dict[str, Process] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home = self.root / "flwr-home"
        self.logs = self.root / "logs"
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = {
            **os.environ,
            "FLWR_HOME": str(self.home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            # SuperExec polls for ClientApp tasks every second by default.
            "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
        (self.home / "config.toml").write_text(
            '[superlink]\ndefault = "loopback"\n\n'
            f'[superlink.loopback]\naddress = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )

    def _start(self, name: str, command: list[str]) -> Process:
        log = self.logs / f"{name.replace('/', '-')}.log"
        handle = open(log, "wb")
        popen = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=self.env, cwd=self.root, start_new_session=True
        )
        handle.close()
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def start_superlink(self, timeout: float = 30.0) -> Process:
        process = self._start("superlink", [
            str(BIN / "flower-superlink"), "--insecure", "--disable-runtime-dependency-installation",
            "--host", "127.0.0.1", "--port", str(self.port),
        ])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process.alive():
                raise RuntimeError(f"the SuperLink exited:\n{process.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as response:
                    if response.status == 200:
                        return process
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"the SuperLink did not come up in {timeout} s:\n{process.log.read_text()[-3000:]}")

    def start_supernode(self, name: str, node_config: str) -> Process:
        process = self._start(name, [
            str(BIN / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{self.port}",
            "--host", "127.0.0.1", "--port", str(free_port()), "--node-config", node_config,
        ])
        self.nodes[name] = process
        return process

    def run_app(self, app: Path, run_config: dict, *, timeout: float = 30.0) -> str:
        """``flwr run <app> loopback --run-config ...``; returns flwr's output (the run id is in it)."""
        overrides = " ".join(f"{key}={json.dumps(value)}" for key, value in run_config.items())
        completed = subprocess.run(
            [str(BIN / "flwr"), "run", str(app), "loopback", "--run-config", overrides],
            env=self.env, cwd=self.root, capture_output=True, text=True, timeout=timeout,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"flwr run failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
        return completed.stdout

    def logs_tail(self, characters: int = 2500) -> str:
        return "\n".join(f"--- {p.name} (pid {p.pid}) ---\n{p.log.read_text(errors='replace')[-characters:]}"
                         for p in self.processes)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def wait_for(path: Path, *, timeout: float, federation: LocalFederation | None = None) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path
        time.sleep(0.1)
    logs = federation.logs_tail() if federation is not None else ""
    raise TimeoutError(f"{path.name} did not appear within {timeout} s\n{logs}")
