"""LATTICE, BM3, SLMRec and MMSSL against the original code: same weights, same batch, on a CPU.

Builds MMRec's LATTICE, BM3 and SLMRec (``--mmrec``: a checkout of enoche/MMRec) and the authors'
MMSSL (``--mmssl``: a checkout of HKUDS/MMSSL) on a seeded 40-user / 50-item data set with
random image and text features, copies their initial weights into ours, and compares loss values,
gradients and full-ranking scores on one batch. The original code is imported from those
checkouts (nothing of it is in this repository); to run on a CPU its ``.cuda()`` calls are made
no-ops, ``torch_scatter`` (imported by SLMRec, unused by its FAC task) is stubbed, and scipy's
removed ``dok_matrix._update`` (used by BM3) is supplied. MMSSL's training step lives in its
``main.py``, which needs dgl and visdom, so only its forward pass and discriminator are compared.
BM3 runs with dropout 0 (its targets are then deterministic). Writes
``benchmarks/results/equivalence_b.json``.

Usage: python benchmarks/equivalence_b.py --mmrec ../mmrec --mmssl /path/to/MMSSL
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from common import RESULTS, ROOT, machine

sys.path.insert(0, str(ROOT / "tests"))
from conftest import make_dataset  # noqa: E402

from mentor.config import resolve_config  # noqa: E402
from mentor.data.dataset import load_dataset  # noqa: E402
from mentor.data.sampler import Batch  # noqa: E402
from mentor.eval.context import build_model  # noqa: E402
from mentor.fsutil import atomic_write_text  # noqa: E402
from mentor.semantic import SemanticGraphCache  # noqa: E402


def _cpu_shims() -> None:
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    torch.nn.Module.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    sys.modules.setdefault("torch_scatter", types.SimpleNamespace(scatter=None))  # type: ignore[arg-type]

    def _update(self, values):  # type: ignore[no-untyped-def]
        for (r, c), v in values.items():
            self[r, c] = v

    sp.dok_matrix._update = _update  # type: ignore[attr-defined]


def compare(rows: list[dict], name: str, theirs: torch.Tensor, ours: torch.Tensor) -> None:
    """Record the largest absolute difference of two tensors (or scalars)."""
    diff = float((theirs.detach().double() - ours.detach().double()).abs().max())
    scale = float(theirs.detach().double().abs().max())
    rows.append({"check": name, "max_abs_diff": diff, "scale": scale})
    print(f"{name:40s} max |diff| {diff:.1e}  (values up to {scale:.3g})")


def mmrec_models(mmrec: Path, folder: Path, ds, tmp: Path, rows: list[dict]) -> None:
    # MMRec's ``common`` is a namespace package, which a ``common.py`` anywhere on the path
    # (this folder's) would shadow
    here = Path(__file__).resolve().parent
    sys.path[:] = [str(mmrec / "src")] + [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.modules.pop("common", None)
    from models.bm3 import BM3  # type: ignore[import-not-found]
    from models.lattice import LATTICE  # type: ignore[import-not-found]
    from models.slmrec import SLMRec  # type: ignore[import-not-found]

    r = sp.coo_matrix(
        (np.ones(len(ds.train), dtype=np.float32), (ds.train[:, 0], ds.train[:, 1])),
        shape=(ds.n_users, ds.n_items),
    )
    counts = types.SimpleNamespace(get_user_num=lambda: ds.n_users, get_item_num=lambda: ds.n_items)
    loader = types.SimpleNamespace(dataset=counts, inter_matrix=lambda form="coo": r.asformat(form))
    known: dict[int, set[int]] = {}
    for u, i in ds.train:
        known.setdefault(int(u), set()).add(int(i))
    users = torch.tensor(sorted(known)[:12])
    pos = torch.tensor([min(known[u]) for u in users.tolist()])
    neg = torch.tensor([min(set(range(ds.n_items)) - known[u]) for u in users.tolist()])
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
    }

    def ours(name: str, **model: object):
        config = resolve_config(name, {"data": {"path": str(folder)}, "model": model})
        return build_model(config, ds, torch.device("cpu"), SemanticGraphCache(tmp))

    def scores(theirs, mine) -> None:  # type: ignore[no-untyped-def]
        theirs.eval()
        mine.eval()
        with torch.no_grad():
            mine.prepare_scoring()
            compare(
                rows, f"{mine.name} scores", theirs.full_sort_predict([users]), mine.score(users)
            )

    torch.manual_seed(0)
    theirs = LATTICE(
        dict(
            base,
            embedding_size=64,
            feat_embed_dim=64,
            weight_size=[64, 64],
            knn_k=10,
            lambda_coeff=0.9,
            cf_model="lightgcn",
            n_layers=1,
            reg_weight=1e-3,
            mess_dropout=[0.1, 0.1],
        ),
        loader,
    )
    mine = ours("lattice", reg_weight=1e-3)
    with torch.no_grad():
        mine.user_embedding.copy_(theirs.user_embedding.weight)
        mine.item_id_embedding.copy_(theirs.item_id_embedding.weight)
        mine.trs["image"].load_state_dict(theirs.image_trs.state_dict())
        mine.trs["text"].load_state_dict(theirs.text_trs.state_dict())
        theirs.modal_weight.copy_(torch.tensor([0.8, 0.1]))
        mine.modal_weight.copy_(theirs.modal_weight)
    theirs.pre_epoch_processing()
    mine.on_epoch_start(1, torch.Generator())
    batch = Batch(users, pos, neg)
    for step in (1, 2):
        loss_t = theirs.calculate_loss([users, pos, neg])
        loss_o = sum(mine.loss(batch, torch.Generator()).values())
        compare(rows, f"lattice loss, batch {step}", loss_t, loss_o)
        theirs.zero_grad()
        mine.zero_grad()
        loss_t.backward()
        loss_o.backward()
        pairs = [("image_trs.weight", "trs.image.weight"), ("modal_weight", "modal_weight")]
        pairs += [("item_id_embedding.weight", "item_id_embedding")]
        for a, b in pairs:
            grad_t = dict(theirs.named_parameters())[a].grad
            grad_o = dict(mine.named_parameters())[b].grad
            if grad_t is None or grad_o is None:
                assert grad_t is None and grad_o is None, (step, a)
                rows.append({"check": f"lattice grad {b}, batch {step}", "both": "none"})
                print(f"lattice grad {b}, batch {step}: none in both")
            else:
                compare(rows, f"lattice grad {b}, batch {step}", grad_t, grad_o)
    scores(theirs, mine)

    theirs = BM3(
        dict(base, embedding_size=64, n_layers=2, reg_weight=0.1, cl_weight=2.0, dropout=0.0),
        loader,
    )
    mine = ours("bm3", n_layers=2, dropout=0.0)
    with torch.no_grad():
        mine.user_embedding.copy_(theirs.user_embedding.weight)
        mine.item_id_embedding.copy_(theirs.item_id_embedding.weight)
        mine.predictor.load_state_dict(theirs.predictor.state_dict())
        mine.trs["image"].load_state_dict(theirs.image_trs.state_dict())
        mine.trs["text"].load_state_dict(theirs.text_trs.state_dict())
    no_neg = Batch(users, pos, torch.empty(0, dtype=torch.long))
    loss_t = theirs.calculate_loss([users, pos])
    loss_o = sum(mine.loss(no_neg, torch.Generator()).values())
    compare(rows, "bm3 loss", loss_t, loss_o)
    loss_t.backward()
    loss_o.backward()
    compare(rows, "bm3 grad raw text", theirs.text_embedding.weight.grad, mine.raw["text"].grad)
    compare(rows, "bm3 grad predictor", theirs.predictor.weight.grad, mine.predictor.weight.grad)
    scores(theirs, mine)

    theirs = SLMRec(
        dict(
            base,
            recdim=64,
            layer_num=3,
            ssl_task="FAC",
            mm_fusion_mode="concat",
            temp=0.2,
            ssl_temp=0.2,
            ssl_alpha=0.1,
            init="xavier",
            adj_type="pre",
            dropout_rate=0.3,
        ),
        loader,
    )
    mine = ours("slmrec", ssl_temp=0.2, ssl_alpha=0.1)
    with torch.no_grad():
        mine.embedding_user.copy_(theirs.embedding_user.weight)
        mine.embedding_item.copy_(theirs.embedding_item.weight)
        mine.dense["image"].load_state_dict(theirs.v_dense.state_dict())
        mine.dense["text"].load_state_dict(theirs.t_dense.state_dict())
        mine.user_after_gcn.load_state_dict(theirs.embedding_user_after_GCN.state_dict())
        mine.item_after_gcn.load_state_dict(theirs.embedding_item_after_GCN.state_dict())
        for k, name in enumerate(["g_i_iv", "g_iv_iva", "g_iva_ivat"]):
            mine.chain[k].load_state_dict(getattr(theirs, name).state_dict())
        mine.probe["image"].load_state_dict(theirs.g_v_iv.state_dict())
        mine.probe["text"].load_state_dict(theirs.g_t_ivat.state_dict())
    loss_t = theirs.calculate_loss([users, pos])
    loss_o = sum(mine.loss(no_neg, torch.Generator()).values())
    compare(rows, "slmrec loss", loss_t, loss_o)
    loss_t.backward()
    loss_o.backward()
    compare(
        rows, "slmrec grad user table", theirs.embedding_user.weight.grad, mine.embedding_user.grad
    )
    theirs.eval()
    mine.eval()
    with torch.no_grad():  # MMRec scores with the last batch's tables, through a sigmoid
        compare(
            rows,
            "slmrec scores (sigmoid)",
            theirs.full_sort_predict([users]),
            torch.sigmoid(mine.score(users)),
        )


def mmssl_model(mmssl: Path, folder: Path, ds, tmp: Path, rows: list[dict]) -> None:
    sys.argv = [sys.argv[0], "--G_drop1", "0", "--G_drop2", "0"]
    sys.path.insert(0, str(mmssl / "MMSSL"))
    import Models  # type: ignore[import-not-found]

    r = sp.csr_matrix(
        (np.ones(len(ds.train), dtype=np.float32), (ds.train[:, 0], ds.train[:, 1])),
        shape=(ds.n_users, ds.n_items),
    )
    torch.manual_seed(0)
    feats = ds.features
    theirs = Models.MMSSL(
        ds.n_users, ds.n_items, 64, [64, 64], [0.1, 0.1], feats["image"], feats["text"]
    )
    ui = theirs.matrix_to_tensor(theirs.csr_norm(r, mean_flag=True))
    iu = theirs.matrix_to_tensor(theirs.csr_norm(r.T.tocsr(), mean_flag=True))
    config = resolve_config(
        "mmssl", {"data": {"path": str(folder)}, "model": {"G_drop1": 0.0, "G_drop2": 0.0}}
    )
    mine = build_model(config, ds, torch.device("cpu"), SemanticGraphCache(tmp))
    with torch.no_grad():
        mine.user_id_embedding.copy_(theirs.user_id_embedding.weight)
        mine.item_id_embedding.copy_(theirs.item_id_embedding.weight)
        mine.trans["image"].load_state_dict(theirs.image_trans.state_dict())
        mine.trans["text"].load_state_dict(theirs.text_trans.state_dict())
        mine.w_self_attention_cat.copy_(theirs.weight_dict["w_self_attention_cat"])
    theirs.eval()
    mine.eval()
    with torch.no_grad():
        users, items, image_items, *_ = theirs(ui, iu, ui, iu, ui, iu)
        out = mine.forward_tables(None)
    compare(rows, "mmssl users (eval forward)", users, out["users"])
    compare(rows, "mmssl items (eval forward)", items, out["items"])
    compare(rows, "mmssl image item features", image_items, out["fi:image"])
    disc = Models.Discriminator(ds.n_items)
    disc.train()
    mine.discriminator.train()
    with torch.no_grad():
        for k, layer in enumerate([disc.net[0], disc.net[4], disc.net[8]]):
            mine.discriminator.linears[k].load_state_dict(layer.state_dict())
    x = torch.rand(20, ds.n_items, generator=torch.Generator().manual_seed(0))
    compare(rows, "mmssl discriminator", disc(x), mine.discriminator(x, torch.Generator()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmrec", type=Path, required=True, help="enoche/MMRec checkout")
    parser.add_argument("--mmssl", type=Path, required=True, help="HKUDS/MMSSL checkout")
    args = parser.parse_args()
    _cpu_shims()
    tmp = Path(tempfile.mkdtemp())
    folder = make_dataset(
        tmp, n_users=40, n_items=50, per_user=8, features={"image": 12, "text": 9}
    )
    ds = load_dataset(folder)
    rows: list[dict] = []
    mmrec_models(args.mmrec.resolve(), folder, ds, tmp / "cache", rows)
    mmssl_model(args.mmssl.resolve(), folder, ds, tmp / "cache", rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"machine": machine(), "torch": torch.__version__, "checks": rows}
    atomic_write_text(RESULTS / "equivalence_b.json", json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
