"""`manage.py export_samples`: the image folder pretraining reads, the npz, and the round trip."""

import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from recognition import services
from recognition.models import Sample
from training import datasets
from training.classes import CLASS_INDEX, CLASSES
from training.models import ModelVersion

from .conftest import ONE, SEVEN, ZERO, draw_png, teacher
from .test_datasets import mnist_files, write_raw

pytestmark = pytest.mark.django_db


def shifted(strokes, dx: int, dy: int):
    return [[(x + dx, y + dy) for x, y in stroke] for stroke in strokes]


@pytest.fixture
def labelled(default_model) -> list[Sample]:
    """Drawings of 7, 1 and 0 at several places on the canvas, each labelled by its user."""
    made = []
    for dx, dy in [(0, 0), (-30, 0), (30, 10), (0, -25), (-20, 25), (25, -20), (10, 30)]:
        for strokes, label in ((SEVEN, "7"), (ONE, "1"), (ZERO, "0")):
            png = draw_png(shifted(strokes, dx, dy))
            sample = services.predict_drawing(image_data=png, source="api").sample
            services.correct_sample(sample=sample, label=label, source="api", author=teacher())
            sample.refresh_from_db()
            made.append(sample)
    return made


def test_image_folder_is_what_pretraining_reads(labelled, tmp_path):
    excluded, unlabelled = (
        labelled[0],
        services.predict_drawing(image_data=draw_png(SEVEN), source="api").sample,
    )
    services.samples_exclude(samples=Sample.objects.filter(pk=excluded.pk))
    out = tmp_path / "export"
    call_command("export_samples", "--format", "imagefolder", "--out", str(out), verbosity=0)

    kept = labelled[1:]
    files = datasets.image_folder_files(out)
    assert sorted(str(path.relative_to(out)) for path, _ in files) == sorted(
        f"{s.label}/{s.pk}.png" for s in kept
    )
    assert all(CLASSES[label] == path.parent.name for path, label in files)
    assert not (out / "7" / f"{excluded.pk}.png").exists()
    assert not (out / "7" / f"{unlabelled.pk}.png").exists()

    # The drawings go through the one preprocessing function again: same glyphs as served.
    loaded = datasets.load_image_folder(out)
    by_name = dict(zip(loaded.names, loaded.glyphs, strict=True))
    for sample in kept:
        assert np.array_equal(by_name[f"{sample.label}/{sample.pk}.png"], sample.glyph_array())

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "imagefolder" and manifest["count"] == len(kept)
    assert "excluded" not in manifest["statuses"]
    assert manifest["per_class"] == {"0": 7, "1": 7, "7": 6}
    assert {row["id"] for row in manifest["samples"]} == {s.pk for s in kept}


def test_npz_holds_the_glyphs_the_model_saw(labelled, tmp_path):
    confirmed = labelled[:4]
    for sample in confirmed:
        services.sample_confirm(sample=sample, moderator=None)
    out = tmp_path / "npz"
    call_command(
        "export_samples", "--format", "npz", "--status", "confirmed", "--out", str(out),
        verbosity=0,
    )  # fmt: skip
    with np.load(out / "samples.npz", allow_pickle=False) as archive:
        assert archive["glyphs"].shape == (4, 28, 28) and archive["glyphs"].dtype == np.uint8
        assert list(archive["sample_ids"]) == [s.pk for s in confirmed]
        assert list(archive["labels"]) == [CLASS_INDEX[s.label] for s in confirmed]
        assert list(archive["classes"]) == list(CLASSES)
        for glyph, sample in zip(archive["glyphs"], confirmed, strict=True):
            assert np.array_equal(glyph, sample.glyph_array())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "npz" and manifest["statuses"] == ["confirmed"]
    assert manifest["count"] == 4


def test_export_refuses_a_folder_with_files_in_it(labelled, tmp_path):
    # Stale files would keep old labels beside the new ones.
    exports = tmp_path / "exports"
    (exports / "old" / "7").mkdir(parents=True)
    (exports / "old" / "7" / "1.png").write_bytes(b"x")
    with pytest.raises(CommandError, match="not an empty folder"):
        call_command("export_samples", "--out", str(exports / "old"), verbosity=0)
    assert [p.name for p in exports.iterdir()] == ["old"]  # no partial folder left behind


@pytest.mark.slow
def test_round_trip_export_then_pretrain_on_it(labelled, tmp_path):
    out = tmp_path / "export"
    call_command("export_samples", "--out", str(out), verbosity=0)
    write_raw(tmp_path / "mnist" / "MNIST" / "raw", mnist_files(20))
    call_command(
        "pretrain",
        "--mnist-root", str(tmp_path / "mnist"),
        "--data-dir", str(out),
        "--epochs", "1", "--batch-size", "16", "--threads", "1", "--limit", "40",
        "--cache-dir", str(tmp_path / "cache"), "--no-activate",
        verbosity=0,
    )  # fmt: skip
    version = ModelVersion.objects.get(number=2)
    trained_on_export = version.training_info["sources"][str(out)]
    kept_back = sum(
        datasets.is_heldout(name) or datasets.is_validation(name)
        for name in (f"{sample.label}/{sample.pk}.png" for sample in labelled)
    )
    assert trained_on_export == len(labelled) - kept_back > 0
    assert version.metrics["count"] > 0
