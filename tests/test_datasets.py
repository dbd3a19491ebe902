import io
import shutil
import struct
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from coreset_core.datasets import (
    DatasetError,
    ImageDataset,
    load_dataset,
    select_pool,
)


def save(path: Path, image: Image.Image, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt)


def noise(mode: str, size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)


def test_builtin_sample_is_cifar10(shared_datasets):
    data = load_dataset()
    assert data.images.shape == (5000, 3, 32, 32) and data.images.dtype == np.uint8
    assert np.bincount(data.labels).tolist() == [500] * 10
    assert len(data.test) == 1000 and data.classes[0] == "airplane"
    assert data.ids[0] == "train/airplane/0000.jpg"


def test_labelled_folder_with_splits(cifar_folder):
    data = load_dataset(str(cifar_folder))
    assert len(data) == 120 and len(data.test) == 30
    assert data.classes == sorted(p.name for p in (cifar_folder / "train").iterdir())
    assert np.bincount(data.labels).tolist() == [12] * 10
    assert data.ids[12].startswith("train/automobile/")


def test_flat_folder_is_unlabelled(tmp_path):
    for i in range(4):
        save(tmp_path / f"{i}.png", noise("RGB", (16, 16), i))
    data = load_dataset(str(tmp_path))
    assert data.labels is None and data.classes is None and data.test is None
    assert data.images.shape == (4, 3, 16, 16)
    assert data.ids == ["0.png", "1.png", "2.png", "3.png"]


def test_formats_channels_and_sizes_are_unified(tmp_path):
    save(tmp_path / "a" / "gray.png", noise("L", (32, 32)))
    save(tmp_path / "a" / "rgba.png", noise("RGBA", (32, 32)))
    save(tmp_path / "b" / "photo.jpg", noise("RGB", (32, 32)))
    save(tmp_path / "b" / "wide.webp", noise("RGB", (64, 40)))
    data = load_dataset(str(tmp_path))
    assert data.images.shape == (4, 3, 32, 32)
    assert data.labels.tolist() == [0, 0, 1, 1]

    # A grayscale image brought to RGB repeats its channel.
    gray = data.images[data.ids.index("a/gray.png")]
    assert np.array_equal(gray[0], gray[1]) and np.array_equal(gray[1], gray[2])


def test_transparent_pixels_become_white(tmp_path):
    clear = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    save(tmp_path / "clear.png", clear)
    save(tmp_path / "other.png", noise("RGB", (8, 8)))
    data = load_dataset(str(tmp_path))
    assert data.images[data.ids.index("clear.png")].min() == 255


def test_all_grayscale_stays_one_channel_and_sizes_follow_the_most_common(tmp_path):
    for i in range(3):
        save(tmp_path / f"{i}.png", noise("L", (28, 28), i))
    save(tmp_path / "big.png", noise("L", (56, 70)))
    data = load_dataset(str(tmp_path))
    assert data.images.shape == (4, 1, 28, 28)


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".tgz", ".zip"])
def test_archives_read_like_folders(cifar_folder, tmp_path, suffix):
    archive = tmp_path / f"cifar{suffix}"
    if suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as handle:
            for path in sorted(cifar_folder.rglob("*.jpg")):
                handle.write(
                    path, "wrapped/" + path.relative_to(cifar_folder).as_posix()
                )
    else:
        mode = "w" if suffix == ".tar" else "w:gz"
        with tarfile.open(archive, mode) as handle:
            handle.add(cifar_folder, arcname="wrapped")
    from_archive = load_dataset(str(archive))
    from_folder = load_dataset(str(cifar_folder))
    assert np.array_equal(from_archive.images, from_folder.images)
    assert np.array_equal(from_archive.labels, from_folder.labels)
    assert len(from_archive.test) == 30


def test_npz_keras_layout(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8),
        y_train=np.arange(10) % 3,
        x_test=np.zeros((4, 8, 8, 3), np.uint8),
        y_test=np.array([0, 1, 2, 0]),
    )
    data = load_dataset(str(path))
    assert data.images.shape == (10, 3, 8, 8) and data.classes == ["0", "1", "2"]
    assert len(data.test) == 4 and data.ids[3] == "train/3"


def test_npz_unlabelled_grayscale(tmp_path):
    path = tmp_path / "gray.npz"
    np.savez(path, x_train=np.zeros((5, 6, 6), np.uint8))
    data = load_dataset(str(path))
    assert data.images.shape == (5, 1, 6, 6) and data.labels is None


def test_mnist_npz_from_shared_data(shared_datasets):
    data = load_dataset(str(shared_datasets / "mnist.npz"))
    assert data.images.shape == (60000, 1, 28, 28) and len(data.test) == 10000


def write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format of the MNIST files: magic, dimensions, big-endian data."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">HBB", 0, codes[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


@pytest.fixture(scope="module")
def mnist_arrays(shared_datasets):
    with np.load(shared_datasets / "mnist.npz") as arrays:
        return (
            arrays["x_train"][:200],
            arrays["y_train"][:200],
            arrays["x_test"][:50],
            arrays["y_test"][:50],
        )


@pytest.mark.parametrize(
    "name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")]
)
def test_torchvision_mnist_layouts(tmp_path, mnist_arrays, name, folder):
    x, y, xt, yt = mnist_arrays
    raw = tmp_path / folder / "raw"
    write_idx(raw / "train-images-idx3-ubyte", x)
    write_idx(raw / "train-labels-idx1-ubyte", y.astype(np.uint8))
    write_idx(raw / "t10k-images-idx3-ubyte", xt)
    write_idx(raw / "t10k-labels-idx1-ubyte", yt.astype(np.uint8))
    data = load_dataset(name, root=str(tmp_path))
    assert data.images.shape == (200, 1, 28, 28)
    assert np.array_equal(data.images[:, 0], x) and np.array_equal(data.labels, y)
    assert len(data.test) == 50


def test_torchvision_qmnist_layout(tmp_path, mnist_arrays):
    x, y, xt, yt = mnist_arrays
    raw = tmp_path / "QMNIST" / "raw"
    for split, images, labels in (("train", x, y), ("test", xt, yt)):
        write_idx(raw / f"qmnist-{split}-images-idx3-ubyte", images)
        # QMNIST labels are (N, 8) int32; column 0 is the class.
        extended = np.zeros((len(labels), 8), dtype=">i4")
        extended[:, 0] = labels
        write_idx(raw / f"qmnist-{split}-labels-idx2-int", extended)
    data = load_dataset("qmnist", root=str(tmp_path))
    assert np.array_equal(data.labels, y) and len(data.test) == 50


def test_svhn_official_mat_layout(tmp_path, shared_datasets):
    shutil.copy(shared_datasets / "svhn-train-50.mat", tmp_path / "train_32x32.mat")
    shutil.copy(shared_datasets / "svhn-train-50.mat", tmp_path / "test_32x32.mat")
    data = load_dataset("svhn", root=str(tmp_path))
    assert data.images.shape == (50, 3, 32, 32)
    assert data.labels.min() >= 0 and data.labels.max() <= 9


def test_named_dataset_missing_says_how_to_download(tmp_path):
    with pytest.raises(DatasetError, match="download"):
        load_dataset("cifar10", root=str(tmp_path))


def test_missing_path(tmp_path):
    with pytest.raises(DatasetError, match="no such file or folder"):
        load_dataset(str(tmp_path / "nowhere"))


def test_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match="no images found"):
        load_dataset(str(tmp_path))


def test_corrupt_image_is_named(tmp_path):
    save(tmp_path / "cats" / "good.png", noise("RGB", (8, 8)))
    (tmp_path / "cats" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    with pytest.raises(DatasetError, match="cats/broken.jpg"):
        load_dataset(str(tmp_path))


def test_truncated_image_is_named(tmp_path):
    buffer = io.BytesIO()
    noise("RGB", (64, 64)).save(buffer, "PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[:200])
    save(tmp_path / "fine.png", noise("RGB", (64, 64)))
    with pytest.raises(DatasetError, match="cut.png"):
        load_dataset(str(tmp_path))


def test_loose_image_beside_class_folders(tmp_path):
    save(tmp_path / "cats" / "a.png", noise("RGB", (8, 8)))
    save(tmp_path / "stray.png", noise("RGB", (8, 8)))
    with pytest.raises(DatasetError, match="stray.png"):
        load_dataset(str(tmp_path))


def test_npz_without_x_train(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(DatasetError, match="x_train"):
        load_dataset(str(path))


def test_npz_with_bad_shapes_and_labels(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((3, 8), np.uint8))
    with pytest.raises(DatasetError, match="shape"):
        load_dataset(str(path))
    np.savez(path, x_train=np.zeros((3, 8, 8), np.uint8), y_train=np.arange(4))
    with pytest.raises(DatasetError, match="4 labels for 3 images"):
        load_dataset(str(path))


def test_corrupt_archive(tmp_path):
    path = tmp_path / "data.tar.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(DatasetError, match="not a readable archive"):
        load_dataset(str(path))


def test_second_load_comes_from_the_cache(cifar_folder, private_cache):
    load_dataset(str(cifar_folder))
    started = time.perf_counter()
    again = load_dataset(str(cifar_folder))
    assert time.perf_counter() - started < 1.0
    assert len(list((private_cache / "datasets").glob("*.npz"))) >= 1
    assert len(again) == 120


def test_cache_notices_a_changed_folder(tmp_path):
    save(tmp_path / "0.png", noise("RGB", (8, 8)))
    assert len(load_dataset(str(tmp_path))) == 1
    save(tmp_path / "1.png", noise("RGB", (8, 8), 1))
    assert len(load_dataset(str(tmp_path))) == 2


def test_pool_is_class_balanced_and_seeded():
    labels = np.repeat(np.arange(4), [50, 50, 50, 3])
    data = ImageDataset(
        "toy", np.zeros((153, 1, 2, 2), np.uint8), labels, [str(i) for i in range(153)]
    )
    pool = select_pool(data, 43, seed=1)
    assert len(pool) == 43 and len(set(pool)) == 43
    assert np.bincount(labels[pool]).tolist() == [14, 13, 13, 3] or sorted(
        np.bincount(labels[pool]).tolist()
    ) == [3, 13, 13, 14]
    assert np.array_equal(pool, select_pool(data, 43, seed=1))


def test_failed_download_is_a_dataset_error(tmp_path, monkeypatch):
    from urllib.error import URLError

    def unreachable(*args, **kwargs):
        raise URLError("host unreachable")

    monkeypatch.setattr("torchvision.datasets.CIFAR10.download", unreachable)
    with pytest.raises(DatasetError, match="could not download"):
        load_dataset("cifar10", root=str(tmp_path), download=True)


def test_npz_with_nan_pixels(tmp_path):
    path = tmp_path / "nan.npz"
    np.savez(path, x_train=np.full((4, 8, 8), np.nan))
    with pytest.raises(DatasetError, match="NaN"):
        load_dataset(str(path))


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    pixels = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    data = load_dataset(str(tmp_path))
    assert data.images.shape == (1, 1, 8, 8)
    assert data.images.min() == 0 and data.images.max() == 255
    assert 110 < data.images.mean() < 145
