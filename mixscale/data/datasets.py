"""Datasets and their per-class index tables.

A dataset is held as numpy arrays: images ``N x C x H x W`` (uint8 in 0..255, or float32 in
0..1), unnormalised, plus a per-channel ``mean``/``std`` (on the 0..1 scale) that the training
loop applies on the device. This module imports no torch at import time; torchvision and PIL
are imported inside the loaders that need them, so the design stage stays cheap.

Datasets (``name`` in :func:`load_dataset`):

- ``digits``: scikit-learn's bundled 8x8 digits; a fixed seeded stratified split
  (``TEST_FRACTION`` of each class is the test split, seed ``SPLIT_SEED``).
- ``cifar10``, ``cifar100``: read by torchvision's classes from ``data_dir`` (downloaded there
  only when ``download=True``); their own train/test splits.
- ``mnist``, ``fashion-mnist``: their four IDX files (each plain or gzipped) from the first of
  ``<data_dir>/MNIST/raw`` (or ``FashionMNIST/raw``: torchvision's layout), ``data_dir`` itself,
  and for Fashion-MNIST ``/usr/share/datasets/fashion-mnist`` (Debian's
  ``dataset-fashion-mnist``, :data:`SYSTEM_DATA_DIRS`); downloaded by torchvision into the
  first only when ``download=True`` and none has them.
- ``imagefolder:<path>``: a user's images, one sub-folder per class; ``<path>/train`` and
  ``<path>/test`` (each with the same class folders) when both exist, else one set of class
  folders split like digits. All images must share one size; they are read as grey when every
  image is grey, else as RGB.

Per-class availability in the training split (:attr:`ImageDataset.available`) caps the design;
a row's images are drawn by :mod:`mixscale.data.subsets`.
"""

from __future__ import annotations

import gzip
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from mixscale.config import DATASETS
from mixscale.errors import MixscaleError

__all__ = ["ImageDataset", "design_dataset", "load_dataset", "sanitize_class_name"]

SPLIT_SEED = 0  # the train/test split is fixed: every row of every design sees the same test set
TEST_FRACTION = 0.25  # share of each class held out as the test split (digits, imagefolder)
DEFAULT_DATA_DIR = "data"  # where torchvision datasets are looked for (relative to the cwd)
IMAGEFOLDER = "imagefolder:"  # prefix of a user's class-folder dataset

# torchvision class, the folder its files live in under data_dir, and the files it needs.
_TORCHVISION = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py",
                "data_batch_1..data_batch_5, test_batch, batches.meta"),
    "cifar100": ("CIFAR100", "cifar-100-python", "train, test, meta"),
    "mnist": ("MNIST", "MNIST/raw", "train-images-idx3-ubyte, train-labels-idx1-ubyte, "
              "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw",
                      "train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                      "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """An image-classification dataset split into train and test arrays.

    ``mean`` and ``std`` default to the per-channel statistics of the training split; the
    training loop feeds the network ``(image / scale - mean) / std`` (see :meth:`normalise`).
    """

    name: str  # dataset name as given on the command line
    class_names: tuple[str, ...]  # human-readable class names, in label order
    train_images: np.ndarray  # (N, C, H, W) uint8 0..255 or float32 0..1, unnormalised
    train_labels: np.ndarray  # (N,) int64 labels in [0, n_classes)
    test_images: np.ndarray  # (M, C, H, W), same dtype as train_images
    test_labels: np.ndarray  # (M,) int64
    mean: tuple[float, ...] | None = field(default=None)  # per channel, 0..1 scale
    std: tuple[float, ...] | None = field(default=None)  # per channel, 0..1 scale
    skipped: tuple[str, ...] = ()  # unreadable images left out (imagefolder, relative paths)

    def __post_init__(self) -> None:
        _check_unique_keys(self.class_names)
        if self.train_images.ndim != 4 or self.train_images.shape[1:] != \
                self.test_images.shape[1:]:
            raise MixscaleError(
                f"dataset {self.name!r}: train and test images must both be (N, C, H, W) of one "
                f"shape, but got {self.train_images.shape} and {self.test_images.shape}."
            )
        if self.mean is None or self.std is None:
            mean, std = _channel_stats(self.train_images)
            object.__setattr__(self, "mean", mean if self.mean is None else self.mean)
            object.__setattr__(self, "std", std if self.std is None else self.std)

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        c, h, w = self.train_images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def scale(self) -> float:
        """What raw pixel values are divided by to reach 0..1 (255 for uint8, else 1)."""
        return _scale(self.train_images)

    @property
    def class_keys(self) -> tuple[str, ...]:
        """MLflow-safe class keys (see :func:`sanitize_class_name`)."""
        return tuple(sanitize_class_name(c) for c in self.class_names)

    @property
    def count_columns(self) -> tuple[str, ...]:
        """Parameter / column names ``n_<class>`` in label order."""
        return tuple(f"n_{k}" for k in self.class_keys)

    @property
    def available(self) -> np.ndarray:
        """Training images per class (int64), the design's default upper bounds."""
        return np.bincount(self.train_labels, minlength=self.n_classes).astype(np.int64)

    def normalise(self, images: np.ndarray) -> np.ndarray:
        """``(images / scale - mean) / std`` per channel, as float32 (what the network sees)."""
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        return ((images.astype(np.float32) / _scale(images) - mean) / std).astype(np.float32)


def sanitize_class_name(name: str) -> str:
    """Make a class name usable in MLflow param/metric keys and DataFrame columns.

    Rule: every run of characters outside ``[A-Za-z0-9_]`` becomes one ``_``; leading and
    trailing ``_`` are stripped; an empty result raises. ``"sea lion"`` -> ``"sea_lion"``,
    ``"T-shirt/top"`` -> ``"T_shirt_top"``. Keys keep their case.
    """
    key = re.sub(r"[^A-Za-z0-9_]+", "_", str(name)).strip("_")
    if not key:
        raise MixscaleError(f"class name {name!r} has no letters or digits to build a key from.")
    return key


def _check_unique_keys(class_names: tuple[str, ...]) -> None:
    seen: dict[str, str] = {}
    for name in class_names:
        key = sanitize_class_name(name)
        if key in seen:
            raise MixscaleError(
                f"classes {seen[key]!r} and {name!r} both become the key {key!r} (column "
                f"n_{key}); class names must stay distinct after every run of characters "
                "outside [A-Za-z0-9_] becomes '_': rename one of them."
            )
        seen[key] = name


def _scale(images: np.ndarray) -> float:
    return 255.0 if images.dtype == np.uint8 else 1.0


def _channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on the 0..1 scale (float64 sums, chunked to bound memory)."""
    n, c = images.shape[:2]
    total, total_sq, count = np.zeros(c), np.zeros(c), 0
    for start in range(0, n, 4096):
        chunk = images[start:start + 4096].astype(np.float64) / _scale(images)
        total += chunk.sum(axis=(0, 2, 3))
        total_sq += (chunk ** 2).sum(axis=(0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean ** 2, 0.0))
    std = np.where(std > 1e-8, std, 1.0)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(len(idx) * test_fraction)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _frozen(name: str, class_names: tuple[str, ...], x_train: np.ndarray, y_train: np.ndarray,
            x_test: np.ndarray, y_test: np.ndarray, *, skipped: tuple[str, ...] = ()
            ) -> ImageDataset:
    arrays = [np.ascontiguousarray(x_train), np.asarray(y_train, dtype=np.int64),
              np.ascontiguousarray(x_test), np.asarray(y_test, dtype=np.int64)]
    for a in arrays:
        a.setflags(write=False)
    return ImageDataset(name, class_names, *arrays, skipped=skipped)


def _load_digits() -> ImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    train, test = _stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
    return _frozen("digits", tuple(str(c) for c in bunch.target_names),
                   images[train], labels[train], images[test], labels[test])


def _load_torchvision(name: str, data_dir: Path, download: bool) -> ImageDataset:
    if name in _IDX_SETS:
        return _load_idx_set(name, data_dir, download)
    import torchvision.datasets as tvd

    cls_name, folder, files = _TORCHVISION[name]
    cls = getattr(tvd, cls_name)
    try:
        splits = [cls(str(data_dir), train=train, download=download) for train in (True, False)]
    except (RuntimeError, OSError) as exc:
        if download:
            raise MixscaleError(
                f"could not download dataset {name!r} into {data_dir} ({type(exc).__name__}: "
                f"{exc}); check the network, or place the files in {data_dir / folder}."
            ) from None
        raise MixscaleError(
            f"dataset {name!r} was not found (or is incomplete) in {data_dir}: expected "
            f"{data_dir / folder}/ with {files}. Pass --download (download=True) to fetch "
            "it there, or --data-dir to point at the folder that holds it."
        ) from None
    arrays = []
    for ds in splits:
        data = np.asarray(ds.data, dtype=np.uint8)
        # CIFAR keeps (N, H, W, C); MNIST-style sets keep (N, H, W).
        images = data.transpose(0, 3, 1, 2) if data.ndim == 4 else data[:, None, :, :]
        arrays += [images, np.asarray(ds.targets, dtype=np.int64)]
    return _frozen(name, tuple(str(c) for c in splits[0].classes), *arrays)


# MNIST-style sets: four IDX files, each plain or gzipped, found in the first of these places
# that has all four: <data_dir>/<torchvision folder>/, <data_dir>/, then a system folder.
_IDX_SETS = ("mnist", "fashion-mnist")
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")
# Where a system package puts a dataset (Debian's dataset-fashion-mnist: the official .gz files).
SYSTEM_DATA_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}
SYSTEM_PACKAGES = {"fashion-mnist": "dataset-fashion-mnist"}


def _idx_places(name: str, data_dir: Path) -> list[tuple[Path, str]]:
    """Where an MNIST-style set is looked for, in order, each with what it is."""
    places = [(data_dir / _TORCHVISION[name][1], "torchvision's layout"),
              (data_dir, "the raw IDX files directly in --data-dir")]
    if name in SYSTEM_DATA_DIRS:
        places.append((SYSTEM_DATA_DIRS[name], f"Debian's {SYSTEM_PACKAGES[name]}"))
    return places


def _find_idx(folder: Path) -> list[Path] | None:
    """The four IDX files in ``folder`` (each plain or ``.gz``), or None if one is missing."""
    found = []
    for stem in _IDX_FILES:
        path = next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)
        if path is None:
            return None
        found.append(path)
    return found


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (``.gz`` or not) as an array of its shape."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise MixscaleError(f"{path} cannot be read ({type(exc).__name__}: {exc}); replace "
                            "it with an intact copy.") from None
    ndim = data[3] if len(data) >= 4 else 0
    if len(data) < 4 + 4 * ndim or data[:3] != b"\0\0\x08" or ndim == 0:
        raise MixscaleError(f"{path} is not an IDX file of unsigned bytes (it starts with "
                            f"{data[:4].hex() or 'nothing'}, expected 000008 and a rank).")
    shape = struct.unpack(f">{ndim}i", data[4:4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise MixscaleError(f"{path}: its header says {'x'.join(map(str, shape))} values but "
                            f"it holds {array.size}; the file is truncated.")
    return array.reshape(shape)


def _load_idx_set(name: str, data_dir: Path, download: bool) -> ImageDataset:
    import torchvision.datasets as tvd

    places = _idx_places(name, data_dir)
    files = next((f for f in (_find_idx(folder) for folder, _ in places) if f), None)
    if files is None and download:
        cls = getattr(tvd, _TORCHVISION[name][0])
        try:
            cls(str(data_dir), train=True, download=True)  # both splits, into places[0]
        except (RuntimeError, OSError) as exc:
            raise MixscaleError(
                f"could not download dataset {name!r} into {data_dir} ({type(exc).__name__}: "
                f"{exc}); check the network, or place the files in {places[0][0]}."
            ) from None
        files = _find_idx(places[0][0])
    if files is None:
        looked = "; ".join(f"{folder}/ ({what})" for folder, what in places)
        fetch = f"pass --download to fetch it into {places[0][0]}"
        if name in SYSTEM_PACKAGES:
            fetch = f"install it with `apt-get install {SYSTEM_PACKAGES[name]}`, or {fetch}"
        raise MixscaleError(
            f"dataset {name!r} was not found: looked for {', '.join(_IDX_FILES)} (each plain "
            f"or .gz) in {looked}; {fetch}, or pass --data-dir to point at the folder that "
            "holds them."
        )
    x_train, y_train, x_test, y_test = (_read_idx(f) for f in files)
    for images, labels, path in ((x_train, y_train, files[0]), (x_test, y_test, files[2])):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise MixscaleError(f"{path}: {images.shape} images do not match their "
                                f"{labels.shape} labels; the files are not one dataset.")
    classes = [str(c) for c in getattr(tvd, _TORCHVISION[name][0]).classes]
    if name == "mnist":  # torchvision names them "0 - zero" ...; keep the digit, like digits
        classes = [c.split(" - ")[0] for c in classes]
    return _frozen(name, tuple(classes), x_train[:, None], y_train, x_test[:, None], y_test)


def _decode(paths: list[Path]) -> tuple[list, list[tuple[Path, str]]]:
    """Every image fully decoded (PIL images, None where bad) and the bad ones with why."""
    from PIL import Image

    images: list = []
    bad: list[tuple[Path, str]] = []
    for path in paths:
        try:
            with Image.open(path) as img:
                img.load()  # a truncated file opens fine and fails only here
                images.append(img)
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
            images.append(None)
            bad.append((path, str(exc).replace(f" {str(path)!r}", "") or type(exc).__name__))
    return images, bad


def _stack(images: list, paths: list[Path]) -> np.ndarray:
    """One ``(N, C, H, W)`` uint8 array: grey when every image is grey, else RGB."""
    mode = "L" if all(img.mode in _GREY for img in images) else "RGB"
    first = images[0].size
    for img, path in zip(images, paths, strict=True):
        if img.size != first:
            raise MixscaleError(
                f"imagefolder images must all have one size, but {paths[0]} is "
                f"{first[0]}x{first[1]} and {path} is {img.size[0]}x{img.size[1]}; resize "
                "them to one size first."
            )
    stacked = np.stack([np.asarray(img.convert(mode), dtype=np.uint8) for img in images])
    return stacked[:, None] if mode == "L" else stacked.transpose(0, 3, 1, 2)


_GREY = ("L", "1", "I;16", "I", "F")  # PIL modes read as one grey channel
_BAD_SHOWN = 5  # unreadable images named in the error (the count covers them all)


def _scan_classes(root: Path) -> tuple[list[str], list[Path], np.ndarray]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(str(root))
        samples = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as exc:
        raise MixscaleError(f"imagefolder {root}: {exc} (expected one sub-folder of images "
                            f"per class, extensions {', '.join(IMG_EXTENSIONS)}).") from None
    return classes, [Path(p) for p, _ in samples], np.array([c for _, c in samples], np.int64)


def _read_folder(root: Path, paths: list[Path], skip_bad: bool
                 ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The readable images of ``paths`` stacked, their indices in ``paths``, and the skipped
    paths (relative to ``root``).

    Unreadable images (empty, truncated, not an image) are refused, all counted and the first
    few named, unless ``skip_bad``: then they are left out.
    """
    images, bad = _decode(paths)
    if bad and not skip_bad:
        shown = "; ".join(f"{p.relative_to(root)} ({why})" for p, why in bad[:_BAD_SHOWN])
        more = f"; and {len(bad) - _BAD_SHOWN} more" if len(bad) > _BAD_SHOWN else ""
        raise MixscaleError(
            f"imagefolder {root}: {len(bad)} of {len(paths)} image(s) cannot be read: "
            f"{shown}{more}. Fix or remove them, or pass --skip-bad-images to leave them out "
            "(the design run lists them)."
        )
    keep = np.array([i for i, img in enumerate(images) if img is not None], dtype=np.int64)
    if not keep.size:
        raise MixscaleError(f"imagefolder {root}: none of its {len(paths)} image(s) can be "
                            "read.")
    skipped = tuple(str(p.relative_to(root)) for p, _ in bad)
    return _stack([images[i] for i in keep], [paths[i] for i in keep]), keep, skipped


def _load_imagefolder(name: str, skip_bad: bool = False) -> ImageDataset:
    root = Path(name[len(IMAGEFOLDER):]).expanduser()
    if not root.is_dir():
        raise MixscaleError(f"dataset {name!r}: {root.resolve()} is not a directory; pass "
                            "imagefolder:<path> with one sub-folder of images per class.")
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes, train_paths, y_train = _scan_classes(root / "train")
        test_classes, test_paths, y_test = _scan_classes(root / "test")
        if test_classes != classes:
            raise MixscaleError(
                f"imagefolder {root}: train/ and test/ must hold the same class folders, but "
                f"train/ has {classes} and test/ has {test_classes}."
            )
        images, keep, skipped = _read_folder(root, train_paths + test_paths, skip_bad)
        labels = np.concatenate([y_train, y_test])[keep]
        is_train = keep < len(train_paths)
        x_train, y_train = images[is_train], labels[is_train]
        x_test, y_test = images[~is_train], labels[~is_train]
    else:
        classes, paths, labels = _scan_classes(root)
        images, keep, skipped = _read_folder(root, paths, skip_bad)
        labels = labels[keep]
        train, test = _stratified_split(labels, TEST_FRACTION, SPLIT_SEED)
        x_train, y_train, x_test, y_test = images[train], labels[train], images[test], labels[test]
    return _frozen(name, tuple(classes), x_train, y_train, x_test, y_test, skipped=skipped)


@lru_cache(maxsize=4)
def _load_cached(name: str, data_dir: str, download: bool, skip_bad: bool = False
                 ) -> ImageDataset:
    if name == "digits":
        return _load_digits()
    if name in _TORCHVISION:
        return _load_torchvision(name, Path(data_dir), download)
    return _load_imagefolder(name, skip_bad)


def load_dataset(name: str, *, data_dir: str | Path = DEFAULT_DATA_DIR,
                 download: bool = False, skip_bad_images: bool = False) -> ImageDataset:
    """Load a dataset by name with its fixed train/test split.

    Parameters
    ----------
    name : str
        One of :data:`mixscale.config.DATASETS`: ``"digits"`` (scikit-learn's bundled 8x8
        handwritten digits, 1,797 images in 10 classes; 25 % of each class is the test split),
        ``"cifar10"``, ``"cifar100"``, ``"mnist"``, ``"fashion-mnist"`` (torchvision, their
        official splits) or ``"imagefolder:<path>"`` (see the module docstring).
    data_dir : str or Path, default "data"
        Where the torchvision datasets are, in torchvision's layout (for example
        ``<data_dir>/cifar-10-batches-py/`` or ``<data_dir>/MNIST/raw/``); MNIST and
        Fashion-MNIST also as their raw IDX files (``.gz`` or not) directly in it, and
        Fashion-MNIST in the system folder after that (see the module docstring).
    download : bool, default False
        Download a missing torchvision dataset into ``data_dir`` (needs internet).
    skip_bad_images : bool, default False
        ``imagefolder``: leave out images that cannot be read (empty, truncated, not an image)
        instead of refusing the folder; :attr:`ImageDataset.skipped` lists them. The same
        images are left out wherever the folder is read, so the splits agree.

    Returns
    -------
    ImageDataset
        Cached per (name, data directory): loading twice returns the same read-only arrays.

    Raises
    ------
    MixscaleError
        For an unknown dataset name, a torchvision dataset missing from ``data_dir`` (the
        message says where its files are expected and to pass ``--download``), a failed
        download, or an image folder that cannot be read (no classes, mixed image sizes,
        class names that clash once sanitised, or images that cannot be read: their count and
        the first few paths).
    """
    if name not in DATASETS or name == "imagefolder:<path>":
        raise MixscaleError(
            f"unknown dataset {name!r}; allowed: {', '.join(repr(d) for d in DATASETS)}."
        )
    if name.startswith(IMAGEFOLDER):
        folder = Path(name[len(IMAGEFOLDER):].strip()).expanduser().resolve()
        return _load_cached(IMAGEFOLDER + str(folder), "", False, bool(skip_bad_images))
    if name in _TORCHVISION:
        return _load_cached(name, str(Path(data_dir).expanduser().resolve()), bool(download))
    return _load_cached(name, "", False)


def design_dataset(params: Mapping[str, str], *, data_dir: str | Path = DEFAULT_DATA_DIR,
                   download: bool = False) -> ImageDataset:
    """The dataset a design run was made from, read as it was: its ``dataset`` param, with the
    unreadable images left out when its ``skip_bad_images`` param says so (the same images,
    so every row's subset indices mean what they meant to the design)."""
    return load_dataset(params["dataset"], data_dir=data_dir, download=download,
                        skip_bad_images=params.get("skip_bad_images") == "True")
