"""Image folders and archives: layout rules and decoding.

Layout. Class sub-folders give labels (``cat/001.png``); images directly in the
folder are unlabelled; the two may not be mixed. Top-level ``train/`` and
``test/`` folders are read as splits, each laid out as above. A single folder
wrapping everything (as archives often have) is looked through. Files other than
JPEG, PNG and WebP images are ignored. An example's id is its path relative to the
folder or archive root.

Channels. Grayscale images stay one channel when every image is grayscale;
otherwise all become RGB. Transparent images are composited over white.

Sizes. Every image is brought to the most common size among them: scaled so that
it covers that size, keeping its aspect ratio, then centre-cropped. Sizes above
128 pixels a side are capped at 128, since the backbones here are built for
small images.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from coreset_core import datasets

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
SPLITS = ("train", "test")
MAX_SIDE = 128
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "F")

# (relative path, function returning the file's bytes)
Entry = tuple[str, Callable[[], bytes]]


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def load_folder(path: Path) -> datasets.ImageDataset:
    files = sorted(p for p in path.rglob("*") if p.is_file())
    entries = [(p.relative_to(path).as_posix(), p.read_bytes) for p in files]
    return _load_entries(path, path.name, entries)


def load_archive(path: Path, name: str | None = None) -> datasets.ImageDataset:
    """Read a .tar, .tar.gz, .tgz or .zip archive laid out like an image folder."""
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                entries = [
                    (info.filename, _constant(archive.read(info)))
                    for info in archive.infolist()
                    if not info.is_dir() and _is_image(info.filename)
                ]
        else:
            with tarfile.open(path) as archive:
                entries = [
                    (member.name, _constant(_read_member(archive, member)))
                    for member in archive.getmembers()
                    if member.isfile() and _is_image(member.name)
                ]
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise datasets.DatasetError(f"{path}: not a readable archive ({exc})") from exc
    return _load_entries(path, name or _archive_stem(path), entries)


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    assert handle is not None, "regular tar members always have a file object"
    return handle.read()


def _constant(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _archive_stem(path: Path) -> str:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_image(name: str) -> bool:
    parts = PurePosixPath(name).parts
    hidden = any(p.startswith(".") or p == "__MACOSX" for p in parts)
    return not hidden and name.lower().endswith(IMAGE_SUFFIXES)


def _load_entries(
    source: Path, name: str, entries: list[Entry]
) -> datasets.ImageDataset:
    """Split entries by layout, decode them, and build the dataset."""
    entries = sorted((e for e in entries if _is_image(e[0])), key=lambda e: e[0])
    if not entries:
        raise datasets.DatasetError(
            f"{source}: no images found ({', '.join(IMAGE_SUFFIXES)})"
        )
    prefix = _wrapper_prefix([e[0] for e in entries])

    # Relative paths below the wrapper folder, by split.
    relative = [(e[0][len(prefix) :], e) for e in entries]
    if any(path.split("/")[0] in SPLITS and "/" in path for path, _ in relative):
        splits = {
            s: [(p[len(s) + 1 :], e) for p, e in relative if p.startswith(s + "/")]
            for s in SPLITS
        }
        outside = [e[0] for p, e in relative if p.split("/")[0] not in SPLITS]
        if outside:
            raise datasets.DatasetError(
                f"{source}: found train/ or test/ folders, but also {outside[0]} "
                "outside them; put every image in one of the two"
            )
        if not splits["train"]:
            raise datasets.DatasetError(
                f"{source}: a test/ folder but no train/ folder"
            )
    else:
        splits = {"train": relative, "test": []}

    # Decode both splits to one channel layout and one size.
    every = splits["train"] + splits["test"]
    channels, size = _common_format(every)
    train = _decode_split(source, name, splits["train"], channels, size, None)
    test = None
    if splits["test"]:
        test = _decode_split(
            source, name, splits["test"], channels, size, train.classes
        )
    return datasets.ImageDataset(
        name, train.images, train.labels, train.ids, train.classes, test
    )


def _wrapper_prefix(paths: list[str]) -> str:
    """The folders that wrap every path (``data/cifar/``), none of them a split."""
    prefix = ""
    while True:
        rest = [p[len(prefix) :] for p in paths]
        heads = {r.split("/")[0] for r in rest}
        if len(heads) != 1 or any("/" not in r for r in rest):
            return prefix
        head = heads.pop()
        if head in SPLITS:
            return prefix
        prefix += head + "/"


def _common_format(entries: list[tuple[str, Entry]]) -> tuple[int, tuple[int, int]]:
    """Channels (1 or 3) and (height, width) that every image is brought to."""
    modes: set[str] = set()
    sizes: Counter[tuple[int, int]] = Counter()
    for _, (path, read) in entries:
        image = _open(path, read)
        modes.add(image.mode)
        sizes[(image.height, image.width)] += 1
    channels = 1 if modes <= set(GRAYSCALE_MODES) else 3
    height, width = sizes.most_common(1)[0][0]
    scale = min(1.0, MAX_SIDE / max(height, width))
    return channels, (max(1, round(height * scale)), max(1, round(width * scale)))


def _decode_split(
    source: Path,
    name: str,
    entries: list[tuple[str, Entry]],
    channels: int,
    size: tuple[int, int],
    classes: list[str] | None,
) -> datasets.ImageDataset:
    depths = {path.count("/") for path, _ in entries}
    labelled = min(depths) > 0
    if labelled != (max(depths) > 0):
        loose = next(e[0] for p, e in entries if "/" not in p)
        raise datasets.DatasetError(
            f"{source}: {loose} lies beside class folders; put it in a class folder, "
            "or use a flat folder for unlabelled data"
        )

    labels = None
    if labelled:
        names = sorted({p.split("/")[0] for p, _ in entries})
        if classes is None:
            classes = names
        unknown = set(names) - set(classes)
        if unknown:
            raise datasets.DatasetError(
                f"{source}: test classes {sorted(unknown)} do not occur in train/"
            )
        index = {c: i for i, c in enumerate(classes)}
        labels = np.array([index[p.split("/")[0]] for p, _ in entries], dtype=np.int64)

    images = np.empty((len(entries), channels, *size), dtype=np.uint8)
    for i, (_, (path, read)) in enumerate(entries):
        images[i] = _to_array(_open(path, read, decode=True), channels, size)
    ids = [path for _, (path, _) in entries]
    return datasets.ImageDataset(
        name, images, labels, ids, classes if labelled else None
    )


def _open(path: str, read: Callable[[], bytes], decode: bool = False) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(read()))
        if decode:
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise datasets.DatasetError(f"cannot read image {path}: {exc}") from exc
    return image


def _to_array(image: Image.Image, channels: int, size: tuple[int, int]) -> np.ndarray:
    """Flatten transparency over white, convert channels, cover-resize, centre-crop."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    if image.mode.startswith("I"):
        image = _scale_to_8_bits(image)
    image = image.convert("L" if channels == 1 else "RGB")

    height, width = size
    if (image.height, image.width) != size:
        scale = max(height / image.height, width / image.width)
        scaled = (
            max(width, round(image.width * scale)),
            max(height, round(image.height * scale)),
        )
        image = image.resize(scaled, Image.Resampling.BILINEAR)
        left = (image.width - width) // 2
        top = (image.height - height) // 2
        image = image.crop((left, top, left + width, top + height))

    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _scale_to_8_bits(image: Image.Image) -> Image.Image:
    """16- and 32-bit integer grayscale to 8 bits, scaled by the type's range.

    PIL's own conversion clips instead, which turns most 16-bit images white.
    """
    pixels = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
    top = max(top, float(pixels.max()))
    return Image.fromarray(np.round(pixels / top * 255).astype(np.uint8), "L")
