"""Helpers of the serving benchmarks: short training runs, bundles and a server subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def train_run(model: str, data: Path, out: Path, epochs: int, **settings: object) -> Path:
    """Train ``model`` for ``epochs`` into ``out`` unless a finished run is already there."""
    import mentor

    if not (out / "metrics.json").exists():
        mentor.train(model, data, out, epochs=epochs, progress=False, log=print, **settings)
    return out


def make_bundle(run: Path, out: Path) -> Path:
    """Bundle ``run`` into ``out`` unless it exists."""
    from mentor.bundle import write_bundle

    if not out.exists():
        write_bundle(run, out)
    return out


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(
    bundle: Path, workers: int = 1, env: dict[str, str] | None = None, index: str = "exact"
) -> Iterator[str]:
    """Run ``mentor serve`` on a free loopback port; yield its base URL; stop it afterwards."""
    port = free_port()
    cmd = [sys.executable, "-m", "mentor.cli", "serve", "--bundle", str(bundle)]
    cmd += ["--port", str(port), "--workers", str(workers), "--index", index]
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    json.loads(response.read())
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get_json(url: str) -> dict:
    """GET ``url`` and parse the JSON body."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())
