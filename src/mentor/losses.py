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


def emb_norm_loss(*embeddings: torch.Tensor) -> torch.Tensor:
    """MMRec's EmbLoss: sum of the Frobenius norms of [B, d] tensors, divided by B."""
    total = sum(torch.linalg.vector_norm(e) for e in embeddings)
    return total / embeddings[-1].shape[0]  # type: ignore[return-value]


class _BlockInfoNCE(torch.autograd.Function):
    """InfoNCE over unit rows whose gradient is formed block by block during the forward pass.

    Never holds more than ``block x n`` similarities: each row block has whole rows, so its softmax
    is complete inside the block and both gradients are accumulated at once (three matrix products
    per block, no recomputation in backward).
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, temp: float, block: int):  # type: ignore[override]
        n = a.shape[0]
        a_d, b_d = a.detach(), b.detach()
        need = ctx.needs_input_grad
        grad_a = torch.empty_like(a_d) if need[0] else None
        grad_b = torch.zeros_like(b_d) if need[1] else None
        total = torch.zeros((), dtype=torch.float64, device=a.device)
        inv_t = 1.0 / temp
        for start in range(0, n, block):
            a_blk = a_d[start : start + block]
            logits = a_blk @ b_d.T
            logits.mul_(inv_t)
            positive = logits.diagonal(offset=start).clone()
            logits.exp_()
            sums = logits.sum(dim=1)
            total += (sums.log() - positive).sum(dtype=torch.float64)
            logits.div_(sums.unsqueeze(1))
            if grad_a is not None:
                grad_a[start : start + block] = logits @ b_d
            if grad_b is not None:
                grad_b.addmm_(logits.T, a_blk)
        scale = inv_t / n
        if grad_a is not None:
            grad_a.sub_(b_d).mul_(scale)
        if grad_b is not None:
            grad_b.sub_(a_d).mul_(scale)
        ctx.save_for_backward(*(g for g in (grad_a, grad_b) if g is not None))
        ctx.has = (grad_a is not None, grad_b is not None)
        return (total / n).to(a.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        saved = list(ctx.saved_tensors)
        grad_a = saved.pop(0) * grad_out if ctx.has[0] else None
        grad_b = saved.pop(0) * grad_out if ctx.has[1] else None
        return grad_a, grad_b, None, None


def info_nce(
    anchors: torch.Tensor, candidates: torch.Tensor, temp: float, block: int = 1024
) -> torch.Tensor:
    """One-directional InfoNCE between two views of the same n rows.

    ``mean_i [ -log( exp(a_i.b_i / t) / sum_j exp(a_i.b_j / t) ) ]`` with ``a``, ``b`` the
    L2-normalised rows of ``anchors`` and ``candidates`` [n, d]; the denominator runs over all
    n candidates (the positive included). Memory is O(block * n), not O(n^2), in forward and
    backward.
    """
    a = torch.nn.functional.normalize(anchors, dim=1)
    b = torch.nn.functional.normalize(candidates, dim=1)
    return _BlockInfoNCE.apply(a, b, temp, block)


def mean_var_gap(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``|var(x) - var(y)| + |mean(x) - mean(y)|`` over all elements (unbiased variance)."""
    return (x.var() - y.var()).abs() + (x.mean() - y.mean()).abs()
