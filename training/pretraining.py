"""Pretraining from scratch, its report, and the anchor set kept for fine-tuning (no Django)."""

import contextlib
import copy
import io
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import nn
from .augment import augment_batch
from .classes import CLASSES, DIGITS, NUM_CLASSES
from .datasets import GlyphData, class_balanced_weights

ANCHORS_PER_CLASS = 50
DEFAULT_BALANCE = 0.5
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Images shown in a default run: 20 epochs of MNIST + the local handwriting, 8 of
# MNIST + EMNIST letters (docs/benchmarks.md has the time it takes).
DEFAULT_TRAINING_IMAGES = 1_400_000
# ... or as many as this many minutes of training hold on the machine at hand, so a
# default run with warm glyph caches fits 15 minutes on 2 cores (docs/benchmarks.md).
DEFAULT_TRAINING_MINUTES = 11.0
DIGIT_PRIORS = np.arange(-1.0, 2.01, 0.25)


class DeviceUnavailable(ValueError):
    """The device asked for is not on this machine (or this build of PyTorch)."""


def training_device(requested: str = "auto") -> str:
    """``auto``: CUDA, then Apple's MPS, then the CPU; a device named must be there."""
    if requested not in DEVICES:
        raise ValueError(f"unknown device {requested!r}; choose one of {', '.join(DEVICES)}")
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if requested == "auto":
        return next(device for device in ("cuda", "mps", "cpu") if available[device])
    if not available[requested]:
        raise DeviceUnavailable(
            f"PyTorch {torch.__version__} finds no {requested} device on this machine"
        )
    return requested


def training_precision(requested: str = "auto", device: str = "cpu") -> str:
    """The autocast arithmetic; ``auto`` takes what the device computes natively and fast.

    CUDA: bf16 where the GPU has it, else fp16 (with loss scaling); MPS: fp16; the
    CPU: bf16 where oneDNN computes it natively (AVX512-BF16 or AMX), else fp32,
    as emulated bf16 is slower. Weights and the optimizer stay float32 either way,
    and serving is float32.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    if device == "mps":
        return "fp16"
    return "bf16" if cpu_computes_bf16() else "fp32"


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX).

    oneDNN also runs bf16 on plain AVX512 by converting, at nearly twice the time
    of float32 a step. PyTorch has no public test of either; these are its own, and
    a PyTorch without them trains in float32 rather than fail.
    """
    names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    checks = [getattr(torch.cpu, name, None) for name in names]
    return any(check() for check in checks if check is not None)


class MixedPrecision:
    """Autocast and loss scaling for one device and precision; plain float32 for ``fp32``."""

    def __init__(self, device: str, precision: str):
        self.device = device
        self.dtype = AUTOCAST_DTYPES.get(precision)
        # fp16 gradients underflow without loss scaling; bf16 has float32's range.
        self.scaler = torch.amp.GradScaler(device, enabled=precision == "fp16")

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


def default_epochs(images: int) -> int:
    """Epochs that show the network about ``DEFAULT_TRAINING_IMAGES``, whatever the data's size."""
    return max(1, round(DEFAULT_TRAINING_IMAGES / max(images, 1)))


def steps_per_epoch(images: int, batch_size: int) -> int:
    return max(1, images // batch_size)


def steps_within(seconds: float, step_seconds: float) -> int:
    """Training steps that fit ``seconds`` at ``step_seconds`` a step (at least one)."""
    return max(1, int(seconds // step_seconds))


def measure_step_seconds(
    train: GlyphData,
    *,
    batch_size: int,
    precision: str = "auto",
    device: str = "cpu",
    threads: int = 2,
    initial: torch.nn.Module | None = None,
    steps: int = 16,
    warm_up: int = 3,
) -> float:
    """Seconds one training step takes here: the median of ``steps`` after ``warm_up``.

    Runs on a copy of the network with its own optimizer and random stream, so the
    training that follows is exactly what it would have been without measuring. It
    draws from as many glyphs as it uses: converting the whole set is training's work.
    """
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    arithmetic = MixedPrecision(device, training_precision(precision, device))
    model = copy.deepcopy(initial or nn.build_model()).to(device, memory_format=torch.channels_last)
    nn.set_train_mode(model, freeze_bn=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    sampler = BatchSampler(
        train.limit(batch_size * (warm_up + steps)),
        batch_size=batch_size,
        balance=DEFAULT_BALANCE,
        device=device,
    )
    timings = []
    for _ in range(warm_up + steps):
        began = time.perf_counter()
        x, y = sampler.draw(generator)
        train_step(model, optimizer, arithmetic, x, y)
        timings.append(time.perf_counter() - began)
    return float(np.median(timings[warm_up:]))


class BatchSampler:
    """Augmented training batches drawn with replacement, half natural frequency, half balanced."""

    def __init__(self, train: GlyphData, *, batch_size: int, balance: float, device: str):
        self.x = nn.glyphs_to_tensor(train.glyphs)
        self.y = torch.as_tensor(train.labels, dtype=torch.long)
        self.weights = torch.as_tensor(sampling_weights(train.labels, balance=balance))
        self.batch_size = batch_size
        self.device = device

    def draw(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.multinomial(
            self.weights, self.batch_size, replacement=True, generator=generator
        )
        # Augmented on the CPU, from one random stream: a seed draws the same batches anywhere.
        x = augment_batch(self.x[index], generator)
        return x.to(self.device, memory_format=torch.channels_last), self.y[index].to(self.device)


def train_step(model, optimizer, arithmetic: MixedPrecision, x, y) -> tuple[float, int]:
    """One optimiser step on a batch; its loss and how many it read right."""
    with arithmetic.autocast():
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=0.05)
    arithmetic.step(loss, optimizer)
    return loss.item(), int((logits.argmax(1) == y).sum())


def sampling_weights(labels: np.ndarray, *, balance: float) -> np.ndarray:
    """A blend of natural frequency and class balance (``balance`` is the balanced share).

    Letters have ~500 real images against MNIST's 6,000 per digit: balancing
    shows them more often, at the cost of digits the letters' shapes share.
    """
    natural = np.full(len(labels), 1.0 / len(labels))
    return (1 - balance) * natural + balance * class_balanced_weights(labels)


def pretrain(
    train: GlyphData,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    balance: float = DEFAULT_BALANCE,
    precision: str = "auto",
    device: str = "cpu",
    threads: int = 2,
    progress: bool = True,
    initial: torch.nn.Module | None = None,
) -> torch.nn.Module:
    """Train a network for ``steps`` batches with augmentation, balanced sampling and a
    one-cycle schedule.

    A fresh one unless ``initial`` is given: starting from an earlier model's weights
    reaches the same place in a fraction of the steps where training is slow.

    Trains on ``device`` (a ``training_device``) under ``training_precision(precision,
    device)``; batches are channels-last, which takes oneDNN's fast convolutions on
    the CPU. The model comes back on the CPU, in float32.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    arithmetic = MixedPrecision(device, training_precision(precision, device))
    model = (initial or nn.build_model()).to(device, memory_format=torch.channels_last)
    sampler = BatchSampler(train, batch_size=batch_size, balance=balance, device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=0.15
    )
    nn.set_train_mode(model, freeze_bn=False)
    per_epoch = steps_per_epoch(len(train), batch_size)
    bar = tqdm(range(steps), desc="training", disable=not progress)
    seen = correct = 0
    running_loss = 0.0
    for step in bar:
        x, y = sampler.draw(generator)
        loss, right = train_step(model, optimizer, arithmetic, x, y)
        schedule.step()
        running_loss = 0.98 * running_loss + 0.02 * loss if seen else loss
        seen += len(y)
        correct += right
        bar.set_postfix(
            epoch=f"{step / per_epoch:.2f}", loss=f"{running_loss:.3f}", acc=f"{correct / seen:.3f}"
        )
    return model.to("cpu", memory_format=torch.contiguous_format).eval()


def average_weights(model: nn.GlyphNet, other: nn.GlyphNet, *, share: float) -> nn.GlyphNet:
    """``model`` moved in place to ``(1 - share) * model + share * other``, every weight
    and BatchNorm statistic alike.

    Averaged with the network it was fine-tuned from, a long fine-tune keeps what
    that network read well (weight-space ensembling, as in WiSE-FT).
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"the share of the other weights must be within 0..1, not {share}")
    theirs = other.state_dict()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.lerp_(theirs[name].to(tensor.dtype), share)
    return model


def choose_digit_prior(
    model: torch.nn.Module, validation: GlyphData, *, search: bool = True
) -> dict:
    """The log-odds for digits that reads validation images best, every class counted alike.

    Balanced sampling shows letters more often than the data holds them, which tilts
    shapes shared by a digit and a letter; the prior tilts them back only as far as
    the 36 classes, weighed equally, gain from it.
    """
    logits = torch.log(torch.as_tensor(nn.served_proba(model, validation.glyphs)) + 1e-12)
    labels = torch.as_tensor(validation.labels)
    is_digit = labels < len(DIGITS)
    chosen = {
        "digit_prior": 0.0,
        "validation": len(labels),
        "validation_balanced": None,
        "validation_digits": None,
        "validation_letters": None,
    }
    if not (is_digit.any() and (~is_digit).any()):
        return chosen  # nothing to weigh digits against
    best = None
    for prior in DIGIT_PRIORS if search else (0.0,):
        shifted = logits.clone()
        shifted[:, : len(DIGITS)] += float(prior)
        correct = (shifted.argmax(1) == labels).float()
        balanced = float(
            np.mean([float(correct[labels == c].mean()) for c in labels.unique().tolist()])
        )
        if best is None or balanced > best + 1e-9:
            best = balanced
            chosen.update(
                digit_prior=float(prior),
                validation_balanced=balanced,
                validation_digits=float(correct[is_digit].mean()),
                validation_letters=float(correct[~is_digit].mean()),
            )
    return chosen


def add_digit_prior(model: nn.GlyphNet, prior: float) -> nn.GlyphNet:
    """Fold a digit prior into the output layer's biases: the served network carries it."""
    with torch.no_grad():
        model.classifier[-1].bias[: len(DIGITS)] += prior
    return model


def confused_pairs(confusion: list[list[int]], top: int = 10) -> list[dict]:
    matrix = np.asarray(confusion)
    pairs = [
        {"true": CLASSES[t], "predicted": CLASSES[p], "count": int(matrix[t, p])}
        for t in range(NUM_CLASSES)
        for p in range(NUM_CLASSES)
        if t != p and matrix[t, p] > 0
    ]
    return sorted(pairs, key=lambda pair: -pair["count"])[:top]


def report(model: torch.nn.Module, eval_sets: dict[str, GlyphData]) -> dict:
    """Accuracy per evaluation set: overall, digits, letters, worst classes, confusions."""
    sets = {}
    for name, data in eval_sets.items():
        if not len(data):
            continue
        result = nn.evaluate(model, data.glyphs, data.labels)
        result["worst_classes"] = sorted(
            ({"label": label, "accuracy": acc} for label, acc in result["per_class"].items()),
            key=lambda row: row["accuracy"],
        )[:10]
        result["confused_pairs"] = confused_pairs(result["confusion"])
        if result["letters"] is None:
            # Digits only (MNIST): also the argmax over the ten digit classes alone.
            probabilities = nn.predict_proba(model, data.glyphs)[:, : len(DIGITS)]
            result["digits_only_argmax"] = float((probabilities.argmax(1) == data.labels).mean())
        sets[name] = result
    return sets


def anchor_set(train: list[GlyphData], heldout: GlyphData, *, seed: int) -> bytes:
    """npz bytes: replay anchors from each training source, and the fixed evaluation set.

    Each class's anchors come from the training sources in turn, so a source that
    fills most of the training mix (pen strokes drawn several times over) does not
    fill the replay set too. The evaluation glyphs come from held-out data only, so
    the fine-tune gate never judges on what any version trained on.
    """

    def evenly_from(parts: list[GlyphData], rng) -> tuple[np.ndarray, np.ndarray]:
        glyphs, labels = [np.zeros((0, 28, 28), np.uint8)], [np.zeros(0, np.int64)]
        for label in range(NUM_CLASSES):
            queues = [rng.permutation(np.flatnonzero(part.labels == label)) for part in parts]
            # Round robin: every source's k-th glyph before any source's (k+1)-th.
            turns = [
                (part, members[k])
                for k in range(ANCHORS_PER_CLASS)
                for part, members in zip(parts, queues, strict=True)
                if k < len(members)
            ][:ANCHORS_PER_CLASS]
            glyphs += [part.glyphs[index][None] for part, index in turns]
            labels.append(np.full(len(turns), label, np.int64))
        return np.concatenate(glyphs), np.concatenate(labels)

    anchor_glyphs, anchor_labels = evenly_from(train, np.random.default_rng([seed, 0]))
    # Its own generator: the glyphs the gate judges on do not change with the training mix.
    eval_glyphs, eval_labels = evenly_from([heldout], np.random.default_rng([seed, 1]))
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        anchor_glyphs=anchor_glyphs,
        anchor_labels=anchor_labels,
        eval_glyphs=eval_glyphs,
        eval_labels=eval_labels,
    )
    return buffer.getvalue()
