"""`mentor serve` as real processes: kill -9 during a burst of adds loses no acknowledged item
and leaves no half item; several workers share the log (both with the SQLite and the PostgreSQL
store); SIGHUP reloads a single process."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import PG_URL, free_port, make_dataset, postgres_or_skip

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

import mentor  # noqa: E402
from mentor.bundle import write_bundle  # noqa: E402
from mentor.serve import Recommender  # noqa: E402
from mentor.serve.service import Service  # noqa: E402
from mentor.serve.store import open_store  # noqa: E402

KEY = "process-key"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("process")
    data = make_dataset(root, n_users=20, n_items=30, features={"image": 4, "text": 3})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MENTOR_CACHE", str(root / "cache"))
        mentor.train(
            "mentor", data, root / "run", epochs=1, knn_k=4, topk=[5, 10],
            valid_metric="recall@10", progress=False, log=lambda _: None,
        )  # fmt: skip
    return write_bundle(root / "run", root / "bundle")


def _features(item_id: str) -> dict[str, list[float]]:
    """Features that follow from the id, so a test can recompute what it sent."""
    seed = int(hashlib.sha256(item_id.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    return {"image": rng.random(4).tolist(), "text": rng.random(3).tolist()}


def _start(bundle: Path, store: str | Path, workers: int = 1) -> tuple[subprocess.Popen, str]:
    port = free_port()
    argv = [
        sys.executable, "-c", "from mentor.cli import main; raise SystemExit(main())",
        "serve", "--bundle", str(bundle), "--port", str(port), "--store", str(store),
        "--workers", str(workers), "--poll-seconds", "0.1",
    ]  # fmt: skip
    env = {**os.environ, "MENTOR_API_KEY": KEY}
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode() if proc.stderr else "exited")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the server did not answer within 60 s")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The ``--store`` of one test: an SQLite file in its own folder, or PostgreSQL with a schema
    of its own as the search path (``mentor serve`` names fixed tables), dropped with all it holds
    afterwards, so reruns and the SQLite variant never share a log. Request it before
    ``servers``: the servers then stop before the schema goes."""
    if request.param == "sqlite":
        yield str(tmp_path / "changes.sqlite")
        return
    postgres_or_skip()
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()


def test_kill_9_during_a_burst_of_adds_loses_no_acknowledged_item(
    bundle: Path, store: str, servers: list[subprocess.Popen]
) -> None:
    proc, url = _start(bundle, store)
    servers.append(proc)
    acknowledged: list[str] = []
    lock = threading.Lock()

    def burst(worker: int) -> None:
        with httpx.Client(timeout=5) as client:
            for n in range(10_000):
                item = f"w{worker}-{n}"
                body = {"items": [{"id": item, "features": _features(item)}]}
                try:
                    response = client.post(f"{url}/items", json=body, headers={"x-api-key": KEY})
                except httpx.HTTPError:
                    return  # the server is gone
                assert response.status_code == 200, response.text
                with lock:
                    acknowledged.append(item)

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    while len(acknowledged) < 40:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    for thread in threads:
        thread.join()
    proc.wait()

    proc, url = _start(bundle, store)
    servers.append(proc)
    live = httpx.get(f"{url}/health").json()
    for item in acknowledged:
        assert httpx.get(f"{url}/similar", params={"item": item}).status_code == 200, item
    # every logged item is whole: its replayed representation is the one its features give
    log = open_store(store, bundle)
    try:
        rec = Service(Recommender.load(bundle), log).current()
    finally:
        log.close()
    added = [i for i in rec.item_ids[30:]]
    assert set(acknowledged) <= set(added) and live["items"] == 30 + len(added)
    assert len(added) - len(acknowledged) <= 4  # at most one unanswered add per client
    direct = Recommender.load(bundle)
    direct.add_items(added, {m: [_features(i)[m] for i in added] for m in ("image", "text")})
    np.testing.assert_allclose(rec.items[30:], direct.items[30:], rtol=1e-6)


def test_workers_share_the_log(bundle: Path, store: str, servers: list) -> None:
    proc, url = _start(bundle, store, workers=2)
    servers.append(proc)
    with httpx.Client(timeout=5) as client:
        pids = set()
        body = {"items": [{"id": "shared-1", "features": _features("shared-1")}]}
        assert client.post(f"{url}/items", json=body, headers={"x-api-key": KEY}).is_success
        gone = Recommender.load(bundle).item_ids[0]
        assert client.delete(f"{url}/items/{gone}", headers={"x-api-key": KEY}).is_success
        time.sleep(0.5)  # past the poll delay of every worker
        for _ in range(60):  # new connections: the kernel spreads them over both workers
            with httpx.Client(timeout=5) as fresh:
                assert fresh.get(f"{url}/similar", params={"item": "shared-1"}).is_success
                assert fresh.get(f"{url}/similar", params={"item": gone}).status_code == 404
                again = fresh.post(f"{url}/items", json=body, headers={"x-api-key": KEY})
                assert again.status_code == 409
                pids.add(fresh.get(f"{url}/health").headers.get("x-mentor-worker"))
        assert len(pids) == 2, pids


def test_admin_reload_reaches_every_worker(bundle: Path, tmp_path: Path, servers: list) -> None:
    served = tmp_path / "served"
    served.symlink_to(bundle)
    proc, url = _start(served, tmp_path / "log.sqlite", workers=2)
    servers.append(proc)
    before = httpx.get(f"{url}/health").json()["bundle_digest"]
    other = _copy_with_other_digest(bundle, tmp_path / "other")
    served.unlink()
    served.symlink_to(other)
    reply = httpx.post(f"{url}/admin/reload", headers={"x-api-key": KEY}, timeout=60)
    assert reply.status_code == 200 and reply.json()["scheduled"] is True
    new = reply.json()["bundle_digest"]
    assert new != before
    time.sleep(1.5)  # the poll delay, and a reload in the background
    seen = {}
    for _ in range(60):
        with httpx.Client(timeout=5) as fresh:
            response = fresh.get(f"{url}/health")
            seen[response.headers["x-mentor-worker"]] = response.json()["bundle_digest"]
    assert len(seen) == 2 and set(seen.values()) == {new}, seen


def _copy_with_other_digest(bundle: Path, other: Path) -> Path:
    """A copy of ``bundle`` with the same files but another digest (checksums.json differs)."""
    other.mkdir()
    for path in bundle.iterdir():
        (other / path.name).write_bytes(path.read_bytes())
    checksums = other / "checksums.json"
    checksums.write_text(checksums.read_text() + " ")
    return other


def test_sighup_reloads_a_single_process(bundle: Path, tmp_path: Path, servers: list) -> None:
    served = tmp_path / "served"
    served.symlink_to(bundle)
    proc, url = _start(served, tmp_path / "log.sqlite")
    servers.append(proc)
    before = httpx.get(f"{url}/health").json()["bundle_digest"]
    other = _copy_with_other_digest(bundle, tmp_path / "other")
    served.unlink()
    served.symlink_to(other)
    os.kill(proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while httpx.get(f"{url}/health").json()["bundle_digest"] == before:
        assert time.monotonic() < deadline, "no reload within 20 s"
        time.sleep(0.1)
    assert proc.poll() is None
