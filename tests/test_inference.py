"""Huge images end to end: the in-graph pyramid and level rules, the file predictor (same boxes and logits as the
model in memory), tools/predict.py, bad files, flat memory."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras
import saccade_zoo
from saccade_zoo.data.tiled_tiff import TiledImage, _downsample2, write_tiled_tiff
from saccade_zoo.inference import FilePredictor, expand_inputs
from saccade_zoo.layers.pyramid import (PyramidLevel, glimpse_levels, halve, level_shape, levels_needed, proxy_level,
                                        pyramid_crop_and_resize)
from saccade_zoo.layers.spatial_transformer import LocalizedSpatialTransformer, boxes_to_affine
from saccade_zoo.models.variational import VariationalSaccader
from helpers import config_round_trip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# 600 x 600 images, 32 px glimpses, windows of 5-95% of the side: pyramid levels 0-3, the proxy from level 2 (150 px).
SMALL = dict(image_shape=(600, 600, 1), num_classes=10, num_glimpses=4, glimpse_size=32, min_scale=0.05,
             max_scale=0.95, encoder_filters=(8, 8, 8), feature_dim=16, units=16, decoder_filters=(8, 8),
             crop_filters=(8, 8, 8, 8), crop_units=16, groups=4)
PREPROCESSING = {"mean": [0.2], "std": [0.5], "image_size": [600, 600], "channels": 1, "value_range": [0, 1]}


def spread_model(seed=0):
    """SMALL with its windows spread over the scales (an untrained VRNN proposes nearly one window): the posterior
    mean head's kernel scaled up (200x for the scale, 10x for the centre), so that windows differ a lot between
    images and steps (seed 0: levels 0, 2 and 3 on `canvases(6, seed=7)`)."""
    keras.utils.set_random_seed(seed)
    model = VariationalSaccader(**SMALL, metadata={"preprocessing": PREPROCESSING})
    head = model.vrnn_cell.posterior_mu
    head.kernel.assign(head.kernel * np.array([200.0, 10.0, 10.0], np.float32))
    return model


def canvases(n, seed=0, side=600):
    """[0, 1] images with structure at every scale (smooth blobs plus fine noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    out = []
    for _ in range(n):
        img = np.zeros((side, side), np.float32)
        for _ in range(6):
            cy, cx, r = rng.random(3)
            img += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (0.002 + 0.02 * r))
        img = np.clip(img * 0.8 + 0.2 * rng.random((side, side)), 0, 1).astype(np.float32)
        out.append(img[..., None])
    return np.stack(out)


# ------------------------------------------------------------------------------------------------- pyramid rules
def test_halve_is_the_writers_box_filter_for_odd_and_even_sides():
    rng = np.random.default_rng(0)
    for shape in ((8, 8), (7, 9), (5, 4), (1, 3)):
        image = rng.random(shape + (2,)).astype(np.float64)
        np.testing.assert_allclose(halve(image[None])[0], _downsample2(image), rtol=0, atol=1e-12)
        assert tuple(halve(image[None]).shape[1:3]) == level_shape(*shape, 1)
    layer = PyramidLevel(3)
    assert config_round_trip(layer).level == 3
    assert layer.compute_output_shape((None, 2528, 2528, 1)) == (None, 316, 316, 1)


def test_level_rules():
    # A glimpse reads the coarsest level whose window is still >= 2 x the glimpse side (in that level's pixels)
    # on both axes: level j needs a window >= 2 * 64 * 2^j level-0 pixels.
    assert [int(k) for k in glimpse_levels([[0, 0, 255.9, 5000], [0, 0, 256, 256], [0, 0, 511.9, 600],
                                            [0, 0, 512, 512], [0, 0, 5000, 5000]], 64, max_level=3)] == [0, 1, 1, 2, 3]
    assert levels_needed(2528, 2528, 0.64, 64) == 4 and levels_needed(100, 100, 0.64, 64) == 1
    # The proxy: the coarsest level >= 4 x its side, which write_tiled_tiff always writes.
    assert proxy_level(2528, 2528, 32) == 4 and proxy_level(100, 100, 32) == 0
    assert proxy_level(20000, 20000, 32) == 7 and proxy_level(20000, 20000, 32, max_level=5) == 5
    assert level_shape(2528, 2528, 4) == (158, 158) and level_shape(20000, 20000, 7) == (157, 157)


def test_pyramid_glimpses_equal_reads_from_a_pyramid_tiff(tmp_path):
    """pyramid_crop_and_resize on the in-memory image = TiledImage.read_region at the level the rule picks, for
    windows at every level (float32 file: the writer's levels are the graph's within rounding)."""
    image = canvases(1, seed=3)[0]
    path = write_tiled_tiff(str(tmp_path / "a.tif"), image[..., 0].astype(np.float32), tile_size=64)
    rng = np.random.default_rng(1)
    sides = np.concatenate([rng.uniform(20, 120, 6), rng.uniform(130, 250, 6), rng.uniform(260, 500, 6),
                            rng.uniform(520, 590, 6)])
    y0 = rng.uniform(0, 600 - sides)
    x0 = rng.uniform(0, 600 - sides)
    boxes = np.stack([y0, x0, y0 + sides, x0 + sides * rng.uniform(0.9, 1.0, sides.size)], -1).astype(np.float32)
    levels = glimpse_levels(boxes, 32, max_level=3)
    assert set(levels.tolist()) == {0, 1, 2, 3}
    graph = np.asarray(pyramid_crop_and_resize(image[None], boxes[None], 32, num_levels=4))[0]
    with TiledImage(path) as tiled:
        assert len(tiled.levels) >= 4
        files = np.stack([tiled.read_region(*[float(v) for v in b], 32, level=int(k)) for b, k in zip(boxes, levels)])
    np.testing.assert_allclose(graph, files, atol=1e-5)
    # The LST with levels samples the same glimpses from its window parameters (boxes -> z -> boxes rounds).
    square = np.asarray(boxes).copy()
    square[:, 3] = square[:, 1] + (square[:, 2] - square[:, 0])  # an LST window is square
    lst = np.asarray(LocalizedSpatialTransformer(32, levels=4)(image[None], boxes_to_affine(square[None], (600, 600))))
    np.testing.assert_allclose(lst[0], np.asarray(pyramid_crop_and_resize(image[None], square[None], 32, 4))[0],
                               atol=1e-4)


def test_pyramid_glimpses_are_differentiable_in_the_box():
    image = tf.constant(canvases(1, seed=4))
    boxes = tf.Variable([[[10.0, 20.0, 300.0, 310.0], [50.0, 40.0, 90.0, 80.0]]])
    with tf.GradientTape() as tape:
        out = pyramid_crop_and_resize(image, boxes, 16, num_levels=3)
        loss = tf.reduce_sum(out * tf.random.stateless_normal(out.shape, (1, 2)))
    grad = tape.gradient(loss, boxes).numpy()
    assert np.all(np.isfinite(grad)) and np.all(np.abs(grad) > 0)


# ------------------------------------------------------------------------------------------- model and files
def test_models_take_their_pyramid_and_proxy_level_from_the_rule():
    big = saccade_zoo.build("variational_cluttered2528_identify")
    assert (big.pyramid_levels, big.proxy_level) == (4, 4)
    assert big.count_params() == 7_382_877  # the pyramid has no weights
    small = saccade_zoo.build("variational_cluttered100_identify")
    assert (small.pyramid_levels, small.proxy_level) == (1, 0)
    model = spread_model()
    assert (model.pyramid_levels, model.proxy_level) == (4, 2)
    assert model.get_config()["pyramid_levels"] == 4 and model.get_config()["proxy_level"] == 2


@pytest.fixture(scope="module")
def spread(tmp_path_factory):
    """The spread model, its images as float32 and uint8 pyramid TIFFs, and its in-memory outputs."""
    folder = tmp_path_factory.mktemp("files")
    model = spread_model()
    pixels = canvases(6, seed=7)
    floats, bytes_ = [], []
    for i, image in enumerate(pixels):
        floats.append(write_tiled_tiff(str(folder / f"f{i}.tif"), image[..., 0], tile_size=128))
        bytes_.append(write_tiled_tiff(str(folder / f"u{i}.tif"), np.rint(image[..., 0] * 255).astype(np.uint8),
                                       tile_size=128))
    return model, pixels, floats, bytes_, folder


def test_file_predictor_equals_the_model_in_memory(spread):
    """The same boxes and logits within 1e-4 from float32 files; the same top-1 from uint8 files (levels rounded to
    integers); one read at a time and concurrent reads agree exactly."""
    model, pixels, floats, bytes_, _ = spread
    out = model((pixels - 0.2) / 0.5)
    with FilePredictor(model, num_workers=6) as predictor:
        results = list(predictor.predict(floats, batch_size=4))
    assert all(r.ok for r in results)
    levels = np.stack([r.levels for r in results])
    assert len(set(levels.ravel().tolist())) >= 3, levels  # windows at several pyramid levels
    np.testing.assert_allclose(np.stack([r.boxes for r in results]), out["boxes"], atol=1e-3)
    np.testing.assert_allclose(np.stack([r.logits for r in results]), out["logits"], atol=1e-4)
    expected = glimpse_levels(np.asarray(out["boxes"]), 32, model.pyramid_levels - 1)
    np.testing.assert_array_equal(levels, expected)

    pixels_u8 = np.rint(pixels * 255) / 255
    out_u8 = model((pixels_u8 - 0.2) / 0.5)
    with FilePredictor(model, num_workers=1) as serial:
        one_at_a_time = list(serial.predict(bytes_, batch_size=6))
    with FilePredictor(model, num_workers=8) as concurrent:
        together = list(concurrent.predict(bytes_, batch_size=6))
    for a, b in zip(one_at_a_time, together):
        np.testing.assert_array_equal(a.logits, b.logits)
    np.testing.assert_array_equal([np.argmax(r.logits) for r in together], np.argmax(out_u8["logits"], -1))
    np.testing.assert_allclose(np.stack([r.logits for r in together]), out_u8["logits"], atol=0.05)


def test_shipped_trained_models_agree_on_files(tmp_path):
    """Trained models: the variational saccader shipped in exports/ (100 x 100) and the Saccader on PNG files give the
    model's own boxes and logits."""
    from PIL import Image

    from saccade_zoo.data.cluttered import ClutteredConfig, cluttered_split

    test = cluttered_split("test", "sample", 6, ClutteredConfig(canvas_size=100, task="identify", num_items=2), 1)
    pixels = test["images"]
    floats = [write_tiled_tiff(str(tmp_path / f"{i}.tif"), p[..., 0]) for i, p in enumerate(pixels)]
    pngs = []
    for i, p in enumerate(pixels):
        pngs.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.rint(p[..., 0] * 255).astype(np.uint8)).save(pngs[-1])
    vs = saccade_zoo.load_pretrained("variational_fashion100_identify", compile=False)
    out = vs(saccade_zoo.preprocess(pixels, vs))
    with FilePredictor(vs) as predictor:
        results = list(predictor.predict(floats))
    np.testing.assert_allclose(np.stack([r.boxes for r in results]), out["boxes"], atol=1e-3)
    np.testing.assert_allclose(np.stack([r.logits for r in results]), out["logits"], atol=1e-4)
    saccader = saccade_zoo.load_pretrained("saccader_fashion100", compile=False)
    u8 = np.rint(pixels * 255).astype(np.uint8)
    out = saccader(saccade_zoo.preprocess(u8, saccader))
    with pytest.warns(UserWarning, match="not a tiled TIFF"), FilePredictor(saccader) as predictor:
        results = list(predictor.predict(pngs))
    np.testing.assert_allclose(np.stack([r.logits for r in results]), out["logits"], atol=1e-4)
    np.testing.assert_allclose(np.stack([r.boxes for r in results]), out["boxes"], atol=1e-4)
    assert results[0].top[0][0] in saccader.class_names


def test_bad_files_are_reported_and_the_rest_classified(spread, tmp_path):
    model, _, floats, bytes_, _ = spread
    truncated = tmp_path / "truncated.tif"
    data = open(bytes_[0], "rb").read()
    truncated.write_bytes(data[:len(data) // 2])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    small = write_tiled_tiff(str(tmp_path / "small.tif"), np.zeros((20, 600), np.uint8))
    rgb = write_tiled_tiff(str(tmp_path / "rgb.tif"), np.zeros((600, 600, 3), np.uint8))
    paths = [floats[0], str(tmp_path / "missing.tif"), str(truncated), str(text), small, rgb, floats[1]]
    with FilePredictor(model) as predictor:
        results = list(predictor.predict(paths, batch_size=3))
    errors = [r.error for r in results]
    assert results[0].ok and results[-1].ok
    assert "FileNotFoundError" in errors[1] and "missing.tif" in errors[1]
    assert "truncated.tif" in errors[2] and "truncated" in errors[2].lower()
    assert "notes.png" in errors[3]
    assert "small.tif" in errors[4] and "smaller than the model's 32 x 32 glimpse" in errors[4]
    assert "rgb.tif" in errors[5] and "3 channel" in errors[5]
    with FilePredictor(model, max_pixels=100_000) as predictor:  # a decompression bomb to this reader
        bomb = predictor.predict_one(floats[0])
    assert not bomb.ok and "max_pixels" in bomb.error and "f0.tif" in bomb.error


def test_expand_inputs(spread, tmp_path):
    _, _, floats, bytes_, folder = spread
    assert expand_inputs([str(folder)]) == sorted(floats + bytes_)
    assert expand_inputs([str(folder / "u*.tif"), bytes_[0]]) == sorted(bytes_)
    with pytest.raises(ValueError, match="No files match"):
        expand_inputs([str(tmp_path / "*.tif")])
    with pytest.raises(ValueError, match="No image files"):
        expand_inputs([str(tmp_path)])


# ------------------------------------------------------------------------------------------------ tools/predict.py
def test_predict_tool_writes_json_csv_pictures_and_fails_loudly(spread, tmp_path):
    model, _, floats, _, _ = spread
    model_path = str(tmp_path / "model.keras")
    model.save(model_path)
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 20)
    cmd = [sys.executable, os.path.join(ROOT, "tools", "predict.py"), f"--model={model_path}",
           f"--inputs={floats[0]},{floats[1]},{bad}", f"--output_json={tmp_path / 'p.json'}",
           f"--output_csv={tmp_path / 'p.csv'}", f"--pictures_dir={tmp_path / 'pics'}", "--top_k=2"]
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "2 of 3 files classified, 1 failed" in proc.stdout
    assert "bad.tif: ERROR ValueError" in proc.stdout and "glimpse 4: y0=" in proc.stdout
    records = json.load(open(tmp_path / "p.json"))["results"]
    assert [r["error"] is None for r in records] == [True, True, False]
    assert len(records[0]["top"]) == 2 and len(records[0]["boxes"]) == 4 and len(records[0]["levels"]) == 4
    rows = open(tmp_path / "p.csv").read().splitlines()
    assert rows[0].startswith("file,error,top_class") and len(rows) == 4
    assert sorted(os.listdir(tmp_path / "pics")) == ["f0_glimpses.png", "f1_glimpses.png"]


# ------------------------------------------------------------------------------------------------------- memory
# VmHWM, the peak RSS of this process image: getrusage's ru_maxrss keeps the forking parent's peak across exec.
MEASURE = """
import runpy, sys
sys.argv = ["predict.py", "--model={model}", "--inputs={inputs}", "--quiet"]
try:
    runpy.run_path({script!r}, run_name="__main__")
except SystemExit as e:
    assert not e.code, e.code
print("MAXRSS_KB", [l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")][0])
"""


def peak_rss_mb(model_path, inputs):
    from helpers import run_python
    out = run_python(MEASURE.format(model=model_path, inputs=inputs,
                                    script=os.path.join(ROOT, "tools", "predict.py")), timeout=600)
    return int(out.split("MAXRSS_KB")[-1].split()[0]) / 1024


def test_memory_does_not_grow_with_the_image(tmp_path):
    """Peak RSS of tools/predict.py with the paper-sized 2528 x 2528 model on a 2528^2 and an 8000^2 file (10x the
    pixels) within 10% of each other: only a proxy level and the glimpse windows are read."""
    model = saccade_zoo.build("variational_cluttered2528_identify")
    model_path = str(tmp_path / "vs2528.keras")
    model.save(model_path)
    rss = {}
    for side in (2528, 8000):
        image = np.zeros((side, side), np.uint8)
        rng = np.random.default_rng(side)
        for _ in range(20):  # a few bright squares, so that tiles are not all blank
            y, x = rng.integers(0, side - 200, 2)
            image[y:y + 200, x:x + 200] = rng.integers(50, 255)
        path = write_tiled_tiff(str(tmp_path / f"{side}.tif"), image)
        del image
        rss[side] = peak_rss_mb(model_path, path)
    assert rss[8000] <= 1.10 * rss[2528] and rss[2528] <= 1.10 * rss[8000], rss
