"""Labelled samples as training data, with a manifest saying what went in.

Two layouts: an image folder ``<label>/<sample-id>.png`` of the drawings as
received, which ``manage.py pretrain --data-dir`` reads through the same
preprocessing that serving uses; and one npz of the 28x28 glyphs the model saw.
"""

import io
import json
import os
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from django.utils import timezone

from training.classes import CLASS_INDEX, CLASSES

from .models import Sample

MANIFEST = "manifest.json"
NPZ = "samples.npz"


def _manifest(samples: list[Sample], *, export_format: str, statuses) -> bytes:
    manifest = {
        "format": export_format,
        "created_at": timezone.now().isoformat(),
        "classes": list(CLASSES),
        "statuses": sorted(statuses) if statuses else "all",
        "count": len(samples),
        "per_class": dict(sorted(Counter(sample.label for sample in samples).items())),
        "samples": [
            {
                "id": sample.pk,
                "label": sample.label,
                "status": sample.status,
                "source": sample.source,
                "created_at": sample.created_at.isoformat(),
                **({"path": _image_path(sample)} if export_format == "imagefolder" else {}),
            }
            for sample in samples
        ],
    }
    return (json.dumps(manifest, indent=1) + "\n").encode()


def _image_path(sample: Sample) -> str:
    return f"{sample.label}/{sample.pk}.png"


def _labelled(samples: Iterable[Sample]) -> list[Sample]:
    # An unlabelled sample would have to be filed under the model's own guess,
    # which would teach the model its mistakes.
    return [sample for sample in samples if sample.label]


def image_folder_files(samples: Iterable[Sample], *, statuses=None) -> Iterator[tuple[str, bytes]]:
    """(relative path, bytes) of every drawing, then of the manifest."""
    samples = _labelled(samples)
    for sample in samples:
        with sample.image.open("rb") as handle:
            yield _image_path(sample), handle.read()
    yield MANIFEST, _manifest(samples, export_format="imagefolder", statuses=statuses)


def npz_files(samples: Iterable[Sample], *, statuses=None) -> Iterator[tuple[str, bytes]]:
    """The npz (glyphs uint8 (N, 28, 28), labels int64 class indices, sample_ids, classes), then
    the manifest."""
    samples = _labelled(samples)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        glyphs=np.stack([s.glyph_array() for s in samples]) if samples else np.zeros((0, 28, 28)),
        labels=np.array([CLASS_INDEX[s.label] for s in samples], dtype=np.int64),
        sample_ids=np.array([s.pk for s in samples], dtype=np.int64),
        classes=np.array(CLASSES),
    )
    yield NPZ, buffer.getvalue()
    yield MANIFEST, _manifest(samples, export_format="npz", statuses=statuses)


FORMATS = {"imagefolder": image_folder_files, "npz": npz_files}


def export_to_folder(files: Iterable[tuple[str, bytes]], out: Path) -> int:
    """Write the files under ``out``, which must be absent or empty; returns how many.

    Files go to a temporary sibling folder renamed into place at the end, so an
    interrupted export leaves nothing that looks like a finished one.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        count = 0
        for name, data in files:
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            count += 1
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return count


def export_to_zip(files: Iterable[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buffer.getvalue()
