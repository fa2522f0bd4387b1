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
from django.db.models import QuerySet
from django.utils import timezone

from training.classes import CLASS_INDEX, CLASSES
from training.preprocessing import glyphs_from_bytes

from .models import Sample

MANIFEST = "manifest.json"
NPZ = "samples.npz"


# Samples read per query while streaming: memory stays flat however many are exported.
CHUNK = 1000

# A file's content: bytes, or chunks of bytes written one after another.
Content = bytes | Iterable[bytes]


def _chunks(content: Content) -> Iterator[bytes]:
    if isinstance(content, bytes):
        yield content
    else:
        yield from content


class _Manifest:
    """What went in: per-sample entries spooled to a temporary file as the samples stream past."""

    def __init__(self, *, export_format: str, statuses):
        self.export_format = export_format
        self.statuses = statuses
        self.entries = tempfile.TemporaryFile()  # noqa: SIM115  (closed once read by chunks())
        self.count = 0
        self.per_class: Counter = Counter()

    def add(self, sample: Sample):
        entry = {
            "id": sample.pk,
            "label": sample.label,
            "status": sample.status,
            "source": sample.source,
            "created_at": sample.created_at.isoformat(),
            **({"path": _image_path(sample)} if self.export_format == "imagefolder" else {}),
        }
        self.entries.write((b",\n" if self.count else b"") + json.dumps(entry).encode())
        self.count += 1
        self.per_class[sample.label] += 1

    def chunks(self) -> Iterator[bytes]:
        """The manifest's JSON, its ``samples`` list read back from the spool in chunks."""
        head = {
            "format": self.export_format,
            "created_at": timezone.now().isoformat(),
            "classes": list(CLASSES),
            "statuses": sorted(self.statuses) if self.statuses else "all",
            "count": self.count,
            "per_class": dict(sorted(self.per_class.items())),
        }
        yield json.dumps(head, indent=1).removesuffix("\n}").encode() + b',\n "samples": [\n'
        with self.entries:
            self.entries.seek(0)
            while chunk := self.entries.read(1 << 16):
                yield chunk
        yield b"\n]}\n"


def _image_path(sample: Sample) -> str:
    return f"{sample.label}/{sample.pk}.png"


def _labelled(samples: Iterable[Sample], *, fields: tuple[str, ...]) -> Iterator[Sample]:
    # An unlabelled sample would have to be filed under the model's own guess,
    # which would teach the model its mistakes.
    if isinstance(samples, QuerySet):
        samples = samples.exclude(label="").select_related(None).only(*fields)
        samples = samples.iterator(chunk_size=CHUNK)
    return (sample for sample in samples if sample.label)


MANIFEST_FIELDS = ("label", "status", "source", "created_at")


def image_folder_files(
    samples: Iterable[Sample], *, statuses=None
) -> Iterator[tuple[str, Content]]:
    """(relative path, content) of every drawing, then of the manifest, in constant memory."""
    manifest = _Manifest(export_format="imagefolder", statuses=statuses)
    for sample in _labelled(samples, fields=(*MANIFEST_FIELDS, "image")):
        manifest.add(sample)
        with sample.image.open("rb") as handle:
            yield _image_path(sample), handle.read()
    yield MANIFEST, manifest.chunks()


def npz_files(samples: Iterable[Sample], *, statuses=None) -> Iterator[tuple[str, Content]]:
    """The npz (glyphs uint8 (N, 28, 28), labels int64 class indices, sample_ids, classes), then
    the manifest. The npz is built in memory: 784 bytes a sample."""
    manifest = _Manifest(export_format="npz", statuses=statuses)
    glyphs, labels, ids = [], [], []
    for sample in _labelled(samples, fields=(*MANIFEST_FIELDS, "glyph")):
        manifest.add(sample)
        glyphs.append(bytes(sample.glyph))
        labels.append(CLASS_INDEX[sample.label])
        ids.append(sample.pk)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        glyphs=glyphs_from_bytes(b"".join(glyphs)),
        labels=np.array(labels, dtype=np.int64),
        sample_ids=np.array(ids, dtype=np.int64),
        classes=np.array(CLASSES),
    )
    del glyphs
    yield NPZ, buffer.getvalue()
    yield MANIFEST, manifest.chunks()


FORMATS = {"imagefolder": image_folder_files, "npz": npz_files}


def export_to_folder(files: Iterable[tuple[str, Content]], out: Path) -> int:
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
            with path.open("wb") as handle:
                for chunk in _chunks(data):
                    handle.write(chunk)
            count += 1
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return count


class _Pipe(io.RawIOBase):
    """A write-only stream whose bytes are taken away as they come: zipfile writes, we stream."""

    def __init__(self):
        self.written: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.written.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        taken, self.written = b"".join(self.written), []
        return taken


def zip_stream(files: Iterable[tuple[str, Content]]) -> Iterator[bytes]:
    """The files as a zip archive, chunk by chunk: no file is held whole, nor the archive.

    zipfile writes to an unseekable stream with data descriptors after each entry,
    which every unzip reads.
    """
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            with archive.open(name, "w") as entry:
                for chunk in _chunks(data):
                    entry.write(chunk)
                    if pipe.written:
                        yield pipe.take()
            yield pipe.take()
    yield pipe.take()
