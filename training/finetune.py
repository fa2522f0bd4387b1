"""Online fine-tuning with replay, and the evaluation gate (no Django).

A fine-tune starts from the active weights, keeps BatchNorm statistics frozen
(its batches are small and skewed towards a few classes), and trains a few steps
on batches that mix the new corrections, augmented, with replayed earlier
samples, so the model learns the correction without forgetting the rest.
"""

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import nn
from .augment import augment_batch


@dataclass(frozen=True)
class FineTuneConfig:
    steps: int = 30
    batch_size: int = 32
    learning_rate: float = 3e-4
    new_fraction: float = 0.25
    max_seconds: float = 60.0
    seed: int = 0
    # On a stream of real misread corrections Adam ends up reading more of them
    # right than momentum SGD at the same rate, with no loss on the fixed set
    # (bench/finetune_configs.py, figures in docs/online-learning.md).
    optimizer: str = "adam"
    # "head" trains only the classifier layers; "all" the whole network.
    trainable: str = "all"
    # Weight of distillation on the replayed part of each batch: the candidate is
    # also taught to keep the parent's full output distribution there, not just
    # the label, which holds on to what the parent knew (learning without forgetting).
    distill: float = 3.0


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    metrics: dict
    # The candidate's own evaluation on the fixed set: the next run's parent score.
    candidate_fixed: dict


@dataclass(frozen=True)
class RootBound:
    """The pretrained root's accuracy on the first ``count`` fixed glyphs (its own held-out
    pretraining slice, the same for every version of the chain), and the largest drop
    below it that any candidate may show: forgetting adds up over many small runs."""

    accuracy: float
    count: int
    max_drop: float


def fine_tune(
    model: torch.nn.Module,
    *,
    new_glyphs: np.ndarray,
    new_labels: np.ndarray,
    replay_glyphs: np.ndarray,
    replay_labels: np.ndarray,
    config: FineTuneConfig,
    on_progress: Callable[[float], None] | None = None,
) -> torch.nn.Module:
    """Return a fine-tuned copy of ``model``; the original is left untouched."""
    if len(new_glyphs) == 0:
        raise ValueError("nothing to fine-tune on")
    candidate = copy.deepcopy(model)
    nn.set_train_mode(candidate, freeze_bn=True)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    new_x = nn.glyphs_to_tensor(new_glyphs)
    new_y = torch.as_tensor(new_labels, dtype=torch.long)
    replay_x = nn.glyphs_to_tensor(replay_glyphs)
    replay_y = torch.as_tensor(replay_labels, dtype=torch.long)
    new_per_batch = max(1, round(config.batch_size * config.new_fraction))
    replay_per_batch = config.batch_size - new_per_batch if len(replay_x) else 0
    parameters = nn.trainable_parameters(candidate, config.trainable)
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
    elif config.optimizer == "sgd":
        optimizer = torch.optim.SGD(parameters, lr=config.learning_rate, momentum=0.9)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}")
    # The parent only answers, so it answers as the web serves it: BatchNorm folded.
    teacher = nn.for_inference(model) if config.distill and replay_per_batch else None
    started = time.monotonic()
    for step in range(config.steps):
        new_pick = torch.randint(len(new_x), (new_per_batch,), generator=generator)
        replay_pick = torch.randint(max(len(replay_x), 1), (replay_per_batch,), generator=generator)
        x = torch.cat([new_x[new_pick], replay_x[replay_pick]])
        y = torch.cat([new_y[new_pick], replay_y[replay_pick]])
        x = augment_batch(x, generator)
        logits = candidate(x)
        loss = F.cross_entropy(logits, y)
        if teacher is not None:
            with torch.no_grad():
                parent_probabilities = F.softmax(teacher(x[new_per_batch:]), dim=1)
            kept = F.kl_div(
                F.log_softmax(logits[new_per_batch:], dim=1),
                parent_probabilities,
                reduction="batchmean",
            )
            loss = loss + config.distill * kept
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if on_progress is not None:
            on_progress((step + 1) / config.steps)
        if time.monotonic() - started > config.max_seconds:
            break
    candidate.eval()
    return candidate


def gate(
    *,
    parent: torch.nn.Module,
    candidate: torch.nn.Module,
    fixed_glyphs: np.ndarray,
    fixed_labels: np.ndarray,
    new_glyphs: np.ndarray,
    new_labels: np.ndarray,
    max_forgetting: float,
    parent_fixed: dict | None = None,
    root: RootBound | None = None,
) -> GateDecision:
    """Publish only if the candidate forgets at most ``max_forgetting`` and learned the corrections.

    Learned means: every correction is now predicted right, or more of them than before.
    ``parent_fixed`` is the parent's ``nn.evaluate`` on the same fixed set, when known.
    With ``root``, the candidate must also stay within its drop of the pretrained root.
    """
    if parent_fixed is None:
        parent_fixed = nn.evaluate(parent, fixed_glyphs, fixed_labels)
    predicted = nn.predict_proba(nn.for_inference(candidate), fixed_glyphs).argmax(axis=1)
    candidate_fixed = nn.score(predicted, fixed_labels)
    parent_new = nn.evaluate(parent, new_glyphs, new_labels)["overall"]
    candidate_new = nn.evaluate(candidate, new_glyphs, new_labels)["overall"]
    forgetting = parent_fixed["overall"] - candidate_fixed["overall"]
    metrics = {
        **candidate_fixed,
        "parent_overall": parent_fixed["overall"],
        "forgetting": forgetting,
        "corrections_before": parent_new,
        "corrections_after": candidate_new,
    }
    learned = candidate_new >= 1.0 or candidate_new > parent_new
    if forgetting > max_forgetting:
        reason = (
            f"forgetting {forgetting * 100:.2f} points on the fixed set exceeds "
            f"{max_forgetting * 100:.2f}"
        )
        return GateDecision(False, reason, metrics, candidate_fixed)
    if root is not None:
        on_root_slice = predicted[: root.count] == fixed_labels[: root.count]
        drop = root.accuracy - float(on_root_slice.mean())
        metrics["forgetting_since_root"] = drop
        if drop > root.max_drop:
            reason = (
                f"forgetting since the pretrained version, {drop * 100:.2f} points, "
                f"would exceed {root.max_drop * 100:.2f}"
            )
            return GateDecision(False, reason, metrics, candidate_fixed)
    if not learned:
        reason = f"corrections predicted right {candidate_new:.0%} after vs {parent_new:.0%} before"
        return GateDecision(False, reason, metrics, candidate_fixed)
    return GateDecision(True, "", metrics, candidate_fixed)
