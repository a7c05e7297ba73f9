"""Loss functions shared by all models: BPR, MMRec's EmbLoss and memory-frugal InfoNCE."""

from __future__ import annotations

import math

import torch


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor, base2: bool = False) -> torch.Tensor:
    """Bayesian personalised ranking: ``-mean(log sigmoid(pos - neg))`` over [B] scores.

    ``base2=True`` takes the base-2 logarithm, as MENTOR's official code does.
    """
    loss = -torch.nn.functional.logsigmoid(pos - neg).mean()
    return loss / math.log(2.0) if base2 else loss


def rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for a [n, d] table and int64 [B] indices, with a faster backward on the
    CPU (an embedding gradient instead of an accumulating index_put): [B, d]."""
    return torch.nn.functional.embedding(index, table)


def emb_norm_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """MMRec's EmbLoss: sum of the Frobenius norms of [B, d] tensors, divided by B."""
    total = sum(torch.linalg.vector_norm(e) for e in embeddings)
    return total / embeddings[-1].shape[0]  # type: ignore[return-value]


class _BlockInfoNCE(torch.autograd.Function):
    """InfoNCE whose gradient is formed block by block during the forward pass.

    Never holds more than ``block x n`` similarities: each row block has whole rows, so its softmax
    is complete inside the block and both gradients are accumulated at once (three matrix products
    per block, no recomputation in backward). With ``dtype=torch.bfloat16`` the three products run
    in bfloat16 (exp, sums and accumulation stay in float32). ``unit``: the rows are L2-normalised,
    so every logit is at most ``1 / temp`` and that constant shifts the exponent; otherwise each
    row's maximum does.
    """

    @staticmethod
    def forward(ctx, a, b, temp, block, dtype, unit, offset, total):  # type: ignore[override]
        # a: the m anchor rows offset .. offset + m of the n rows of b; the loss is their
        # summed terms over ``total`` (the mean when they are all n rows)
        m, n = a.shape[0], b.shape[0]
        acc = torch.promote_types(a.dtype, torch.float32)
        a_s = (a.detach() / temp).to(dtype)
        b_d = b.detach().to(dtype)
        need_a, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_a = torch.empty((m, a.shape[1]), dtype=acc, device=a.device)
        grad_b = torch.zeros((n, b.shape[1]), dtype=acc, device=a.device)
        own = b.detach()[offset : offset + m]
        positives = (a.detach() * own).sum(dim=1, dtype=acc) / temp
        log_sums = torch.empty(m, dtype=acc, device=a.device)
        for start in range(0, m, block):
            stop = min(start + block, m)
            if unit:  # |a.b| <= 1: shifting the logits by -1/t keeps exp() in range for any t
                shift = a_s.new_full((1, 1), -1.0 / temp).expand(stop - start, n)
                weights = torch.addmm(shift, a_s[start:stop], b_d.T).exp_()
                top: torch.Tensor | float = 1.0 / temp
            else:
                weights = a_s[start:stop] @ b_d.T
                row_max = weights.amax(dim=1, keepdim=True)
                weights = weights.sub_(row_max).exp_()
                top = row_max.view(-1).to(acc)
            sums = weights.sum(dim=1, dtype=acc)
            log_sums[start:stop] = sums.log() + top
            if need_a:
                grad_a[start:stop] = (weights @ b_d).to(acc) / sums.unsqueeze(1)
            if need_b:
                scaled = (a_s[start:stop].to(acc) / sums.unsqueeze(1)).to(dtype)
                grad_b += (weights.T @ scaled).to(acc)
        ctx.save_for_backward(grad_a, grad_b, a.detach(), own)
        ctx.temp, ctx.offset, ctx.total = temp, offset, total
        terms = log_sums - positives
        loss = terms.mean() if m == total else terms.sum() / total
        return loss.to(a.dtype)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        grad_a, grad_b, a, own = ctx.saved_tensors
        scale = grad_out / ctx.total
        # d/da_i = (sum_j p_ij b_j - b_i) / t ;  d/db_j = (sum_i p_ij a_i - a_j) / t
        da = (grad_a - own).mul_(scale / ctx.temp) if ctx.needs_input_grad[0] else None
        db = None
        if ctx.needs_input_grad[1]:
            if len(a) == len(grad_b):
                db = (grad_b - a / ctx.temp).mul_(scale)
            else:
                db = grad_b
                db[ctx.offset : ctx.offset + len(a)] -= a / ctx.temp
                db.mul_(scale)
        return da, db, None, None, None, None, None, None


def info_nce(
    anchors: torch.Tensor,
    candidates: torch.Tensor,
    temp: float,
    block: int = 0,
    dtype: torch.dtype = torch.float32,
    normalize: bool = True,
    shard: tuple[int, int] = (0, 1),
) -> torch.Tensor:
    """One-directional InfoNCE between two views of the same n rows.

    ``mean_i [ -log( exp(a_i.b_i / t) / sum_j exp(a_i.b_j / t) ) ]`` with ``a``, ``b`` the
    L2-normalised rows of ``anchors`` and ``candidates`` [n, d] (with ``normalize=False`` the
    rows as they are: the same value as ``cross_entropy((a / t) @ b.T, arange(n))``); the
    denominator runs over all n candidates (the positive included). Memory is O(block * n), not
    O(n^2), in forward and backward. ``block`` rows per block (0: about 4M similarities per
    block, at least 256 rows); ``dtype`` sets the precision of the three large matrix products.

    ``shard=(rank, world)`` takes only the anchors of rows ``n * rank // world`` to
    ``n * (rank + 1) // world`` (every candidate still in the denominator) and returns their
    terms summed over n: the shards' losses, and their gradients, add up to the whole loss.
    """
    if anchors.shape != candidates.shape:
        raise ValueError(
            f"anchors {tuple(anchors.shape)} and candidates "
            f"{tuple(candidates.shape)} differ in shape"
        )
    if normalize:
        anchors = torch.nn.functional.normalize(anchors, dim=1)
        candidates = torch.nn.functional.normalize(candidates, dim=1)
    rank, world = shard
    n = len(anchors)
    start, stop = n * rank // world, n * (rank + 1) // world
    block = _block_rows(block, n)
    if world == 1:
        return _BlockInfoNCE.apply(anchors, candidates, temp, block, dtype, normalize, 0, n)
    return _BlockInfoNCE.apply(
        anchors[start:stop], candidates, temp, block, dtype, normalize, start, n
    )


def _block_rows(block: int, n: int) -> int:
    """``block``, or with 0 about 4M similarities per block (at least 256 rows) of n columns."""
    return block if block > 0 else max(256, (1 << 22) // max(1, n))


def table_moments(parts: list[torch.Tensor], copies: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Scalar mean and unbiased variance of all elements of a table made of row blocks ``parts``
    laid side by side ``copies`` times (e.g. ``[x, x]`` is ``copies=2``), without building it.

    With n elements per copy, sum s1 and sum of squares s2 (float64):
    mean = s1 / n, var = copies * (s2 - s1^2 / n) / (copies * n - 1).
    """
    n = sum(p.numel() for p in parts)
    s1 = sum(p.sum(dtype=torch.float64) for p in parts)
    s2 = sum(torch.linalg.vector_norm(p, dtype=torch.float64).square() for p in parts)
    mean = s1 / n
    var = copies * (s2 - s1 * s1 / n) / (copies * n - 1)
    return mean, var  # type: ignore[return-value]


def mean_var_gap(
    a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """``|var_a - var_b| + |mean_a - mean_b|`` from (mean, var) pairs of two tables."""
    return ((a[1] - b[1]).abs() + (a[0] - b[0]).abs()).float()
