"""A real `quanta serve` process on a free loopback port, for the server tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def quanta_server(model: str, *args: str, wait_ready: bool = True, timeout: float = 120):
    """Runs `quanta serve -m model args...`; yields (base_url, process) once /health answers 200
    (or at once with wait_ready=False); stops the server after."""
    port = free_port()
    cmd = [sys.executable, "-m", "quanta", "serve", "-m", model, "--port", str(port), *args]
    log = tempfile.TemporaryFile(mode="w+")  # not a pipe: a full pipe would block the server
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    base = f"http://127.0.0.1:{port}"
    try:
        if wait_ready:
            wait_healthy(base, proc, timeout)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.seek(0)
        print(f"--- {' '.join(cmd[1:])} ---\n{log.read()}")  # pytest shows it when the test failed
        log.close()


def wait_healthy(base: str, proc: "subprocess.Popen | None" = None, timeout: float = 120) -> None:
    """Polls base/health until it answers 200; fails if proc (the server's process, when given) exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"quanta serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"quanta serve at {base} was not healthy within {timeout} s")


def metric(base: str, name: str, headers=None) -> float:
    """One value from /metrics (quanta_<name>)."""
    req = urllib.request.Request(base + "/metrics", headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(f"quanta_{name} "):
                return float(line.split()[1])
    raise KeyError(name)


def wait_metric(base: str, name: str, value: float, timeout: float = 10, headers=None) -> float:
    """Polls /metrics until quanta_<name> equals value; returns the last value seen."""
    deadline = time.monotonic() + timeout
    seen = metric(base, name, headers)
    while seen != value and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = metric(base, name, headers)
    return seen
