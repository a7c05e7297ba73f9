"""The service under races and hostile input: atomic adds, one catalogue snapshot per request,
non-finite numbers, body and id limits, untrained users, the tie rule and CLI number checks."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_dataset

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

import mentor  # noqa: E402
from mentor.bundle import write_bundle  # noqa: E402
from mentor.cli import main  # noqa: E402
from mentor.serve import Recommender  # noqa: E402
from mentor.serve.app import ID_MAX_LENGTH, create_app  # noqa: E402
from mentor.serve.coldstart import ColdStartEncoder  # noqa: E402
from mentor.serve.recommender import Catalog  # noqa: E402

KEY = "k"


def _train(root: Path, model: str, data: Path, **settings: object) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MENTOR_CACHE", str(root / "cache"))
        mentor.train(
            model, data, root / "run", epochs=1, topk=[5, 10], valid_metric="recall@10",
            progress=False, log=lambda _: None, **settings,
        )  # fmt: skip
    return write_bundle(root / "run", root / "bundle")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("safety")
    data = make_dataset(root, n_users=20, n_items=30, features={"image": 4, "text": 3})
    return _train(root, "mentor", data, knn_k=4)


def _item(item_id: str) -> dict:
    return {"id": item_id, "features": {"image": [0.5] * 4, "text": [0.25] * 3}}


def _strict_json(text: str) -> object:
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_racing_adds_of_one_new_id_add_it_once(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Recommender.load(bundle)
    client = TestClient(create_app(rec, api_key=KEY))
    embed = ColdStartEncoder.embed

    def slow(self: ColdStartEncoder, features: dict) -> np.ndarray:
        time.sleep(0.05)  # widen the window between the id check and the insert
        return embed(self, features)

    monkeypatch.setattr(ColdStartEncoder, "embed", slow)
    statuses: list[int] = []
    start = threading.Barrier(6)

    def add() -> None:
        start.wait()
        response = client.post(
            "/items", json={"items": [_item("race")]}, headers={"x-api-key": KEY}
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=add) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [409] * 5
    assert list(rec.item_ids).count("race") == 1
    assert rec.n_items == 31 == len(rec.items) == len(rec.popularity)


def test_readers_see_one_catalogue_while_items_are_added(bundle: Path) -> None:
    rec = Recommender.load(bundle)
    users = list(rec.user_ids)
    first = rec.item_ids[0]
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                similar = rec.similar_items(first, k=1000)
                assert len(similar.items) == len(set(similar.items))
                for result in rec.recommend(users, k=1000, exclude_seen=False):
                    assert len(result.items) == len(result.scores)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    rng = np.random.default_rng(0)
    for n in range(150):
        rec.add_items([f"new-{n}"], {"image": rng.random((1, 4)), "text": rng.random((1, 3))})
    done.set()
    for reader in readers:
        reader.join()
    assert not errors, repr(errors[0])
    assert rec.n_items == 180 and rec.similar_items(first, k=1000).items[-1] in rec.item_index


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/recommend", '{"users": ["u3"], "k": NaN}'),
        ("/recommend", '{"users": ["u3"], "k": 1e400}'),
        ("/recommend", '{"users": [Infinity]}'),
        ("/recommend", '{"users": ["u3"], "exclude_seen": -Infinity}'),
        ("/items", '{"items": [{"id": "n", "features": {"image": [NaN, 1, 1, 1], "text": [1]}}]}'),
        ("/items", '{"items": [{"id": "n", "features": {"image": [1e400, 1], "text": [1]}}]}'),
        ("/items", '{"items": [{"id": Infinity, "features": {}}]}'),
    ],
)  # fmt: skip
def test_non_finite_numbers_get_a_json_422(bundle: Path, path: str, body: str) -> None:
    client = TestClient(create_app(Recommender.load(bundle), api_key=KEY))
    response = client.post(
        path, content=body, headers={"content-type": "application/json", "x-api-key": KEY}
    )
    assert response.status_code == 422, response.text
    assert isinstance(_strict_json(response.text), dict)


def test_body_size_and_id_limits(bundle: Path) -> None:
    rec = Recommender.load(bundle)
    client = TestClient(create_app(rec, api_key=KEY, max_body_bytes=10_000))
    user = rec.user_ids[0]
    big = {"users": [user], "items": [rec.item_ids[0]] * 2000}
    response = client.post("/recommend", json=big)
    assert response.status_code == 413 and "10,000 bytes" in response.json()["detail"]

    def chunks():  # no Content-Length: the limit applies while the body is read
        yield b'{"users": ["' + user.encode() + b'"], "items": ['
        for _ in range(2000):
            yield b'"' + rec.item_ids[0].encode() + b'",'
        yield b'"' + rec.item_ids[1].encode() + b'"]}'

    response = client.post(
        "/recommend", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert client.post("/recommend", json={"users": [user], "k": 3}).status_code == 200
    long_id = "u" * (ID_MAX_LENGTH + 1)
    for body in ({"users": [long_id]}, {"users": [user], "items": [long_id]}):
        response = client.post("/recommend", json=body)
        assert response.status_code == 422 and "at most 512 characters" in response.text
    default = TestClient(create_app(rec, api_key=KEY))
    huge = json.dumps({"users": [user] * 1000, "items": ["x" * 500] * 10_000})
    response = default.post(
        "/recommend", content=huge, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    metrics = default.get("/metrics").text
    assert 'mentor_requests_total{path="/recommend",status="413"} 1.0' in metrics


def _without_training_rows(tmp_path: Path, user: str) -> Path:
    """A tiny data set in which internal user ``user`` keeps only its valid and test rows (the
    model never trains its embedding)."""
    data = make_dataset(tmp_path, n_users=12, n_items=20)
    inter = data / "tiny.inter"
    lines = inter.read_text().splitlines()
    kept = [lines[0]] + [
        line for line in lines[1:] if not (line.split("\t")[0] == user and line.endswith("\t0"))
    ]
    inter.write_text("\n".join(kept) + "\n")
    return data


def test_users_without_training_interactions_are_served_as_cold(tmp_path: Path) -> None:
    data = _without_training_rows(tmp_path, "5")
    rec = Recommender.load(_train(tmp_path, "bpr", data))
    cold, warm = rec.user_ids[5], rec.user_ids[4]
    assert len(rec.seen(5)) == 0 and cold in rec.user_index
    results = rec.recommend([cold, warm, "never-seen"], k=3)
    assert [r.fallback for r in results] == [True, False, True]
    assert results[0].items == results[2].items  # the popularity list
    client = TestClient(create_app(rec, api_key=KEY))
    assert client.get("/recommend", params={"user": cold, "k": 3}).json()["fallback"] is True


def test_candidate_ties_go_to_the_lower_internal_id(bundle: Path) -> None:
    rec = Recommender.load(bundle)
    items = np.array(rec.items)
    items[7] = items[2]  # items 2 and 7 score the same for every user
    rec.catalog = Catalog.build(items, rec.item_ids, np.array(rec.popularity))
    user = rec.user_ids[0]
    everything = rec.recommend(user, k=rec.n_items, exclude_seen=False)[0].items
    assert everything.index(rec.item_ids[2]) + 1 == everything.index(rec.item_ids[7])
    for order in ([7, 2, 9], [9, 2, 7], [2, 9, 7]):
        cands = [rec.item_ids[i] for i in order]
        ranked = rec.recommend(user, k=3, exclude_seen=False, items=cands)[0].items
        assert ranked == [i for i in everything if i in cands], order
    popular = np.array(rec.popularity)
    popular[[2, 7]] = popular.max() + 1  # tie on popularity for the fallback path
    rec.catalog = Catalog.build(items, rec.item_ids, popular)
    cands = [rec.item_ids[7], rec.item_ids[2]]
    assert rec.recommend("nobody", k=2, items=cands)[0].items == cands[::-1]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["data", "prepare", "movielens", "--out", "x", "--seed", "-1"], "--seed: must be between"),
        (["data", "prepare", "movielens", "--out", "x", "--seed", "2.5"], "expected a whole"),
        (["serve", "--bundle", "b", "--port", "99999"], "--port: must be between 1 and 65535"),
        (["serve", "--bundle", "b", "--port", "0"], "--port: must be between 1 and 65535"),
    ],
)  # fmt: skip
def test_out_of_range_numbers_are_usage_errors(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err.splitlines()[-1] and "internal error" not in err


def test_serve_index_faiss_without_faiss_fails_before_any_worker(
    bundle: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    started: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: started.append(a))
    monkeypatch.setitem(sys.modules, "faiss", None)  # what an uninstalled faiss looks like
    argv = ["serve", "--bundle", str(bundle), "--index", "faiss", "--store", "memory"]
    assert main(argv) == 2
    assert started == []
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(errors) == 1
    assert "--index faiss" in errors[0] and "pip install 'mentor-rec[faiss]'" in errors[0]


def _drop_users(data: Path, users: set[str]) -> None:
    """Remove every row of the internal ``users`` from the .inter file and the user mapping."""
    for name in ("tiny.inter", "u_id_mapping.tsv"):
        path = data / name
        lines = path.read_text().splitlines()
        column = 0 if name.endswith(".inter") else 1
        kept = [lines[0]] + [ln for ln in lines[1:] if ln.split("\t")[column] not in users]
        path.write_text("\n".join(kept) + "\n")


def test_gaps_in_user_ids_get_distinct_external_ids(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, n_users=12, n_items=20)
    _drop_users(data, {"3", "7"})  # two gaps: internal ids no split and no mapping line uses
    rec = Recommender.load(_train(tmp_path, "bpr", data))
    assert len(set(rec.user_ids)) == 12
    assert rec.user_ids[3] == "<unmapped 3>" and rec.user_ids[7] == "<unmapped 7>"
    assert rec.recommend(rec.user_ids[3], k=2)[0].fallback is True
    assert main(["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "t.tsv")]) == 0
    exported = (tmp_path / "t.tsv").read_text().splitlines()[1:]
    assert {line.split("\t")[0] for line in exported} == {
        u for i, u in enumerate(rec.user_ids) if i not in (3, 7)
    }


def test_clashing_external_ids_stop_export_and_bundle_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_dataset(tmp_path, n_users=12, n_items=20)
    _drop_users(data, {"3"})
    mapping = data / "u_id_mapping.tsv"
    mapping.write_text(mapping.read_text().replace("u38\t5\n", "<unmapped 3>\t5\n"))
    with pytest.raises(mentor.errors.MentorError, match="both have the external id"):
        _train(tmp_path, "bpr", data)
    assert not (tmp_path / "bundle").exists()
    assert main(["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "t.tsv")]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("mentor: error")]
    assert len(errors) == 1 and "user ids 3 and 5" in errors[0]
    assert not (tmp_path / "t.tsv").exists()


def test_users_only_in_valid_are_cold_when_valid_is_masked(tmp_path: Path) -> None:
    data = _without_training_rows(tmp_path, "5")
    rec = Recommender.load(_train(tmp_path, "bpr", data, mask_valid_at_test=True))
    assert len(rec.seen(5)) == 1  # its valid item is masked, yet it was never trained
    assert rec.recommend(rec.user_ids[5], k=3)[0].fallback is True


def _synthetic(n_users: int, n_items: int, dim: int = 16) -> Recommender:
    """A recommender over random representations (no bundle files)."""
    rng = np.random.default_rng(0)
    seen = [rng.choice(n_items, 5, replace=False) for _ in range(n_users)]
    return Recommender(
        path=Path("synthetic"),
        model="synthetic",
        users=rng.standard_normal((n_users, dim)).astype(np.float32),
        user_ids=[f"u{i}" for i in range(n_users)],
        seen_indptr=np.arange(0, 5 * n_users + 1, 5, dtype=np.int64),
        seen_indices=np.concatenate(seen).astype(np.int64),
        config={},
        metrics={},
        cold_start=None,
        catalog=Catalog.build(
            rng.standard_normal((n_items, dim)).astype(np.float32),
            [f"i{i}" for i in range(n_items)],
            rng.integers(0, 50, n_items).astype(np.float32),
        ),
        trained=np.ones(n_users, dtype=bool),
    )


def test_blocked_scoring_equals_one_pass_and_bounds_memory() -> None:
    import tracemalloc

    rec = _synthetic(300, 20_000)
    users = list(rec.user_ids)
    rec.score_budget = 10**12  # one pass
    whole = rec.recommend(users, k=20)
    assert not any(r.fallback for r in whole) and len(whole[0].items) == 20
    cands = [f"i{i}" for i in range(0, 20_000, 7)]
    whole_cand = rec.recommend(users, k=20, items=cands, exclude=["i7", "i14"])
    rec.score_budget = 1  # the smallest blocks (8 users)
    assert rec.recommend(users, k=20) == whole
    assert rec.recommend(users, k=20, items=cands, exclude=["i7", "i14"]) == whole_cand
    rec.score_budget = 1 << 20
    tracemalloc.start()
    rec.recommend(users, k=20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    one_pass = 300 * 20_000 * 4  # 24 MB of float32 scores
    assert peak < 4 * (1 << 20) < one_pass, peak
