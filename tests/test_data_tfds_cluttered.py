"""The cluttered TFDS builder, built offline from tiny IDX fixtures."""

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from saccade_zoo.data import tfds_cluttered  # noqa: E402  registers the builder
from saccade_zoo.data.cluttered import ClutteredConfig  # noqa: E402
from saccade_zoo.data.idx import write_idx  # noqa: E402

TRAIN_VALUE, TEST_VALUE = 60, 200


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
    """Tiny MNIST-format folder: train items are all 60, test items all 200, so leaks are visible."""
    d = tmp_path_factory.mktemp("idx")
    for prefix, n, v in (("train", 20, TRAIN_VALUE), ("t10k", 10, TEST_VALUE)):
        write_idx(d / f"{prefix}-images-idx3-ubyte.gz", np.full((n, 28, 28), v, np.uint8))
        write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    return str(d)


def _dl(manual_dir):
    return {"download_config": tfds.download.DownloadConfig(manual_dir=manual_dir)}


def test_registered_with_named_configs():
    assert "cluttered_fashion_mnist" in tfds.list_builders()
    names = set(tfds_cluttered.ClutteredFashionMnist.builder_configs)
    assert {"60px_1item_4distractors", "100px_1item_8distractors", "100px_2items_8distractors_identify",
            "100px_2items_8distractors_sum"} <= names


def test_build_offline_keeps_split(manual_dir, tmp_path):
    ds, info = tfds.load("cluttered_fashion_mnist/60px_1item_4distractors", data_dir=str(tmp_path),
                         builder_kwargs={"num_train": 12, "num_test": 6}, with_info=True,
                         download_and_prepare_kwargs=_dl(manual_dir))
    assert info.splits["train"].num_examples == 12 and info.splits["test"].num_examples == 6
    assert info.config_name == "60px_1item_4distractors_12train_6test"
    assert info.features["label"].num_classes == 10
    train = list(tfds.as_numpy(ds["train"]))
    test = list(tfds.as_numpy(ds["test"]))
    ex = train[0]
    assert ex["image"].shape == (60, 60, 1) and ex["image"].dtype == np.uint8
    assert ex["boxes"].shape == (1, 4) and ex["item_labels"].shape == (1,)
    # Pixel values reveal provenance: sums of 60s (train) never appear in test and vice versa.
    train_vals = set(np.unique(np.concatenate([e["image"].ravel() for e in train])))
    test_vals = set(np.unique(np.concatenate([e["image"].ravel() for e in test])))
    assert train_vals <= {0, 60, 120, 180, 240, 255} and 60 in train_vals
    assert test_vals <= {0, 200, 255} and 200 in test_vals
    for e in test:
        y0, x0, y1, x1 = e["boxes"][0].astype(int)
        assert (e["image"][y0:y1, x0:x1] >= TEST_VALUE).all()
        assert e["label"] == e["item_labels"][0]


def test_identify_and_sum_custom_config(manual_dir, tmp_path):
    cfg = tfds_cluttered.ClutteredFashionMnistConfig(
        cluttered=ClutteredConfig(canvas_size=64, num_items=2, num_distractors=3, task="identify"),
        num_train=5, num_test=3, name="tiny_identify")
    ds = tfds.load("cluttered_fashion_mnist", split="test", data_dir=str(tmp_path),
                   builder_kwargs={"config": cfg}, download_and_prepare_kwargs=_dl(manual_dir))
    exs = list(tfds.as_numpy(ds))
    assert len(exs) == 3
    for e in exs:
        assert e["label"].shape == (10,) and e["label"].dtype == np.float32
        np.testing.assert_array_equal(np.flatnonzero(e["label"]), np.unique(e["item_labels"]))
    ds = tfds.load("cluttered_fashion_mnist/100px_2items_8distractors_sum", split="train", data_dir=str(tmp_path),
                   builder_kwargs={"num_train": 4, "num_test": 2}, as_supervised=True,
                   download_and_prepare_kwargs=_dl(manual_dir))
    b = tfds.load("cluttered_fashion_mnist/100px_2items_8distractors_sum", split="train",
                  data_dir=str(tmp_path), builder_kwargs={"num_train": 4, "num_test": 2}, with_info=True,
                  download_and_prepare_kwargs=_dl(manual_dir))[1]
    assert b.features["label"].num_classes == 19
    for image, label in tfds.as_numpy(ds):
        assert image.shape == (100, 100, 1) and 0 <= label <= 18


def test_missing_manual_dir_is_clear(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_cluttered._idx, "DEFAULT_DATA_DIR", str(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    builder = tfds_cluttered.ClutteredFashionMnist(config="60px_1item_4distractors", num_train=2, num_test=2,
                                                   data_dir=str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(empty)))
