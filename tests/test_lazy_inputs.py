"""Images made on demand (2528^2 and 1500^2 datasets that never sit in memory): indexing, training batches,
evaluation in batches, and tools/train.py on them."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras
from saccade_zoo.data.inputs import (GeneratedImages, LazyImages, ResizedImages, num_examples, predict_in_batches,
                                     take_examples)
from saccade_zoo.data.megapixel import MegapixelConfig, megapixel_examples, to_uint8
from saccade_zoo.training.runner import batch_stream

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_images(n=6, side=10, seed=0):
    return np.random.default_rng(seed).random((n, side, side, 1)).astype(np.float32)


def test_resized_images_index_like_arrays_and_refuse_to_materialise():
    base = small_images()
    up = ResizedImages(base, 25)
    assert isinstance(up, LazyImages) and up.shape == (6, 25, 25, 1) and len(up) == 6 and up.method == "bilinear"
    expected = tf.image.resize(base, (25, 25), method="bilinear").numpy()
    np.testing.assert_allclose(up[np.array([4, 1])], expected[[4, 1]], atol=1e-6)
    np.testing.assert_allclose(up[1:3], expected[1:3], atol=1e-6)
    np.testing.assert_allclose(up[-1], expected[-1], atol=1e-6)
    np.testing.assert_allclose(up[np.array([True, False] * 3)], expected[::2], atol=1e-6)
    with pytest.raises(IndexError):
        up[np.array([6])]
    with pytest.raises(TypeError, match="index it in batches"):
        np.asarray(up)
    down = ResizedImages(base, 5)
    assert down.method == "area"
    np.testing.assert_allclose(down[0:2], base[:2].reshape(2, 5, 2, 5, 2, 1).mean(axis=(2, 4)), atol=1e-6)
    # A lazy source resized again, and dicts of inputs, index the same way.
    twice = ResizedImages(up, 50)
    assert twice.shape == (6, 50, 50, 1) and twice[0:1].shape == (1, 50, 50, 1)
    both = take_examples({"images": up, "other": np.arange(6)}, np.array([2, 3]))
    np.testing.assert_allclose(both["images"], expected[[2, 3]], atol=1e-6)
    assert list(both["other"]) == [2, 3] and num_examples({"images": up, "other": np.arange(6)}) == 6


def test_megapixel_examples_are_made_on_demand_as_the_files_hold_them():
    config = MegapixelConfig(canvas_size=200)
    split = megapixel_examples("test", "sample", 5, config, seed=3)
    images = split["images"]
    assert isinstance(images, GeneratedImages) and images.shape == (5, 200, 200, 1)
    assert split["labels"].shape == (5,) and split["boxes"].shape == (5, config.num_items, 4)
    first = images[0]
    assert first.dtype == np.float32 and 0 <= first.min() and first.max() <= 1
    np.testing.assert_array_equal(np.rint(first * 255).astype(np.uint8), to_uint8(first))  # quantised as the TIFFs
    np.testing.assert_array_equal(images[np.array([0])][0], first)  # deterministic per index


def test_training_batches_and_batched_prediction_read_lazy_images():
    up = ResizedImages(small_images(8), 12)
    labels = np.arange(8) % 3
    data = list(batch_stream(up, labels, 4, seed=0, stage_index=0, start_step=0, stop_step=2).as_numpy_iterator())
    seen = []
    for x, y in data:
        assert x.shape == (4, 12, 12, 1)
        for row, label in zip(x, y):
            index = int(np.argmin([np.abs(up[i] - row).max() for i in range(8)]))
            np.testing.assert_allclose(row, up[index], atol=1e-6)
            assert labels[index] == label
            seen.append(index)
    assert sorted(seen) == list(range(8))  # one epoch: every image once
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 1))
    model = keras.Model(inputs, {"logits": keras.layers.Dense(3)(keras.layers.Flatten()(inputs))})
    lazy = predict_in_batches(model, up, batch_size=3, chunk=5)
    whole = model.predict(up[0:8], verbose=0)
    np.testing.assert_allclose(lazy["logits"], whole["logits"], atol=1e-5)


def test_train_tool_on_megapixel_canvases_resized_on_the_fly(tmp_path):
    """tools/train.py --dataset=megapixel --resize_to: 300 px canvases area-resized to 100 px, made batch by batch."""
    out = tmp_path / "run"
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train.py"), "--preset=convnet_cluttered100",
           "--dataset=megapixel", "--canvas_size=300", "--resize_to=100", "--train_examples=64",
           "--test_examples=32", "--epochs=1", "--batch_size=16", f"--output_dir={out}", "--verbose=0"]
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.load(open(out / "results.json"))
    assert results["dataset"] == "megapixel" and results["resize_to"] == 100
    assert results["train_examples"] == 64 and results["test_examples"] == 32
    assert 0.0 <= results["full_image"] <= 1.0
    bad = subprocess.run(cmd[:-2] + ["--task=sum", f"--output_dir={tmp_path / 'bad'}"], capture_output=True,
                         text=True, timeout=600, env=env)
    assert bad.returncode != 0 and "--dataset=megapixel has one label per image" in bad.stderr
