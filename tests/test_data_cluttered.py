"""Cluttered-item generator and its tf.data path."""

import numpy as np
import pytest

from saccade_zoo.data.cluttered import (ClutteredConfig, bilinear_resize, cluttered_dataset, generate_cluttered,
                                        glimpse_hits, num_classes)
from saccade_zoo.data.idx import write_idx
from saccade_zoo.data.sample import load_sample


@pytest.fixture(scope="module")
def items():
    return load_sample("train")


def _blank_items(n=20):
    """Items that are all ones (so boxes can be checked pixel-exactly), labels 0..9."""
    return np.full((n, 28, 28), 255, np.uint8), np.arange(n) % 10


def test_shapes_types_range(items):
    x, y = items
    d = generate_cluttered(x, y, 16, ClutteredConfig(), seed=3)
    assert d["images"].shape == (16, 100, 100, 1) and d["images"].dtype == np.float32
    assert d["images"].min() >= 0 and d["images"].max() <= 1
    assert d["labels"].shape == (16,) and d["labels"].dtype == np.int64
    assert d["boxes"].shape == (16, 1, 4) and d["boxes"].dtype == np.float32
    np.testing.assert_array_equal(d["labels"], d["item_labels"][:, 0])
    assert set(d["labels"]) <= set(range(10))


def test_deterministic_and_seed_dependent(items):
    x, y = items
    c = ClutteredConfig(canvas_size=60, num_distractors=4)
    a = generate_cluttered(x, y, 8, c, seed=1)
    b = generate_cluttered(x, y, 8, c, seed=1)
    d = generate_cluttered(x, y, 8, c, seed=2)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["images"], d["images"])
    # Example i does not depend on how many are generated.
    e = generate_cluttered(x, y, 3, c, seed=1)
    np.testing.assert_array_equal(e["images"], a["images"][:3])


def test_item_pasted_inside_box(items):
    x, y = items
    c = ClutteredConfig(canvas_size=60, num_distractors=0)
    d = generate_cluttered(x, y, 5, c, seed=0)
    for i in range(5):
        y0, x0, y1, x1 = d["boxes"][i, 0].astype(int)
        assert y1 - y0 == 28 and x1 - x0 == 28 and 0 <= y0 and y1 <= 60
        img = d["images"][i, ..., 0]
        # Without clutter the whole image mass is inside the box, and the pasted item equals one source item.
        inside = img[y0:y1, x0:x1]
        assert img.sum() == pytest.approx(inside.sum())
        matches = np.all(np.abs(x.astype(np.float32) / 255 - inside[None]) < 1e-6, axis=(1, 2))
        assert matches.any() and y[np.argmax(matches)] == d["labels"][i]


def test_distractors_and_clipping():
    x, yl = _blank_items()
    c = ClutteredConfig(canvas_size=40, num_items=1, num_distractors=30, distractor_size=8)
    d = generate_cluttered(x, yl, 4, c, seed=0)
    img = d["images"][..., 0]
    assert img.max() == 1.0  # overlapping ones are clipped, not 2
    for i in range(4):
        y0, x0, y1, x1 = d["boxes"][i, 0].astype(int)
        mask = np.ones((40, 40), bool)
        mask[y0:y1, x0:x1] = False
        assert img[i][mask].sum() > 0  # clutter outside the item
    c0 = ClutteredConfig(canvas_size=40, num_distractors=0)
    d0 = generate_cluttered(x, yl, 4, c0, seed=0)
    assert d0["images"].sum() == pytest.approx(4 * 28 * 28)


def test_two_items_targets(items):
    x, y = items
    ident = generate_cluttered(x, y, 20, ClutteredConfig(num_items=2, task="identify"), seed=0)
    assert ident["labels"].shape == (20, 10) and ident["labels"].dtype == np.float32
    for t, il in zip(ident["labels"], ident["item_labels"]):
        np.testing.assert_array_equal(np.flatnonzero(t), np.unique(il))
    s = generate_cluttered(x, y, 20, ClutteredConfig(num_items=2, task="sum"), seed=0)
    np.testing.assert_array_equal(s["labels"], s["item_labels"].sum(1))
    assert num_classes(ClutteredConfig(num_items=2, task="sum")) == 19
    assert num_classes(ClutteredConfig(num_items=2, task="identify")) == 10
    assert num_classes(ClutteredConfig()) == 10


def test_no_overlap_option():
    x, yl = _blank_items()
    c = ClutteredConfig(canvas_size=60, num_items=2, task="identify", num_distractors=0, allow_overlap=False)
    d = generate_cluttered(x, yl, 30, c, seed=0)
    hits = glimpse_hits(d["boxes"], d["boxes"])  # box-vs-box overlap
    assert not hits[:, 0, 1].any()
    np.testing.assert_allclose(d["images"].sum(axis=(1, 2, 3)), 2 * 28 * 28)
    with pytest.raises(ValueError, match="non-overlapping"):
        generate_cluttered(x, yl, 1, ClutteredConfig(canvas_size=30, num_items=2, task="sum",
                                                     allow_overlap=False), seed=0)


def test_native_high_res_vs_upscaled(items):
    x, y = items
    native = ClutteredConfig(canvas_size=1024, num_items=2, task="identify", num_distractors=8)
    d = generate_cluttered(x, y, 2, native, seed=0)
    assert d["images"].shape == (2, 1024, 1024, 1)
    np.testing.assert_array_equal(d["boxes"][..., 2] - d["boxes"][..., 0], 28)
    up = ClutteredConfig(canvas_size=100, num_items=2, task="identify", output_size=400)
    base = ClutteredConfig(canvas_size=100, num_items=2, task="identify")
    du, db = generate_cluttered(x, y, 2, up, seed=0), generate_cluttered(x, y, 2, base, seed=0)
    assert du["images"].shape == (2, 400, 400, 1) and up.image_size == 400
    np.testing.assert_allclose(du["boxes"], db["boxes"] * 4)
    np.testing.assert_allclose(du["images"][0, ::4, ::4].mean(), db["images"][0].mean(), atol=0.02)
    # Same as TF's bilinear resize (half-pixel centres).
    import tensorflow as tf
    ref = tf.image.resize(db["images"][:1], (400, 400), "bilinear").numpy()
    np.testing.assert_allclose(du["images"][:1], np.clip(ref, 0, 1), atol=1e-5)
    assert ClutteredConfig(upscale=25.28).image_size == 2528
    big = ClutteredConfig(canvas_size=200, item_size=56)
    db2 = generate_cluttered(x, y, 1, big, seed=0)
    np.testing.assert_array_equal(db2["boxes"][0, 0, 2:] - db2["boxes"][0, 0, :2], 56)


def test_bilinear_resize_matches_tf():
    import tensorflow as tf
    a = np.random.default_rng(0).random((13, 17)).astype(np.float32)
    ref = tf.image.resize(a[None, ..., None], (31, 9), "bilinear").numpy()[0, ..., 0]
    np.testing.assert_allclose(bilinear_resize(a, 31, 9), ref, atol=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="task"):
        ClutteredConfig(task="count")
    with pytest.raises(ValueError, match="num_items=1"):
        ClutteredConfig(num_items=2, task="single")
    with pytest.raises(ValueError, match="item_size"):
        ClutteredConfig(canvas_size=20)
    with pytest.raises(ValueError, match="distractor_size"):
        ClutteredConfig(distractor_size=40)
    with pytest.raises(ValueError, match="count mismatch"):
        generate_cluttered(np.zeros((5, 28, 28), np.uint8), np.zeros(4), 1)
    with pytest.raises(ValueError, match="labels"):
        generate_cluttered(np.zeros((5, 28, 28), np.uint8), np.full(5, 12), 1)
    assert ClutteredConfig(num_items=2, task="identify").name == "100px_2items_8distractors_identify"


def test_glimpse_hits():
    boxes = np.array([[[10, 10, 38, 38], [50, 50, 78, 78]]], np.float32)
    g = np.array([[[0, 0, 12, 12], [60, 60, 70, 70], [40, 40, 48, 48]]], np.float32)
    h = glimpse_hits(g, boxes)
    np.testing.assert_array_equal(h[0], [[True, False], [False, True], [False, False]])
    assert not glimpse_hits(g, boxes, min_overlap=0.5)[0, 0, 0]


def test_tf_data_path_sample(items):
    c = ClutteredConfig(canvas_size=60, num_distractors=4)
    ds = cluttered_dataset("test", c, data_dir="sample", num_examples=10, seed=5, batch_size=4)
    batches = list(ds)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    img, lab = batches[0]
    assert img.shape == (4, 60, 60, 1) and img.dtype.name == "float32" and lab.dtype.name == "int64"
    # Deterministic and equal to the in-memory generator on the same split's items.
    again = list(cluttered_dataset("test", c, data_dir="sample", num_examples=10, seed=5, batch_size=4))
    np.testing.assert_array_equal(batches[1][0].numpy(), again[1][0].numpy())
    xt, yt = load_sample("test")
    ref = generate_cluttered(xt, yt, 10, c, seed=5)
    np.testing.assert_array_equal(np.concatenate([b[0].numpy() for b in batches]), ref["images"])
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in batches]), ref["labels"])


def test_tf_data_with_boxes_and_shuffle():
    c = ClutteredConfig(num_items=2, task="identify")
    ds = cluttered_dataset("train", c, data_dir="sample", num_examples=12, seed=0, with_boxes=True)
    ex = next(iter(ds))
    assert set(ex) == {"image", "label", "boxes", "item_labels"}
    assert ex["label"].shape == (10,) and ex["boxes"].shape == (2, 4)
    # Train shuffles by default (seeded): the multiset of examples is the same, order differs.
    a = np.stack([e["item_labels"].numpy() for e in ds])
    b = np.stack([e["item_labels"].numpy() for e in
                  cluttered_dataset("train", c, data_dir="sample", num_examples=12, seed=0, with_boxes=True,
                                    shuffle=False)])
    assert sorted(map(tuple, a)) == sorted(map(tuple, b))


def test_tf_data_from_idx_dir(tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (7, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 7).astype(np.uint8))
    ds = cluttered_dataset("test", ClutteredConfig(canvas_size=40, num_distractors=2), data_dir=str(tmp_path))
    assert len(list(ds)) == 7
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        cluttered_dataset("train", ClutteredConfig(), data_dir=str(tmp_path))
