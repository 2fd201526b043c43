"""Layer tests in the spirit of keras-hub's run_layer_test: config round trip, build, eager call, one fit step,
plus the behaviour each layer promises."""
import numpy as np
import pytest
import tensorflow as tf

import keras
from saccade_zoo.layers import AttentionNetwork, BagNetBlock, EngineeredPolicy, GlimpseReadout, SaccaderCell
from saccade_zoo.layers.policies import center_order
from saccade_zoo.layers.saccader_cell import MASK_MARGIN
from tests.helpers import config_round_trip, one_fit_step_changes_weights


# ----------------------------------------------------------------------------------------------- BagNetBlock
@pytest.mark.parametrize(
    "kernel_size,strides,in_channels,projection,expected_hw",
    [(3, 2, 16, True, 7), (3, 1, 64, False, 13), (1, 2, 16, True, 8), (1, 1, 64, False, 15)],
)
def test_bagnet_block_shapes_and_fit(kernel_size, strides, in_channels, projection, expected_hw):
    block = BagNetBlock(16, kernel_size=kernel_size, strides=strides, projection_shortcut=projection)
    clone = config_round_trip(block)
    out = block(np.random.rand(2, 15, 15, in_channels).astype("float32"))
    assert tuple(out.shape) == (2, expected_hw, expected_hw, 64)
    assert block.compute_output_shape((2, 15, 15, in_channels)) == tuple(out.shape)
    clone.build((None, 15, 15, in_channels))
    assert len(clone.weights) == len(block.weights)
    # The zero-initialised last gamma means conv1/conv2/conv3 get no gradient at step 0; the other weights do.
    moved = one_fit_step_changes_weights(block, (15, 15, in_channels))
    assert any(moved)


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
def test_attention_network_shape_config_fit_and_receptive_field():
    net = AttentionNetwork((32, 16))
    config_round_trip(net)
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
    assert all(one_fit_step_changes_weights(AttentionNetwork((8, 8)), (7, 7, 4)))


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
    assert config_round_trip(cell).num_glimpses == 7
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
    readout = GlimpseReadout(stride=8, receptive_field=77)
    config_round_trip(readout)
    out = readout(logits_map, locations)
    flat = logits_map.reshape(2, 12, 5)
    expected = np.stack([flat[b, locations[b]] for b in range(2)])
    np.testing.assert_allclose(out["step_logits"], expected, rtol=1e-6)
    np.testing.assert_allclose(out["logits"], expected.mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(out["locations"][0], [[0, 0], [2, 3], [1, 2]])
    np.testing.assert_array_equal(out["boxes"][0, 1], [16, 24, 93, 101])


# -------------------------------------------------------------------------------------------- EngineeredPolicy
def numpy_sobel_stat(image, field, stride, variance):
    grey = image.mean(axis=-1)
    padded = np.pad(grey, 1)
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


@pytest.mark.parametrize("policy", ["sobel_mean", "sobel_var"])
def test_sobel_policies_match_numpy(policy):
    images = np.random.rand(2, 41, 41, 1).astype("float32")
    layer = EngineeredPolicy(policy, num_glimpses=4, stride=8, receptive_field=17)
    config_round_trip(layer)
    stat = layer.sobel_map(images, 4, 4).numpy()
    for b in range(2):
        expected = numpy_sobel_stat(images[b], 17, 8, policy == "sobel_var")[:4, :4]
        np.testing.assert_allclose(stat[b], expected, rtol=1e-3, atol=1e-4)
        chosen = layer(np.zeros((2, 4, 4, 3), "float32"), images)[b].numpy()
        np.testing.assert_array_equal(chosen, np.argsort(-expected.ravel(), kind="stable")[:4])


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
