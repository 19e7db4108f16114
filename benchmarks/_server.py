"""Start the app on 127.0.0.1 in a subprocess for benchmarks (loopback only) and stop it afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_app(extra_env: dict[str, str] | None = None, timeout: float = 120.0) -> Iterator[tuple[str, float]]:
    """Yields (url, seconds from process start until the page answers)."""
    with running_app_process(extra_env, timeout) as (url, seconds, _):
        yield url, seconds


@contextlib.contextmanager
def running_app_process(extra_env: dict[str, str] | None = None,
                        timeout: float = 120.0) -> Iterator[tuple[str, float, int]]:
    """Yields (url, seconds from process start until the page answers, the server's process id)."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1", **(extra_env or {})}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            try:
                if urllib.request.urlopen(url, timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.1)
            if proc.poll() is not None or time.perf_counter() - t0 > timeout:
                raise RuntimeError("the app did not start")
        yield url, time.perf_counter() - t0, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
