"""Megapixel-MNIST generator, its TIFF writer and (downsampled) in-memory arrays."""

import json
import os

import numpy as np
import pytest

from saccade_zoo.data.megapixel import (MegapixelConfig, MegapixelGenerator, megapixel_arrays, megapixel_split,
                                        corner_line, noise_bank, noise_pattern, to_uint8, write_megapixel_tiffs)
from saccade_zoo.data.sample import load_sample
from saccade_zoo.data.tiled_tiff import LABELS_FILE, TiledImage, read_cluttered_tiffs

SMALL = MegapixelConfig(canvas_size=300, num_noise=20)


@pytest.fixture(scope="module")
def items():
    return load_sample("train")


def _boxes_disjoint(boxes):
    b = np.asarray(boxes)
    for k in range(len(b)):
        for m in range(k + 1, len(b)):
            p, q = b[k], b[m]
            if not (p[2] <= q[0] or q[2] <= p[0] or p[3] <= q[1] or q[3] <= p[1]):
                return False
    return True


def test_default_shapes_types_range(items):
    gen = MegapixelGenerator(*items, seed=0)
    assert gen.config == MegapixelConfig()
    ex = gen(0)
    assert ex["image"].shape == (1500, 1500, 1) and ex["image"].dtype == np.float32
    assert ex["image"].min() >= 0 and ex["image"].max() <= 1 and ex["image"].max() > 0
    assert ex["label"].dtype == np.int64 and 0 <= ex["label"] < 10
    assert ex["boxes"].shape == (5, 4) and ex["boxes"].dtype == np.float32
    assert ex["item_labels"].shape == (5,) and ex["item_labels"].dtype == np.int64
    assert ex["noise_boxes"].shape == (50, 4)
    assert MegapixelConfig().name == "megapixel_1500px_5items_3target_50noise"


def test_deterministic_per_index_and_order_independent(items):
    a = MegapixelGenerator(*items, SMALL, seed=1)
    forward = [a(i) for i in range(6)]
    b = MegapixelGenerator(*items, SMALL, seed=1)
    for i in reversed(range(6)):
        ex = b(i)
        for k in ex:
            np.testing.assert_array_equal(ex[k], forward[i][k])
    c = MegapixelGenerator(*items, SMALL, seed=2)
    assert not np.array_equal(c(0)["image"], forward[0]["image"])
    assert not np.array_equal(forward[0]["image"], forward[1]["image"])


@pytest.mark.parametrize("distinct", [False, True])
def test_label_is_strict_majority(items, distinct):
    cfg = MegapixelConfig(canvas_size=200, num_noise=0, distinct_others=distinct)
    gen = MegapixelGenerator(*items, cfg, seed=3)
    targets = []
    for i in range(60):
        ex = gen(i)
        lab, il = int(ex["label"]), ex["item_labels"]
        assert (il[:3] == lab).all() and (il[3:] != lab).all()
        assert np.bincount(il, minlength=10).argmax() == lab and (il == lab).sum() == 3
        if distinct:
            assert il[3] != il[4]
        targets.append(lab)
    assert len(set(targets)) >= 8  # target class is spread over the classes


def test_items_inside_canvas_without_overlap(items):
    for cfg in (MegapixelConfig(canvas_size=300, num_noise=0), MegapixelConfig(canvas_size=90, num_items=9,
                                                                                num_target=5, num_noise=0)):
        gen = MegapixelGenerator(*items, cfg, seed=0)
        for i in range(20):
            b = gen(i)["boxes"]
            assert (b[:, :2] >= 0).all() and (b[:, 2:] <= cfg.canvas_size).all()
            np.testing.assert_array_equal(b[:, 2:] - b[:, :2], 28)
            assert _boxes_disjoint(b)


def test_items_pasted_into_their_boxes():
    ones = np.full((20, 28, 28), 255, np.uint8), np.arange(20) % 10
    cfg = MegapixelConfig(canvas_size=300, num_noise=0)
    ex = MegapixelGenerator(*ones, cfg, seed=0)(4)
    mask = np.zeros((300, 300), bool)
    for y0, x0, y1, x1 in ex["boxes"].astype(int):
        mask[y0:y1, x0:x1] = True
    np.testing.assert_array_equal(ex["image"][..., 0], mask.astype(np.float32))


def _spec_line(a, size=28):
    """The ATS line, written out from the description: 2 * size points from corner (0, 0)."""
    m = size - 0.51
    r = np.linspace(0, min(m, m / a) if a > 0 else m, 2 * size)
    mask = np.zeros((size, size), bool)
    mask[np.rint(r).astype(int), np.rint(a * r).astype(int)] = True
    return mask


def test_noise_bank_follows_the_ats_recipe():
    n = 50
    bank = noise_bank(np.random.default_rng(11), n)
    # Replay the documented draws: slopes, a permutation, two mirror coins, per-pixel intensities.
    rng = np.random.default_rng(11)
    slopes = np.tan(rng.random(n) * np.pi / 2.5)
    lines = np.stack([_spec_line(a) for a in slopes])
    perm = rng.permutation(n)
    mirror = (rng.random(n) < 0.33) ^ (rng.random(n) < 0.33)
    second = np.stack([lines[p][:, ::-1] if f else lines[p] for p, f in zip(perm, mirror)])
    inten = rng.uniform(0.8, 1.0, (n, 28, 28))
    np.testing.assert_allclose(bank, (lines | second) * inten, rtol=0, atol=1e-7)
    assert bank.shape == (n, 28, 28) and bank.dtype == np.float32
    ink = bank[bank > 0]
    assert ink.min() >= 0.8 and ink.max() <= 1.0 and ink.std() > 0.03  # per-pixel intensities, not one value
    for p, line, f in zip(bank, lines, mirror):
        assert p[0, 0] >= 0.8  # the first line always leaves corner (0, 0)
        assert (p[0, -1] > 0) == f  # ... the second leaves (0, 27) iff mirrored
        support = p > 0
        assert support[line].all() and line.sum() >= 28 and support.sum() <= 2 * 56
    # Angles in [0, 72) degrees: slope-0 lines run down column 0, none is flatter than tan(72 deg) ~ 3.08.
    assert np.array_equal(corner_line(0.0), _spec_line(0.0)) and corner_line(0.0)[:, 0].all()
    assert np.array_equal(corner_line(3.0), _spec_line(3.0)) and corner_line(3.0)[0, :2].all()


def test_noise_mirror_probability_is_xor_of_two_coins():
    bank = noise_bank(np.random.default_rng(0), 20000)
    frac = (bank[:, 0, -1] > 0).mean()  # a mirrored second line is the only ink at (0, 27)
    assert abs(frac - 2 * 0.33 * 0.67) < 0.02, frac  # 0.4422 (not 0.33, not 0.5)
    # noise_lines=1: a single line out of (0, 0); 3 lines: two shuffled copies joined to it.
    one = noise_bank(np.random.default_rng(1), 200, num_lines=1)
    assert (one[:, 0, -1] == 0).all() and (one[:, 0, 0] > 0).all()
    three = noise_bank(np.random.default_rng(1), 200, num_lines=3)
    assert (three[:, 0, -1] > 0).mean() > (bank[:200, 0, -1] > 0).mean()
    with pytest.raises(ValueError, match="noise_bank"):
        noise_bank(np.random.default_rng(0), 0)


def test_fresh_noise_pattern():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = noise_pattern(rng, 28, 2)
        assert p.shape == (28, 28) and p.dtype == np.float32 and p[0, 0] >= 0.8
        assert p[p > 0].min() >= 0.8 and p.max() <= 1 and (p > 0).sum() >= 28


def _replay(ex, items_float, bank, size, combine="paste"):
    canvas = np.zeros((size, size), np.float32)
    op = (lambda r, v: r.__setitem__(Ellipsis, v)) if combine == "paste" else (lambda r, v: np.maximum(r, v, out=r))
    for (y0, x0, y1, x1), it in zip(ex["boxes"].astype(int), items_float):
        op(canvas[y0:y1, x0:x1], it)
    for (y0, x0, y1, x1), k in zip(ex["noise_boxes"].astype(int), ex["noise_ids"]):
        op(canvas[y0:y1, x0:x1], bank[k])
    return canvas


def test_noise_count_placement_and_bank():
    blank = np.zeros((20, 28, 28), np.uint8), np.arange(20) % 10  # invisible items: only noise is drawn
    gen = MegapixelGenerator(*blank, MegapixelConfig(), seed=4)
    assert gen.noise_bank.shape == (50, 28, 28)
    np.testing.assert_array_equal(gen.noise_bank, noise_bank(np.random.default_rng([4, 2**31 + 1]), 50))
    ex = gen(0)
    img = ex["image"][..., 0]
    nb = ex["noise_boxes"].astype(int)
    assert len(nb) == 50 and ex["noise_ids"].shape == (50,) and ex["noise_ids"].dtype == np.int64
    assert (nb[:, :2] >= 28).all() and (nb[:, :2] < 1500 - 28).all()
    np.testing.assert_array_equal(nb[:, 2:] - nb[:, :2], 28)
    np.testing.assert_array_equal(img, _replay(ex, np.zeros((5, 28, 28)), gen.noise_bank, 1500))
    ink = img[img > 0]
    assert ink.min() >= 0.8 and ink.max() < 1
    # Top-left corners are uniform over all of [28, size - 28): on a 100 px canvas every value 28..71 shows up.
    small = MegapixelGenerator(*blank, MegapixelConfig(canvas_size=100, num_items=1, num_target=1), seed=0)
    pos = np.concatenate([small(i)["noise_boxes"][:, :2].ravel() for i in range(20)]).astype(int)
    np.testing.assert_array_equal(np.unique(pos), np.arange(28, 72))
    ids = np.concatenate([small(i)["noise_ids"] for i in range(20)])
    assert ids.min() >= 0 and ids.max() < 50 and len(np.unique(ids)) > 40  # picked with replacement from the bank
    # Fresh patterns per placement also work; no noise leaves a black canvas.
    fresh = MegapixelGenerator(*blank, MegapixelConfig(canvas_size=300, num_noise=7, noise_bank_size=None), seed=5)
    fex = fresh(0)
    assert fresh.noise_bank is None and fex["image"].sum() > 0 and (fex["noise_ids"] == -1).all()
    assert not MegapixelGenerator(*blank, MegapixelConfig(canvas_size=300, num_noise=0))(0)["image"].any()


@pytest.mark.parametrize("combine", ["paste", "max"])
def test_noise_is_drawn_after_items(combine):
    ones = np.full((20, 28, 28), 255, np.uint8), np.arange(20) % 10  # solid items: any noise zero shows on them
    cfg = MegapixelConfig(canvas_size=100, num_noise=50, combine=combine)
    gen = MegapixelGenerator(*ones, cfg, seed=0)
    hidden = 0
    for i in range(3):
        ex = gen(i)
        img = ex["image"][..., 0]
        np.testing.assert_array_equal(img, _replay(ex, np.ones((5, 28, 28)), gen.noise_bank, 100, combine))
        inside = np.zeros(img.shape, bool)
        for y0, x0, y1, x1 in ex["boxes"].astype(int):
            inside[y0:y1, x0:x1] = True
        hidden += int((img[inside] < 1).sum())
    if combine == "paste":
        assert hidden > 0  # noise squares (their zeros and their < 1 ink) overwrite the items under them
    else:
        assert hidden == 0  # the maximum never hides an item


def test_combine_modes(items):
    x, y = items
    base = dict(canvas_size=200, num_noise=40, noise_bank_size=5)
    ps = MegapixelGenerator(x, y, MegapixelConfig(**base), seed=0)(1)
    mx = MegapixelGenerator(x, y, MegapixelConfig(**base, combine="max"), seed=0)(1)
    assert MegapixelConfig().combine == "paste" and MegapixelConfig(combine="max").name.endswith("_max")
    for k in ("boxes", "noise_boxes", "noise_ids", "item_labels"):
        np.testing.assert_array_equal(mx[k], ps[k])
    assert (mx["image"] >= ps["image"]).all()  # max never loses ink


def test_targets_drawn_with_replacement():
    # 40 items of distinct constant values, 4 per class: which item went where is read off the canvas.
    vals = np.arange(1, 41, dtype=np.uint8)
    data = np.broadcast_to(vals[:, None, None], (40, 28, 28)).copy(), np.arange(40) % 10
    cfg = MegapixelConfig(canvas_size=200, num_noise=0)
    assert cfg.target_replace and not cfg.distinct_others

    def picked(gen, i):
        ex = gen(i)
        return [int(to_uint8(ex["image"][int(b[0]), int(b[1]), 0])) for b in ex["boxes"]], ex["item_labels"]

    gen = MegapixelGenerator(*data, cfg, seed=0)
    rep_t = rep_o = 0
    for i in range(40):
        ids, il = picked(gen, i)
        np.testing.assert_array_equal((np.array(ids) - 1) % 10, il)
        rep_t += len(set(ids[:3])) < 3
        rep_o += il[3] == il[4]
    assert rep_t > 0 and rep_o > 0  # a target digit may repeat; the two others may share a class
    norep = MegapixelGenerator(*data, MegapixelConfig(canvas_size=200, num_noise=0, target_replace=False), seed=0)
    assert norep.config.name.endswith("_distincttargets")
    assert all(len(set(picked(norep, i)[0][:3])) == 3 for i in range(40))


def test_to_uint8_truncates():
    k = np.arange(256)
    np.testing.assert_array_equal(to_uint8(k.astype(np.float32) / 255), k)  # item values survive exactly
    np.testing.assert_array_equal(to_uint8(np.array([0.8, 0.9999, 1.0, 1.5, -1.0])), [204, 254, 255, 255, 0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_target=2), "strict majority"),
    (dict(num_items=4, num_target=2), "strict majority"),
    (dict(num_target=6), "num_target"),
    (dict(num_items=0), "num_items"),
    (dict(canvas_size=56, num_items=5), "cannot fit without overlap"),
    (dict(item_size=2000), "item_size"),
    (dict(num_noise=-1), "num_noise"),
    (dict(noise_size=0), "noise_size"),
    (dict(canvas_size=56, num_items=4, num_target=3), "exceed 2 \\* noise_size"),
    (dict(noise_lines=0), "noise_lines"),
    (dict(noise_bank_size=0), "noise_bank_size"),
    (dict(combine="sum"), "combine"),
    (dict(num_items=21, num_target=11, distinct_others=True), "distinct_others"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MegapixelConfig(**kwargs)


def test_generator_validation(items):
    x, y = items
    with pytest.raises(ValueError, match="class"):
        MegapixelGenerator(x[y == 3], y[y == 3], SMALL)
    with pytest.raises(ValueError, match="at least 3"):
        MegapixelGenerator(x[y < 2], y[y < 2], MegapixelConfig(canvas_size=300, distinct_others=True))
    with pytest.raises(ValueError, match="mismatch"):
        MegapixelGenerator(x[:10], y[:9], SMALL)
    # A grid-filling config still places all items (grid fallback).
    full = MegapixelConfig(canvas_size=56, num_items=4, num_target=3, num_noise=0)
    b = MegapixelGenerator(x, y, full, seed=0)(0)["boxes"]
    assert _boxes_disjoint(b) and (b >= 0).all() and (b <= 56).all()


def test_tiff_round_trip(items, tmp_path):
    x, y = items
    out = write_megapixel_tiffs(str(tmp_path / "mp"), x, y, 3, SMALL, seed=4, tile_size=64)
    gen = MegapixelGenerator(x, y, SMALL, seed=4)
    rows = list(read_cluttered_tiffs(out))
    assert len(rows) == 3
    for i, (path, label, boxes) in enumerate(rows):
        ex = gen(i)
        assert label == int(ex["label"]) and isinstance(label, int)
        np.testing.assert_array_equal(boxes, ex["boxes"])
        with TiledImage(path) as im:
            assert im.shape == (300, 300, 1) and im.is_tiled and len(im.levels) == 4  # 300, 150, 75 (+ 38)
            np.testing.assert_array_equal(im.read_level(0, dtype="uint8")[..., 0], to_uint8(ex["image"][..., 0]))
            b = ex["boxes"][0]
            np.testing.assert_array_equal(im.read_region(*b, out_size=28, dtype="uint8"),
                                          to_uint8(ex["image"][int(b[0]):int(b[2]), int(b[1]):int(b[3])]))
    with open(os.path.join(out, LABELS_FILE)) as f:
        meta = json.load(f)
    assert meta["dataset"] == "megapixel" and meta["config"]["canvas_size"] == 300 and meta["seed"] == 4
    assert [r["item_labels"] for r in meta["examples"]] == [gen(i)["item_labels"].tolist() for i in range(3)]


def test_arrays_full_and_downsampled(items):
    x, y = items
    full, lab = megapixel_arrays(x, y, 4, SMALL, seed=7)
    assert full.shape == (4, 300, 300, 1) and full.dtype == np.uint8 and lab.dtype == np.int64
    gen = MegapixelGenerator(x, y, SMALL, seed=7)
    for i in range(4):
        np.testing.assert_array_equal(full[i], to_uint8(gen(i)["image"]))
        assert lab[i] == gen(i)["label"]
    # 300 -> 60: exact 5 x 5 block means of the uint8 canvas.
    small, lab2 = megapixel_arrays(x, y, 4, SMALL, seed=7, downsample=60)
    np.testing.assert_array_equal(lab2, lab)
    blocks = full.astype(np.float64).reshape(4, 60, 5, 60, 5, 1).mean((2, 4))
    np.testing.assert_array_equal(small, np.rint(blocks).astype(np.uint8))
    # 300 -> 64 (fractional footprints): TF's area resize of the full canvas, up to rounding ties.
    import tensorflow as tf
    odd, _ = megapixel_arrays(x, y, 4, SMALL, seed=7, downsample=64)
    ref = tf.image.resize(full.astype(np.float32), (64, 64), method="area").numpy()
    assert odd.shape == (4, 64, 64, 1)
    np.testing.assert_allclose(odd.astype(np.float32), ref, atol=0.5 + 1e-3)
    with pytest.raises(ValueError, match="downsample"):
        megapixel_arrays(x, y, 1, SMALL, downsample=0)


def test_split_helper():
    cfg = MegapixelConfig(canvas_size=150, num_noise=5)
    a, la = megapixel_split("test", "sample", 3, cfg, seed=2, downsample=50)
    b, lb = megapixel_arrays(*load_sample("test"), 3, cfg, seed=2, downsample=50)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    # As ATS, the training split offsets the seed by one.
    c, lc = megapixel_split("train", "sample", 3, cfg, seed=2, downsample=50)
    d, ld = megapixel_arrays(*load_sample("train"), 3, cfg, seed=3, downsample=50)
    np.testing.assert_array_equal(c, d)
    np.testing.assert_array_equal(lc, ld)
    with pytest.raises(ValueError, match="split"):
        megapixel_split("val", "sample", 1, cfg)
