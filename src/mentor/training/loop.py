"""The training loop every model shares.

Adam (or AdamW) on the sum of the model's loss terms with MMRec's optional exponential
learning-rate schedule, uniform negative sampling (skipped for models without negatives), the
model's per-epoch hook and optional second optimiser (driven by checkpointed generators and
states), validation after every ``eval_every`` epochs with MMRec's early stopping (a strictly
better valid metric, compared at four decimals; stop once more than ``patience`` evaluations in a
row bring none), a checkpoint written
atomically after every epoch, resumable, and the test split evaluated once on the best-valid state.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mentor.config import RunConfig, TrainConfig
from mentor.data.dataset import Dataset
from mentor.data.sampler import BPRSampler
from mentor.errors import MentorError
from mentor.eval.context import build_model
from mentor.eval.evaluator import Evaluator
from mentor.fsutil import RunLock
from mentor.hardware import peak_memory_mb, resolve_device
from mentor.models.base import Recommender, adam
from mentor.paths import cache_dir
from mentor.semantic import SemanticGraphCache
from mentor.training import distributed
from mentor.training.checkpoint import (
    atomic_write_text,
    load_tensors,
    optimizer_tensors,
    restore_optimizer,
    save_tensors,
)
from mentor.training.runinfo import check_run_data, record_resume, write_run_info

CHECKPOINT = "checkpoint.safetensors"
BEST = "best.safetensors"


@dataclass
class LoopState:
    """What a checkpoint restores besides tensors."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float = -1.0
    bad_evals: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0


def _history_csv(history: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()


def _round4(x: float) -> float:
    return float(f"{x:.4f}")


def fit(
    config: RunConfig,
    dataset: Dataset,
    run_dir: Path,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    cache: SemanticGraphCache | None = None,
    on_valid: Callable[[int, dict[str, float]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train ``config``'s model on ``dataset``, writing the run folder; returns ``metrics.json``.

    ``on_valid(epoch, valid_metrics)`` is called after each validation, once the epoch's
    checkpoint is written; an exception it raises (a search pruning the run) stops the run
    there, resumable and without test metrics. ``on_epoch(row)`` gets each epoch's history row
    (loss terms, seconds, validation metrics) on rank 0, e.g. for TensorBoard.

    Started by ``torchrun`` with several processes, trains data-parallel (see
    :mod:`mentor.training.distributed`): every rank returns the same metrics, rank 0 alone
    writes the run folder.
    """
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    device = resolve_device(config.train.device)
    dist = distributed.from_env(device)
    if dist is not None:
        device = distributed.rank_device(device)
        settings = config.to_dict()
        settings["data"] = {k: v for k, v in settings["data"].items() if k != "path"}
        dist.check_same({"settings": settings, "data": dataset.fingerprint(), "resume": resume})
    evaluator = Evaluator(
        dataset,
        config.eval.topk,
        config.eval.batch_users,
        config.eval.mask_valid_at_test,
        config.eval.score_budget_mb,
    )
    cache = cache or SemanticGraphCache(cache_dir() / "graphs")
    model = build_model(config, dataset, device, cache)
    if dist is not None and not dist.is_main:  # rank 0 alone touches the run folder
        return _fit_locked(
            config, dataset, run_dir, resume, False, log, device, evaluator, model, dist, on_valid
        )  # on_epoch is rank 0's
    if run_dir.exists() and not run_dir.is_dir():
        raise MentorError(f"{run_dir}: exists and is not a folder; give a run folder")
    with RunLock(run_dir):
        if resume:
            check_run_data(run_dir, dataset)
            record_resume(run_dir, config)
        else:
            write_run_info(run_dir, config, dataset)
        return _fit_locked(
            config,
            dataset,
            run_dir,
            resume,
            progress,
            log,
            device,
            evaluator,
            model,
            dist,
            on_valid,
            on_epoch,
        )


def _fit_locked(
    config: RunConfig,
    dataset: Dataset,
    run_dir: Path,
    resume: bool,
    progress: bool,
    log: Callable[[str], None],
    device: torch.device,
    evaluator: Evaluator,
    model: Recommender,
    dist: distributed.Dist | None = None,
    on_valid: Callable[[int, dict[str, float]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The body of :func:`fit`, run while holding the run folder's lock (rank 0 only holds
    it under data-parallel training; the other ranks write nothing)."""
    main = dist is None or dist.is_main
    for split in ("valid", "test"):
        cold = evaluator.truth[split].cold_users
        if cold and main:
            log(f"{split}: dropped {cold:,} cold-start user(s) without train interactions")
    if main:
        atomic_write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")

    sample_gen = torch.Generator().manual_seed(config.train.seed)
    model_gen = torch.Generator(device=device).manual_seed(config.train.seed + 1)
    aux_params = model.auxiliary_parameters() if model.trainable else []
    aux_ids = {id(p) for p in aux_params}
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in aux_ids]
    optimizer = make_optimizer(config.train, params) if params and model.trainable else None
    aux_optimizer = model.auxiliary_optimizer(aux_params) if aux_params and optimizer else None
    state = LoopState()
    if resume and main:
        try:
            state = _restore(run_dir, model, optimizer, aux_optimizer, sample_gen, model_gen)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise MentorError(
                f"{run_dir / CHECKPOINT}: does not fit this run ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); the checkpoint is damaged "
                "or from another run: train anew"
            ) from None
        log(f"resumed {run_dir} after epoch {state.epoch}")
    if resume and dist is not None:  # rank 0's restored state on every rank (no shared disk)
        state = _share_state(dist, model, optimizer, aux_optimizer, sample_gen, model_gen, state)

    metric = config.eval.valid_metric
    if optimizer is None:
        state = _evaluate_only(model, evaluator, device, metric, state)
    else:
        sampler = BPRSampler(
            dataset.train, dataset.n_items, config.train.batch_size, model.uses_negatives
        )
        _train(
            config,
            model,
            optimizer,
            aux_optimizer,
            sampler,
            evaluator,
            device,
            run_dir,
            state,
            sample_gen,
            model_gen,
            progress,
            log,
            dist,
            on_valid,
            on_epoch,
        )

    peaks = dist.gather(peak_memory_mb(device)) if dist is not None else None
    if not main:
        return dist.broadcast(None)  # type: ignore[union-attr]
    best = run_dir / BEST
    if best.exists():
        load_weights(model, best)
    test = evaluator.evaluate(model, "test", device)
    seconds = [row["seconds"] for row in state.history if "seconds" in row]
    metrics = {
        "model": config.model_name,
        "dataset": dataset.name,
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "seconds_per_epoch": statistics.median(seconds) if seconds else 0.0,
        "train_seconds": state.train_seconds,
        "valid": state.best_valid,
        "test": test,
        "device": str(device),
        "peak_memory_mb": peak_memory_mb(device),
    }
    if dist is not None:
        metrics["world_size"] = dist.world
        metrics["peak_memory_mb_per_rank"] = peaks
    atomic_write_text(
        run_dir / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False) + "\n"
    )
    if dist is not None:
        dist.broadcast(metrics)
    return metrics


def _share_state(
    dist: distributed.Dist,
    model: Recommender,
    optimizer: torch.optim.Optimizer | None,
    aux_optimizer: torch.optim.Optimizer | None,
    sample_gen: torch.Generator,
    model_gen: torch.Generator,
    state: LoopState,
) -> LoopState:
    """Rank 0's weights, optimiser states, random streams and loop state on every rank."""
    payload = None
    if dist.is_main:
        payload = {
            "model": {k: v.cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "aux": aux_optimizer.state_dict() if aux_optimizer is not None else None,
            "sample": sample_gen.get_state(),
            "model_gen": model_gen.get_state(),
            "state": state,
        }
    payload = dist.broadcast(payload)
    if not dist.is_main:
        model.load_state_dict(payload["model"])
        if optimizer is not None:
            optimizer.load_state_dict(payload["optimizer"])
        if aux_optimizer is not None:
            aux_optimizer.load_state_dict(payload["aux"])
        sample_gen.set_state(payload["sample"])
        model_gen.set_state(payload["model_gen"])
    return payload["state"]


def _evaluate_only(
    model: Recommender, evaluator: Evaluator, device: torch.device, metric: str, state: LoopState
) -> LoopState:
    valid = evaluator.evaluate(model, "valid", device)
    state.best_valid = valid
    state.history = [{"epoch": 0, **{f"valid_{k}": v for k, v in valid.items()}}]
    state.best_score = valid[metric]
    return state


def make_optimizer(train: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The main optimiser (``train.optimizer``) over ``params``."""
    kind = torch.optim.AdamW if train.optimizer == "adamw" else torch.optim.Adam
    return adam(params, kind, lr=train.learning_rate, weight_decay=train.weight_decay)


def scheduled_lr(train: TrainConfig, epoch: int) -> float:
    """Learning rate of ``epoch`` (1-based), MMRec's LambdaLR: ``lr * factor ** ((e-1) / step)``."""
    factor, step = train.lr_scheduler
    return train.learning_rate * factor ** ((epoch - 1) / step)


def _train(
    config: RunConfig,
    model: Recommender,
    optimizer: torch.optim.Optimizer,
    aux_optimizer: torch.optim.Optimizer | None,
    sampler: BPRSampler,
    evaluator: Evaluator,
    device: torch.device,
    run_dir: Path,
    state: LoopState,
    sample_gen: torch.Generator,
    model_gen: torch.Generator,
    progress: bool,
    log: Callable[[str], None],
    dist: distributed.Dist | None = None,
    on_valid: Callable[[int, dict[str, float]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    from tqdm.auto import tqdm

    metric = config.eval.valid_metric
    main = dist is None or dist.is_main
    replicate = model.data_parallel == "replicate"
    summed = frozenset() if replicate else model.summed_terms()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    aux_params = (
        [p for group in aux_optimizer.param_groups for p in group["params"]]
        if aux_optimizer is not None
        else []
    )

    def weighted(terms: dict[str, torch.Tensor], batch: Any) -> dict[str, torch.Tensor]:
        """This rank's share of each term: batch-mean (and replicated) terms times the
        rank's share of the rows; summed terms as they are (one process: unchanged)."""
        if dist is None:
            return terms
        return {k: v if k in summed else v * batch.fraction for k, v in terms.items()}

    epochs = tqdm(
        range(state.epoch + 1, config.train.epochs + 1),
        desc=f"{config.model_name}",
        unit="epoch",
        disable=not progress,
        initial=state.epoch,
        total=config.train.epochs,
    )
    for epoch in epochs:
        if state.bad_evals > config.train.patience:
            break
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = scheduled_lr(config.train, epoch)
        start = time.perf_counter()
        model.on_epoch_start(epoch, model_gen)
        totals: dict[str, float] = {}
        aux_totals: dict[str, float] = {}
        batches = tqdm(
            sampler.epoch(sample_gen),
            total=len(sampler),
            leave=False,
            unit="batch",
            disable=not progress,
            desc=f"epoch {epoch}",
        )
        for batch in batches:
            if dist is not None:
                share = batch.replicate_for if replicate else batch.slice_for
                batch = share(dist.rank, dist.world)
            batch = batch.to(device)
            if aux_optimizer is not None:
                aux_terms = weighted(model.auxiliary_loss(batch, model_gen), batch)
                aux_optimizer.zero_grad(set_to_none=True)
                sum(aux_terms.values()).backward()  # type: ignore[union-attr]
                if dist is not None:
                    dist.sum_gradients(aux_params)
                aux_optimizer.step()
                for name, value in aux_terms.items():
                    aux_totals[name] = aux_totals.get(name, 0.0) + float(value.detach())
            terms = weighted(model.loss(batch, model_gen), batch)
            loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[union-attr]
            if dist is not None:
                dist.sum_gradients(params)
            optimizer.step()
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach())
        if dist is not None:  # the global batches' terms: the sums of the ranks' shares
            totals = dist.sum_values(totals, device)
            aux_totals = dist.sum_values(aux_totals, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        state.train_seconds += seconds
        loss_value = sum(totals.values()) / max(1, len(sampler))
        if not math.isfinite(loss_value):
            raise MentorError(
                f"epoch {epoch}: the loss became {loss_value}; lower train.learning_rate"
            )
        row: dict[str, Any] = {"epoch": epoch, "loss": loss_value, "seconds": seconds}
        row.update({f"loss_{k}": v / len(sampler) for k, v in totals.items()})
        row.update({f"aux_loss_{k}": v / len(sampler) for k, v in aux_totals.items()})
        if epoch % config.train.eval_every == 0:
            if dist is None:
                valid = evaluator.evaluate(model, "valid", device)
            else:  # each rank ranks its block of users; every rank gets the merged metrics
                shard = (dist.rank, dist.world)
                valid = evaluator.evaluate(model, "valid", device, shard, dist.gather)
            row.update({f"valid_{k}": v for k, v in valid.items()})
            score = _round4(valid[metric])
            if score > state.best_score:
                state.best_score, state.best_epoch, state.bad_evals = score, epoch, 0
                state.best_valid = valid
                if main:
                    save_tensors(run_dir / BEST, model.state_dict(), {"epoch": epoch})
            else:
                state.bad_evals += 1
            epochs.set_postfix(loss=f"{loss_value:.4f}", **{metric: f"{valid[metric]:.4f}"})
        state.epoch = epoch
        state.history.append(row)
        if main:
            atomic_write_text(run_dir / "history.csv", _history_csv(state.history))
            _checkpoint(run_dir, model, optimizer, aux_optimizer, sample_gen, model_gen, state)
        if not progress and main:
            shown = (
                f" valid {metric} {row[f'valid_{metric}']:.4f}" if f"valid_{metric}" in row else ""
            )
            log(f"epoch {epoch}: loss {loss_value:.4f} ({seconds:.2f}s){shown}")
        if on_epoch is not None and main:
            on_epoch(row)
        if on_valid is not None and f"valid_{metric}" in row:
            on_valid(epoch, valid)
    epochs.close()


def _checkpoint(
    run_dir: Path,
    model: Recommender,
    optimizer: torch.optim.Optimizer,
    aux_optimizer: torch.optim.Optimizer | None,
    sample_gen: torch.Generator,
    model_gen: torch.Generator,
    state: LoopState,
) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_tensors, groups = optimizer_tensors(optimizer)
    tensors.update(opt_tensors)
    aux_groups = None
    if aux_optimizer is not None:
        aux_tensors, aux_groups = optimizer_tensors(aux_optimizer, "aux_optim")
        tensors.update(aux_tensors)
    tensors["rng.sample"] = sample_gen.get_state()
    tensors["rng.model"] = model_gen.get_state()
    meta = {
        "epoch": state.epoch,
        "best_epoch": state.best_epoch,
        "best_score": state.best_score,
        "bad_evals": state.bad_evals,
        "best_valid": state.best_valid,
        "train_seconds": state.train_seconds,
        "history": state.history,
        "param_groups": groups,
        "aux_param_groups": aux_groups,
    }
    save_tensors(run_dir / CHECKPOINT, tensors, meta)


def load_weights(model: Recommender, path: Path) -> None:
    """Load a model state saved by :func:`save_tensors` (e.g. ``best.safetensors``)."""
    tensors, _ = load_tensors(path)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise MentorError(
            f"{path}: the saved weights do not fit the model built from config.json "
            f"({str(exc).splitlines()[0]}); the run folder is damaged or mixed: train anew"
        ) from None


def _restore(
    run_dir: Path,
    model: Recommender,
    optimizer: torch.optim.Optimizer | None,
    aux_optimizer: torch.optim.Optimizer | None,
    sample_gen: torch.Generator,
    model_gen: torch.Generator,
) -> LoopState:
    tensors, meta = load_tensors(run_dir / CHECKPOINT)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if optimizer is not None:
        restore_optimizer(optimizer, tensors, meta["param_groups"])
    if aux_optimizer is not None:
        restore_optimizer(aux_optimizer, tensors, meta["aux_param_groups"], "aux_optim")
    sample_gen.set_state(tensors["rng.sample"])
    saved = tensors["rng.model"]
    if saved.numel() == model_gen.get_state().numel():
        model_gen.set_state(saved)
    else:  # saved on another device kind (e.g. trained on CUDA, resumed on the CPU)
        model_gen.manual_seed(int(meta.get("seed", 0)) + 1 + int(meta["epoch"]))
        print(
            f"warning: {run_dir}: the run was checkpointed on another kind of device; its model "
            "random stream (dropout, noise) restarts from a fixed seed, so the resumed run is "
            "reproducible but not identical to an uninterrupted one",
            file=sys.stderr,
        )
    return LoopState(
        epoch=meta["epoch"],
        best_epoch=meta["best_epoch"],
        best_score=meta["best_score"],
        bad_evals=meta["bad_evals"],
        best_valid=meta["best_valid"],
        history=meta["history"],
        train_seconds=meta["train_seconds"],
    )
