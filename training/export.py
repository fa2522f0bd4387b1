"""A model as files that serve outside Django: TorchScript or ONNX, and its input's contract.

The exported graph is the network as the product serves it (BatchNorm folded into
the convolutions, MNIST's normalisation inside) followed by the softmax, so it
answers with the product's probabilities. Its input is what ``preprocess_image``
makes; ``model.json`` beside it says so for whoever calls it (no Django).
"""

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from . import nn, preprocessing
from .classes import CLASSES

FORMATS = {"torchscript": "model.pt", "onnx": "model.onnx"}
DESCRIPTION = "model.json"
INPUT_NAME = "glyphs"
OUTPUT_NAME = "probabilities"
# Opset 18 runs on every onnxruntime since 1.14 and on most other runtimes.
ONNX_OPSET = 18


class ServedProbabilities(torch.nn.Module):
    """The served network, then the softmax: (N, 1, 28, 28) in [0, 1] -> (N, 36) probabilities."""

    def __init__(self, model: nn.GlyphNet):
        super().__init__()
        # Channels-last is a oneDNN speed-up of this process, not part of the model.
        self.network = nn.for_inference(model).to(memory_format=torch.contiguous_format)

    def forward(self, glyphs: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.network(glyphs), dim=1)


def _example_input() -> torch.Tensor:
    return torch.rand(2, 1, preprocessing.GLYPH_SIZE, preprocessing.GLYPH_SIZE)


def _write_torchscript(network: torch.nn.Module, path: Path) -> None:
    # Traced, not scripted: the network has no control flow, and tracing keeps the
    # batch size free. TorchScript is deprecated in favour of torch.export, but
    # it is what torch.jit.load reads in every torch 2.x and in libtorch (C++).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.", category=FutureWarning)
        traced = torch.jit.trace(network, _example_input())
        torch.jit.save(traced, str(path))


def _write_onnx(network: torch.nn.Module, path: Path) -> None:
    torch.onnx.export(
        network,
        (_example_input(),),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch")}},
        opset_version=ONNX_OPSET,
        external_data=False,  # one self-contained file
        verbose=False,
    )


WRITERS = {"torchscript": _write_torchscript, "onnx": _write_onnx}


def export_model(model: nn.GlyphNet, *, format: str, folder: Path, version: dict) -> list[Path]:
    """Write ``model`` in ``format`` and ``model.json`` into ``folder``: both files or none.

    ``version`` describes the model version (``contract``'s ``model_version``). Files
    are made in a hidden folder inside ``folder`` and moved in when complete, the
    description last; a folder this call created is removed again on failure.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    staging = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=folder))
        model_file = staging / FORMATS[format]
        WRITERS[format](ServedProbabilities(model).eval(), model_file)
        description = contract(format=format, version=version, file_sha256=_sha256(model_file))
        (staging / DESCRIPTION).write_text(json.dumps(description, indent=1) + "\n")
        for name in (FORMATS[format], DESCRIPTION):
            os.replace(staging / name, folder / name)
            written.append(folder / name)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if created and not any(folder.iterdir()):
            folder.rmdir()
        raise
    staging.rmdir()
    return written


def contract(*, format: str, version: dict, file_sha256: str) -> dict:
    """What ``model.json`` says: the file, the version, the classes, the input and the output."""
    side = preprocessing.GLYPH_SIZE
    return {
        "format": format,
        "file": FORMATS[format],
        "file_sha256": file_sha256,
        "model_version": version,
        "classes": list(CLASSES),
        "input": {
            "name": INPUT_NAME,
            "dtype": "float32",
            "shape": ["batch", 1, side, side],
            "range": [0.0, 1.0],
            "values": "the uint8 glyph of the preprocessing function divided by 255",
            "polarity": "ink high: 1.0 is full ink, 0.0 background, whatever the image's colours",
            "normalisation": {
                "mean": nn.INPUT_MEAN,
                "std": nn.INPUT_STD,
                "where": "inside the exported graph: pass the [0, 1] values as they are",
            },
        },
        "output": {
            "name": OUTPUT_NAME,
            "dtype": "float32",
            "shape": ["batch", len(CLASSES)],
            "kind": "probabilities",
            "values": "softmax over the classes, in the order of 'classes'; each row sums to 1",
        },
        "preprocessing": preprocessing_contract(),
        "exported_with": {
            "torch": torch.__version__,
            **({"onnx_opset": ONNX_OPSET} if format == "onnx" else {}),
        },
    }


def preprocessing_contract() -> dict:
    """How an image becomes the input: callers must run this same function on every image."""
    p = preprocessing
    side = p.GLYPH_SIZE
    return {
        "function": f"{p.__name__}.preprocess_image",
        "version": p.PREPROCESSING_VERSION,
        "required": "run this function (same version) on every image: the model was trained "
        "and is served on its output only; any other preprocessing changes its answers",
        "steps": [
            "gray levels, transparency composited on white; the paper's gray is read from the "
            "image's border, so dark-on-light and light-on-dark drawings both work",
            f"connected pieces of ink under {p.SPECK_SHARE:.0%} of the ink are dropped as "
            "specks; the ink is cropped to its box",
            f"stroke width: the longer side scaled to {p.STROKE_SIZE} px, the ink skeletonized "
            f"and re-inked with a round pen of radius {p.STROKE_RADIUS} px",
            f"scaled to {p.BOX_SIZE} px on the longer side, aspect ratio kept (Lanczos); "
            "the 95th percentile of the ink scaled to 1",
            f"placed in a {side}x{side} field and centred by its centre of mass, shifted by "
            "whole pixels without pushing ink out",
            "rounded to uint8 (0-255), white ink on black",
        ],
        "glyph_size": side,
        "box_size": p.BOX_SIZE,
        "centring": "centre of mass",
        "stroke_width": {"normalised": True, "size": p.STROKE_SIZE, "radius": p.STROKE_RADIUS},
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
