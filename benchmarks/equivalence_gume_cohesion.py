"""GUME and COHESION against their authors' code: same weights, same batch, on a CPU.

Builds the authors' GUME (``--gume``: a checkout of NanGongNingYi/GUME) and COHESION
(``--cohesion``: a checkout of Jinfeng-Xu/COHESION), each with its CPU patch from
``benchmarks/patches/`` applied, on a seeded 40-user / 50-item data set with random image and
text features; copies their initial weights into ours and compares the forward tables, the loss,
gradients and full-ranking scores over two batches (an optimiser step between them). The original
code is imported from those checkouts (nothing of it is in this repository).

GUME's two perturbed views draw ``torch.rand_like`` noise: here their noise is made zero and ours
``noise_eps`` 0, so both compare the unperturbed views (tests/test_gume.py checks the noise
itself). COHESION's user graph is padded with numpy's random state: ours copies the sample it
drew. COHESION's loss also penalises ``weight_u``, a table no score reads and ours leaves out: that
term is subtracted from its loss before comparing. Writes
``benchmarks/results/equivalence_gume_cohesion.json``.

Usage: python benchmarks/equivalence_gume_cohesion.py --gume /tmp/ref-gume \
       --cohesion /tmp/ref-cohesion
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
    print(f"{name:44s} max |diff| {diff:.1e}  (values up to {scale:.3g})")


def import_framework(src: Path) -> None:
    """Make ``src`` (a framework folder with ``common/``, ``models/`` and ``utils``) the one
    these imports resolve in, dropping an earlier framework's modules."""
    here = Path(__file__).resolve().parent
    for name in list(sys.modules):
        if name.split(".")[0] in ("common", "models", "utils", "utils_package"):
            del sys.modules[name]
    # MMRec's ``common`` is a namespace package, which this folder's ``common.py`` would shadow
    sys.path[:] = [str(src)] + [p for p in sys.path if Path(p or ".").resolve() != here]


def stubs(ds, users: torch.Tensor, folder: Path) -> tuple[dict, types.SimpleNamespace]:
    """The configuration keys MMRec's GeneralRecommender reads, and a train-data stand-in."""
    r = sp.coo_matrix(
        (np.ones(len(ds.train), dtype=np.float32), (ds.train[:, 0], ds.train[:, 1])),
        shape=(ds.n_users, ds.n_items),
    )
    counts = types.SimpleNamespace(get_user_num=lambda: ds.n_users, get_item_num=lambda: ds.n_items)
    loader = types.SimpleNamespace(dataset=counts, inter_matrix=lambda form="coo": r.asformat(form))
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
    return base, loader


def batch_of(ds) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """16 users, each with its smallest train item and smallest non-train item (user 0 twice,
    so a batch repeats a user as real ones do)."""
    known: dict[int, set[int]] = {}
    for u, i in ds.train:
        known.setdefault(int(u), set()).add(int(i))
    chosen = sorted(known)[:15] + [sorted(known)[0]]
    users = torch.tensor(chosen)
    pos = torch.tensor([min(known[u]) for u in chosen])
    neg = torch.tensor([min(set(range(ds.n_items)) - known[u]) for u in chosen])
    return users, pos, neg


def ours(name: str, folder: Path, ds, tmp: Path, **model: object):
    config = resolve_config(name, {"data": {"path": str(folder)}, "model": model})
    return build_model(config, ds, torch.device("cpu"), SemanticGraphCache(tmp))


def grads(rows, label, pairs, theirs, mine) -> None:  # type: ignore[no-untyped-def]
    t_params = dict(theirs.named_parameters())
    o_params = dict(mine.named_parameters())
    for a, b in pairs:
        compare(rows, f"{label} grad {b}", t_params[a].grad, o_params[b].grad)


def gume(root: Path, folder: Path, ds, tmp: Path, rows: list[dict]) -> None:
    import_framework(root / "src")
    import models.gume as module  # type: ignore[import-not-found]

    users, pos, neg = batch_of(ds)
    base, loader = stubs(ds, users, folder)
    config = dict(
        base,
        embedding_size=64,
        knn_k=10,
        n_layers=2,
        n_ui_layers=3,
        reg_weight_1=1e-2,  # larger than the default 1e-5 so that the term shows in the check
        reg_weight_2=0.1,
        bm_loss=0.01,
        bm_temp=0.4,
        um_loss=0.01,
        um_temp=0.1,
        vt_loss=0.1,
    )
    torch.manual_seed(0)
    theirs = module.GUME(config, loader, "now")
    mine = ours("gume", folder, ds, tmp, reg_weight_1=1e-2, noise_eps=0.0)
    with torch.no_grad():
        mine.user_embedding.copy_(theirs.user_embedding.weight)
        mine.item_id_embedding.copy_(theirs.item_id_embedding.weight)
        for m, t in (("image", "image"), ("text", "text")):
            mine.extended_user[m].copy_(getattr(theirs, f"extended_{t}_user").weight)
            mine.reduce_dim[m].load_state_dict(getattr(theirs, f"{t}_reduce_dim").state_dict())
            mine.trans_dim[m].load_state_dict(getattr(theirs, f"{t}_trans_dim")[0].state_dict())
            mine.behavior[m].load_state_dict(getattr(theirs, f"{t}_behavior")[0].state_dict())
        mine.separate_coarse.load_state_dict(theirs.separate_coarse.state_dict())
    compare(rows, "gume enhanced graph", theirs.norm_adj.to_dense(), mine.graph.matrix.to_dense())
    optim_t = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    optim_o = torch.optim.Adam(mine.parameters(), lr=1e-2)
    rand_like = torch.rand_like
    torch.rand_like = torch.zeros_like  # their perturbation noise (ours: noise_eps 0)
    try:
        gume_steps(rows, theirs, mine, optim_t, optim_o, users, pos, neg)
    finally:
        torch.rand_like = rand_like
    theirs.eval()
    mine.eval()
    with torch.no_grad():
        mine.prepare_scoring()
        compare(rows, "gume scores", theirs.full_sort_predict([users]), mine.score(users))


def gume_steps(rows, theirs, mine, optim_t, optim_o, users, pos, neg) -> None:  # type: ignore[no-untyped-def]
    """Two batches of GUME with an Adam step between them."""
    for step in (1, 2):
        with torch.no_grad():
            out_t, (z_t, h_id_t, h_it_t), _ = theirs.forward(theirs.norm_adj, train=True)
            tables = mine.tables()
        compare(rows, f"gume output rows, batch {step}", out_t, tables["out"])
        compare(rows, f"gume integration z, batch {step}", z_t, tables["z"])
        compare(rows, f"gume extended interest h_it, batch {step}", h_it_t, tables["h_it"])
        loss_t = theirs.calculate_loss([users, pos, neg])
        terms = mine.loss(Batch(users, pos, neg), torch.Generator())
        loss_o = sum(terms.values())
        compare(rows, f"gume loss, batch {step}", loss_t, loss_o)
        optim_t.zero_grad()
        optim_o.zero_grad()
        loss_t.backward()
        loss_o.backward()
        pairs = [
            ("item_id_embedding.weight", "item_id_embedding"),
            ("extended_text_user.weight", "extended_user.text"),
            ("image_embedding.weight", "features.image"),
            ("separate_coarse.0.weight", "separate_coarse.0.weight"),
            ("text_behavior.0.weight", "behavior.text.weight"),
        ]
        grads(rows, f"gume batch {step}", pairs, theirs, mine)
        optim_t.step()
        optim_o.step()


def cohesion(root: Path, folder: Path, ds, tmp: Path, rows: list[dict]) -> None:
    import_framework(root / "src")
    import models.cohesion as module  # type: ignore[import-not-found]

    users, pos, neg = batch_of(ds)
    base, loader = stubs(ds, users, folder)
    np.save(folder / "user_graph_dict.npy", user_graph_dict(next(folder.glob("*.inter"))))
    config = dict(
        base,
        embedding_size=64,
        feat_embed_dim=64,
        n_mm_layers=1,
        n_layers=2,
        knn_k=10,
        mm_image_weight=0.1,
        dropout=0.0,
        num_layer=2,
        reg_weight=0.1,
    )
    np.random.seed(0)
    torch.manual_seed(0)
    theirs = module.COHESION(config, loader)
    mine = ours("cohesion", folder, ds, tmp, num_layer=2)
    with torch.no_grad():
        mine.id_feat.copy_(theirs.id_feat)
        for name, gcn in (("id", theirs.id_gcn), ("image", theirs.v_gcn), ("text", theirs.t_gcn)):
            branch = mine.branches[name]
            branch.preference.copy_(gcn.preference)
            branch.mlp.load_state_dict(gcn.MLP.state_dict())
            branch.mlp_1.load_state_dict(gcn.MLP_1.state_dict())
    compare(
        rows, "cohesion item graph", theirs.mm_adj.to_dense(), mine.item_graph.matrix.to_dense()
    )
    optim_t = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    optim_o = torch.optim.Adam(mine.parameters(), lr=1e-2)
    for step in (1, 2):
        theirs.pre_epoch_processing()
        with torch.no_grad():
            mine.user_index.copy_(torch.tensor(theirs.epoch_user_graph))
            mine.user_weights.copy_(theirs.user_weight_matrix)
            mine._rebuild_user_graph(mine, None)
        loss_t = theirs.calculate_loss([users.clone(), pos.clone(), neg.clone()])
        loss_t = loss_t - theirs.reg_weight * (theirs.weight_u**2).mean()
        loss_o = sum(mine.loss(Batch(users, pos, neg), torch.Generator()).values())
        compare(rows, f"cohesion loss, batch {step}", loss_t, loss_o)
        result = torch.cat([mine.result_users, mine.result_items])
        compare(rows, f"cohesion tables, batch {step}", theirs.result_embed, result)
        optim_t.zero_grad()
        optim_o.zero_grad()
        loss_t.backward()
        loss_o.backward()
        pairs = [
            ("id_feat", "id_feat"),
            ("v_preference", "branches.image.preference"),
            ("t_gcn.MLP.weight", "branches.text.mlp.weight"),
            ("v_gcn.MLP_1.bias", "branches.image.mlp_1.bias"),
        ]
        grads(rows, f"cohesion batch {step}", pairs, theirs, mine)
        untrained = [theirs.id_gcn.preference.grad, theirs.id_gcn.MLP.weight.grad]
        assert all(g is None for g in untrained), "their ID branch should get no gradient"
        optim_t.step()
        optim_o.step()
    theirs.eval()
    mine.eval()
    with torch.no_grad():
        mine.prepare_scoring()
        compare(rows, "cohesion scores", theirs.full_sort_predict([users]), mine.score(users))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gume", type=Path, required=True, help="patched GUME checkout")
    parser.add_argument("--cohesion", type=Path, required=True, help="patched COHESION checkout")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        folder = make_dataset(
            tmp, n_users=40, n_items=50, per_user=8, features={"image": 12, "text": 9}
        )
        ds = load_dataset(folder)
        rows: list[dict] = []
        gume(args.gume.resolve(), folder, ds, tmp / "cache", rows)
        cohesion(args.cohesion.resolve(), folder, ds, tmp / "cache", rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"machine": machine(), "torch": torch.__version__, "checks": rows}
    path = RESULTS / "equivalence_gume_cohesion.json"
    atomic_write_text(path, json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
