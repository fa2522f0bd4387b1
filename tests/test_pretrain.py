"""`manage.py pretrain` end to end on tiny data, and installing its export as the default model."""

import json

import pytest
import torch
from django.core.management import CommandError, call_command
from torchvision.datasets import MNIST

from training import pretraining, registry
from training.models import ModelVersion

from .test_datasets import make_folder, mnist_files, write_raw

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def tiny_pretrain(tmp_path, *extra, length=("--epochs", "1")):
    write_raw(tmp_path / "mnist" / "MNIST" / "raw", mnist_files(20))
    call_command(
        "pretrain",
        "--mnist-root", str(tmp_path / "mnist"),
        "--data-dir", str(make_folder(tmp_path / "letters", per_label=30)),
        *length, "--batch-size", "16", "--threads", "1",
        "--cache-dir", str(tmp_path / "cache"),
        *extra,
        verbosity=0,
    )  # fmt: skip


def test_tiny_pretrain_creates_an_active_version_with_metrics(tmp_path):
    tiny_pretrain(tmp_path, "--export", str(tmp_path / "export"))
    version = ModelVersion.objects.get()
    assert version.status == "active" and version.number == 1
    assert {"overall", "digits", "letters", "per_class", "confusion", "sets"} <= set(
        version.metrics
    )
    assert "mnist_test" in version.metrics["sets"]
    assert version.training_info["kind"] == "pretrain" and version.training_info["epochs"] == 1
    # No GPU here: auto trains on the CPU, in the precision the CPU computes natively.
    assert version.training_info["device"] == "cpu"
    assert version.training_info["precision"] == pretraining.training_precision("auto", "cpu")
    assert registry.weights_sha256(registry.read_verified_weights(version)) == version.sha256
    stored = torch.load(version.weights.path, weights_only=True)
    assert {t.dtype for t in stored.values() if t.is_floating_point()} == {torch.float16}
    assert registry.version_load_model(version).features[0].weight.dtype == torch.float32
    anchors = registry.version_load_anchors(version)
    assert anchors["anchor_glyphs"].shape[1:] == (28, 28) and len(anchors["eval_labels"]) > 0
    exported = json.loads((tmp_path / "export" / "version.json").read_text())
    assert exported["sha256"] == version.sha256

    tiny_pretrain(tmp_path)  # a second model does not replace the active one unasked
    assert ModelVersion.objects.get(status="active") == version


def test_a_time_budget_trains_the_steps_that_fit_and_records_them(tmp_path):
    tiny_pretrain(tmp_path, "--no-prior", length=("--train-minutes", "0.02"))
    budgeted = ModelVersion.objects.get()
    info = budgeted.training_info
    assert info["train_minutes"] == 0.02 and info["step_seconds"] > 0
    assert info["steps"] == pretraining.steps_within(1.2, info["step_seconds"]) >= 1
    per_epoch = pretraining.steps_per_epoch(sum(info["sources"].values()), 16)
    assert info["epochs"] == round(info["steps"] / per_epoch, 2)

    # --steps makes the same run again, weight for weight.
    tiny_pretrain(tmp_path, "--no-prior", length=("--steps", str(info["steps"])))
    again = ModelVersion.objects.order_by("number").last()
    assert again.training_info["steps"] == info["steps"]
    assert again.training_info["train_minutes"] is None
    assert again.sha256 == budgeted.sha256


def test_exported_model_installs_as_version_one(tmp_path):
    tiny_pretrain(tmp_path, "--export", str(tmp_path / "export"), "--no-activate")
    ModelVersion.objects.all().delete()
    call_command("install_default_model", "--from", str(tmp_path / "export"), verbosity=0)
    call_command("install_default_model", "--from", str(tmp_path / "export"), verbosity=0)
    installed = ModelVersion.objects.get()
    assert installed.number == 1 and installed.status == "active"
    registry.version_load_model(installed)


def test_install_refuses_a_tampered_export(tmp_path):
    tiny_pretrain(tmp_path, "--export", str(tmp_path / "export"), "--no-activate")
    ModelVersion.objects.all().delete()
    weights = tmp_path / "export" / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CommandError, match="sha256"):
        call_command("install_default_model", "--from", str(tmp_path / "export"), verbosity=0)
    assert not ModelVersion.objects.exists()


def test_a_device_that_is_not_here_is_refused_before_any_work(tmp_path):
    assert not torch.cuda.is_available()
    with pytest.raises(CommandError, match=r"--device cuda: PyTorch .* finds no cuda device"):
        tiny_pretrain(tmp_path, "--device", "cuda")
    assert not ModelVersion.objects.exists() and not (tmp_path / "cache").exists()
    with pytest.raises(CommandError, match="invalid choice: 'tpu'"):
        tiny_pretrain(tmp_path, "--device", "tpu")


def test_default_pretrain_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(CommandError, match="--mnist-root"):
        call_command("pretrain", "--download-dir", str(tmp_path), verbosity=0)


def test_tiny_pretrain_on_packs_pen_strokes_and_fonts(tmp_path):
    from .test_new_sources import write_font_folder, write_pack, write_strokes

    tiny_pretrain(
        tmp_path,
        "--packs", str(write_pack(tmp_path / "pack.npz")),
        "--strokes", str(write_strokes(tmp_path / "pen.jsonl.gz")),
        "--fonts", str(write_font_folder(tmp_path / "fonts")), "--font-copies", "2",
        "--canvas-per-case", "4",
    )  # fmt: skip
    version = ModelVersion.objects.get()
    sources = version.training_info["sources"]
    assert {str(tmp_path / "pack.npz"), str(tmp_path / "pen.jsonl.gz")} <= set(sources)
    assert sources[str(tmp_path / "fonts")] > 0
    assert "pack/lower" in version.metrics["sets"]
    canvas = version.metrics["canvas"]["pen.jsonl.gz"]
    assert set(canvas) == {"2", "4", "8", "12", "18", "24", "30", "36", "40"}
    assert {"digit", "upper", "balanced"} <= set(canvas["18"])


def test_epochs_0_averages_two_models_weight_by_weight(tmp_path):
    tiny_pretrain(tmp_path, "--export", str(tmp_path / "first"), "--seed", "0")
    tiny_pretrain(tmp_path, "--export", str(tmp_path / "second"), "--seed", "1", "--no-activate")
    first = torch.load(tmp_path / "first" / "weights.pt", weights_only=True)
    second = torch.load(tmp_path / "second" / "weights.pt", weights_only=True)
    tiny_pretrain(
        tmp_path,
        "--epochs", "0", "--init-from", str(tmp_path / "second" / "weights.pt"),
        "--average-with", str(tmp_path / "first" / "weights.pt"), "--average-share", "0.75",
        "--no-prior", "--no-activate",
    )  # fmt: skip
    averaged = ModelVersion.objects.order_by("number").last()
    assert averaged.training_info["epochs"] == 0
    assert averaged.training_info["average_share"] == 0.75
    stored = torch.load(averaged.weights.path, weights_only=True)
    for name, tensor in stored.items():
        if tensor.is_floating_point():
            expected = 0.25 * second[name].float() + 0.75 * first[name].float()
            assert torch.allclose(tensor.float(), expected, atol=2e-3, rtol=2e-3), name
        else:
            assert torch.equal(tensor, second[name]), name
    assert not torch.equal(stored["classifier.4.weight"], first["classifier.4.weight"])


@pytest.mark.parametrize(
    "options, reason",
    [
        (("--epochs", "0"), "--epochs 0 trains nothing: it needs --init-from"),
        (("--epochs", "-1"), "--epochs must be 0 or more"),
        (("--steps", "0"), "--steps 0 trains nothing: it needs --init-from"),
        (("--steps", "-3"), "--steps must be 0 or more"),
        (("--train-minutes", "0"), "--train-minutes must be more than 0"),
        (("--epochs", "1", "--train-minutes", "2"), "--train-minutes: not allowed with"),
        (("--average-with", "x.pt", "--average-share", "1.5"), "--average-share must be within"),
        (("--average-with", "missing.pt"), "--average-with missing.pt"),
    ],
)
def test_a_run_that_cannot_make_a_model_is_refused_before_any_work(tmp_path, options, reason):
    with pytest.raises(CommandError, match=reason):
        tiny_pretrain(tmp_path, *options, length=())
    assert not ModelVersion.objects.exists() and not (tmp_path / "cache").exists()
