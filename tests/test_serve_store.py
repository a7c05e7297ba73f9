"""Durable catalogue changes: the SQLite and PostgreSQL logs, replay on start, several processes
sharing one log, removal, the exclude list and hot reload."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import PG_URL, make_dataset, postgres_or_skip

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

import mentor  # noqa: E402
from mentor.bundle import write_bundle  # noqa: E402
from mentor.errors import MentorError  # noqa: E402
from mentor.serve import Recommender  # noqa: E402
from mentor.serve.app import BUNDLE_HEADER, BUNDLE_VERSION_HEADER, create_app  # noqa: E402
from mentor.serve.recommender import DuplicateIdError  # noqa: E402
from mentor.serve.service import Service  # noqa: E402
from mentor.serve.store import (  # noqa: E402
    ChangeStore,
    PostgresStore,
    SqliteStore,
    default_store_path,
    open_store,
)

KEY = "k"


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator:
    """A factory of stores on one log (each call: a new connection, as another process has)."""
    namespace = f"t_{uuid.uuid4().hex[:12]}"
    opened: list[ChangeStore] = []
    if request.param == "postgresql":
        postgres_or_skip()

    def make() -> ChangeStore:
        if request.param == "sqlite":
            store: ChangeStore = SqliteStore(tmp_path / "log.sqlite", namespace)
        else:
            store = PostgresStore(PG_URL, namespace)
        opened.append(store)
        return store

    yield make
    if request.param == "postgresql":
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(
                f"DROP TABLE IF EXISTS {namespace}_log, {namespace}_live, {namespace}_meta"
            )
    for store in opened:
        store.close()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two MENTOR bundles of one data set (seeds 1 and 2: other representations)."""
    root = tmp_path_factory.mktemp("store")
    data = make_dataset(root, n_users=20, n_items=30, features={"image": 4, "text": 3})
    out = []
    for seed in (1, 2):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MENTOR_CACHE", str(root / "cache"))
            mentor.train(
                "mentor", data, root / f"run{seed}", epochs=1, knn_k=4, seed=seed,
                topk=[5, 10], valid_metric="recall@10", progress=False, log=lambda _: None,
            )  # fmt: skip
        out.append(write_bundle(root / f"run{seed}", root / f"bundle{seed}"))
    return out[0], out[1]


def _features(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"image": rng.random((n, 4), np.float32), "text": rng.random((n, 3), np.float32)}


def test_log_round_trip_and_one_add_per_id(make_store) -> None:  # type: ignore[no-untyped-def]
    first, second = make_store(), make_store()
    features = _features(2)
    assert first.add(["a", "b"], features) == 2
    with pytest.raises(DuplicateIdError, match="'b' already exists"):
        second.add(["c", "b"], _features(2))  # the other connection sees the committed ids
    assert [c.item_id for c in first.changes_after(0)] == ["a", "b"]  # nothing of "c" logged
    second.remove(["a"])
    second.add(["a"], _features(1, seed=5))  # a removed id may come back
    changes = first.changes_after(0)
    assert [(c.op, c.item_id) for c in changes] == [
        ("add", "a"), ("add", "b"), ("remove", "a"), ("add", "a"),
    ]  # fmt: skip
    np.testing.assert_array_equal(changes[1].features["image"], features["image"][1])
    assert changes[3].features["text"].dtype == np.float32
    assert [c.item_id for c in first.changes_after(changes[1].seq)] == ["a", "a"]


def test_racing_connections_add_an_id_once(make_store) -> None:  # type: ignore[no-untyped-def]
    stores = [make_store() for _ in range(4)]
    start = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def add(store: ChangeStore) -> None:
        start.wait()
        try:
            store.add(["same"], _features(1))
            outcomes.append("added")
        except DuplicateIdError:
            outcomes.append("refused")

    threads = [threading.Thread(target=add, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["added"] + ["refused"] * 3
    assert [c.item_id for c in stores[0].changes_after(0)] == ["same"]


def test_changes_survive_a_restart_and_reach_other_processes(
    bundles: tuple[Path, Path], make_store
) -> None:  # type: ignore[no-untyped-def]
    bundle = bundles[0]
    one = Service(Recommender.load(bundle), make_store(), poll_seconds=0.0)
    two = Service(Recommender.load(bundle), make_store(), poll_seconds=0.0)
    app_one = TestClient(create_app(one, api_key=KEY, workers=2))
    feats = _features(2, seed=3)
    body = {
        "items": [
            {"id": f"new-{j}", "features": {m: v[j].tolist() for m, v in feats.items()}}
            for j in range(2)
        ]
    }
    assert app_one.post("/items", json=body, headers={"x-api-key": KEY}).status_code == 200
    gone = Recommender.load(bundle).item_ids[3]
    app_two = TestClient(create_app(two, api_key=KEY, workers=2))
    assert app_two.delete(f"/items/{gone}", headers={"x-api-key": KEY}).json()["removed"] == 1
    again = app_two.post("/items", json=body, headers={"x-api-key": KEY})
    assert again.status_code == 409  # the other process's add reached this one
    for service in (one, two):
        rec = service.current()
        assert "new-1" in rec.item_index and gone not in rec.item_index
    restarted = Service(Recommender.load(bundle), make_store())
    rec = restarted.current()
    assert rec.n_items == 30 + 2 - 1 and gone not in rec.item_index
    direct = Recommender.load(bundle)
    direct.add_items(["new-0", "new-1"], feats)
    np.testing.assert_allclose(
        rec.items[rec.item_index["new-1"]], direct.items[direct.item_index["new-1"]], rtol=1e-6
    )


def test_removed_and_excluded_items_never_appear(bundles: tuple[Path, Path]) -> None:
    rec = Recommender.load(bundles[0])
    client = TestClient(create_app(rec, api_key=KEY))
    user, items = rec.user_ids[1], list(rec.item_ids)
    assert client.delete(f"/items/{items[0]}").status_code == 401
    assert client.delete("/items/nope", headers={"x-api-key": KEY}).status_code == 404
    for item in items[:3]:
        response = client.delete(f"/items/{item}", headers={"x-api-key": KEY})
        assert response.status_code == 200 and response.json()["items"] == rec.n_items
    assert client.delete(f"/items/{items[0]}", headers={"x-api-key": KEY}).status_code == 404
    everything = client.post(
        "/recommend", json={"users": [user, "nobody"], "k": 1000, "exclude_seen": False}
    ).json()["results"]
    for result in everything:
        assert set(result["items"]) == set(items[3:])
    assert client.get("/similar", params={"item": items[0]}).status_code == 404
    similar = client.get("/similar", params={"item": items[4], "k": 1000}).json()["items"]
    assert not set(similar) & set(items[:3]) and len(similar) == 26
    response = client.post("/recommend", json={"users": [user], "items": [items[1]]})
    assert response.status_code == 404  # a removed candidate is an unknown item
    excluded = client.post(
        "/recommend",
        json={"users": [user, "nobody"], "k": 1000, "exclude_seen": False,
              "exclude": items[3:10] + ["not-an-item"]},
    ).json()["results"]  # fmt: skip
    for result in excluded:
        assert set(result["items"]) == set(items[10:])
    assert client.get("/health").json()["removed_items"] == 3


def test_reload_swaps_the_bundle_whole_under_load(bundles: tuple[Path, Path]) -> None:
    old_bundle, new_bundle = bundles
    old, new = Recommender.load(old_bundle), Recommender.load(new_bundle)
    assert old.digest != new.digest
    expected = {rec.digest: rec.recommend(list(rec.user_ids[:4]), k=5) for rec in (old, new)}
    service = Service(Recommender.load(old_bundle))
    client = TestClient(create_app(service, api_key=KEY))
    client.post("/admin/reload", json={"bundle": str(new_bundle)})  # no key: refused
    assert client.get("/health").json()["bundle_digest"] == old.digest
    failures: list[str] = []
    seen_versions: set[str] = set()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            response = client.post("/recommend", json={"users": list(old.user_ids[:4]), "k": 5})
            if response.status_code != 200:
                failures.append(response.text)
                continue
            digest = response.headers[BUNDLE_HEADER]
            seen_versions.add(digest)
            lists = [r["items"] for r in response.json()["results"]]
            if lists != [r.items for r in expected[digest]]:
                failures.append(f"mixed answer from {digest[:8]}")

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    reloaded = client.post(
        "/admin/reload", json={"bundle": str(new_bundle)}, headers={"x-api-key": KEY}
    )
    stop.set()
    for thread in threads:
        thread.join()
    assert reloaded.status_code == 200 and reloaded.json()["bundle_digest"] == new.digest
    assert not failures, failures[:3]
    assert client.get("/health").json()["bundle_digest"] == new.digest
    bad = client.post("/admin/reload", json={"bundle": "/nowhere"}, headers={"x-api-key": KEY})
    assert bad.status_code == 400 and "not a folder" in bad.json()["detail"]
    assert client.get("/health").headers[BUNDLE_HEADER] == new.digest  # still the new one


def test_reload_replays_the_log_over_the_new_bundle(
    bundles: tuple[Path, Path], tmp_path: Path
) -> None:
    store = open_store(None, tmp_path / "b")
    assert isinstance(store, SqliteStore) and store.path == default_store_path(tmp_path / "b")
    service = Service(Recommender.load(bundles[0]), store)
    service.add(["fresh"], _features(1))
    service.remove([service.current().item_ids[0]])
    rec = service.reload(bundles[1])
    assert "fresh" in rec.item_index and rec.item_ids[0] not in rec.item_index
    again = Recommender.load(bundles[1])
    again.add_items(["fresh"], _features(1))  # embedded by the new bundle's own encoder
    np.testing.assert_allclose(rec.items[-1], again.items[-1], rtol=1e-6)


def test_store_specs(tmp_path: Path) -> None:
    assert open_store("memory", tmp_path).url == "memory"
    assert open_store(f"sqlite:///{tmp_path}/x.db", tmp_path).url.endswith("x.db")
    with pytest.raises(MentorError, match="use memory, sqlite"):
        open_store("redis://x", tmp_path)
    with pytest.raises(MentorError, match="namespace"):
        SqliteStore(tmp_path / "y.db", "Bad-Name; DROP")
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(MentorError, match="cannot open the catalogue store"):
        SqliteStore(tmp_path / "dir.db")


def test_health_reports_store_and_bundle(bundles: tuple[Path, Path], tmp_path: Path) -> None:
    service = Service(Recommender.load(bundles[0]), SqliteStore(tmp_path / "h.sqlite"))
    health = TestClient(create_app(service)).get("/health")
    body = health.json()
    assert body["store"] == f"sqlite:///{tmp_path / 'h.sqlite'}"
    assert (
        body["bundle_digest"] == health.headers[BUNDLE_HEADER] and len(body["bundle_digest"]) == 64
    )
    # the version that wrote the bundle, in /health and in a header of every answer
    assert body["bundle_version"] == health.headers[BUNDLE_VERSION_HEADER] == mentor.__version__
    item = service.current().item_ids[0]
    similar = TestClient(create_app(service)).get("/similar", params={"item": item})
    assert similar.headers[BUNDLE_VERSION_HEADER] == body["bundle_version"]
    assert body["catalog_seq"] == 0 and json.dumps(body)


def test_a_reload_reaches_every_process_through_the_log(
    bundles: tuple[Path, Path], make_store
) -> None:  # type: ignore[no-untyped-def]
    served_by = [Service(Recommender.load(bundles[0]), make_store(), 0.0) for _ in range(2)]
    served_by[0].add(["kept"], _features(1))
    new = served_by[0].reload(bundles[1])
    assert served_by[0].current() is new and "kept" in new.item_index
    follower = served_by[1]
    deadline = time.monotonic() + 10
    while follower.current().digest != new.digest:  # loads in the background, then swaps
        assert time.monotonic() < deadline, "the other process did not follow the reload"
        time.sleep(0.02)
    rec = follower.current()
    assert "kept" in rec.item_index and rec.catalog.seq == new.catalog.seq
    follower.add(["after"], _features(1, seed=9))  # the log goes on as before
    assert "after" in served_by[0].current().item_index


def test_a_log_of_another_schema_is_refused(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "old.sqlite").close()
    import sqlite3

    with sqlite3.connect(tmp_path / "old.sqlite") as conn:
        conn.execute("UPDATE mentor_catalog_meta SET value = '0' WHERE key = 'schema'")
    with pytest.raises(MentorError, match="catalogue log schema 0, this mentor reads 1"):
        SqliteStore(tmp_path / "old.sqlite")
