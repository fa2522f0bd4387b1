"""`manage.py export_model`: each export, loaded outside Django, answers as the product does."""

import io
import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from django.core.management import CommandError, call_command
from django.utils import timezone
from PIL import Image

from recognition import services as recognition_services
from training import datasets, export, registry
from training.classes import CLASSES
from training.models import ModelVersion
from training.preprocessing import PREPROCESSING_VERSION, preprocess_image
from training.serving import active_model

from .conftest import HANDWRITING, copy_of, misread_handwriting
from .test_version_store import corrected, run_queued

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.slow,
    # Loading TorchScript is what this test is for.
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning"),
]


def handwriting_pngs(count: int) -> list[bytes]:
    """Real held-out handwriting, one file every few so that many classes come up."""
    files = [path for path, _ in datasets.heldout_files(HANDWRITING)]
    return [path.read_bytes() for path in files[:: max(1, len(files) // count)][:count]]


def product_answers(pngs: list[bytes]) -> np.ndarray:
    """The probabilities the product stores for each drawing, from the active version."""
    active_model.clear()
    return np.array(
        [
            recognition_services.predict_drawing(
                image_data=png, source="api"
            ).prediction.probabilities
            for png in pngs
        ]
    )


def model_input(pngs: list[bytes]) -> np.ndarray:
    """What model.json says the input is: preprocess_image's glyphs / 255, (N, 1, 28, 28)."""
    glyphs = np.stack([preprocess_image(Image.open(io.BytesIO(png))) for png in pngs])
    return (glyphs.astype(np.float32) / 255.0)[:, np.newaxis]


def exported_answers(folder: Path, pngs: list[bytes]) -> np.ndarray:
    """Run the export in ``folder`` with torch.jit or onnxruntime, as a team outside would."""
    description = json.loads((folder / "model.json").read_text())
    path, inputs = folder / description["file"], model_input(pngs)
    if description["format"] == "torchscript":
        with torch.inference_mode():
            return torch.jit.load(str(path))(torch.from_numpy(inputs)).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([description["output"]["name"]], {description["input"]["name"]: inputs})[0]


def export_to(folder: Path, format: str, *version) -> dict:
    call_command("export_model", *version, "--format", format, "--out", str(folder), verbosity=0)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["model.json", export.FORMATS[format]]
    )
    return json.loads((folder / "model.json").read_text())


def assert_same_answers(exported: np.ndarray, product: np.ndarray):
    assert exported.shape == product.shape == (len(product), len(CLASSES))
    assert (exported.argmax(1) == product.argmax(1)).all()
    assert np.abs(exported - product).max() < 1e-4  # the product stores six decimals


def test_the_active_version_exports_in_both_formats_with_the_products_answers(
    default_model, tmp_path
):
    pngs = handwriting_pngs(12)
    product = product_answers(pngs)
    assert len(set(product.argmax(1))) > 5
    for format in export.FORMATS:
        description = export_to(tmp_path / format, format)
        assert_same_answers(exported_answers(tmp_path / format, pngs), product)

        assert description["model_version"] == {
            "number": default_model.number,
            "sha256": default_model.sha256,
            "architecture": default_model.architecture,
            "kind": "pretrain",
            "base": None,
            "status": "active",
        }
        assert description["classes"] == list(CLASSES)
        contract = description["input"]
        assert contract["shape"] == ["batch", 1, 28, 28] and contract["range"] == [0.0, 1.0]
        assert "inside" in contract["normalisation"]["where"]
        assert description["output"]["kind"] == "probabilities"
        assert description["preprocessing"]["function"] == (
            "training.preprocessing.preprocess_image"
        )
        assert description["preprocessing"]["version"] == PREPROCESSING_VERSION
        written = (tmp_path / format / description["file"]).read_bytes()
        assert registry.weights_sha256(written) == description["file_sha256"]


def test_a_head_only_fine_tuned_version_exports_with_its_own_answers(
    default_model, tmp_path, settings
):
    settings.FINE_TUNE = {**settings.FINE_TUNE, "STEPS": 10, "THREADS": 1}
    misread = misread_handwriting(3)
    for png, label in misread:
        corrected(png, label)
    fine_tuned = run_queued().result_version
    assert fine_tuned is not None and fine_tuned.base == default_model
    pngs = [png for png, _ in misread] + handwriting_pngs(6)
    registry.version_activate(version=default_model)  # the export must not need it active
    export_to(tmp_path / "parent", "onnx")

    registry.version_activate(version=fine_tuned)
    product = product_answers(pngs)
    for format in export.FORMATS:
        description = export_to(tmp_path / format, format, "--version", str(fine_tuned.number))
        assert description["model_version"]["base"] == {
            "number": default_model.number,
            "sha256": default_model.sha256,
        }
        assert_same_answers(exported_answers(tmp_path / format, pngs), product)
    # The head is in the export: it reads the corrections otherwise than its parent.
    parent = exported_answers(tmp_path / "parent", pngs)
    assert np.abs(parent - product).max() > 1e-3


def test_bad_requests_are_refused_with_a_reason_and_leave_nothing(default_model, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(CommandError, match="no model version 99"):
        export_to(out, "onnx", "--version", "99")
    with pytest.raises(CommandError, match="invalid choice: 'keras'"):
        call_command("export_model", "--format", "keras", "--out", str(out))
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    with pytest.raises(CommandError, match=f"Cannot write the export to {a_file}"):
        export_to(a_file / "out", "torchscript")
    assert not out.exists() and a_file.read_text() == "not a folder"

    # A failure after the model is written (model.json cannot be replaced) takes it away too.
    (out / "model.json").mkdir(parents=True)
    with pytest.raises(CommandError, match="Cannot write the export"):
        export_to(out, "torchscript")
    assert [p.name for p in out.iterdir()] == ["model.json"]

    pruned = copy_of(default_model)
    ModelVersion.objects.filter(pk=pruned.pk).update(pruned_at=timezone.now())
    with pytest.raises(CommandError, match=f"v{pruned.number} was pruned"):
        export_to(out, "torchscript", "--version", str(pruned.number))

    Path(default_model.weights.path).write_bytes(b"altered")
    with pytest.raises(CommandError, match=r"Cannot export v1: .*sha256"):
        export_to(out, "torchscript")

    ModelVersion.objects.update(status=ModelVersion.Status.RETIRED)
    with pytest.raises(CommandError, match="No model version is active"):
        export_to(out, "torchscript")
    assert [p.name for p in out.iterdir()] == ["model.json"]
