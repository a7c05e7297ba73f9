"""MGCN and DRAGON against MMRec's code: same weights, same batch, on a CPU.

Builds MMRec's MGCN and DRAGON (``--mmrec``: a checkout of enoche/MMRec with
``benchmarks/patches/MMRec.patch`` applied) on a seeded 40-user / 50-item data set with random
image and text features, copies their initial weights into ours and compares the item-item
graphs, the loss and gradients of two batches (a plain gradient step on both between them) and
the full-ranking scores. MMRec's code is imported from that checkout (nothing of it is in this
repository). DRAGON's user graph file is written as the benchmark scripts write it, and its
per-epoch sample (drawn with numpy's random state) is copied into ours; MMRec's DRAGON scores
with the tables of its last forward pass, so one more forward runs before its scores are read.
Writes ``benchmarks/results/equivalence_mgcn_dragon.json``.

Usage: python benchmarks/equivalence_mgcn_dragon.py --mmrec /tmp/MMRec
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from common import RESULTS, ROOT, machine
from speed_vs_mmrec import user_graph_dict

sys.path.insert(0, str(ROOT / "tests"))
from conftest import make_dataset  # noqa: E402

from mentor.config import resolve_config  # noqa: E402
from mentor.data.dataset import load_dataset  # noqa: E402
from mentor.data.sampler import Batch  # noqa: E402
from mentor.eval.context import build_model  # noqa: E402
from mentor.fsutil import atomic_write_text  # noqa: E402
from mentor.semantic import SemanticGraphCache  # noqa: E402


def compare(rows: list[dict], name: str, theirs: torch.Tensor, ours: torch.Tensor) -> None:
    """Record the largest absolute difference of two tensors (or scalars)."""
    diff = float((theirs.detach().double() - ours.detach().double()).abs().max())
    scale = float(theirs.detach().double().abs().max())
    rows.append({"check": name, "max_abs_diff": diff, "scale": scale})
    print(f"{name:40s} max |diff| {diff:.1e}  (values up to {scale:.3g})")


def import_mmrec(src: Path) -> None:
    """Resolve ``common``, ``models`` and ``utils`` in MMRec's ``src`` (this folder's
    ``common.py`` would shadow its namespace package ``common``)."""
    here = Path(__file__).resolve().parent
    for name in list(sys.modules):
        if name.split(".")[0] in ("common", "models", "utils"):
            del sys.modules[name]
    sys.path[:] = [str(src)] + [p for p in sys.path if Path(p or ".").resolve() != here]


def setup(ds, folder: Path) -> tuple[dict, types.SimpleNamespace, Batch]:
    """MMRec's configuration keys, a train-data stand-in and one batch of 16 rows."""
    r = sp.coo_matrix(
        (np.ones(len(ds.train), dtype=np.float32), (ds.train[:, 0], ds.train[:, 1])),
        shape=(ds.n_users, ds.n_items),
    )
    counts = types.SimpleNamespace(get_user_num=lambda: ds.n_users, get_item_num=lambda: ds.n_items)
    loader = types.SimpleNamespace(dataset=counts, inter_matrix=lambda form="coo": r.asformat(form))
    known: dict[int, set[int]] = {}
    for u, i in ds.train:
        known.setdefault(int(u), set()).add(int(i))
    chosen = sorted(known)[:15] + [sorted(known)[0]]  # a repeated user, as real batches have
    users = torch.tensor(chosen)
    pos = torch.tensor([min(known[u]) for u in chosen])
    neg = torch.tensor([min(set(range(ds.n_items)) - known[u]) for u in chosen])
    base = {
        "USER_ID_FIELD": "u",
        "ITEM_ID_FIELD": "i",
        "NEG_PREFIX": "neg_",
        "train_batch_size": len(users),
        "device": "cpu",
        "end2end": False,
        "is_multimodal_model": True,
        "data_path": str(folder.parent) + "/",
        "dataset": folder.name,
        "vision_feature_file": "image_feat.npy",
        "text_feature_file": "text_feat.npy",
        "user_graph_dict_file": "user_graph_dict.npy",
    }
    return base, loader, Batch(users, pos, neg)


def ours(name: str, folder: Path, ds, tmp: Path, **model: object):  # type: ignore[no-untyped-def]
    config = resolve_config(name, {"data": {"path": str(folder)}, "model": model})
    return build_model(config, ds, torch.device("cpu"), SemanticGraphCache(tmp))


def two_steps(rows, label, theirs, mine, batch, grads) -> None:  # type: ignore[no-untyped-def]
    """Loss and gradients of ``batch`` twice, with a plain gradient step (rate 0.5) between."""
    t_params, o_params = dict(theirs.named_parameters()), dict(mine.named_parameters())
    for step in (1, 2):
        loss_t = theirs.calculate_loss(
            [batch.users, batch.positives.clone(), batch.negatives.clone()]
        )
        loss_o = sum(mine.loss(batch, torch.Generator()).values())
        compare(rows, f"{label} loss, batch {step}", loss_t, loss_o)
        theirs.zero_grad()
        mine.zero_grad()
        loss_t.backward()
        loss_o.backward()
        for a, b in grads:
            compare(rows, f"{label} grad {b}, batch {step}", t_params[a].grad, o_params[b].grad)
        with torch.no_grad():
            for p in [*theirs.parameters(), *mine.parameters()]:
                if p.grad is not None:
                    p -= 0.5 * p.grad


def mgcn(src: Path, folder: Path, ds, tmp: Path, rows: list[dict]) -> None:
    import_mmrec(src)
    from models.mgcn import MGCN  # type: ignore[import-not-found]

    base, loader, batch = setup(ds, folder)
    torch.manual_seed(0)
    settings = {"n_ui_layers": 2, "n_layers": 1, "knn_k": 10, "reg_weight": 1e-2, "cl_loss": 0.1}
    theirs = MGCN(dict(base, embedding_size=64, **settings), loader)
    mine = ours("mgcn", folder, ds, tmp, **settings)
    with torch.no_grad():
        mine.user_embedding.copy_(theirs.user_embedding.weight)
        mine.item_id_embedding.copy_(theirs.item_id_embedding.weight)
        for m, short in (("image", "v"), ("text", "t")):
            mine.trs[m].load_state_dict(getattr(theirs, f"{m}_trs").state_dict())
            mine.gate[m].load_state_dict(getattr(theirs, f"gate_{short}").state_dict())
            mine.gate_prefer[m].load_state_dict(getattr(theirs, f"gate_{m}_prefer").state_dict())
        mine.query_common.load_state_dict(theirs.query_common.state_dict())
    for m in ("image", "text"):
        graph = getattr(theirs, f"{m}_original_adj").to_dense()
        compare(rows, f"mgcn {m} item graph", graph, mine.item_graphs[m].matrix.to_dense())
    grads = [
        ("user_embedding.weight", "user_embedding"),
        ("item_id_embedding.weight", "item_id_embedding"),
        ("image_embedding.weight", "raw.image"),
        ("text_trs.weight", "trs.text.weight"),
        ("gate_v.0.weight", "gate.image.0.weight"),
        ("gate_text_prefer.0.weight", "gate_prefer.text.0.weight"),
        ("query_common.0.weight", "query_common.0.weight"),
    ]
    two_steps(rows, "mgcn", theirs, mine, batch, grads)
    theirs.eval()
    mine.eval()
    with torch.no_grad():
        mine.prepare_scoring()
        compare(
            rows, "mgcn scores", theirs.full_sort_predict([batch.users]), mine.score(batch.users)
        )


def dragon(src: Path, folder: Path, ds, tmp: Path, rows: list[dict]) -> None:
    import_mmrec(src)
    from models.dragon import DRAGON  # type: ignore[import-not-found]

    np.save(folder / "user_graph_dict.npy", user_graph_dict(next(folder.glob("*.inter"))))
    base, loader, batch = setup(ds, folder)
    np.random.seed(0)
    torch.manual_seed(0)
    settings = {"n_mm_layers": 1, "knn_k": 10, "mm_image_weight": 0.1, "reg_weight": 1e-2}
    theirs = DRAGON(
        dict(base, embedding_size=64, feat_embed_dim=64, n_layers=2, aggr_mode="add", **settings),
        loader,
    )
    mine = ours("dragon", folder, ds, tmp, feature_dtype="float32", **settings)
    with torch.no_grad():
        for m, gcn in (("image", theirs.v_gcn), ("text", theirs.t_gcn)):
            branch = mine.branches[m]
            branch.preference.copy_(gcn.preference)
            branch.mlp.load_state_dict(gcn.MLP.state_dict())
            branch.mlp_1.load_state_dict(gcn.MLP_1.state_dict())
        mine.weight_u.copy_(theirs.weight_u)
    theirs.pre_epoch_processing()
    mine.user_index.copy_(torch.tensor(theirs.epoch_user_graph))
    mine.user_weights.copy_(theirs.user_weight_matrix)
    mine.user_graph = mine._user_graph()
    compare(rows, "dragon item graph", theirs.mm_adj.to_dense(), mine.item_graph.matrix.to_dense())
    grads = [
        ("v_gcn.preference", "branches.image.preference"),
        ("t_gcn.preference", "branches.text.preference"),
        ("v_gcn.MLP.weight", "branches.image.mlp.weight"),
        ("t_gcn.MLP_1.weight", "branches.text.mlp_1.weight"),
        ("weight_u", "weight_u"),
    ]
    two_steps(rows, "dragon", theirs, mine, batch, grads)
    with torch.no_grad():
        theirs.forward([batch.users, batch.positives.clone(), batch.negatives.clone()])
        mine.eval()
        mine.prepare_scoring()
        their_scores = theirs.full_sort_predict([batch.users])
        compare(rows, "dragon scores", their_scores, mine.score(batch.users))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmrec", type=Path, required=True, help="patched MMRec checkout")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        features = {"image": 12, "text": 9}
        folder = make_dataset(tmp, n_users=40, n_items=50, per_user=8, features=features)
        ds = load_dataset(folder)
        rows: list[dict] = []
        src = args.mmrec.resolve() / "src"
        mgcn(src, folder, ds, tmp / "cache", rows)
        dragon(src, folder, ds, tmp / "cache", rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"machine": machine(), "torch": torch.__version__, "checks": rows}
    atomic_write_text(RESULTS / "equivalence_mgcn_dragon.json", json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
