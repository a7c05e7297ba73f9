"""LGMRec and SMORE against their authors' code: same weights, same batch, on a CPU.

Builds the authors' LGMRec (``--lgmrec``: a checkout of georgeguo-cn/LGMRec) and SMORE
(``--smore``: a checkout of kennethorq/SMORE), each with its CPU patch from
``benchmarks/patches/`` applied, on a seeded 40-user / 50-item data set with random image and
text features; copies their initial weights into ours and compares the item graphs (SMORE), the
output tables, the loss, gradients and full-ranking scores over two batches with an Adam step
between them. The original code is imported from those checkouts (nothing of it is in this
repository).

LGMRec draws Gumbel noise (``F.gumbel_softmax``, global random state) and drops hyperedge
assignments: here both codes take the same four noise tensors, in the order both draw them
(image items, image users, text items, text users), and ``keep_rate`` is 1 (no dropout; the
dropout itself is checked in tests/test_lgmrec.py). Its scores are compared without noise: the
published code draws new noise at every scoring call, ours takes none. SMORE runs with
``dropout_rate`` 0 (its only random draw). Writes
``benchmarks/results/equivalence_lgmrec_smore.json``.

Usage: python benchmarks/equivalence_lgmrec_smore.py --lgmrec /tmp/ref-lgmrec \
       --smore /tmp/ref-smore
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from common import RESULTS, ROOT, machine
from equivalence_gume_cohesion import batch_of, compare, grads, import_framework, ours, stubs

sys.path.insert(0, str(ROOT / "tests"))
from conftest import make_dataset  # noqa: E402

from mentor.data.dataset import load_dataset  # noqa: E402
from mentor.data.sampler import Batch  # noqa: E402
from mentor.fsutil import atomic_write_text  # noqa: E402


class SharedNoise:
    """The same Gumbel noise for both codes: the k-th call of either takes the k-th tensor."""

    def __init__(self, shapes: list[tuple[int, int]], seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.noise = [-torch.empty(s).exponential_(generator=gen).log() for s in shapes]
        self.calls = {"theirs": 0, "ours": 0}

    def draw(self, who: str, logits: torch.Tensor, tau: float) -> torch.Tensor:
        noise = self.noise[self.calls[who] % len(self.noise)]
        self.calls[who] += 1
        return torch.softmax((logits + noise) / tau, dim=-1)


def lgmrec(root: Path, folder: Path, ds, tmp: Path, rows: list[dict]) -> None:
    import_framework(root)
    import models.lgmrec as module  # type: ignore[import-not-found]

    import mentor.models.lgmrec as mine_module

    users, pos, neg = batch_of(ds)
    base, loader = stubs(ds, users, folder)
    settings = dict(
        n_ui_layers=2,
        n_mm_layers=2,
        n_hyper_layer=2,
        hyper_num=4,
        keep_rate=1.0,
        alpha=0.3,
        cl_weight=0.1,  # larger than the default 1e-4 so that the terms show in the check
        reg_weight=1e-2,
    )
    config = dict(base, embedding_size=64, feat_embed_dim=64, cf_model="lightgcn", **settings)
    torch.manual_seed(0)
    theirs = module.LGMRec(config, loader)
    mine = ours("lgmrec", folder, ds, tmp, **settings)
    with torch.no_grad():
        mine.user_embedding.copy_(theirs.user_embedding.weight)
        mine.item_id_embedding.copy_(theirs.item_id_embedding.weight)
        for m, v in (("image", "v"), ("text", "t")):
            mine.trs[m].copy_(getattr(theirs, f"item_{m}_trs"))
            mine.hyper[m].copy_(getattr(theirs, f"{v}_hyper"))
    shapes = [(ds.n_items, 4), (ds.n_users, 4)] * 2
    noise = SharedNoise(shapes, seed=1)
    original_gumbel = module.F.gumbel_softmax
    original_ours = mine_module.gumbel_softmax
    module.F.gumbel_softmax = lambda logits, tau, dim, hard: noise.draw("theirs", logits, tau)
    mine_module.gumbel_softmax = lambda logits, tau, generator: noise.draw("ours", logits, tau)
    try:
        theirs.train()
        mine.train()
        opt_t = torch.optim.Adam(theirs.parameters(), lr=1e-2)
        opt_o = torch.optim.Adam(mine.parameters(), lr=1e-2)
        batch = Batch(users, pos, neg)
        pairs = [
            ("user_embedding.weight", "user_embedding"),
            ("item_id_embedding.weight", "item_id_embedding"),
            ("item_image_trs", "trs.image"),
            ("t_hyper", "hyper.text"),
        ]
        for step in (1, 2):
            with torch.no_grad():
                u_t, i_t, _ = theirs.forward()
                u_o, i_o, _ = mine.forward_all(torch.Generator())
            compare(rows, f"lgmrec users, batch {step}", u_t, u_o)
            compare(rows, f"lgmrec items, batch {step}", i_t, i_o)
            opt_t.zero_grad()
            opt_o.zero_grad()
            loss_t = theirs.calculate_loss([users, pos, neg])
            loss_o = sum(mine.loss(batch, torch.Generator()).values())
            compare(rows, f"lgmrec loss, batch {step}", loss_t, loss_o)
            loss_t.backward()
            loss_o.backward()
            grads(rows, f"lgmrec, batch {step},", pairs, theirs, mine)
            opt_t.step()
            opt_o.step()
        # scores without noise on both sides (the published code draws new noise every call)
        module.F.gumbel_softmax = lambda logits, tau, dim, hard: torch.softmax(logits / tau, dim)
        mine_module.gumbel_softmax = original_ours  # no noise without a generator
        theirs.eval()
        mine.eval()
        with torch.no_grad():
            mine.prepare_scoring()
            compare(rows, "lgmrec scores", theirs.full_sort_predict([users]), mine.score(users))
    finally:
        module.F.gumbel_softmax = original_gumbel
        mine_module.gumbel_softmax = original_ours


def smore(root: Path, folder: Path, ds, tmp: Path, rows: list[dict]) -> None:
    import_framework(root / "src")
    import models.smore as module  # type: ignore[import-not-found]

    users, pos, neg = batch_of(ds)
    base, loader = stubs(ds, users, folder)
    settings = dict(
        n_ui_layers=3,
        n_layers=2,
        image_knn_k=10,
        text_knn_k=6,
        reg_weight=1e-2,
        cl_loss=0.1,
        dropout_rate=0.0,
    )
    config = dict(base, embedding_size=64, lambda_coeff=0.9, temperature=0.2, **settings)
    torch.manual_seed(0)
    theirs = module.SMORE(config, loader)
    mine = ours("smore", folder, ds, tmp, **settings)
    compare(
        rows, "smore image graph", theirs.image_original_adj.to_dense(), _dense(mine.item_graphs)
    )
    compare(rows, "smore fusion graph", theirs.fusion_adj.to_dense(), _dense(mine.fusion_graph))
    with torch.no_grad():
        mine.user_embedding.copy_(theirs.user_embedding.weight)
        mine.item_id_embedding.copy_(theirs.item_id_embedding.weight)
        for m, v in (("image", "v"), ("text", "t")):
            mine.trs[m].load_state_dict(getattr(theirs, f"{m}_trs").state_dict())
            mine.query[m].load_state_dict(getattr(theirs, f"query_{v}").state_dict())
            mine.gate[m].load_state_dict(getattr(theirs, f"gate_{v}").state_dict())
            mine.prefer[m].load_state_dict(getattr(theirs, f"gate_{m}_prefer").state_dict())
            mine.filters[m].copy_(getattr(theirs, f"{m}_complex_weight"))
        mine.fusion_gate.load_state_dict(theirs.gate_f.state_dict())
        mine.fusion_prefer.load_state_dict(theirs.gate_fusion_prefer.state_dict())
        mine.fusion_filter.copy_(theirs.fusion_complex_weight)
    theirs.train()
    mine.train()
    opt_t = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    opt_o = torch.optim.Adam(mine.parameters(), lr=1e-2)
    batch = Batch(users, pos, neg)
    pairs = [
        ("user_embedding.weight", "user_embedding"),
        ("item_id_embedding.weight", "item_id_embedding"),
        ("image_embedding.weight", "raw.image"),
        ("text_trs.weight", "trs.text.weight"),
        ("query_v.0.weight", "query.image.0.weight"),
        ("fusion_complex_weight", "fusion_filter"),
        ("gate_text_prefer.0.weight", "prefer.text.0.weight"),
    ]
    for step in (1, 2):
        with torch.no_grad():
            u_t, i_t, side_t, content_t = theirs.forward(theirs.norm_adj, train=True)
            out_o, side_o, content_o = mine.forward_all(torch.Generator())
        compare(rows, f"smore side, batch {step}", side_t, side_o)
        compare(rows, f"smore output, batch {step}", torch.cat([u_t, i_t]), out_o)
        opt_t.zero_grad()
        opt_o.zero_grad()
        loss_t = theirs.calculate_loss([users, pos, neg])
        loss_o = sum(mine.loss(batch, torch.Generator()).values())
        compare(rows, f"smore loss, batch {step}", loss_t, loss_o)
        loss_t.backward()
        loss_o.backward()
        grads(rows, f"smore, batch {step},", pairs, theirs, mine)
        opt_t.step()
        opt_o.step()
    theirs.eval()
    mine.eval()
    with torch.no_grad():
        mine.prepare_scoring()
        compare(rows, "smore scores", theirs.full_sort_predict([users]), mine.score(users))


def _dense(graph) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """A SparseGraph, or the image one of a ``{modality: SparseGraph}``, as a dense tensor."""
    graph = graph["image"] if isinstance(graph, dict) else graph
    return torch.from_numpy(graph.to_scipy().toarray())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lgmrec", type=Path, required=True, help="patched LGMRec checkout")
    parser.add_argument("--smore", type=Path, required=True, help="patched SMORE checkout")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    try:
        folder = make_dataset(
            tmp, n_users=40, n_items=50, per_user=8, features={"image": 12, "text": 9}
        )
        ds = load_dataset(folder)
        rows: list[dict] = []
        lgmrec(args.lgmrec.resolve(), folder, ds, tmp / "cache", rows)
        smore(args.smore.resolve(), folder, ds, tmp / "cache", rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"machine": machine(), "torch": torch.__version__, "checks": rows}
    path = RESULTS / "equivalence_lgmrec_smore.json"
    atomic_write_text(path, json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
