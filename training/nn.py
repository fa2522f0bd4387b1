"""The CNN that reads 28x28 glyphs into 36 classes, and its plumbing (no Django).

Three VGG-style blocks of two 3x3 convolutions with BatchNorm, then a 256-unit
hidden layer with dropout: about 1.9 M parameters, under a millisecond per image
on one core. Inputs are the uint8 glyphs from ``preprocessing`` scaled to
[0, 1]; the MNIST normalisation lives inside the network, so a stored glyph
fully determines what the model sees.
"""

import copy
import hashlib
import io

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .classes import CLASSES, DIGITS, NUM_CLASSES

ARCHITECTURE = "glyphnet-v2"
INPUT_MEAN = 0.1307
INPUT_STD = 0.3081


class GlyphNet(nn.Module):
    """VGG blocks of two 3x3 convolutions with BatchNorm, then a hidden layer with dropout.

    The first two blocks end in 2x2 max pooling (28 -> 14 -> 7); a third block
    works on the 7x7 maps. ``features`` is the trunk and ``classifier`` the head,
    which is all a head-only fine-tune trains.
    """

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        widths: tuple[int, ...] = (32, 64, 128),
        hidden: int = 256,
    ):
        super().__init__()

        def conv(inputs, outputs):
            return [
                nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
                nn.BatchNorm2d(outputs),
                nn.ReLU(inplace=True),
            ]

        layers, inputs, side = [], 1, 28
        for block, width in enumerate(widths):
            layers += conv(inputs, width) + conv(width, width)
            if block < 2:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            inputs = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(inputs * side * side, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(hidden, num_classes),
        )

        self.normalize = Normalize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


class Normalize(nn.Module):
    """MNIST's normalisation, inside the network (it has no parameters to save)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - INPUT_MEAN) / INPUT_STD


# Every architecture a stored version may name stays loadable.
ARCHITECTURES = {
    # Two blocks, 0.9 M parameters: the first default model (docs/default-model.md).
    "glyphnet-v1": lambda: GlyphNet(widths=(32, 64)),
    # A third block at 7x7 with 128 channels, 1.9 M parameters.
    "glyphnet-v2": lambda: GlyphNet(widths=(32, 64, 128)),
}


def build_model(architecture: str = ARCHITECTURE) -> nn.Module:
    try:
        return ARCHITECTURES[architecture]()
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}") from None


def glyphs_to_tensor(glyphs: np.ndarray) -> torch.Tensor:
    """uint8 glyphs (N, 28, 28) or one (28, 28) -> float tensor (N, 1, 28, 28) in [0, 1]."""
    array = np.asarray(glyphs, dtype=np.uint8)
    if array.ndim == 2:
        array = array[np.newaxis]
    return torch.from_numpy(array.astype(np.float32) / 255.0).unsqueeze(1)


def predict_logits(model: nn.Module, glyphs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class scores before the softmax (N, 36) for uint8 glyphs.

    Batches of 64 keep the activations in cache (docs/benchmarks.md has the figures).
    """
    if model.training:
        model.eval()
    outputs = []
    with torch.inference_mode():
        tensor = glyphs_to_tensor(glyphs)
        for start in range(0, len(tensor), batch_size):
            outputs.append(model(tensor[start : start + batch_size]))
    if not outputs:
        return np.zeros((0, NUM_CLASSES), np.float32)
    return torch.cat(outputs).numpy().astype(np.float32)


def predict_proba(model: nn.Module, glyphs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class probabilities (N, 36) for uint8 glyphs."""
    logits = torch.from_numpy(predict_logits(model, glyphs, batch_size))
    return F.softmax(logits, dim=1).numpy()


def serialize_state(model: nn.Module, *, half: bool = False) -> bytes:
    """The state dict as bytes; ``half`` stores floating tensors as float16.

    Half precision halves a file (the committed default model stays under 4 MB) and
    loading casts it back to float32; read the model back from these bytes before
    evaluating it, so that what is reported is what is served.
    """
    state = model.state_dict()
    if half:
        state = {key: t.half() if t.is_floating_point() else t for key, t in state.items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def deserialize_state(data: bytes, architecture: str = ARCHITECTURE) -> nn.Module:
    """Rebuild a network from ``serialize_state`` bytes, reading tensors only (no pickle code)."""
    model = build_model(architecture)
    state = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    model.load_state_dict(state, strict=True)
    return model.eval()


# The parameters each head-only fine-tuning scope trains (and its versions store), by
# their state-dict names: "head" the whole classifier (1.6 M parameters in glyphnet-v2),
# "last" its last layer and the hidden layer's bias (9,508; docs/online-learning.md).
_LAST = ("classifier.1.bias", "classifier.4.weight", "classifier.4.bias")
STORED = {"head": ("classifier.1.weight", *_LAST), "last": _LAST}


def trainable_parameters(model: nn.Module, scope: str) -> list[nn.Parameter]:
    """The parameters a fine-tune may change: the whole network (``"all"``) or a ``STORED`` part.

    Frozen parameters stop requiring gradients, so autograd skips them entirely.
    """
    if scope != "all" and scope not in STORED:
        raise ValueError(f"unknown fine-tuning scope {scope!r}")
    named = dict(model.named_parameters())
    chosen = list(named.values()) if scope == "all" else [named[n] for n in STORED[scope]]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in chosen:
        parameter.requires_grad_(True)
    return chosen


def as_stored(model: GlyphNet, scope: str) -> GlyphNet:
    """``model`` as a version of ``scope`` will be stored, in place: what it trained
    rounded to half precision."""
    state = model.state_dict()
    with torch.no_grad():
        for name in STORED[scope]:
            state[name].copy_(state[name].half().float())
    return model


def serialize_delta(model: GlyphNet, *, names, base_sha256: str) -> bytes:
    """The named tensors alone, at half precision, naming the weights file they overlay.

    What a head-only fine-tune changes: everything else stays in the file whose
    sha256 it names. Round them with ``as_stored`` before evaluating the model,
    so that what is reported is what is served.
    """
    state = model.state_dict()
    tensors = {name: state[name].half() for name in sorted(names)}
    buffer = io.BytesIO()
    torch.save({"base_sha256": base_sha256, "tensors": tensors}, buffer)
    return buffer.getvalue()


def delta_contents(data: bytes) -> tuple[str, dict[str, torch.Tensor]]:
    """The base's sha256 and the tensors of ``serialize_delta`` bytes, or of an earlier
    head file (its whole classifier, naming its trunk), reading tensors only."""
    stored = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    if "head" in stored:
        head = {f"classifier.{key}": tensor for key, tensor in stored["head"].items()}
        return stored["trunk_sha256"], head
    return stored["base_sha256"], stored["tensors"]


def apply_delta(base: nn.Module, data: bytes, *, base_sha256: str) -> nn.Module:
    """``base`` (a network built from the file whose sha256 is given) with the tensors of
    ``serialize_delta`` bytes in place, refusing a delta that names another base."""
    named, tensors = delta_contents(data)
    if named != base_sha256:
        raise ValueError("the delta names another base than the weights given")
    state = base.state_dict()
    unknown = [name for name, t in tensors.items() if state.get(name, t).shape != t.shape]
    if set(tensors) - set(state) or unknown:
        raise ValueError("the delta holds tensors its base does not have")
    with torch.no_grad():
        for name, tensor in tensors.items():
            state[name].copy_(tensor.float())
    return base.eval()


def for_inference(model: GlyphNet) -> nn.Module:
    """An eval-only copy with each BatchNorm folded into its convolution: same outputs, faster.

    Its weights are channels-last, so the convolutions take oneDNN's fast path
    (docs/benchmarks.md has the figures).
    """
    copied = copy.deepcopy(model).eval()
    layers = []
    for layer in copied.features:
        if isinstance(layer, nn.BatchNorm2d):
            layers[-1] = fuse_conv_bn_eval(layers[-1], layer)
        else:
            layers.append(layer)
    served = nn.Sequential(copied.normalize, *layers, copied.classifier).eval()
    return served.to(memory_format=torch.channels_last)


def trunk_digest(model: GlyphNet) -> str:
    """Identifies the convolutional trunk: its weights and BatchNorm statistics."""
    return _digest(model.features.state_dict().items())


def hidden_weights_digest(model: GlyphNet) -> str:
    """Identifies the trunk and the hidden layer's weights, which scope "last" leaves alone."""
    hidden = model.classifier[1].weight
    return _digest([*model.features.state_dict().items(), ("classifier.1.weight", hidden)])


def _digest(named_tensors) -> str:
    digest = hashlib.sha256()
    for name, tensor in named_tensors:  # the name, then the values
        digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def set_train_mode(model: nn.Module, *, freeze_bn: bool) -> nn.Module:
    """Training mode; with ``freeze_bn`` BatchNorm keeps its running statistics.

    Fine-tuning batches are small and skewed towards a few classes: letting them
    move the statistics would shift every other class's activations.
    """
    model.train()
    if freeze_bn:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    return model


def served_proba(model: nn.Module, glyphs: np.ndarray) -> np.ndarray:
    """``predict_proba`` as the web serves the model: a GlyphNet with BatchNorm folded."""
    return predict_proba(for_inference(model) if isinstance(model, GlyphNet) else model, glyphs)


def evaluate(model: nn.Module, glyphs: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy overall, on digits, on letters and per class, with the confusion matrix."""
    labels = np.asarray(labels, dtype=np.int64)
    predicted = served_proba(model, glyphs).argmax(axis=1) if len(labels) else labels
    return score(predicted, labels)


def score(predicted: np.ndarray, labels: np.ndarray) -> dict:
    """``evaluate``'s figures for predictions already made."""
    labels = np.asarray(labels, dtype=np.int64)
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    correct = predicted == labels
    is_digit = labels < len(DIGITS)

    def share(mask) -> float | None:
        return float(correct[mask].mean()) if mask.any() else None

    per_class = {
        label: share(labels == index)
        for index, label in enumerate(CLASSES)
        if (labels == index).any()
    }
    return {
        "overall": share(np.ones_like(correct)),
        "digits": share(is_digit),
        "letters": share(~is_digit),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "count": len(labels),
    }
