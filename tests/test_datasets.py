"""Dataset loading: torchvision's real MNIST/EMNIST code on tiny IDX files, image folders, split."""

import functools
import gzip
import hashlib
import http.server
import io
import struct
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import EMNIST, MNIST

from training import datasets
from training.classes import CLASS_INDEX


def idx_images(images: np.ndarray) -> bytes:
    return struct.pack(">IIII", 0x0803, *images.shape) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 0x0801, len(labels)) + labels.astype(np.uint8).tobytes()


def bar_images(count: int, *, vertical: bool) -> np.ndarray:
    """White bars on black, MNIST style: vertical ones, or horizontal ones."""
    images = np.zeros((count, 28, 28), np.uint8)
    for index in range(count):
        offset = 8 + index % 8
        if vertical:
            images[index, 4:24, offset : offset + 3] = 255
        else:
            images[index, offset : offset + 3, 4:24] = 255
    return images


def mnist_files(count: int = 6) -> dict[str, bytes]:
    images = bar_images(count, vertical=True)
    labels = np.arange(count) % 10
    return {f"{split}-images-idx3-ubyte": idx_images(images) for split in ("train", "t10k")} | {
        f"{split}-labels-idx1-ubyte": idx_labels(labels) for split in ("train", "t10k")
    }


def emnist_files(count: int = 6) -> dict[str, bytes]:
    # EMNIST stores images transposed: a horizontal bar on disk is a vertical one to read.
    images = bar_images(count, vertical=False)
    labels = np.arange(count) % 26 + 1  # 1 = a
    return {
        f"emnist-letters-{split}-images-idx3-ubyte": idx_images(images)
        for split in ("train", "test")
    } | {
        f"emnist-letters-{split}-labels-idx1-ubyte": idx_labels(labels)
        for split in ("train", "test")
    }


def write_raw(folder: Path, files: dict[str, bytes]):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def test_mnist_offline_from_raw_idx_files(tmp_path):
    write_raw(tmp_path / "MNIST" / "raw", mnist_files())
    data = datasets.load_mnist(tmp_path, train=True, cache_dir=tmp_path / "cache")
    assert len(data) == 6 and list(data.labels) == [0, 1, 2, 3, 4, 5]
    assert data.glyphs.shape == (6, 28, 28)
    columns = data.glyphs[0].max(axis=0) > 0
    assert columns.sum() < 8  # a vertical bar stays vertical
    cached = datasets.load_mnist(tmp_path, train=True, cache_dir=tmp_path / "cache")
    assert np.array_equal(cached.glyphs, data.glyphs) and cached.names == data.names


def test_emnist_letters_are_transposed_and_mapped_to_a_z(tmp_path):
    write_raw(tmp_path / "EMNIST" / "raw", emnist_files())
    data = datasets.load_emnist_letters(tmp_path, train=False)
    assert [int(label) for label in data.labels] == [CLASS_INDEX[c] for c in "abcdef"]
    columns = data.glyphs[0].max(axis=0) > 0
    assert columns.sum() < 8  # stored horizontal, read vertical


@pytest.fixture
def dataset_host(tmp_path):
    """A local HTTP server standing in for the dataset mirrors."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_mnist_download_through_torchvision(tmp_path, dataset_host, monkeypatch):
    root, url = dataset_host
    resources = []
    for name, data in mnist_files().items():
        compressed = gzip.compress(data)
        (root / f"{name}.gz").write_bytes(compressed)
        resources.append((f"{name}.gz", hashlib.md5(compressed).hexdigest()))
    monkeypatch.setattr(MNIST, "mirrors", [url])
    monkeypatch.setattr(MNIST, "resources", resources)
    data = datasets.load_mnist(tmp_path / "download", train=True, download=True)
    assert len(data) == 6
    assert (tmp_path / "download" / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()


def test_emnist_download_through_torchvision(tmp_path, dataset_host, monkeypatch):
    root, url = dataset_host
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for name, data in emnist_files().items():
            bundle.writestr(f"gzip/{name}.gz", gzip.compress(data))
    (root / "gzip.zip").write_bytes(archive.getvalue())
    monkeypatch.setattr(EMNIST, "url", f"{url}gzip.zip")
    monkeypatch.setattr(EMNIST, "md5", hashlib.md5(archive.getvalue()).hexdigest())
    data = datasets.load_emnist_letters(tmp_path / "download", train=True, download=True)
    assert len(data) == 6 and int(data.labels[0]) == CLASS_INDEX["a"]


def test_no_internet_names_the_offline_options(tmp_path, monkeypatch):
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])  # nothing listens there
    with pytest.raises(datasets.DatasetUnavailable, match=r"--mnist-root.*--data-dir"):
        datasets.load_mnist(tmp_path, train=True, download=True)
    with pytest.raises(datasets.DatasetUnavailable, match="--mnist-root"):
        datasets.load_mnist(tmp_path / "absent", train=True, download=False)


def make_folder(root: Path, per_label: int = 12) -> Path:
    for label in ["1", "a", "z"]:
        folder = root / "source" / label
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_label):
            image = Image.new("L", (40, 40), 230)
            image.paste(30, (16 + index % 5, 8, 22 + index % 5, 32))
            image.save(folder / f"lower_{index:04d}.png")
    (root / "source" / "README").mkdir(exist_ok=True)  # not a label: ignored
    blank = root / "source" / "a" / "lower_blank.png"
    Image.new("L", (40, 40), 230).save(blank)
    return root


def test_image_folders_skip_blanks_and_other_folders(tmp_path):
    data = datasets.load_image_folder(make_folder(tmp_path), cache_dir=tmp_path / "cache")
    assert len(data) == 36
    assert {int(label) for label in data.labels} == {CLASS_INDEX[c] for c in "1az"}
    assert all(name.startswith("source/") for name in data.names)
    assert "source/a/lower_blank.png" not in data.names


def test_the_split_is_deterministic_and_disjoint(tmp_path):
    data = datasets.load_image_folder(make_folder(tmp_path, per_label=200))
    train, heldout = datasets.split_heldout(data)
    again_train, again_heldout = datasets.split_heldout(data)
    assert train.names == again_train.names and heldout.names == again_heldout.names
    assert not set(train.names) & set(heldout.names)
    assert len(train) + len(heldout) == len(data)
    assert 0.08 < len(heldout) / len(data) < 0.22

    rest, validation = datasets.split_validation(train)
    assert (rest.names, validation.names) == tuple(
        part.names for part in datasets.split_validation(train)
    )
    assert not set(rest.names) & set(validation.names)
    assert len(rest) + len(validation) == len(train)
    assert 0.01 < len(validation) / len(train) < 0.1


def test_class_balanced_weights_give_each_class_the_same_share():
    labels = np.array([0] * 90 + [10] * 10)
    weights = datasets.class_balanced_weights(labels)
    assert weights[labels == 0].sum() == pytest.approx(0.5)
    assert weights[labels == 10].sum() == pytest.approx(0.5)
