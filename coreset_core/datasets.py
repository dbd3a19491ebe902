"""Loading image datasets into memory as uint8 arrays with a stable id per example.

Sources, by what `source` names:

- ``builtin``: the CIFAR-10 sample shipped with the package (5,000 train images,
  500 per class, and 1,000 test images), always available offline.
- an image folder, or the same as a ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip``
  archive (see :mod:`coreset_core.folders` for the layout rules).
- a Keras-style ``.npz`` with ``x_train`` and optional ``y_train``, ``x_test``,
  ``y_test``.
- a torchvision dataset by name: cifar10, cifar100, svhn, qmnist, mnist,
  fashion-mnist, read from ``root`` and fetched there first when ``download`` is set.

Labels are optional everywhere. Decoded folders and archives are cached on disk,
keyed by the source's paths, sizes and modification times, so a second load of
the same data takes a fraction of a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from coreset_core import folders

log = logging.getLogger(__name__)

BUILTIN = "builtin"
BUILTIN_PATH = Path(__file__).parent / "assets" / "cifar10-sample.tar.gz"
TORCHVISION_NAMES = ("cifar10", "cifar100", "svhn", "qmnist", "mnist", "fashion-mnist")

# Bumped whenever decoding changes, so stale caches are never read.
CACHE_VERSION = 1


class DatasetError(ValueError):
    """The data could not be loaded; the message names the file or setting at fault."""


@dataclass(frozen=True)
class ImageDataset:
    """Images (N, C, H, W) uint8 with optional labels (N,) and a stable id each."""

    name: str
    images: np.ndarray
    labels: np.ndarray | None
    ids: list[str]
    classes: list[str] | None = None
    test: ImageDataset | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise DatasetError(
                f"{self.name}: images must be uint8 (N, C, H, W), "
                f"got {self.images.dtype} {self.images.shape}"
            )
        if self.labels is not None and len(self.labels) != n:
            raise DatasetError(f"{self.name}: {len(self.labels)} labels for {n} images")
        if len(self.ids) != n:
            raise DatasetError(f"{self.name}: {len(self.ids)} ids for {n} images")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    def subset(self, indices: np.ndarray) -> ImageDataset:
        """The examples at indices, in that order; the test split is kept."""
        labels = None if self.labels is None else self.labels[indices]
        ids = [self.ids[i] for i in indices]
        return replace(self, images=self.images[indices], labels=labels, ids=ids)

    def channel_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and standard deviation in [0, 1], as float32 (C,)."""
        pixels = self.images.transpose(1, 0, 2, 3).reshape(self.channels, -1)
        mean = np.zeros(self.channels)
        square = np.zeros(self.channels)
        # Chunks keep the float64 copy small on large datasets.
        for start in range(0, pixels.shape[1], 1 << 22):
            chunk = pixels[:, start : start + (1 << 22)].astype(np.float64) / 255
            mean += chunk.sum(axis=1)
            square += (chunk**2).sum(axis=1)
        count = pixels.shape[1]
        mean /= count
        std = np.sqrt(np.maximum(square / count - mean**2, 1e-12))
        return mean.astype(np.float32), std.astype(np.float32)


def load_dataset(
    source: str = BUILTIN, root: str | None = None, download: bool = False
) -> ImageDataset:
    """Load a dataset by name or path; raises DatasetError naming what is wrong."""
    if source == BUILTIN:
        return _cached(
            BUILTIN_PATH, lambda: folders.load_archive(BUILTIN_PATH, BUILTIN)
        )
    if source in TORCHVISION_NAMES:
        return load_torchvision(source, root, download)

    path = Path(source).expanduser()
    if not path.exists():
        names = ", ".join((BUILTIN, *TORCHVISION_NAMES))
        raise DatasetError(
            f"no such file or folder: {source} (or a dataset name: {names})"
        )
    if path.is_dir():
        return _cached(path, lambda: folders.load_folder(path))
    if path.suffix == ".npz":
        return load_npz(path)
    if folders.is_archive(path):
        return _cached(path, lambda: folders.load_archive(path))
    raise DatasetError(
        f"{path}: not a folder, .npz, .tar, .tar.gz, .tgz or .zip; cannot load it"
    )


def load_npz(path: Path) -> ImageDataset:
    """A Keras-style .npz: x_train (N, H, W) or (N, H, W, C); y_train, test optional."""
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from exc
    with arrays:
        if "x_train" not in arrays:
            found = ", ".join(arrays.files) or "nothing"
            raise DatasetError(f"{path}: no 'x_train' array (found: {found})")
        train = _npz_split(path, "train", arrays)
        test = _npz_split(path, "test", arrays) if "x_test" in arrays else None

    classes = None
    if train.labels is not None:
        top = int(train.labels.max())
        if test is not None and test.labels is not None:
            top = max(top, int(test.labels.max()))
        classes = [str(c) for c in range(top + 1)]
    test = replace(test, classes=classes) if test is not None else None
    return replace(train, classes=classes, test=test)


def _npz_split(path: Path, split: str, arrays: np.lib.npyio.NpzFile) -> ImageDataset:
    images = _to_nchw(path, f"x_{split}", arrays[f"x_{split}"])
    labels = None
    if f"y_{split}" in arrays:
        labels = _to_labels(path, f"y_{split}", arrays[f"y_{split}"], len(images))
    ids = [f"{split}/{i}" for i in range(len(images))]
    return ImageDataset(path.name, images, labels, ids)


def _to_nchw(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    """Bring (N, H, W) or (N, H, W, C) pixels to uint8 (N, C, H, W), alpha dropped."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4) or len(x) == 0:
        raise DatasetError(
            f"{path}: {key} must be (N, H, W) or (N, H, W, C) with C in 1, 3, 4 "
            f"and N > 0, got shape {x.shape}"
        )
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            raise DatasetError(f"{path}: {key} holds NaN or infinite values")
        if not np.issubdtype(x.dtype, np.floating) or x.min() < 0 or x.max() > 1:
            raise DatasetError(
                f"{path}: {key} must be uint8, or floats in [0, 1]; got {x.dtype}"
            )
        x = np.round(x * 255).astype(np.uint8)
    return np.ascontiguousarray(x[..., :3].transpose(0, 3, 1, 2))


def _to_labels(path: Path, key: str, y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if len(y) != n:
        raise DatasetError(f"{path}: {key} has {len(y)} labels for {n} images")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise DatasetError(f"{path}: {key} must hold non-negative integer class labels")
    return y.astype(np.int64)


def load_torchvision(name: str, root: str | None, download: bool) -> ImageDataset:
    """A torchvision dataset in its official on-disk layout under root."""
    data_root = Path(root or default_data_root()).expanduser()
    try:
        train = _torchvision_split(name, data_root, "train", download)
        test = _torchvision_split(name, data_root, "test", download)
    except (RuntimeError, FileNotFoundError) as exc:
        raise DatasetError(
            f"{name}: not found under {data_root} ({exc}). Pass download=True "
            "(--download) to fetch it there, or point root at its files."
        ) from exc
    except OSError as exc:
        # Downloads fail with URLError (an OSError) when the host is unreachable.
        raise DatasetError(
            f"{name}: could not download to {data_root} ({exc})"
        ) from exc
    return replace(train, test=test)


def default_data_root() -> Path:
    return Path(os.environ.get("CORESET_DATA_ROOT", "~/.cache/coreset-studio/data"))


def _torchvision_split(
    name: str, root: Path, split: str, download: bool
) -> ImageDataset:
    import torchvision.datasets as tvd

    train = split == "train"
    classes: list[str] | None = None
    if name in ("cifar10", "cifar100"):
        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        ds = cls(str(root), train=train, download=download)
        images, labels, classes = ds.data, np.asarray(ds.targets), ds.classes
    elif name in ("mnist", "fashion-mnist", "qmnist"):
        if name == "qmnist":
            ds = tvd.QMNIST(str(root), what=split, download=download)
            labels = ds.targets[:, 0].numpy()
        else:
            cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
            ds = cls(str(root), train=train, download=download)
            labels = ds.targets.numpy()
        images, classes = ds.data.numpy(), list(ds.classes)
    else:
        images, labels = _svhn_split(root, split, download)
        classes = [str(c) for c in range(10)]

    x = _to_nchw(root, f"{name} {split}", np.asarray(images))
    ids = [f"{split}/{i}" for i in range(len(x))]
    y = _to_labels(root, f"{name} {split} labels", labels, len(x))
    return ImageDataset(name, x, y, ids, classes)


def _svhn_split(
    root: Path, split: str, download: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Read SVHN's official .mat file: X (32, 32, 3, N), y (N, 1) with 10 for digit 0.

    The file is read directly rather than through torchvision's class, whose
    checksum test rejects anything but the complete official file; downloads
    still go through torchvision, which verifies them.
    """
    from scipy.io import loadmat

    path = root / f"{split}_32x32.mat"
    if download and not path.exists():
        import torchvision.datasets as tvd

        tvd.SVHN(str(root), split=split, download=True)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        mat = loadmat(path)
    except (ValueError, OSError) as exc:
        raise DatasetError(f"{path}: not a readable SVHN .mat file ({exc})") from exc
    if "X" not in mat or "y" not in mat:
        raise DatasetError(f"{path}: an SVHN .mat file needs arrays X and y")

    # (32, 32, 3, N) -> (N, 32, 32, 3); label 10 stands for the digit 0.
    images = np.transpose(mat["X"], (3, 0, 1, 2))
    labels = mat["y"].reshape(-1).astype(np.int64) % 10
    return images, labels


def select_pool(dataset: ImageDataset, pool_size: int | None, seed: int) -> np.ndarray:
    """Indices of a fixed pool: class-balanced when labelled, sorted, seeded."""
    n = len(dataset)
    if pool_size is None or pool_size >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if dataset.labels is None:
        return np.sort(rng.choice(n, pool_size, replace=False))

    # Spread the pool evenly over classes; classes too small give what they have.
    by_class = [np.flatnonzero(dataset.labels == c) for c in np.unique(dataset.labels)]
    chosen: list[np.ndarray] = []
    remaining = pool_size
    for k, members in enumerate(sorted(by_class, key=len)):
        take = min(len(members), remaining // (len(by_class) - k))
        chosen.append(rng.choice(members, take, replace=False))
        remaining -= take
    return np.sort(np.concatenate(chosen))


def cache_dir() -> Path:
    return Path(
        os.environ.get("CORESET_CACHE_DIR", "~/.cache/coreset-studio")
    ).expanduser()


def _cached(path: Path, load: Callable[[], ImageDataset]) -> ImageDataset:
    """Load through the on-disk cache, keyed by the files' names, sizes and times."""
    key = _source_key(path)
    cache = cache_dir() / "datasets" / f"{key}.npz"
    if cache.exists():
        return _read_cache(cache)

    dataset = load()
    _write_cache(cache, dataset)
    return dataset


def _source_key(path: Path) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION}:{path.resolve()}".encode())
    files = (
        sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    )
    for file in files:
        stat = file.stat()
        digest.update(f"{file}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _write_cache(cache: Path, dataset: ImageDataset) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for split, part in (("train", dataset), ("test", dataset.test)):
        if part is None:
            continue
        arrays[f"{split}_images"] = part.images
        arrays[f"{split}_ids"] = np.asarray(part.ids, dtype=str)
        if part.labels is not None:
            arrays[f"{split}_labels"] = part.labels
    meta = {"name": dataset.name, "classes": dataset.classes}
    arrays["meta"] = np.asarray(json.dumps(meta))

    # Written under a temporary name first, so a killed process leaves no half file.
    partial = cache.with_name(f"{cache.stem}.{os.getpid()}.partial.npz")
    np.savez(partial, allow_pickle=False, **arrays)
    partial.replace(cache)
    log.info("cached %s at %s", dataset.name, cache)


def _read_cache(cache: Path) -> ImageDataset:
    with np.load(cache, allow_pickle=False) as arrays:
        meta = json.loads(str(arrays["meta"]))
        parts: dict[str, ImageDataset] = {}
        for split in ("train", "test"):
            if f"{split}_images" not in arrays:
                continue
            labels = arrays[f"{split}_labels"] if f"{split}_labels" in arrays else None
            parts[split] = ImageDataset(
                meta["name"],
                arrays[f"{split}_images"],
                labels,
                [str(i) for i in arrays[f"{split}_ids"]],
                meta["classes"],
            )
    return replace(parts["train"], test=parts.get("test"))
