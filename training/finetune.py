"""Online fine-tuning with replay, and the evaluation gate (no Django).

A fine-tune trains a copy of the active weights for a few steps on batches that mix
the new corrections, augmented, with replayed earlier samples; by default only the
classifier head trains (docs/online-learning.md says why and how).
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
from .trunk import FrozenTrunk

# Adam's rate by scope: 1e-4 learned fewer real corrections and faster rates forgot more
# for the head; the last layer alone needs a larger step (docs/online-learning.md).
LEARNING_RATES = {"all": 3e-4, "head": 3e-4, "last": 3e-3}


@dataclass(frozen=True)
class FineTuneConfig:
    """The product's fine-tune; bench/finetune_configs.py compares the alternatives."""

    # The head of a three-block network needs this many to learn the hardest misreads.
    steps: int = 60
    # As many corrections learned as with 64, in two thirds of the time.
    batch_size: int = 32
    # None: the scope's own (LEARNING_RATES).
    learning_rate: float | None = None
    # Share of every batch drawn from the new corrections; the rest is replay.
    new_fraction: float = 0.25
    # A bound on a busy machine: the gate still judges what was learned by then.
    max_seconds: float = 60.0
    seed: int = 0
    # Adam reads more real misread corrections right than momentum SGD at the same rate.
    optimizer: str = "adam"
    # A part of the classifier (``nn.STORED``), on a frozen trunk's remembered features,
    # stored as a delta of kilobytes for "last"; "all": the lot.
    trainable: str = "last"
    # Distillation from the parent on replayed samples: keeping its outputs keeps its knowledge.
    distill: float = 3.0


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    metrics: dict
    # The candidate's own evaluation on the fixed set: the next run's parent score.
    candidate_fixed: dict
    # Whether it learned the corrections (see ``gate``): if not, it is no change worth storing.
    learned: bool = True


@dataclass(frozen=True)
class RootBound:
    """The pretrained root's accuracy on the first ``count`` fixed glyphs (its own held-out
    pretraining slice, the same for every version of the chain), and the largest drop
    below it that any candidate may show: forgetting adds up over many small runs."""

    accuracy: float
    count: int
    max_drop: float


def _head_batches(model, candidate, trunk, new_x, replay_glyphs, generator, distill):
    """The classifier head to train and a batch maker over the trunk's features."""
    trunk = FrozenTrunk(model) if trunk is None else trunk
    if not trunk.shares(model):
        raise ValueError("the frozen trunk is not the model's own")
    # Replayed glyphs go through the trunk once (so they are not augmented);
    # the corrections are augmented afresh at every step.
    replay_inputs = trunk.features(replay_glyphs)
    replay_teaching = trunk.head_proba(model, replay_inputs) if distill else None

    def batch(new_pick, replay_pick):
        augmented = trunk.compute(augment_batch(new_x[new_pick], generator))
        inputs = torch.cat([augmented, replay_inputs[replay_pick]])
        return inputs, replay_teaching[replay_pick] if distill else None

    return candidate.classifier.train(), batch


def _whole_batches(model, candidate, new_x, replay_glyphs, generator, distill, new_per_batch):
    """The whole network to train (BatchNorm frozen) and a batch maker over glyphs."""
    replay_x = nn.glyphs_to_tensor(replay_glyphs)
    # The parent only answers, so it answers as the web serves it: BatchNorm folded.
    teacher = nn.for_inference(model) if distill else None

    def batch(new_pick, replay_pick):
        inputs = augment_batch(torch.cat([new_x[new_pick], replay_x[replay_pick]]), generator)
        if teacher is None:
            return inputs, None
        with torch.no_grad():
            return inputs, F.softmax(teacher(inputs[new_per_batch:]), dim=1)

    return nn.set_train_mode(candidate, freeze_bn=True), batch


def _optimizer(parameters, config: FineTuneConfig) -> torch.optim.Optimizer:
    rate = config.learning_rate or LEARNING_RATES[config.trainable]
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=rate)
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=rate, momentum=0.9)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def fine_tune(
    model: torch.nn.Module,
    *,
    new_glyphs: np.ndarray,
    new_labels: np.ndarray,
    replay_glyphs: np.ndarray,
    replay_labels: np.ndarray,
    config: FineTuneConfig,
    on_progress: Callable[[float], None] | None = None,
    trunk: FrozenTrunk | None = None,
) -> torch.nn.Module:
    """Return a fine-tuned copy of ``model``, exactly as it will be stored (``nn.as_stored``);
    the original is left untouched.

    A head-only fine-tune uses ``trunk`` (``model``'s own) for features, when given.
    """
    if len(new_glyphs) == 0:
        raise ValueError("nothing to fine-tune on")
    candidate = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    new_x = nn.glyphs_to_tensor(new_glyphs)
    new_per_batch = max(1, round(config.batch_size * config.new_fraction))
    replay_per_batch = config.batch_size - new_per_batch if len(replay_labels) else 0
    distill = bool(config.distill and replay_per_batch)
    parameters = nn.trainable_parameters(candidate, config.trainable)
    if config.trainable == "all":
        network, batch = _whole_batches(
            model, candidate, new_x, replay_glyphs, generator, distill, new_per_batch
        )
    else:
        network, batch = _head_batches(
            model, candidate, trunk, new_x, replay_glyphs, generator, distill
        )
    labels = [torch.as_tensor(y, dtype=torch.long) for y in (new_labels, replay_labels)]
    sizes = (new_per_batch, replay_per_batch)
    optimizer = _optimizer(parameters, config)
    _train(network, batch, optimizer, labels, sizes, generator, config, on_progress)
    candidate.eval()
    return candidate if config.trainable == "all" else nn.as_stored(candidate, config.trainable)


def _train(network, batch, optimizer, labels, sizes, generator, config, on_progress):
    """Up to ``config.steps`` steps on ``batch``'s mixes of new and replayed samples."""
    (new_y, replay_y), (new_per_batch, replay_per_batch) = labels, sizes
    started = time.monotonic()
    for step in range(config.steps):
        new_pick = torch.randint(len(new_y), (new_per_batch,), generator=generator)
        replay_pick = torch.randint(max(len(replay_y), 1), (replay_per_batch,), generator=generator)
        inputs, parent_probabilities = batch(new_pick, replay_pick)
        logits = network(inputs)
        loss = F.cross_entropy(logits, torch.cat([new_y[new_pick], replay_y[replay_pick]]))
        if parent_probabilities is not None:
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
    trunk: FrozenTrunk | None = None,
) -> GateDecision:
    """Publish only if the candidate forgets at most ``max_forgetting`` and learned the corrections.

    Learned means: every correction is now predicted right, or more of them than before.
    ``parent_fixed`` is the parent's ``nn.evaluate`` on the same fixed set, when known.
    With ``root``, the candidate must also stay within its drop of the pretrained root.
    ``trunk`` (the parent's) scores models that share it from remembered features.
    """
    trunk = FrozenTrunk(parent) if trunk is None else trunk
    if parent_fixed is None:
        parent_fixed = trunk.evaluate(parent, fixed_glyphs, fixed_labels)
    predicted = trunk.predict_proba(candidate, fixed_glyphs).argmax(axis=1)
    candidate_fixed = nn.score(predicted, fixed_labels)
    parent_new = trunk.evaluate(parent, new_glyphs, new_labels)["overall"]
    candidate_new = trunk.evaluate(candidate, new_glyphs, new_labels)["overall"]
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
        return GateDecision(False, reason, metrics, candidate_fixed, learned)
    if root is not None:
        on_root_slice = predicted[: root.count] == fixed_labels[: root.count]
        drop = root.accuracy - float(on_root_slice.mean())
        metrics["forgetting_since_root"] = drop
        if drop > root.max_drop:
            reason = (
                f"forgetting since the pretrained version, {drop * 100:.2f} points, "
                f"would exceed {root.max_drop * 100:.2f}"
            )
            return GateDecision(False, reason, metrics, candidate_fixed, learned)
    if not learned:
        reason = f"corrections predicted right {candidate_new:.0%} after vs {parent_new:.0%} before"
        return GateDecision(False, reason, metrics, candidate_fixed, learned)
    return GateDecision(True, "", metrics, candidate_fixed, learned)
