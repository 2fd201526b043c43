"""ImageNet preprocessing (offline, tfds mock_data) and the folder-of-classes dataset."""

import numpy as np
import pytest
import tensorflow as tf

from saccade_zoo.data.folders import image_folder_dataset
from saccade_zoo.data.imagenet import (IMAGENET_MEAN, IMAGENET_STD, imagenet_dataset, preprocess_eval,
                                       preprocess_train)


def _denorm(x):
    return (np.asarray(x) * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)) * 255.0


def test_eval_centre_crop_and_normalisation():
    # 246 x 300 image whose central 224 x 224 square is white, everything else black.
    img = np.zeros((246, 300, 3), np.uint8)
    img[11:235, 38:262] = 255
    out = preprocess_eval(img, size=224).numpy()
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    np.testing.assert_allclose(_denorm(out), 255.0, atol=0.5)  # exactly the white centre
    np.testing.assert_allclose(out[0, 0], (1 - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD), atol=1e-5)
    grey = preprocess_eval(np.full((50, 80, 1), 128, np.uint8), size=331).numpy()
    assert grey.shape == (331, 331, 3)
    np.testing.assert_allclose(_denorm(grey), 128, atol=0.5)


def test_train_random_crop_area_and_flip():
    # Horizontal ramp: the crop's mean column value tells where the crop is; flips reverse the ramp.
    ramp = np.tile(np.linspace(0, 255, 400).astype(np.uint8)[None, :, None], (300, 1, 3))
    tf.random.set_seed(0)
    flips, widths = 0, []
    for _ in range(30):
        out = _denorm(preprocess_train(ramp, size=64).numpy())[..., 0]
        assert out.shape == (64, 64)
        row = out.mean(0)
        flips += row[0] > row[-1]
        widths.append(abs(row[-1] - row[0]) / 255 * 400)  # crop width in source px (approx.)
    assert 3 <= flips <= 27  # random horizontal flip happens, not always
    widths = np.asarray(widths)
    assert widths.min() >= 0.08 * 300 * 0.7 and widths.max() <= 400 and widths.std() > 10  # random sizes


def test_imagenet_mock_offline():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        ds = imagenet_dataset("validation", size=64, batch_size=3, label_offset=1)
        batches = list(ds)
        raw = [int(y) for _, y in tfds.load("imagenet2012", split="validation", as_supervised=True)]
    assert len(batches) == 2
    x, y = batches[0]
    assert x.shape == (3, 64, 64, 3) and x.dtype == tf.float32 and y.dtype == tf.int64
    labels = np.concatenate([b[1].numpy() for b in batches])
    np.testing.assert_array_equal(labels, np.asarray(raw) + 1)  # +1 shift for 1001 classes
    assert labels.min() >= 1 and labels.max() <= 1000
    with tfds.testing.mock_data(num_examples=4):
        ds = imagenet_dataset("train", size=32, batch_size=2, label_offset=0)
        x, y = next(iter(ds))
    assert x.shape == (2, 32, 32, 3) and y.numpy().max() <= 999
    with pytest.raises(ValueError, match="label_offset"):
        imagenet_dataset("train", label_offset=2)


def _write_folder(root, counts, size=(40, 60)):
    from PIL import Image
    rng = np.random.default_rng(0)
    for cls, n in counts.items():
        d = root / cls
        d.mkdir(parents=True)
        for i in range(n):
            a = rng.integers(0, 256, size + (3,), dtype=np.uint8)
            Image.fromarray(a).save(d / f"{i}.{'png' if i % 2 else 'jpg'}")


def test_image_folder_dataset(tmp_path):
    _write_folder(tmp_path, {"zebra": 3, "ant": 2, "moth": 1})
    (tmp_path / "notes.txt").write_text("ignored")
    ds, names = image_folder_dataset(str(tmp_path), size=48, training=False, batch_size=4)
    assert names == ["ant", "moth", "zebra"]
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    assert xs[0].shape == (4, 48, 48, 3)
    np.testing.assert_array_equal(np.concatenate(ys), [0, 0, 1, 2, 2, 2])
    ds, _ = image_folder_dataset(str(tmp_path), size=32, training=True, batch_size=None, label_offset=1)
    labels = sorted(int(y) for _, y in ds)
    assert labels == [1, 1, 2, 3, 3, 3]


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        image_folder_dataset(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no class subfolders"):
        image_folder_dataset(str(tmp_path))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="No images"):
        image_folder_dataset(str(tmp_path))
    _write_folder(tmp_path, {"b": 1})
    with pytest.raises(ValueError, match="without images.*a"):
        image_folder_dataset(str(tmp_path))
    (tmp_path / "a" / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="bad.jpg"):
        image_folder_dataset(str(tmp_path))
