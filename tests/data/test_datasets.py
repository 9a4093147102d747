"""Datasets: fixed splits, per-class availability, deterministic subsets, and every loader.

The torchvision datasets are tiny fakes written in the real on-disk formats and read through
torchvision's own classes with ``download=False`` (CIFAR's md5 checksums are switched off for
the fakes; file presence is still checked).
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets as tvd
from PIL import Image

from mixscale.config import DesignSpec
from mixscale.data import (
    ImageDataset,
    load_dataset,
    sample_subset,
    sanitize_class_name,
    subset_hash,
)
from mixscale.errors import MixscaleError

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]


def test_digits_split_is_stratified_and_disjoint() -> None:
    ds = load_dataset("digits")
    assert ds.n_classes == 10
    assert ds.count_columns[:2] == ("n_0", "n_1")
    assert ds.train_images.shape[1:] == (1, 8, 8) == ds.image_shape
    assert ds.train_images.dtype == np.float32
    assert 0.0 <= ds.train_images.min() and ds.train_images.max() <= 1.0
    assert len(ds.train_labels) + len(ds.test_labels) == 1797
    test_share = np.bincount(ds.test_labels) / (np.bincount(ds.test_labels)
                                                + np.bincount(ds.train_labels))
    np.testing.assert_allclose(test_share, 0.25, atol=0.01)
    # no image is in both splits
    train_rows = {r.tobytes() for r in ds.train_images.reshape(len(ds.train_images), -1)}
    overlap = sum(r.tobytes() in train_rows
                  for r in ds.test_images.reshape(len(ds.test_images), -1))
    assert overlap < 5  # digits has a handful of exact duplicate images, nothing more
    assert ds.available.sum() == len(ds.train_labels)


def test_normalisation_is_per_channel_train_statistics() -> None:
    ds = load_dataset("digits")
    x = ds.normalise(ds.train_images)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x.mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(), 1.0, atol=1e-4)


@pytest.mark.parametrize("name", ["cifar7", "imagefolder:", "imagefolder:<path>"])
def test_unknown_dataset(name: str) -> None:
    with pytest.raises(MixscaleError, match=r"unknown dataset .*; allowed: 'digits', 'cifar10'"):
        load_dataset(name)


def test_design_spec_accepts_imagefolder_paths() -> None:
    assert DesignSpec(dataset="imagefolder:/some/where").dataset == "imagefolder:/some/where"
    with pytest.raises(MixscaleError, match="unknown dataset 'imagefolder:'"):
        DesignSpec(dataset="imagefolder:")


def test_subset_has_exact_counts_and_is_deterministic() -> None:
    ds = load_dataset("digits")
    counts = np.array([5, 0, 12, 1, 3, 7, 9, 2, 4, 30])
    a = sample_subset(ds.train_labels, counts, seed=7)
    b = sample_subset(ds.train_labels, counts, seed=7)
    c = sample_subset(ds.train_labels, counts, seed=8)
    np.testing.assert_array_equal(np.bincount(ds.train_labels[a], minlength=10), counts)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == counts.sum()
    assert subset_hash(a) == subset_hash(b) != subset_hash(c)


def test_subset_refuses_more_than_available() -> None:
    ds = load_dataset("digits")
    counts = np.zeros(10, dtype=int)
    counts[3] = ds.available[3] + 1
    with pytest.raises(MixscaleError, match=r"class 3 needs 0 <= count <= \d+"):
        sample_subset(ds.train_labels, counts, seed=0)


@pytest.mark.parametrize(("name", "key"), [("sea lion", "sea_lion"), ("7", "7"),
                                           ("a/b-c", "a_b_c"), ("__x__", "x"),
                                           ("T-shirt/top", "T_shirt_top")])
def test_sanitize(name: str, key: str) -> None:
    assert sanitize_class_name(name) == key


def test_sanitize_refuses_empty() -> None:
    with pytest.raises(MixscaleError, match="no letters or digits"):
        sanitize_class_name("--")


def test_classes_that_sanitise_to_one_key_are_refused() -> None:
    x = np.zeros((2, 1, 4, 4), np.uint8)
    with pytest.raises(MixscaleError, match=r"'sea lion' and 'sea-lion' both become the key "
                                            r"'sea_lion'"):
        ImageDataset("x", ("sea lion", "sea-lion"), x, np.array([0, 1]), x, np.array([0, 1]))


# --- torchvision datasets, faked in their on-disk formats -------------------------------------

def _cifar_batch(rng: np.random.Generator, n: int, n_classes: int, label_key: str) -> dict:
    return {"data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
            label_key: [int(v) for v in np.arange(n) % n_classes]}


def _fake_cifar(root: Path, monkeypatch: pytest.MonkeyPatch, *, hundred: bool) -> dict:
    rng = np.random.default_rng(0)
    cls = tvd.CIFAR100 if hundred else tvd.CIFAR10
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    n_classes, key = (100, "fine_labels") if hundred else (10, "labels")
    batches = {}
    for name, _ in cls.train_list + cls.test_list:
        batches[name] = _cifar_batch(rng, 2 * n_classes if hundred else 20, n_classes, key)
        (folder / name).write_bytes(pickle.dumps(batches[name]))
    names = [f"class {i}" for i in range(100)] if hundred else CIFAR10_NAMES
    (folder / cls.meta["filename"]).write_bytes(pickle.dumps({cls.meta["key"]: names}))
    # The fakes cannot match the real md5 sums: check file presence only.
    monkeypatch.setattr(cls, "train_list", [[n, None] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, None] for n, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": None})
    return batches


def test_fake_cifar10_loads_through_torchvision(tmp_path, monkeypatch) -> None:
    batches = _fake_cifar(tmp_path, monkeypatch, hundred=False)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.class_names == tuple(CIFAR10_NAMES)
    assert ds.count_columns[0] == "n_airplane"
    assert ds.train_images.shape == (100, 3, 32, 32) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(ds.available, np.full(10, 10))
    # pixel (c, y, x) of image i is byte c*1024 + y*32 + x of its row in the batch
    row = batches["data_batch_2"]["data"][3]
    np.testing.assert_array_equal(ds.train_images[20 + 3], row.reshape(3, 32, 32))
    assert ds.test_labels.tolist() == batches["test_batch"]["labels"]
    assert len(ds.mean) == len(ds.std) == 3
    assert load_dataset("cifar10", data_dir=tmp_path) is ds  # cached per data directory


def test_fake_cifar100_uses_fine_labels(tmp_path, monkeypatch) -> None:
    _fake_cifar(tmp_path, monkeypatch, hundred=True)
    ds = load_dataset("cifar100", data_dir=tmp_path)
    assert ds.n_classes == 100 and ds.class_keys[:2] == ("class_0", "class_1")
    np.testing.assert_array_equal(ds.available, np.full(100, 2))


def _idx(path: Path, array: np.ndarray) -> None:
    """Write an uint8 array in the idx format MNIST ships (magic 0x08 << 8 | ndim)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">i", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize(("name", "folder", "first_key"),
                         [("mnist", "MNIST", "0"), ("fashion-mnist", "FashionMNIST",
                                                    "T_shirt_top")])
def test_fake_mnist_loads_through_torchvision(tmp_path, name, folder, first_key) -> None:
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    _idx(raw / "train-images-idx3-ubyte", images)
    _idx(raw / "train-labels-idx1-ubyte", np.arange(30) % 10)
    _idx(raw / "t10k-images-idx3-ubyte", images[:10])
    _idx(raw / "t10k-labels-idx1-ubyte", np.arange(10))
    ds = load_dataset(name, data_dir=tmp_path)
    assert ds.train_images.shape == (30, 1, 28, 28) and ds.train_images.dtype == np.uint8
    np.testing.assert_array_equal(ds.train_images[:, 0], images)
    assert ds.class_keys[0] == first_key and ds.n_classes == 10
    np.testing.assert_array_equal(ds.available, np.full(10, 3))
    assert ds.test_labels.tolist() == list(range(10))


@pytest.mark.parametrize(("name", "where"), [("cifar10", "cifar-10-batches-py"),
                                             ("cifar100", "cifar-100-python"),
                                             ("mnist", "MNIST/raw"),
                                             ("fashion-mnist", "FashionMNIST/raw")])
def test_missing_dataset_says_where_and_to_download(tmp_path, name, where, no_system_dir) -> None:
    with pytest.raises(MixscaleError) as info:
        load_dataset(name, data_dir=tmp_path / "nothing")
    message = str(info.value)
    assert f"dataset {name!r} was not found" in message
    assert str(tmp_path / "nothing" / where) in message
    assert "--download" in message


# --- imagefolder ------------------------------------------------------------------------------

def _png(path: Path, value: int, *, size: tuple[int, int] = (10, 12), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, (value, 255 - value, 7) if mode == "RGB" else value).save(path)


def test_imagefolder_with_train_and_test_folders(tmp_path) -> None:
    for split, n in (("train", 5), ("test", 2)):
        for c, cls in enumerate(("cat", "sea lion")):
            for i in range(n + c):
                _png(tmp_path / split / cls / f"{i}.png", 10 * i + c)
    ds = load_dataset(f"imagefolder:{tmp_path}")
    assert ds.class_names == ("cat", "sea lion")
    assert ds.count_columns == ("n_cat", "n_sea_lion")
    assert ds.train_images.shape == (11, 3, 12, 10) and ds.train_images.dtype == np.uint8
    np.testing.assert_array_equal(ds.available, [5, 6])
    np.testing.assert_array_equal(np.bincount(ds.test_labels), [2, 3])
    # the red channel of a sea-lion image carries its index: 10 * i + 1
    assert ds.train_images[ds.train_labels == 1][2, 0, 0, 0] == 21


def test_imagefolder_without_split_is_split_like_digits(tmp_path) -> None:
    for cls in ("a", "b", "c"):
        for i in range(8):
            _png(tmp_path / cls / f"{i}.png", i, mode="L")
    ds = load_dataset(f"imagefolder:{tmp_path}")
    assert ds.image_shape == (1, 12, 10)  # every image grey: one channel
    np.testing.assert_array_equal(ds.available, [6, 6, 6])
    np.testing.assert_array_equal(np.bincount(ds.test_labels), [2, 2, 2])
    # availability feeds the design: its caps are the per-class counts
    from mixscale.stages.design import build_design_table

    table, _ = build_design_table(DesignSpec(dataset=f"imagefolder:{tmp_path}",
                                             subset_sizes=(18,), rows_per_size=1,
                                             val_rows_per_size=0, iterations=0), ds)
    assert table[list(ds.count_columns)].to_numpy().tolist() == [[6, 6, 6]]


def test_imagefolder_refuses_mixed_sizes_and_clashing_names(tmp_path) -> None:
    _png(tmp_path / "mixed" / "a" / "0.png", 1)
    _png(tmp_path / "mixed" / "a" / "1.png", 1, size=(20, 20))
    with pytest.raises(MixscaleError, match=r"must all have one size.*20x20"):
        load_dataset(f"imagefolder:{tmp_path / 'mixed'}")
    _png(tmp_path / "clash" / "sea lion" / "0.png", 1)
    _png(tmp_path / "clash" / "sea-lion" / "0.png", 1)
    with pytest.raises(MixscaleError, match="both become the key 'sea_lion'"):
        load_dataset(f"imagefolder:{tmp_path / 'clash'}")
    with pytest.raises(MixscaleError, match="is not a directory"):
        load_dataset(f"imagefolder:{tmp_path / 'absent'}")
    _png(tmp_path / "split" / "train" / "a" / "0.png", 1)
    _png(tmp_path / "split" / "test" / "b" / "0.png", 1)
    with pytest.raises(MixscaleError, match=r"same class folders, but train/ has \['a'\]"):
        load_dataset(f"imagefolder:{tmp_path / 'split'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MixscaleError, match="one sub-folder of images per class"):
        load_dataset(f"imagefolder:{tmp_path / 'empty'}")


def _bad_folder(root: Path, *, n_bad: int) -> list[str]:
    """Two classes of 6 good images, then ``n_bad`` unreadable ones: alternately an empty
    file, a truncated PNG and a text file with a .png name. Returns the bad paths."""
    for cls in ("a", "b"):
        for i in range(6):
            _png(root / cls / f"{i}.png", 20 * i, mode="L")
    noise = np.random.default_rng(0).integers(0, 256, (12, 10), dtype=np.uint8)
    Image.fromarray(noise).save(root / "noise.png")
    whole = (root / "noise.png").read_bytes()
    (root / "noise.png").unlink()
    bad = []
    for i in range(n_bad):
        path = root / ("a", "b")[i % 2] / f"bad{i}.png"
        path.write_bytes([b"", whole[: len(whole) // 2], b"not an image"][i % 3])
        bad.append(str(path.relative_to(root)))
    return sorted(bad, key=lambda p: (p.split("/")[0], p))


def test_imagefolder_lists_unreadable_images_and_can_skip_them(tmp_path) -> None:
    bad = _bad_folder(tmp_path, n_bad=7)
    with pytest.raises(MixscaleError) as info:
        load_dataset(f"imagefolder:{tmp_path}")
    message = str(info.value)
    assert message.startswith(f"imagefolder {tmp_path}: 7 of 19 image(s) cannot be read: ")
    shown = [p for p in bad if f"{p} (" in message]
    assert len(shown) == 5 and message.count("; ") == 5  # the first five, then "and 2 more"
    assert "; and 2 more. Fix or remove them, or pass --skip-bad-images" in message
    assert "a/bad0.png (cannot identify image file)" in message  # empty
    assert "b/bad1.png (image file is truncated)" in message
    ds = load_dataset(f"imagefolder:{tmp_path}", skip_bad_images=True)
    assert sorted(ds.skipped) == sorted(bad)
    assert len(ds.train_labels) + len(ds.test_labels) == 12  # every good image, no bad one
    assert load_dataset(f"imagefolder:{tmp_path}", skip_bad_images=True) is ds  # cached
    assert load_dataset("digits").skipped == ()


def test_imagefolder_skips_bad_images_in_train_and_test_folders(tmp_path) -> None:
    for split in ("train", "test"):
        _bad_folder(tmp_path / split, n_bad=2)
    ds = load_dataset(f"imagefolder:{tmp_path}", skip_bad_images=True)
    assert sorted(ds.skipped) == ["test/a/bad0.png", "test/b/bad1.png", "train/a/bad0.png",
                                  "train/b/bad1.png"]
    np.testing.assert_array_equal(ds.available, [6, 6])
    np.testing.assert_array_equal(np.bincount(ds.test_labels), [6, 6])
    # image i of class a has the grey value 20 * i in both splits
    np.testing.assert_array_equal(ds.train_images[ds.train_labels == 0][:, 0, 0, 0],
                                  20 * np.arange(6))
    np.testing.assert_array_equal(ds.test_images[ds.test_labels == 0][:, 0, 0, 0],
                                  20 * np.arange(6))


# --- MNIST-style sets: torchvision's layout, raw IDX files in --data-dir, the system folder ---

def _idx_set(folder: Path, *, gz: bool, offset: int = 0) -> np.ndarray:
    """Write the four IDX files (gzipped or not) of a 20 + 10 image set; returns the training
    images (pixel values shifted by ``offset``, so sets in two places can be told apart)."""
    import gzip

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(offset)
    images = ((rng.integers(0, 200, (30, 28, 28)) + offset) % 256).astype(np.uint8)
    arrays = {"train-images-idx3-ubyte": images[:20],
              "train-labels-idx1-ubyte": np.arange(20) % 10,
              "t10k-images-idx3-ubyte": images[20:], "t10k-labels-idx1-ubyte": np.arange(10)}
    for stem, array in arrays.items():
        _idx(folder / stem, array)
        if gz:
            path = folder / stem
            (folder / f"{stem}.gz").write_bytes(gzip.compress(path.read_bytes()))
            path.unlink()
    return images[:20]


@pytest.fixture()
def no_system_dir(tmp_path, monkeypatch) -> Path:
    """Point the system folder somewhere empty, so the machine's own package plays no part."""
    from mixscale.data import datasets as data

    system = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setitem(data.SYSTEM_DATA_DIRS, "fashion-mnist", system)
    return system


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_raw_idx_files_directly_in_data_dir(tmp_path, no_system_dir, name, gz) -> None:
    images = _idx_set(tmp_path / "flat", gz=gz)
    ds = load_dataset(name, data_dir=tmp_path / "flat")
    np.testing.assert_array_equal(ds.train_images[:, 0], images)
    assert ds.image_shape == (1, 28, 28) and ds.n_classes == 10
    assert ds.test_labels.tolist() == list(range(10))
    assert ds.class_keys[0] == ("0" if name == "mnist" else "T_shirt_top")


def test_fashion_mnist_from_the_system_folder_and_the_order_of_places(tmp_path,
                                                                      no_system_dir) -> None:
    system = _idx_set(no_system_dir, gz=True, offset=3)  # as Debian installs them: .gz
    ds = load_dataset("fashion-mnist", data_dir=tmp_path / "empty")
    np.testing.assert_array_equal(ds.train_images[:, 0], system)
    # --data-dir's own files come before the system folder, torchvision's layout before both
    flat = _idx_set(tmp_path / "both", gz=False, offset=5)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path / "both")
    np.testing.assert_array_equal(ds.train_images[:, 0], flat)
    layout = _idx_set(tmp_path / "both2" / "FashionMNIST" / "raw", gz=True, offset=7)
    _idx_set(tmp_path / "both2", gz=False, offset=9)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path / "both2")
    np.testing.assert_array_equal(ds.train_images[:, 0], layout)


def test_a_miss_lists_every_place_looked(tmp_path, no_system_dir) -> None:
    empty = tmp_path / "empty"
    with pytest.raises(MixscaleError) as info:
        load_dataset("fashion-mnist", data_dir=empty)
    message = str(info.value)
    assert message.startswith("dataset 'fashion-mnist' was not found: looked for "
                              "train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                              "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each plain or "
                              f".gz) in {empty}/FashionMNIST/raw/ (torchvision's layout); "
                              f"{empty}/ (the raw IDX files directly in --data-dir); "
                              f"{no_system_dir}/ (Debian's dataset-fashion-mnist); install it "
                              "with `apt-get install dataset-fashion-mnist`, or pass --download "
                              f"to fetch it into {empty}/FashionMNIST/raw")
    with pytest.raises(MixscaleError) as info:
        load_dataset("mnist", data_dir=empty)
    assert "apt-get" not in str(info.value) and "Debian" not in str(info.value)
    assert f"{empty}/MNIST/raw/ (torchvision's layout); {empty}/ (the raw" in str(info.value)


def test_a_truncated_or_foreign_idx_file_is_named(tmp_path, no_system_dir) -> None:
    _idx_set(tmp_path / "cut", gz=False)
    path = tmp_path / "cut" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(MixscaleError, match=f"{path}: its header says 20x28x28 values but it "
                                            "holds 15580; the file is truncated"):
        load_dataset("mnist", data_dir=tmp_path / "cut")
    _idx_set(tmp_path / "png", gz=True)
    path = tmp_path / "png" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"\x89PNG not gzip")
    with pytest.raises(MixscaleError, match=f"{path} cannot be read \\(BadGzipFile"):
        load_dataset("mnist", data_dir=tmp_path / "png")
