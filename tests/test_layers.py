"""Layer tests: every layer goes through `tests.helpers.run_layer_test` (keras-hub's run_layer_test: serialization,
build, symbolic and eager calls, compute_output_shape, weight counts, one fit step, mixed-precision policies), plus the
behaviour each layer promises."""
import numpy as np
import pytest
import tensorflow as tf

import keras
from saccade_zoo.models.bagnet import BagNetBlock
from saccade_zoo.models.saccader import AttentionNetwork, EngineeredPolicy, GlimpseReadout, SaccaderCell
from saccade_zoo.layers.ops import MASK_MARGIN, argmax_last, mask_visited, one_hot
from saccade_zoo.models.saccader.policies import center_order
from tests.helpers import run_layer_test


# ----------------------------------------------------------------------------------------------- BagNetBlock
def bagnet_block_params(in_channels, kernel_size, projection, filters=16, expansion=4):
    out = filters * expansion
    bn = 4 * filters + 4 * filters + 4 * out  # gamma, beta, moving mean, moving variance
    convs = in_channels * filters + kernel_size * kernel_size * filters * filters + filters * out
    return convs + bn + ((in_channels * out + 4 * out) if projection else 0)


@pytest.mark.parametrize(
    "kernel_size,strides,in_channels,projection,expected_hw",
    [(3, 2, 16, True, 7), (3, 1, 64, False, 13), (1, 2, 16, True, 8), (1, 1, 64, False, 15)],
)
def test_bagnet_block_layer(kernel_size, strides, in_channels, projection, expected_hw):
    result = run_layer_test(
        BagNetBlock,
        dict(filters=16, kernel_size=kernel_size, strides=strides, projection_shortcut=projection),
        np.random.rand(2, 15, 15, in_channels).astype("float32"),
        expected_output_shape=(2, expected_hw, expected_hw, 64),
        expected_num_trainable_weights=12 if projection else 9,
        expected_num_non_trainable_weights=8 if projection else 6,
        expected_num_params=bagnet_block_params(in_channels, kernel_size, projection),
        moved_weights="any",
    )
    # The zero-initialised last gamma means conv1/conv2/bn1/conv2/bn2/conv3 get no gradient at step 0; bn3 and the
    # projection shortcut do.
    moved = {w.path.split("/", 1)[1]: m for w, m in zip(result["layer"].trainable_weights, result["moved"])}
    assert moved == {path: path.startswith(("bn3/", "shortcut_")) for path in moved}, moved


def test_bagnet_block_starts_as_cropped_identity():
    # gamma of the last BatchNorm starts at 0: a fresh identity block returns relu(cropped input).
    x = np.random.rand(2, 9, 9, 64).astype("float32")
    block = BagNetBlock(16, kernel_size=3)
    np.testing.assert_allclose(block(x, training=False), x[:, 1:-1, 1:-1, :], atol=1e-6)
    assert np.all(block.bn3.gamma.numpy() == 0)


def test_bagnet_block_rejects_identity_shortcut_that_cannot_fit():
    with pytest.raises(ValueError, match="projection_shortcut=True"):
        BagNetBlock(16, kernel_size=3, strides=2)(np.zeros((1, 9, 9, 64), "float32"))
    with pytest.raises(ValueError, match="kernel_size must be 1 or 3"):
        BagNetBlock(16, kernel_size=5)


# ------------------------------------------------------------------------------------------ AttentionNetwork
def test_attention_network_layer():
    # Four convs (1x1 4->8, 3x3 8->8, 1x1 8->8, 3x3 8->8, no bias) and four BatchNorms of 8 channels.
    run_layer_test(
        AttentionNetwork,
        dict(filters=(8, 8)),
        np.random.rand(2, 7, 7, 4).astype("float32"),
        expected_output_shape=(2, 7, 7, 8),
        expected_num_trainable_weights=12,
        expected_num_non_trainable_weights=8,
        expected_num_params=4 * 8 + 9 * 8 * 8 + 8 * 8 + 9 * 8 * 8 + 4 * 4 * 8,
    )


def test_attention_network_shape_and_receptive_field():
    net = AttentionNetwork((32, 16))
    assert AttentionNetwork.from_config(net.get_config()).get_config() == net.get_config()
    x = tf.constant(np.random.rand(1, 13, 13, 24).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = net(x, training=False)
        cell = tf.reduce_sum(out[:, 6, 6, :])
    assert tuple(out.shape) == (1, 13, 13, 16)
    grad = np.abs(tape.gradient(cell, x).numpy()).sum(axis=(0, 3))
    rows = np.nonzero(grad.sum(axis=1))[0]
    # Two 3x3 convs with dilation 2 reach 2 * 2 cells on each side.
    assert rows.min() == 2 and rows.max() == 10


# ----------------------------------------------------------------------------------------------- SaccaderCell
def reference_cell(features, a, steps):
    """NumPy transcription of paper Eqs. 1-3 with argmax selection."""
    b, h, w, d = features.shape
    flat = features.reshape(b, h * w, d).astype("float64")
    state = np.zeros((b, h * w))
    locations, all_logits = [], []

    def softmax(z):
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    for _ in range(steps):
        g = flat @ a / np.sqrt(d) - 1e5 * state
        pooled = np.einsum("bn,bnd->bd", softmax(g), flat)
        r = np.einsum("bnd,bd->bn", flat, softmax(pooled)) - 1e5 * state
        loc = r.argmax(axis=-1)
        state[np.arange(b), loc] = 1.0
        locations.append(loc)
        all_logits.append(r)
    return np.stack(locations, 1), np.stack(all_logits, 1)


def test_saccader_cell_layer():
    result = run_layer_test(
        SaccaderCell,
        dict(num_glimpses=7, seed=1),
        np.random.randn(3, 5, 4, 8).astype("float32"),
        expected_output_shape={"locations": (3, 7), "location_logits": (3, 7, 20)},
        expected_num_trainable_weights=1,
        expected_num_non_trainable_variables=1,  # the sampling SeedGenerator's state
        expected_num_params=8,
    )
    assert [w.name for w in result["layer"].trainable_weights] == ["attention_vector"]
    assert result["layer"].compute_output_shape((None, None, 4, 8), num_glimpses=3) == {
        "locations": (None, 3), "location_logits": (None, 3, None)}


def test_saccader_cell_matches_paper_equations():
    features = np.random.randn(3, 5, 4, 8).astype("float32")
    cell = SaccaderCell(num_glimpses=7)
    out = cell(features)
    ref_locations, ref_logits = reference_cell(features, cell.attention_vector.numpy(), 7)
    np.testing.assert_array_equal(out["locations"].numpy(), ref_locations)
    unmasked = ref_logits > -1e4
    logits = out["location_logits"].numpy()
    np.testing.assert_allclose(logits[unmasked], ref_logits[unmasked], rtol=1e-4, atol=1e-4)
    # The policy softmax(R) equals the paper's (-1e5 mask) to float32 rounding, masked cells included.
    def softmax(z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    np.testing.assert_allclose(softmax(logits.astype("float64")), softmax(ref_logits), rtol=0, atol=1e-6)
    assert logits.shape == (3, 7, 20)
    assert SaccaderCell.from_config(cell.get_config()).num_glimpses == 7
    assert [w.name for w in cell.trainable_weights] == ["attention_vector"]


def test_saccader_cell_never_revisits_and_argmax_is_deterministic():
    features = np.random.randn(4, 3, 3, 6).astype("float32")
    cell = SaccaderCell(num_glimpses=9, seed=3)
    for training in (True, False):
        locations = cell(features, training=training)["locations"].numpy()
        for trajectory in locations:  # all 9 cells of the 3x3 grid: a permutation, no repeats
            assert sorted(trajectory.tolist()) == list(range(9))
    np.testing.assert_array_equal(cell(features)["locations"], cell(features)["locations"])
    sampled = [cell(features, training=True, num_glimpses=2)["locations"].numpy() for _ in range(6)]
    assert any(not np.array_equal(sampled[0], s) for s in sampled[1:]), "training must sample"


def test_saccader_cell_forced_locations_and_limits():
    features = np.random.randn(2, 4, 4, 6).astype("float32")
    cell = SaccaderCell(num_glimpses=3)
    forced = np.array([[5, 0, 15], [1, 2, 3]], "int32")
    out = cell(features, forced_locations=forced, training=True)
    np.testing.assert_array_equal(out["locations"], forced)
    # The forced cells are masked in later steps' logits: at least MASK_MARGIN below every free cell.
    logits = out["location_logits"].numpy()
    free = np.delete(logits[0, 2], [5, 0])
    assert logits[0, 1, 5] <= np.delete(logits[0, 1], 5).min() - MASK_MARGIN
    assert max(logits[0, 2, 5], logits[0, 2, 0]) <= free.min() - MASK_MARGIN
    with pytest.raises(ValueError, match="only 4x4 = 16 cells"):
        cell(features, num_glimpses=17)
    with pytest.raises(ValueError, match="num_glimpses must be >= 1"):
        SaccaderCell(num_glimpses=0)


# --------------------------------------------------------------------------------------------- GlimpseReadout
def test_glimpse_readout_gathers_and_boxes():
    logits_map = np.random.randn(2, 3, 4, 5).astype("float32")
    locations = np.array([[0, 11, 6], [3, 4, 5]], "int32")
    result = run_layer_test(
        GlimpseReadout,
        dict(stride=8, receptive_field=77),
        {"logits_map": logits_map, "locations": locations},
        expected_output_shape={"logits": (2, 5), "step_logits": (2, 3, 5), "locations": (2, 3, 2), "boxes": (2, 3, 4)},
        float32_outputs=("boxes",),  # pixel coordinates: float32 under every policy
    )
    out = result["outputs"]
    flat = logits_map.reshape(2, 12, 5)
    expected = np.stack([flat[b, locations[b]] for b in range(2)])
    np.testing.assert_allclose(out["step_logits"], expected, rtol=1e-6)
    np.testing.assert_allclose(out["logits"], expected.mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(out["locations"][0], [[0, 0], [2, 3], [1, 2]])
    np.testing.assert_array_equal(out["boxes"][0, 1], [16, 24, 93, 101])
    # Under mixed precision the gather is exact on the rounded map; the boxes stay float32.
    mixed = GlimpseReadout(stride=8, receptive_field=77, dtype="mixed_bfloat16")(logits_map, locations)
    rounded = keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.cast(logits_map, "bfloat16"), "float32"))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(keras.ops.cast(mixed["step_logits"], "float32")),
        np.stack([rounded.reshape(2, 12, 5)[b, locations[b]] for b in range(2)]))
    np.testing.assert_array_equal(mixed["boxes"], out["boxes"])


# -------------------------------------------------------------------------------------------- EngineeredPolicy
def numpy_sobel_stat(image, field, stride, variance):
    grey = image.mean(axis=-1)
    padded = np.pad(grey, 1, mode="reflect")  # as tf.image.sobel_edges
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], "float64")
    h, w = grey.shape
    gx = np.zeros((h, w))
    gy = np.zeros((h, w))
    for i in range(3):
        for j in range(3):
            gx += kx[i, j] * padded[i:i + h, j:j + w]
            gy += kx.T[i, j] * padded[i:i + h, j:j + w]
    mag = np.sqrt(gx ** 2 + gy ** 2)
    n_rows = (h - field) // stride + 1
    n_cols = (w - field) // stride + 1
    out = np.zeros((n_rows, n_cols))
    for i in range(n_rows):
        for j in range(n_cols):
            patch = mag[i * stride:i * stride + field, j * stride:j * stride + field]
            out[i, j] = patch.var(ddof=1) if variance else patch.mean()
    return out


@pytest.mark.parametrize("policy", ["random", "center", "ordered_logits", "sobel_mean", "sobel_var"])
def test_engineered_policy_layer(policy):
    images = np.random.rand(2, 41, 41, 1).astype("float32")
    logits_map = np.random.randn(2, 4, 4, 5).astype("float32")
    result = run_layer_test(
        EngineeredPolicy,
        dict(policy=policy, num_glimpses=4, stride=8, receptive_field=17, seed=2),
        {"logits_map": logits_map, "images": images},
        expected_output_shape=(2, 4),
        expected_num_non_trainable_variables=1 if policy == "random" else 0,  # the SeedGenerator's state
    )
    assert keras.backend.standardize_dtype(result["outputs"].dtype) == "int32"
    if policy != "random":  # deterministic: the same cells under every dtype policy (scored in float32)
        for dtype in ("mixed_float16", "mixed_bfloat16"):
            layer = EngineeredPolicy(policy, num_glimpses=4, stride=8, receptive_field=17, dtype=dtype)
            np.testing.assert_array_equal(layer(logits_map, images), result["outputs"])


@pytest.mark.parametrize("policy", ["sobel_mean", "sobel_var"])
def test_sobel_policies_match_numpy(policy):
    images = np.random.rand(2, 41, 41, 1).astype("float32")
    layer = EngineeredPolicy(policy, num_glimpses=4, stride=8, receptive_field=17)
    stat = layer.sobel_map(images, 4, 4).numpy()
    for b in range(2):
        expected = numpy_sobel_stat(images[b], 17, 8, policy == "sobel_var")[:4, :4]
        np.testing.assert_allclose(stat[b], expected, rtol=1e-3, atol=1e-4)
        chosen = layer(np.zeros((2, 4, 4, 3), "float32"), images)[b].numpy()
        np.testing.assert_array_equal(chosen, np.argsort(-expected.ravel(), kind="stable")[:4])


def test_sobel_policies_pad_by_reflection_like_tf_image_sobel_edges():
    # A flat image (a standardised background is not 0) has no edges anywhere, the border included: zero padding
    # would put a false edge of height 4 * 0.7 along every side.
    flat = np.full((1, 41, 41, 1), -0.7, "float32")
    for policy in ("sobel_mean", "sobel_var"):
        stat = EngineeredPolicy(policy, 4, 8, 17).sobel_map(flat, 4, 4).numpy()
        np.testing.assert_allclose(stat, 0.0, atol=1e-6)
    # The gradient magnitude equals tf.image.sobel_edges' on a random image (border cells included).
    images = np.random.rand(1, 41, 41, 1).astype("float32")
    edges = tf.image.sobel_edges(tf.constant(images)).numpy()[0, :, :, 0]  # (41, 41, 2)
    magnitude = np.sqrt((edges ** 2).sum(-1))
    expected = np.array([[magnitude[i * 8:i * 8 + 17, j * 8:j * 8 + 17].mean() for j in range(4)] for i in range(4)])
    stat = EngineeredPolicy("sobel_mean", 4, 8, 17).sobel_map(images, 4, 4).numpy()[0]
    np.testing.assert_allclose(stat, expected, rtol=1e-4, atol=1e-5)


def test_ordered_logits_center_and_random_policies():
    logits_map = np.random.randn(3, 4, 4, 5).astype("float32")
    images = np.zeros((3, 40, 40, 1), "float32")
    chosen = EngineeredPolicy("ordered_logits", 5, 8, 17)(logits_map, images).numpy()
    for b in range(3):
        predicted = logits_map[b].mean(axis=(0, 1)).argmax()
        expected = np.argsort(-logits_map[b, :, :, predicted].ravel())[:5]
        np.testing.assert_array_equal(chosen[b], expected)
    center = EngineeredPolicy("center", 3, 8, 17)(logits_map, images).numpy()
    np.testing.assert_array_equal(center, np.tile(center_order(4, 4)[:3], (3, 1)))
    assert center_order(5, 5)[0] == 12
    random = EngineeredPolicy("random", 16, 8, 17, seed=1)(logits_map, images).numpy()
    assert all(sorted(r.tolist()) == list(range(16)) for r in random)
    with pytest.raises(ValueError, match="Unknown policy"):
        EngineeredPolicy("saliency", 3, 8, 17)


def test_saccader_cell_mask_beats_the_largest_gumbel_noise():
    """A visited cell loses even when the train step's Gumbel noise favours it as much as it can."""
    features = 0.01 * np.random.randn(2, 3, 3, 4).astype("float32")  # nearly tied scores: the margin must do it
    cell = SaccaderCell(num_glimpses=5)
    trajectory = cell(features)["locations"].numpy()
    u_min, u_max = 1e-7, 1.0 - 1e-7  # the uniform bounds of saccade_zoo.training.sampling.keyed_gumbel
    low, high = -np.log(-np.log(u_min)), -np.log(-np.log(u_max))
    noise = np.full((2, 5, 9), low, "float32")
    for b in range(2):
        for t in range(1, 5):
            noise[b, t, trajectory[b, :t]] = high  # every visited cell gets the largest noise, the rest the least
    locations = cell(features, sampling_noise=noise, training=True)["locations"].numpy()
    for row in locations:
        assert len(set(row.tolist())) == 5, row


def test_saccader_cell_mask_holds_under_mixed_bfloat16_at_large_scores():
    """bfloat16 rounds scores near 5000 to steps of 32, the size of the mask margin: the cell masks and chooses in
    float32, so visited cells still lose against the largest Gumbel noise."""
    features = 5000.0 + 0.01 * np.random.randn(2, 3, 3, 4).astype("float32")
    cell = SaccaderCell(num_glimpses=5, dtype="mixed_bfloat16")
    trajectory = cell(features)["locations"].numpy()
    low, high = -np.log(-np.log(1e-7)), -np.log(-np.log(1.0 - 1e-7))
    noise = np.full((2, 5, 9), low, "float32")
    for b in range(2):
        for t in range(1, 5):
            noise[b, t, trajectory[b, :t]] = high
    out = cell(features, sampling_noise=noise, training=True)
    assert keras.backend.standardize_dtype(out["location_logits"].dtype) == "bfloat16"
    for row in out["locations"].numpy():
        assert len(set(row.tolist())) == 5, row


@pytest.mark.parametrize("dtype", ["mixed_float16", "mixed_bfloat16"])
def test_saccader_cell_under_mixed_precision(dtype):
    features = np.random.randn(4, 3, 3, 6).astype("float32")
    cell = SaccaderCell(num_glimpses=9, seed=3, dtype=dtype)
    for training in (True, False):
        out = cell(features, training=training)
        assert keras.backend.standardize_dtype(out["location_logits"].dtype) == cell.compute_dtype
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(out["location_logits"], "float32"))))
        for trajectory in out["locations"].numpy():  # never revisits
            assert sorted(trajectory.tolist()) == list(range(9))
    forced = np.array([[5, 0, 8]] * 4, "int32")
    logits = keras.ops.convert_to_numpy(
        keras.ops.cast(cell(features, forced_locations=forced, num_glimpses=3)["location_logits"], "float32"))
    # The margin is exact in float32; the output is rounded to the compute dtype afterwards.
    step = float(np.finfo(np.float16).eps) * 64 if dtype == "mixed_float16" else 2.0 ** -8 * 64
    assert np.all(logits[:, 2, [5, 0]].max(axis=1) <= np.delete(logits[:, 2], [5, 0], axis=1).min(axis=1)
                  - MASK_MARGIN + step)


# ---------------------------------------------------------------------------------------- shared tensor helpers
def test_one_hot_and_argmax_last_match_keras():
    indices = np.random.randint(0, 7, size=(3, 4)).astype("int32")
    np.testing.assert_array_equal(one_hot(indices, 7), keras.ops.one_hot(indices, 7))
    assert keras.backend.standardize_dtype(one_hot(indices, 7, dtype="bfloat16").dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(one_hot(indices, 7, dtype="bool").dtype) == "bool"
    x = np.random.randn(3, 4, 9).astype("float32")
    for dtype in ("float32", "float16", "bfloat16"):
        got = argmax_last(keras.ops.cast(x, dtype))
        assert keras.backend.standardize_dtype(got.dtype) == "int32"
    np.testing.assert_array_equal(argmax_last(x), x.argmax(axis=-1))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_mask_visited_in_every_float_dtype(dtype):
    scores = np.array([[3.0, -1.5, 2.0, 0.25], [10.0, 20.0, -30.0, 5.0]], "float32")
    visited = np.array([[True, False, False, True], [False, True, False, False]])
    masked = keras.ops.convert_to_numpy(keras.ops.cast(mask_visited(keras.ops.cast(scores, dtype), visited), "float32"))
    np.testing.assert_array_equal(masked[~visited], scores[~visited])  # these values are exact in every dtype
    np.testing.assert_array_equal(masked[0, [0, 3]], [-1.5 - MASK_MARGIN] * 2)
    np.testing.assert_array_equal(masked[1, 1], -30.0 - MASK_MARGIN)
    assert np.all(np.isfinite(masked))
