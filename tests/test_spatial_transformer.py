"""Spatial-transformer glimpses (saccade_zoo.layers.spatial_transformer): z <-> boxes, NumPy reference, LST == full
ST, gradients, memory (localisation), layers (config, .keras, mixed precision), bad inputs."""
import math

import numpy as np
import pytest
import tensorflow as tf

import keras
from saccade_zoo.layers import LocalizedSpatialTransformer, SpatialTransformer
from saccade_zoo.layers.glimpse import crop_and_resize
from saccade_zoo.layers.spatial_transformer import (affine_to_boxes, boxes_to_affine, localized_spatial_transformer,
                                                    spatial_transformer)
from tests.helpers import run_layer_test


def lst(images, z, size):
    """The LST layer, in float64 for float64 images (float32 otherwise)."""
    dtype = "float64" if keras.backend.standardize_dtype(images.dtype) == "float64" else "float32"
    return LocalizedSpatialTransformer(size, dtype=dtype)(images, z)


# ------------------------------------------------------------------------------------------------- NumPy reference
def reference_transformer(image, z, size):
    """Loop reference, straight from the affine grid: output (i, j) samples the normalised point
    (y + s * gy_i, x + s * gx_j), g = (2k + 1) / n - 1 (align_corners=False), pixel-centre index (p + 1) * H / 2 - 0.5,
    bilinear between the four nearest pixel centres, zeros outside. image (H, W, C), z (s, x, y)."""
    height, width, channels = image.shape
    out_h, out_w = size
    s, x, y = (float(v) for v in z)

    def pixel(r, c):
        return image[r, c].astype(np.float64) if 0 <= r < height and 0 <= c < width else np.zeros(channels)

    out = np.zeros((out_h, out_w, channels))
    for i in range(out_h):
        py = (y + s * ((2 * i + 1) / out_h - 1) + 1) * height / 2 - 0.5
        r = math.floor(py)
        a = py - r
        for j in range(out_w):
            px = (x + s * ((2 * j + 1) / out_w - 1) + 1) * width / 2 - 0.5
            c = math.floor(px)
            b = px - c
            out[i, j] = ((1 - a) * (1 - b) * pixel(r, c) + (1 - a) * b * pixel(r, c + 1)
                         + a * (1 - b) * pixel(r + 1, c) + a * b * pixel(r + 1, c + 1))
    return out


# (s, x, y): whole image, zoom-in (window of a few pixels, smaller than L), zoom-out (window larger than the image),
# across the top-left corner, across the bottom-right corner, off-centre sub-window, wholly outside (zeros).
Z = np.array([
    [[1.0, 0.0, 0.0], [0.08, 0.13, -0.27], [1.7, 0.05, -0.1], [0.45, -0.9, -0.75]],
    [[0.6, 0.85, 0.7], [0.33, -0.41, 0.52], [0.3, 2.6, 0.0], [0.9, 0.3, -0.6]],
], "float32")


@pytest.mark.parametrize("shape,size", [((2, 11, 17, 1), 6), ((2, 16, 9, 3), (5, 7)), ((2, 13, 13, 3), 4)])
def test_matches_numpy_reference(shape, size):
    images = np.random.default_rng(1).random(shape).astype("float32")
    hw = (size, size) if isinstance(size, int) else size
    expected = np.stack([np.stack([reference_transformer(images[b], z, hw) for z in Z[b]]) for b in range(2)])
    assert np.abs(expected[:, 1]).max() > 0 and np.all(expected[1, 2] == 0)  # the cases are what they claim
    for name, fn in [("spatial_transformer", spatial_transformer), ("lst", lst)]:
        out = fn(images, Z, size)
        assert tuple(out.shape) == (2, 4) + hw + (shape[-1],) and out.dtype == "float32", name
        np.testing.assert_allclose(out.numpy(), expected, atol=1e-5, err_msg=name)
        single = fn(images, Z[:, 3], size)  # (B, 3) z -> (B, h, w, C)
        np.testing.assert_allclose(single.numpy(), expected[:, 3], atol=1e-5, err_msg=name)


def test_whole_image_at_native_size_is_the_image():
    images = np.random.default_rng(2).random((2, 10, 14, 3)).astype("float32")
    z = np.array([[1.0, 0.0, 0.0]] * 2, "float32")
    np.testing.assert_allclose(spatial_transformer(images, z, (10, 14)).numpy(), images, atol=1e-6)
    np.testing.assert_array_equal(lst(images, z, (10, 14)).numpy(), images)


# ---------------------------------------------------------------------------------------------- coordinates
def test_affine_to_boxes_hand_values_and_round_trip():
    height, width = 60, 100
    z = np.array([[1.0, 0.0, 0.0],     # the whole image
                  [0.5, 0.5, 0.0],     # right half in x, middle half in y
                  [0.25, -1.0, 1.0],   # centred on the bottom-left corner
                  [2.0, 0.0, 0.0]])    # zoom-out: twice the image
    expected = [[0, 0, 60, 100],
                [15, 50, 45, 100],
                [52.5, -12.5, 67.5, 12.5],
                [-30, -50, 90, 150]]
    np.testing.assert_allclose(affine_to_boxes(z, (height, width)).numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(boxes_to_affine(np.array(expected, "float64"), (height, width)).numpy(), z, atol=1e-12)
    # Window s*H tall and s*W wide.
    rng = np.random.default_rng(3)
    many = np.stack([rng.uniform(0.01, 2, (4, 5)), rng.uniform(-1.5, 1.5, (4, 5)), rng.uniform(-1.5, 1.5, (4, 5))],
                    -1).astype("float32")
    boxes = affine_to_boxes(many, (height, width)).numpy()
    assert boxes.shape == (4, 5, 4) and boxes.dtype == np.float32
    np.testing.assert_allclose(boxes[..., 2] - boxes[..., 0], many[..., 0] * height, rtol=1e-5)
    np.testing.assert_allclose(boxes[..., 3] - boxes[..., 1], many[..., 0] * width, rtol=1e-5)
    image_size = tf.shape(tf.zeros((1, height, width, 1)))[1:3]  # tensors work as well
    np.testing.assert_allclose(boxes_to_affine(affine_to_boxes(many, image_size), image_size).numpy(), many,
                               atol=1e-6)
    # boxes -> z -> boxes for square-in-normalised-units boxes; half-precision z gives float32 boxes.
    np.testing.assert_allclose(affine_to_boxes(boxes_to_affine(boxes, (height, width)), (height, width)).numpy(),
                               boxes, atol=1e-4)
    assert affine_to_boxes(tf.constant(many, "float16"), (height, width)).dtype == "float32"


# ---------------------------------------------------------------------------------------------- LST == full ST
def test_localized_equals_full_transformer_on_random_z():
    rng = np.random.default_rng(4)
    images = rng.random((3, 23, 31, 2)).astype("float32")
    shape = (3, 60)
    z = np.stack([rng.uniform(0.03, 1.6, shape), rng.uniform(-1.3, 1.3, shape), rng.uniform(-1.3, 1.3, shape)],
                 -1).astype("float32")
    full = spatial_transformer(images, z, 8).numpy()
    local = localized_spatial_transformer(images, z, 8).numpy()
    assert np.abs(full).max() > 0.5
    np.testing.assert_allclose(local, full, atol=1e-5)
    np.testing.assert_allclose(SpatialTransformer(8)(images, z).numpy(), full, atol=1e-7)
    np.testing.assert_allclose(LocalizedSpatialTransformer(8)(images, z).numpy(), local, atol=1e-7)


def test_dynamic_shapes_and_xla():
    images = np.random.default_rng(5).random((2, 11, 17, 3)).astype("float32")
    expected = spatial_transformer(images, Z, 5).numpy()
    for fn in (spatial_transformer, localized_spatial_transformer):
        dynamic = tf.function(lambda i, z: fn(i, z, 5),
                              input_signature=[tf.TensorSpec((None, None, None, None)), tf.TensorSpec((None, None, 3))])
        np.testing.assert_allclose(dynamic(images, Z).numpy(), expected, atol=1e-5)
        xla = tf.function(lambda i, z: fn(i, z, 5), jit_compile=True)
        np.testing.assert_allclose(xla(images, Z).numpy(), expected, atol=1e-5)


# ------------------------------------------------------------------------------------------------- gradients
def _loss_and_grads(fn, images, z, weights, size):
    images, z = tf.constant(images), tf.constant(z)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([images, z])
        loss = tf.reduce_sum(fn(images, z, size) * weights)
    return loss.numpy(), tape.gradient(loss, z).numpy(), tape.gradient(loss, images)


def _kink_distance(z, image_size, size):
    """Smallest distance of any sample's pixel-centre index to an integer (where bilinear weights have a kink)."""
    boxes = affine_to_boxes(z, image_size).numpy()
    centres = (np.arange(size) + 0.5) / size
    ys = boxes[..., :1] + centres * (boxes[..., 2:3] - boxes[..., :1]) - 0.5
    xs = boxes[..., 1:2] + centres * (boxes[..., 3:4] - boxes[..., 1:2]) - 0.5
    pos = np.concatenate([ys, xs], -1)
    return np.abs(pos - np.round(pos)).min()


def test_gradients_with_respect_to_z_match_finite_differences():
    rng = np.random.default_rng(6)
    images = rng.random((2, 12, 15, 2))
    # Windows inside, across the border and zoomed out; the fixed seed keeps every sample >= 1e-3 from a kink.
    z = np.array([[[0.35, 0.1, -0.2], [0.5, -0.8, 0.75], [1.3, 0.05, 0.1]],
                  [[0.22, 0.6, 0.45], [0.7, 0.4, -0.55], [0.15, -0.3, -0.95]]])
    z = z + rng.uniform(-0.01, 0.01, z.shape)
    size = 5
    assert _kink_distance(z, (12, 15), size) > 1e-3
    weights = rng.normal(size=(2, 3, size, size, 2))
    _, grad, _ = _loss_and_grads(lst, images, z, weights, size)
    eps = 1e-6  # moves a sample by < 1e-5 pixels: never across a kink (checked above)
    numeric = np.zeros_like(z)
    for index in np.ndindex(z.shape):
        plus, minus = z.copy(), z.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = (_loss_and_grads(lst, images, plus, weights, size)[0]
                          - _loss_and_grads(lst, images, minus, weights, size)[0]) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(grad) > 1e-3)  # every parameter of every glimpse gets a gradient
    # The full-image transformer has the same gradient (the same function).
    _, grad_full, _ = _loss_and_grads(spatial_transformer, images, z, weights, size)
    np.testing.assert_allclose(grad_full, grad, rtol=1e-8, atol=1e-10)


def test_gradients_reach_the_images():
    rng = np.random.default_rng(7)
    images = rng.random((2, 11, 17, 3))
    weights = rng.normal(size=(2, 4, 4, 4, 3))
    for fn in (lst, spatial_transformer):
        loss, _, grad = _loss_and_grads(fn, images, Z.astype("float64"), weights, 4)
        grad = tf.convert_to_tensor(grad).numpy()
        # Linear in the images: <d loss / d images, images> == loss.
        np.testing.assert_allclose(np.sum(grad * images), loss, rtol=1e-10)
        assert np.count_nonzero(grad) > 0.2 * grad.size


# ------------------------------------------------------------------------------------------- memory / locality
def _big_tensors(fn, shape, steps, size, limit):
    graph = tf.function(lambda i, z: fn(i, z, size)).get_concrete_function(
        tf.TensorSpec(shape), tf.TensorSpec((shape[0], steps, 3))).graph
    return [(op.type, tuple(t.shape)) for op in graph.get_operations() for t in op.outputs
            if t.shape.is_fully_defined() and t.shape.num_elements() > limit]


def test_localized_transformer_gathers_only_the_glimpse_support():
    batch, height, width, channels, steps, size = 1, 2000, 2000, 1, 4, 16
    limit = 100 * batch * steps * size * size * channels
    shape = (batch, height, width, channels)
    big = _big_tensors(lst, shape, steps, size, limit)
    # Only the input image and the flat (H * W, C) table crop_and_resize gathers from.
    assert sorted(big) == [("Placeholder", shape), ("Reshape", (batch * height * width, channels))], big
    # The full-image transformer builds tensors proportional to L * H (the dense weights): the check tells them apart.
    full = _big_tensors(spatial_transformer, shape, steps, size, limit)
    assert any(s[-2:] == (size, height) for _, s in full), full
    assert len([t for t in full if t[0] not in ("Placeholder", "Reshape")]) >= 2, full
    # On that image, both give the same glimpses (float64: pixel positions near 2000 need more than float32).
    rng = np.random.default_rng(8)
    image = rng.random(shape)
    z = np.array([[[0.004, 0.9, -0.93], [0.01, -0.5, 0.2], [0.3, 0.0, 0.0], [0.05, 0.99, 0.99]]])
    np.testing.assert_allclose(lst(image, z, size).numpy(), spatial_transformer(image, z, size).numpy(), atol=1e-9)


# ------------------------------------------------------------------------------------------------------ layers
@pytest.mark.parametrize("cls", [LocalizedSpatialTransformer, SpatialTransformer])
def test_layer(cls):
    images = np.random.default_rng(9).random((2, 11, 17, 3)).astype("float32")
    result = run_layer_test(cls, dict(size=(5, 6)), {"images": images, "z": Z},
                            expected_output_shape=(2, 4, 5, 6, 3))
    np.testing.assert_allclose(result["outputs"].numpy(), spatial_transformer(images, Z, (5, 6)).numpy(), atol=1e-5)
    run_layer_test(cls, dict(size=4), {"images": images, "z": Z[:, 0]}, expected_output_shape=(2, 4, 4, 3),
                   run_precision_checks=False)
    layer = cls(4)
    assert layer.size == (4, 4) and layer.get_config()["size"] == [4, 4]
    assert layer.compute_output_shape((None, None, None, 3), (None, None, 3)) == (None, None, 4, 4, 3)
    np.testing.assert_allclose(layer.boxes(Z, (11, 17)).numpy(), affine_to_boxes(Z, (11, 17)).numpy())


def test_mixed_precision_keeps_float32_coordinates():
    height, width = 1010, 2012
    big = np.random.default_rng(10).random((1, height, width, 1)).astype("float32")
    z = np.array([[[0.004, 0.9877, 0.9813]]], "float32")  # a 4 x 8 pixel window near the far corner
    far = affine_to_boxes(z.astype("float64"), (height, width)).numpy()
    assert np.all(far[..., 2:] > [1000, 2000])
    for cls in (LocalizedSpatialTransformer, SpatialTransformer):
        layer = cls(6, dtype="mixed_float16")
        boxes = layer.boxes(z, (height, width))
        assert boxes.dtype == "float32"
        # float16 pixel coordinates are 1 pixel apart above 1024 (0.5 below): the boxes would be off by ~0.5 pixel.
        np.testing.assert_allclose(boxes.numpy(), far, atol=1e-3)
        got = layer(big, z)
        assert got.dtype == "float16"
        expected = crop_and_resize(big, far.astype("float32"), 6).numpy()
        np.testing.assert_allclose(tf.cast(got, "float32").numpy(), expected, atol=2e-3)
        # The same glimpse would be visibly different with its coordinates rounded to float16.
        rounded = crop_and_resize(big, far.astype("float16").astype("float32"), 6).numpy()
        assert np.abs(rounded - expected).max() > 0.05
        symbolic = cls(4, dtype="mixed_float16")(keras.Input((13, 17, 3)), keras.Input((4, 3)))
        assert symbolic.dtype == "float16" and tuple(symbolic.shape) == (None, 4, 4, 4, 3)


def test_save_and_load_keras_file(tmp_path):
    images_in = keras.Input((11, 17, 3), name="images")
    z_in = keras.Input((4, 3), name="z")
    outputs = {"local": LocalizedSpatialTransformer((5, 6), name="lst")(images_in, z_in),
               "full": SpatialTransformer(4, name="st")(images_in, z_in)}
    model = keras.Model([images_in, z_in], outputs)
    images = np.random.default_rng(11).random((2, 11, 17, 3)).astype("float32")
    expected = model([images, Z])
    path = str(tmp_path / "st.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded.get_layer("lst"), LocalizedSpatialTransformer)
    assert isinstance(reloaded.get_layer("st"), SpatialTransformer)
    assert reloaded.get_layer("lst").size == (5, 6)
    got = reloaded([images, Z])
    for key in expected:
        np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy())


# -------------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("fn", [spatial_transformer, localized_spatial_transformer])
def test_bad_inputs_raise_clear_errors(fn):
    images = np.zeros((2, 8, 8, 1), "float32")
    with pytest.raises(ValueError, match="images must be"):
        fn(images[0], Z, 4)
    for bad in (Z[..., :2], Z[None], Z[0, 0]):
        with pytest.raises(ValueError, match="z must be"):
            fn(images, bad, 4)
    for size in (0, (4, 0), -3):
        with pytest.raises(ValueError, match="size must be positive"):
            fn(images, Z, size)
    with pytest.raises(ValueError, match="z must hold"):
        affine_to_boxes(np.zeros((2, 4)), (8, 8))
    with pytest.raises(ValueError, match="boxes must hold"):
        boxes_to_affine(np.zeros((2, 3)), (8, 8))


@pytest.mark.parametrize("cls", [LocalizedSpatialTransformer, SpatialTransformer])
def test_layer_bad_inputs_raise_clear_errors(cls):
    with pytest.raises(ValueError, match="size must be positive"):
        cls(0)
    with pytest.raises(ValueError, match="z must be"):
        cls(4)(keras.Input((8, 8, 1)), keras.Input((4, 2)))
    with pytest.raises(ValueError, match="images must be"):
        cls(4)(keras.Input((8, 8)), keras.Input((4, 3)))
    with pytest.raises(ValueError, match="z must be"):
        cls(4)(np.zeros((2, 8, 8, 1), "float32"), Z[..., :2])


def test_nan_z_propagates_nan_without_an_error():
    images = np.ones((2, 8, 8, 1), "float32")
    z = Z.copy()
    z[0, 0, 0] = np.nan  # s
    z[1, 1, 1] = np.nan  # x
    for fn in (lst, spatial_transformer):
        out = fn(images, z, 3).numpy()
        assert np.isnan(out[0, 0]).all() and np.isnan(out[1, 1]).all()
        assert np.isfinite(out[0, 1:]).all() and np.isfinite(out[1, 2:]).all()
