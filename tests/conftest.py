"""Shared helpers: tiny MMRec-layout data sets, bad-input variants and a brute-force evaluator."""

from __future__ import annotations

import math
import os
import socket
import sys
import types
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"  # /work/shared next to the repository
METRIC_NAMES = ("recall", "ndcg", "precision", "map", "hit")


def user_ext(i: int) -> str:
    """External id of internal user ``i`` in the tiny data sets (non-numeric, not ``str(i)``)."""
    return f"u{(7 * i + 3) % 1000}"


def item_ext(i: int) -> str:
    """External id of internal item ``i`` in the tiny data sets."""
    return f"i{(13 * i + 5) % 1000}"


def make_dataset(
    root: Path,
    n_users: int = 30,
    n_items: int = 40,
    per_user: int = 8,
    features: Mapping[str, int] | None = None,
    mapping: bool = True,
    seed: int = 0,
    name: str = "tiny",
    n_test: int = 1,
    extra_columns: bool = False,
) -> Path:
    """Write an MMRec-layout folder ``root/name`` and return it.

    User ``u`` has ``per_user - 1 + u % 3`` distinct items (at least 5); the last ``n_test`` of
    them are test (x_label 2), the one before valid (1), the rest train (0). Rows are written in
    a shuffled order. Item ``n_items - 1`` is always a train item of user 0, so the id space is
    ``n_items`` even without a mapping. ``features`` maps modality -> dimension of a random
    float32 ``<modality>_feat.npy``. With ``mapping`` the folder has ``u_id_mapping.tsv`` /
    ``i_id_mapping.tsv`` with external ids :func:`user_ext` / :func:`item_ext`.
    """
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True)
    rows: list[tuple[int, int, int]] = []
    for u in range(n_users):
        count = max(5, per_user - 1 + u % 3, n_test + 4)
        items = rng.choice(n_items, size=count, replace=False)
        if u == 0 and n_items - 1 not in items:
            items[0] = n_items - 1
        labels = [0] * (count - n_test - 1) + [1] + [2] * n_test
        rows += [(u, int(i), lab) for i, lab in zip(items, labels, strict=True)]
    order = rng.permutation(len(rows))
    if extra_columns:
        lines = ["userID\titemID\trating\ttimestamp\tx_label"]
        lines += [
            f"{rows[j][0]}\t{rows[j][1]}\t{1 + j % 5}\t{880000000 + j}\t{rows[j][2]}" for j in order
        ]
    else:
        lines = ["userID\titemID\tx_label"]
        lines += [f"{rows[j][0]}\t{rows[j][1]}\t{rows[j][2]}" for j in order]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
    for modality, dim in (features or {}).items():
        feat = rng.standard_normal((n_items, dim)).astype(np.float32)
        np.save(folder / f"{modality}_feat.npy", feat)
    if mapping:
        user_lines = ["user_id\tuserID", *(f"{user_ext(u)}\t{u}" for u in range(n_users))]
        item_lines = ["item_id\titemID", *(f"{item_ext(i)}\t{i}" for i in range(n_items))]
        (folder / "u_id_mapping.tsv").write_text("\n".join(user_lines) + "\n")
        (folder / "i_id_mapping.tsv").write_text("\n".join(item_lines) + "\n")
    return folder


def read_rows(folder: Path) -> dict[str, list[tuple[int, int]]]:
    """Independent reader of a tiny folder's ``.inter``: split name -> (user, item) rows."""
    (inter,) = folder.glob("*.inter")
    lines = inter.read_text().splitlines()
    header = lines[0].split("\t")
    iu, ii, il = header.index("userID"), header.index("itemID"), header.index("x_label")
    out: dict[str, list[tuple[int, int]]] = {"train": [], "valid": [], "test": []}
    names = {"0": "train", "1": "valid", "2": "test"}
    for line in lines[1:]:
        fields = line.split("\t")
        out[names[fields[il]]].append((int(fields[iu]), int(fields[ii])))
    return out


# Every bad input: (case id, expected message fragments). Made by make_bad_dataset.
BAD_CASES = {
    "missing_column": ["tiny.inter", "line 1", "x_label"],
    "non_integer_id": ["tiny.inter", "line 5", "userID", "'u3'"],
    "bad_label": ["tiny.inter", "line 4", "x_label", "'3'"],
    "feature_rows": ["text_feat.npy", "41 rows", "40 items"],
    "nan_feature": ["text_feat.npy", "row 3"],
    "empty_train": ["tiny.inter", "train split is empty"],
    "pickle_npy": ["image_feat.npy", "pickle"],
}


def make_bad_dataset(root: Path, case: str) -> Path:
    """A 30-user / 40-item folder broken in one way (see :data:`BAD_CASES`)."""
    folder = make_dataset(root, n_users=30, n_items=40, features={"text": 4}, mapping=False)
    inter = folder / "tiny.inter"
    lines = inter.read_text().splitlines()
    if case == "missing_column":
        lines[0] = "userID\titemID\tlabel"
    elif case == "non_integer_id":
        fields = lines[4].split("\t")  # line 5 of the file, the header being line 1
        lines[4] = "\t".join(["u3", *fields[1:]])
    elif case == "bad_label":
        fields = lines[3].split("\t")  # line 4
        lines[3] = "\t".join([*fields[:-1], "3"])
    elif case == "feature_rows":
        np.save(folder / "text_feat.npy", np.ones((41, 4), dtype=np.float32))
    elif case == "nan_feature":
        feat = np.ones((40, 4), dtype=np.float32)
        feat[3, 2] = np.nan
        feat[7, 0] = np.inf
        np.save(folder / "text_feat.npy", feat)
    elif case == "empty_train":
        lines = [lines[0]] + [
            "\t".join([*ln.split("\t")[:-1], "1" if ln.endswith("0") else ln[-1]])
            for ln in lines[1:]
        ]
    elif case == "pickle_npy":
        obj = np.empty(40, dtype=object)
        obj[:] = [{"row": i} for i in range(40)]
        np.save(folder / "image_feat.npy", obj, allow_pickle=True)
    else:
        raise ValueError(case)
    inter.write_text("\n".join(lines) + "\n")
    return folder


def brute_force_metrics(
    ranked: Mapping[int, Sequence[int]],
    truth: Mapping[int, Collection[int]],
    ks: Sequence[int],
) -> dict[str, float]:
    """MMRec's metric definitions with plain Python loops, averaged over the users of ``truth``.

    recall = hits / |T|, precision = hits / K, hit = [hits > 0],
    ndcg = sum_{i: r_i} 1/log2(i+1) / sum_{i <= min(|T|, K)} 1/log2(i+1),
    map = sum_i P@i * r_i / min(|T|, K).
    """
    sums = {f"{m}@{k}": 0.0 for k in ks for m in METRIC_NAMES}
    for user, held in truth.items():
        held = set(held)
        ranking = list(ranked[user])
        for k in ks:
            top = ranking[:k]
            assert len(top) == k, f"user {user}: ranked list shorter than {k}"
            hits = 0
            dcg = 0.0
            ap = 0.0
            for i, item in enumerate(top, start=1):
                if item in held:
                    hits += 1
                    dcg += 1.0 / math.log2(i + 1)
                    ap += hits / i
            ideal = min(len(held), k)
            idcg = sum(1.0 / math.log2(i + 1) for i in range(1, ideal + 1))
            sums[f"recall@{k}"] += hits / len(held)
            sums[f"precision@{k}"] += hits / k
            sums[f"hit@{k}"] += 1.0 if hits else 0.0
            sums[f"ndcg@{k}"] += dcg / idcg
            sums[f"map@{k}"] += ap / ideal
    return {key: value / len(truth) for key, value in sums.items()}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A 30-user / 40-item folder with mappings and an 8-d text feature."""
    return make_dataset(tmp_path, features={"text": 8})


def need_shared(*parts: str) -> Path:
    """Path under /work/shared, or skip the test when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Keep derived graphs and downloads of tests out of the user's cache folder."""
    monkeypatch.setenv("MENTOR_CACHE", str(tmp_path_factory.getbasetemp() / "mentor-cache"))
    # an internal error raises in tests (with its traceback) instead of becoming exit code 1
    monkeypatch.setenv("MENTOR_DEBUG", "1")


def build(name: str, folder: Path, tmp: Path, seed: int = 3, **model: object):  # type: ignore[no-untyped-def]
    """Model ``name`` built on the data folder ``folder`` (CPU, graphs cached in ``tmp``) with
    ``model`` settings: (model, dataset)."""
    import torch

    from mentor.config import resolve_config
    from mentor.data.dataset import load_dataset
    from mentor.eval.context import build_model
    from mentor.semantic import SemanticGraphCache

    config = resolve_config(name, {"data": {"path": str(folder)}, "model": dict(model)})
    config.train.seed = seed
    dataset = load_dataset(folder)
    return build_model(config, dataset, torch.device("cpu"), SemanticGraphCache(tmp)), dataset


def first_batch(dataset, seed: int = 0, batch_size: int = 16, negatives: bool = True):  # type: ignore[no-untyped-def]
    """The first batch of a seeded epoch of ``dataset``'s train rows."""
    import torch

    from mentor.data.sampler import BPRSampler

    sampler = BPRSampler(dataset.train, dataset.n_items, batch_size, negatives=negatives)
    return next(iter(sampler.epoch(torch.Generator().manual_seed(seed))))


def dense_r(dataset):  # type: ignore[no-untyped-def]
    """Binary user-item matrix float64 [U, I] of the train split."""
    import torch

    r = torch.zeros(dataset.n_users, dataset.n_items, dtype=torch.float64)
    train = torch.from_numpy(dataset.train)
    r[train[:, 0], train[:, 1]] = 1.0
    return r


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny multimodal folder of the models' dense-reference tests: 14 users, 18 items, 6
    interactions per user, a 7-d image and a 5-d text feature (one per test module)."""
    root = tmp_path_factory.mktemp("tiny-mm")
    return make_dataset(root, n_users=14, n_items=18, per_user=6, features={"image": 7, "text": 5})


def inv_sqrt(x):  # type: ignore[no-untyped-def]
    """``x ** -1/2`` elementwise, 0 where ``x`` is 0 (degrees of nodes without edges)."""
    import torch

    return torch.where(x > 0, x.clamp_min(1e-30).pow(-0.5), torch.zeros_like(x))


def sym_block(r):  # type: ignore[no-untyped-def]
    """``D_u^-1/2 R D_i^-1/2`` [U, I] of a dense user-item matrix; rows and columns without
    edges stay zero."""
    return inv_sqrt(r.sum(1))[:, None] * r * inv_sqrt(r.sum(0))[None, :]


#: the PostgreSQL server of the development and CI machines (trust auth, database ``test``)
PG_URL = os.environ.get("MENTOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_or_skip() -> None:
    """Skip, with the reason shown, when psycopg is missing or no PostgreSQL server answers."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (store extra)")
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL server answers at {PG_URL}: {str(exc).strip()[:80]}")


def pretend_installed(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make ``names`` look installed to the up-front checks (the encoder factory is stubbed)."""
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))


def hide(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make ``names`` (and their submodules already imported) fail to import, as if missing."""
    for name in names:
        for loaded in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            monkeypatch.setitem(sys.modules, loaded, None)
        monkeypatch.setitem(sys.modules, name, None)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
