"""The glimpse sampler (saccade_zoo.layers.glimpse): NumPy reference, TiledImage.read_region parity, gradients,
layers (config, .keras, TFLite built-ins), retina, memory footprint."""
import math

import numpy as np
import pytest
import tensorflow as tf

import keras
from saccade_zoo.data.tiled_tiff import TiledImage, write_tiled_tiff
from saccade_zoo.layers.glimpse import (GlimpseSampler, Retina, boxes_to_center_size, center_size_to_boxes,
                                        crop_and_resize, glimpse_boxes, normalized_to_pixels,
                                        pixels_to_normalized, retina)
from tests.helpers import config_round_trip


def reference_crop(image, box, size):
    """Loop reference: bilinear, half-pixel centres, zeros outside the image. image (H, W, C), box (y0, x0, y1, x1)."""
    height, width, channels = image.shape
    out_h, out_w = size
    y0, x0, y1, x1 = (float(v) for v in box)

    def pixel(r, c):
        return image[r, c].astype(np.float64) if 0 <= r < height and 0 <= c < width else np.zeros(channels)

    out = np.zeros((out_h, out_w, channels))
    for i in range(out_h):
        y = y0 + (i + 0.5) * (y1 - y0) / out_h - 0.5
        r = math.floor(y)
        a = y - r
        for j in range(out_w):
            x = x0 + (j + 0.5) * (x1 - x0) / out_w - 0.5
            c = math.floor(x)
            b = x - c
            out[i, j] = ((1 - a) * (1 - b) * pixel(r, c) + (1 - a) * b * pixel(r, c + 1)
                         + a * (1 - b) * pixel(r + 1, c) + a * b * pixel(r + 1, c + 1))
    return out


def reference_batch(images, boxes, size):
    return np.stack([np.stack([reference_crop(images[b], box, size) for box in boxes[b]]) for b in range(len(boxes))])


# The cases the issue asks for: partly outside, sub-pixel, up- and downsampling, wholly outside, T > 1.
BOXES = np.array([
    [[0.0, 0.0, 13.0, 17.0],     # whole image
     [-4.5, -3.0, 6.25, 8.0],    # crosses the top-left corner
     [9.3, 12.1, 15.7, 21.9],    # crosses the bottom-right corner
     [5.2, 7.4, 5.9, 7.65]],     # sub-pixel
    [[2.0, 3.0, 4.5, 5.0],       # upsampled ~3x
     [1.0, -1.0, 12.0, 16.5],    # downsampled
     [-20.0, -20.0, -14.0, -2.0],  # wholly outside: zeros
     [3.5, 3.5, 4.5, 4.5]],      # one pixel, centred on a pixel corner
], "float32")


@pytest.mark.parametrize("size", [(7, 9), (3, 2), (1, 1)])
def test_crop_and_resize_matches_numpy_reference(size):
    rng = np.random.default_rng(1)
    images = rng.random((2, 13, 17, 3)).astype("float32")
    out = crop_and_resize(images, BOXES, size)
    assert tuple(out.shape) == (2, 4) + size + (3,) and out.dtype == "float32"
    np.testing.assert_allclose(out.numpy(), reference_batch(images, BOXES, size), atol=2e-6)
    np.testing.assert_array_equal(out.numpy()[1, 2], 0.0)
    # (B, 4) boxes -> (B, h, w, C)
    single = crop_and_resize(images, BOXES[:, 1], size)
    assert tuple(single.shape) == (2,) + size + (3,)
    np.testing.assert_allclose(single.numpy(), out.numpy()[:, 1], atol=1e-7)


def test_integer_boxes_at_native_size_are_exact_pixels():
    images = np.random.default_rng(2).random((1, 10, 12, 2)).astype("float32")
    out = crop_and_resize(images, np.array([[[2, 3, 7, 11], [0, 0, 10, 12]]], "float32"), (5, 8))
    np.testing.assert_array_equal(out.numpy()[0, 0], images[0, 2:7, 3:11])
    one = crop_and_resize(images, np.array([[4, 5, 5, 6]], "float32"), 1)  # pixel (4, 5) covers [4, 5) x [5, 6)
    np.testing.assert_array_equal(one.numpy()[0, 0, 0], images[0, 4, 5])
    # Half a pixel outside the image: the border pixel blended half with the zero padding.
    edge = crop_and_resize(images, np.array([[-0.5, 0, 0.5, 1]], "float32"), 1)
    np.testing.assert_allclose(edge.numpy()[0, 0, 0], 0.5 * images[0, 0, 0], rtol=1e-6)


def test_non_finite_boxes_give_nan_not_an_error():
    images = np.ones((1, 8, 8, 1), "float32")
    boxes = np.array([[[np.nan, 0, 4, 4], [0, 0, np.inf, 4], [0, 0, 4, 4]]], "float32")
    out = crop_and_resize(images, boxes, 3).numpy()[0]
    assert np.isnan(out[0]).all() and np.isnan(out[1]).any() and np.all(out[2] == 1.0)


@pytest.fixture(scope="module")
def tiff(tmp_path_factory):
    rng = np.random.default_rng(3)
    smooth = np.cumsum(np.cumsum(rng.random((150, 190, 3)), 0), 1)
    a = (255 * (0.5 * smooth / smooth.max() + 0.5 * rng.random((150, 190, 3)))).astype(np.uint8)
    path = str(tmp_path_factory.mktemp("glimpse") / "image.tif")
    write_tiled_tiff(path, a, tile_size=64)
    return path, a


def test_matches_tiled_image_read_region_level0(tiff):
    path, a = tiff
    rng = np.random.default_rng(4)
    height, width = a.shape[:2]
    n = 120
    sides = rng.uniform(0.6, 90, (n, 2))
    y0 = rng.uniform(-40, height + 10, n)
    x0 = rng.uniform(-40, width + 10, n)
    boxes = np.stack([y0, x0, y0 + sides[:, 0], x0 + sides[:, 1]], -1)
    boxes[:4] = [[-10, -10, 40, 40], [100, 150, 170, 230], [0, 0, height, width], [20, 30, 52, 62]]  # borders
    boxes = boxes.astype("float32")
    crossing = (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > height) | (boxes[:, 3] > width)
    assert crossing.sum() >= 30
    size = (12, 16)
    images = (a.astype("float32") / 255.0)[None]
    ours = crop_and_resize(images, boxes[None], size).numpy()[0]
    with TiledImage(path) as im:
        theirs = np.stack([im.read_region(*(float(v) for v in box), out_size=size, level=0) for box in boxes])
    error = np.abs(ours - theirs).max()
    # Far inside the 1/255 bound: the only difference is float32 (ours) vs float64 (read_region) sample positions.
    assert error <= 1 / 255 and error < 5e-5, error


def _loss_and_grads(images, boxes, weights, size):
    images, boxes = tf.constant(images), tf.constant(boxes)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([images, boxes])
        loss = tf.reduce_sum(crop_and_resize(images, boxes, size) * weights)
    return loss.numpy(), tape.gradient(loss, boxes).numpy(), tape.gradient(loss, images)


def test_gradients_with_respect_to_boxes_match_finite_differences():
    rng = np.random.default_rng(5)
    images = rng.random((2, 11, 13, 2))
    boxes = np.array([[[1.3, 2.6, 7.9, 9.1], [-2.7, -1.4, 4.3, 5.2], [6.1, 8.3, 14.6, 17.2]],
                      [[0.4, 0.7, 3.1, 2.9], [2.2, 3.3, 9.8, 11.4], [4.45, 5.35, 5.8, 6.9]]])
    size = (5, 6)
    weights = rng.normal(size=(2, 3) + size + (2,))
    _, grad, _ = _loss_and_grads(images, boxes, weights, size)
    eps = 1e-6
    numeric = np.zeros_like(boxes)
    for index in np.ndindex(boxes.shape):
        plus, minus = boxes.copy(), boxes.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = (_loss_and_grads(images, plus, weights, size)[0]
                          - _loss_and_grads(images, minus, weights, size)[0]) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(grad) > 1e-3)  # every corner of every box gets a gradient
    # float32 gives the same gradient to float32 precision.
    _, grad32, _ = _loss_and_grads(images.astype("float32"), boxes.astype("float32"), weights.astype("float32"), size)
    np.testing.assert_allclose(grad32, grad, rtol=1e-3, atol=1e-3)


def test_gradients_with_respect_to_images():
    rng = np.random.default_rng(6)
    images = rng.random((2, 9, 10, 3))
    weights = rng.normal(size=(2, 4, 4, 5, 3))
    loss, _, grad = _loss_and_grads(images, BOXES.astype("float64") * 0.7, weights, (4, 5))
    grad = tf.convert_to_tensor(grad).numpy()
    # The output is linear in the images, so <d loss / d images, images> == loss.
    np.testing.assert_allclose(np.sum(grad * images), loss, rtol=1e-10)
    assert np.count_nonzero(grad) > 0.5 * grad.size


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_images_keep_their_dtype(dtype):
    images = np.random.default_rng(7).random((2, 13, 17, 3)).astype("float32")
    out = crop_and_resize(tf.cast(images, dtype), BOXES, (6, 6))
    assert out.dtype == dtype
    np.testing.assert_allclose(tf.cast(out, "float32").numpy(), crop_and_resize(images, BOXES, (6, 6)).numpy(),
                               atol=2e-2)
    uint8 = crop_and_resize((images * 255).astype("uint8"), BOXES, (6, 6))
    assert uint8.dtype == "float32"


def test_runs_under_xla_and_with_dynamic_shapes():
    images = np.random.default_rng(8).random((2, 13, 17, 3)).astype("float32")
    expected = crop_and_resize(images, BOXES, (5, 4)).numpy()
    xla = tf.function(lambda i, b: crop_and_resize(i, b, (5, 4)), jit_compile=True)
    np.testing.assert_allclose(xla(images, BOXES).numpy(), expected, atol=1e-6)
    dynamic = tf.function(lambda i, b: crop_and_resize(i, b, (5, 4)),
                          input_signature=[tf.TensorSpec((None, None, None, None)), tf.TensorSpec((None, None, 4))])
    np.testing.assert_allclose(dynamic(images, BOXES).numpy(), expected, atol=1e-6)


def test_memory_is_per_glimpse_not_per_image():
    """No intermediate tensor of the traced sampler is image-sized except the input and its flat view."""
    batch, height, width, channels, steps, size = 2, 512, 384, 3, 3, 8
    fn = tf.function(lambda i, b: crop_and_resize(i, b, size))
    graph = fn.get_concrete_function(tf.TensorSpec((batch, height, width, channels)),
                                     tf.TensorSpec((batch, steps, 4))).graph
    limit = batch * steps * size * size * channels
    big = []
    for op in graph.get_operations():
        for t in op.outputs:
            if t.shape.is_fully_defined() and t.shape.num_elements() > limit:
                big.append(op.type)
    assert sorted(big) == ["Placeholder", "Reshape"], big


# ----------------------------------------------------------------------------------------------------- helpers
def test_box_helpers_and_normalized_coordinates():
    boxes = np.array([[1.0, 2.0, 5.0, 10.0], [-3.0, 4.5, 0.0, 5.0]], "float32")
    center_size = boxes_to_center_size(boxes).numpy()
    np.testing.assert_allclose(center_size, [[3, 6, 4, 8], [-1.5, 4.75, 3, 0.5]])
    np.testing.assert_allclose(center_size_to_boxes(center_size).numpy(), boxes)
    np.testing.assert_allclose(glimpse_boxes(center_size[:, :2], 4).numpy(), [[1, 4, 5, 8], [-3.5, 2.75, 0.5, 6.75]])
    np.testing.assert_allclose(glimpse_boxes(center_size[:, :2], center_size[:, 2:]).numpy(), boxes)
    # -1 = top/left edge, +1 = bottom/right edge, 0 = centre; (y, x) pairs, so boxes convert too.
    np.testing.assert_allclose(normalized_to_pixels(np.array([[-1, -1], [0, 0], [1, 1]], "float32"), (60, 100)),
                               [[0, 0], [30, 50], [60, 100]])
    np.testing.assert_allclose(normalized_to_pixels(np.array([-1, -1, 1, 1], "float32"), (60, 100)), [0, 0, 60, 100])
    points = np.random.default_rng(9).uniform(-1, 1, (5, 3, 2)).astype("float32")
    image_size = tf.shape(tf.zeros((1, 60, 100, 1)))[1:3]  # tensors work as well
    np.testing.assert_allclose(pixels_to_normalized(normalized_to_pixels(points, image_size), (60, 100)), points,
                               atol=1e-6)


def test_normalized_box_is_an_align_corners_false_spatial_transformer():
    """Affine [[s, 0, tx], [0, s, ty]] with grid_sample(align_corners=False) == crop of box (ty-s, tx-s, ty+s, tx+s)."""
    rng = np.random.default_rng(10)
    image = rng.random((20, 30, 1))
    s, ty, tx, out = 0.3, -0.2, 0.45, 6
    grid = (2 * np.arange(out) + 1) / out - 1  # output grid, align_corners=False
    ys = ((ty + s * grid) + 1) * 20 / 2 - 0.5  # input pixel-centre index
    xs = ((tx + s * grid) + 1) * 30 / 2 - 0.5
    expected = np.zeros((out, out))
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            r, c = math.floor(y), math.floor(x)
            a, b = y - r, x - c
            expected[i, j] = ((1 - a) * (1 - b) * image[r, c, 0] + (1 - a) * b * image[r, c + 1, 0]
                              + a * (1 - b) * image[r + 1, c, 0] + a * b * image[r + 1, c + 1, 0])
    box = normalized_to_pixels(np.array([[ty - s, tx - s, ty + s, tx + s]]), (20, 30))
    got = crop_and_resize(image[None], box, out).numpy()[0, :, :, 0]
    np.testing.assert_allclose(got, expected, atol=1e-12)


# ------------------------------------------------------------------------------------------------------ retina
@pytest.mark.parametrize("scale_factor,base_size", [(2.0, None), (1.5, 5.0), (3.0, (4.0, 6.0))])
def test_retina_scale_k_is_crop_of_box_of_side_base_times_factor_power_k(scale_factor, base_size):
    rng = np.random.default_rng(11)
    images = rng.random((2, 40, 50, 3)).astype("float32")
    centers = np.array([[[20.0, 25.0], [3.3, 47.5]], [[0.0, 0.0], [31.7, 12.2]]], "float32")
    size, k = 6, 3
    out = retina(images, centers, size, k, scale_factor=scale_factor, base_size=base_size)
    assert tuple(out.shape) == (2, 2, k, size, size, 3)
    base_h, base_w = (size, size) if base_size is None else (
        (base_size, base_size) if np.isscalar(base_size) else base_size)
    for scale in range(k):
        side_h, side_w = base_h * scale_factor ** scale, base_w * scale_factor ** scale
        boxes = np.concatenate([centers - [side_h / 2, side_w / 2], centers + [side_h / 2, side_w / 2]], -1)
        np.testing.assert_allclose(out.numpy()[:, :, scale], crop_and_resize(images, boxes, size).numpy(),
                                   atol=1e-6)
    concat = retina(images, centers, size, k, scale_factor=scale_factor, base_size=base_size, concat_channels=True)
    assert tuple(concat.shape) == (2, 2, size, size, 3 * k)
    for scale in range(k):  # scale-major channels
        np.testing.assert_array_equal(concat.numpy()[..., 3 * scale:3 * scale + 3], out.numpy()[:, :, scale])
    single = retina(images, centers[:, 1], size, k, scale_factor=scale_factor, base_size=base_size)
    np.testing.assert_array_equal(single.numpy(), out.numpy()[:, 1])


def test_retina_finest_scale_defaults_to_native_resolution():
    images = np.random.default_rng(12).random((1, 16, 16, 1)).astype("float32")
    out = retina(images, np.array([[8.0, 8.0]], "float32"), 4, 2)
    np.testing.assert_array_equal(out.numpy()[0, 0], images[0, 6:10, 6:10])  # 4 x 4 pixels around the centre
    np.testing.assert_allclose(out.numpy()[0, 1], images[0, 4:12, 4:12].reshape(4, 2, 4, 2, 1).mean((1, 3)),
                               atol=1e-6)  # 8 x 8 window, bilinear at the 2 x 2 block centres = block means


# ------------------------------------------------------------------------------------------------------ layers
def test_layers_config_shapes_and_dtype_policy():
    sampler = config_round_trip(GlimpseSampler((6, 7)))
    assert sampler.size == (6, 7)
    retina_layer = config_round_trip(Retina(5, 3, scale_factor=1.5, base_size=(4, 6), concat_channels=True))
    assert retina_layer.patch_sides == [(4.0, 6.0), (6.0, 9.0), (9.0, 13.5)]
    config_round_trip(Retina(5, 2))
    images = np.random.default_rng(13).random((2, 13, 17, 3)).astype("float32")
    assert sampler.compute_output_shape((2, 13, 17, 3), (2, 4, 4)) == (2, 4, 6, 7, 3)
    assert sampler.compute_output_shape((2, 13, 17, 3), (2, 4)) == (2, 6, 7, 3)
    assert tuple(sampler(images, BOXES).shape) == (2, 4, 6, 7, 3)
    assert retina_layer.compute_output_shape((None, 13, 17, 3), (None, 4, 2)) == (None, 4, 5, 5, 9)
    assert Retina(5, 3).compute_output_shape((None, 13, 17, 3), (None, 2)) == (None, 3, 5, 5, 3)
    centers = BOXES[..., :2]
    assert tuple(retina_layer(images, centers).shape) == (2, 4, 5, 5, 9)
    with pytest.raises(ValueError, match="num_scales"):
        Retina(5, 0)
    # Mixed precision: float16 glimpses, but the boxes are not autocast (pixel positions keep float32 precision).
    mixed = GlimpseSampler((6, 7), dtype="mixed_float16")
    far = np.array([[[1000.3, 2000.6, 1004.1, 2009.2]]], "float32")
    big = np.random.default_rng(14).random((1, 1010, 2012, 1)).astype("float32")
    got = mixed(big, far)
    assert got.dtype == "float16"
    np.testing.assert_allclose(tf.cast(got, "float32").numpy(), crop_and_resize(big, far, (6, 7)).numpy(), atol=2e-3)
    symbolic = GlimpseSampler(4, dtype="mixed_float16")(keras.Input((13, 17, 3)), keras.Input((4, 4)))
    assert symbolic.dtype == "float16" and tuple(symbolic.shape) == (None, 4, 4, 4, 3)


def _tiny_model():
    images = keras.Input((13, 17, 3), name="images")
    boxes = keras.Input((4, 4), name="boxes")
    centers = keras.Input((2, 2), name="centers")
    glimpses = GlimpseSampler((5, 6), name="sampler")(images, boxes)
    patches = Retina(4, 3, scale_factor=2.0, base_size=3.0, concat_channels=True, name="retina")(images, centers)
    return keras.Model([images, boxes, centers], {"glimpses": glimpses, "patches": patches})


def _model_inputs():
    rng = np.random.default_rng(15)
    images = rng.random((2, 13, 17, 3)).astype("float32")
    centers = np.stack([rng.uniform(-2, 15, (2, 2)), rng.uniform(-2, 19, (2, 2))], -1).astype("float32")
    return images, BOXES, centers


def test_save_and_load_keras_file(tmp_path):
    model = _tiny_model()
    inputs = _model_inputs()
    expected = model(list(inputs))
    path = str(tmp_path / "glimpse.keras")
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(reloaded.get_layer("sampler"), GlimpseSampler)
    assert isinstance(reloaded.get_layer("retina"), Retina)
    assert reloaded.get_layer("retina").get_config() == model.get_layer("retina").get_config()
    got = reloaded(list(inputs))
    for key in expected:
        np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy())


def test_tflite_builtins_only_matches_keras():
    from ai_edge_litert.interpreter import Interpreter

    model = _tiny_model()
    inputs = _model_inputs()

    @tf.function(input_signature=[tf.TensorSpec((None, 13, 17, 3), name="images"),
                                  tf.TensorSpec((None, 4, 4), name="boxes"),
                                  tf.TensorSpec((None, 2, 2), name="centers")])
    def serve(images, boxes, centers):
        return model([images, boxes, centers], training=False)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flatbuffer = converter.convert()
    runner = Interpreter(model_content=flatbuffer).get_signature_runner()
    images, boxes, centers = inputs
    got = runner(images=images, boxes=boxes, centers=centers)
    expected = model(list(inputs))
    for key in ("glimpses", "patches"):
        assert got[key].shape == tuple(expected[key].shape)
        np.testing.assert_allclose(got[key], expected[key].numpy(), atol=1e-5)
