"""BagNet / Saccader / policy models: exact geometry, glimpse behaviour, serialization, bad input."""
import os

import numpy as np
import pytest
import tensorflow as tf

import keras
import saccade_zoo
from saccade_zoo import BagNet, PolicyClassifier, Saccader
from saccade_zoo.models.saccader import POLICIES
from tests.helpers import run_python

TINY = dict(planes=(8, 8, 8, 8), stem_filters=8, expansion=2, lowd_dim=8, blocks=(2, 2, 2, 2))


def test_exact_parameter_counts_of_the_paper():
    bagnet = saccade_zoo.build("bagnet77_lowd_imagenet")
    assert bagnet.count_params() == 20_628_393
    assert bagnet.grid_shape == (19, 19) and bagnet.receptive_field == 77 and bagnet.stride == 8
    saccader = saccade_zoo.build("saccader_imagenet")
    assert saccader.count_params() == 35_583_913
    assert sum(int(np.prod(w.shape)) for w in saccader.trainable_weights) == 35_523_625
    assert saccade_zoo.build("bagnet77_lowd_imagenet", num_classes=1000).count_params() == 20_627_880


@pytest.mark.parametrize("field", [9, 17, 33, 77])
def test_empirical_receptive_field(field):
    from saccade_zoo.models.bagnet.backbone import KERNEL3

    size = field + 3 * 8 + 5
    model = BagNet(image_shape=(size, size, 2), num_classes=3, kernel3=KERNEL3[field], **TINY)
    # Fresh blocks start as identities (last gamma 0): give every BatchNorm a non-zero gamma so the
    # whole receptive field carries gradient.
    for w in model.weights:
        if w.path.endswith("gamma"):
            w.assign(np.random.uniform(0.5, 1.5, w.shape).astype("float32"))
    assert model.receptive_field == field
    x = tf.constant(np.random.rand(1, size, size, 2).astype("float32"))
    for i, j in [(0, 0), (1, 2), (model.grid_shape[0] - 1, model.grid_shape[1] - 1)]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            target = tf.reduce_sum(model(x, training=False)["features"][:, i, j, :])
        grad = np.abs(tape.gradient(target, x).numpy()[0]).sum(axis=-1)
        rows, cols = np.nonzero(grad.sum(axis=1))[0], np.nonzero(grad.sum(axis=0))[0]
        assert (rows.min(), rows.max()) == (8 * i, 8 * i + field - 1)
        assert (cols.min(), cols.max()) == (8 * j, 8 * j + field - 1)
        assert len(rows) == field and len(cols) == field


@pytest.fixture(scope="module")
def small_saccader():
    keras.utils.set_random_seed(1)
    return saccade_zoo.build("saccader_cluttered100")


def test_saccader_outputs_locations_boxes_and_no_repeats(small_saccader):
    x = np.random.rand(5, 100, 100, 1).astype("float32")
    out = small_saccader(x)
    assert out["logits"].shape == (5, 10) and out["step_logits"].shape == (5, 6, 10)
    assert out["locations"].shape == (5, 6, 2) and out["locations"].dtype == tf.int32
    locations, boxes = out["locations"].numpy(), out["boxes"].numpy()
    np.testing.assert_array_equal(boxes[..., 0], 8 * locations[..., 0])
    np.testing.assert_array_equal(boxes[..., 3] - boxes[..., 1], 33)
    np.testing.assert_allclose(out["logits"], out["step_logits"].numpy().mean(axis=1), rtol=1e-5, atol=1e-6)
    # The logits of each glimpse are the BagNet logits map at that cell.
    logits_map = small_saccader.backbone(x)["logits_map"].numpy()
    b, t = 3, 4
    np.testing.assert_allclose(out["step_logits"][b, t], logits_map[b, locations[b, t, 0], locations[b, t, 1]],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(small_saccader(x)["locations"], locations)  # argmax: deterministic
    np.testing.assert_array_equal(small_saccader.predict(x, verbose=0)["locations"], locations)
    for training in (False, True):  # (training=True also updates BatchNorm statistics: keep it last)
        flat = small_saccader.forward(x, training=training, num_glimpses=81)["cell_locations"].numpy()
        assert all(len(set(row.tolist())) == 81 for row in flat)


def test_number_of_glimpses_changes_without_retraining(small_saccader):
    x = np.random.rand(2, 100, 100, 1).astype("float32")
    longer = small_saccader.with_glimpses(12)
    out6, out12 = small_saccader(x), longer(x)
    assert out12["locations"].shape == (2, 12, 2)
    np.testing.assert_array_equal(out12["locations"][:, :6], out6["locations"])  # same policy, longer trajectory
    with pytest.raises(ValueError, match="between 1 and the 9x9 = 81 cells"):
        small_saccader.with_glimpses(82)
    with pytest.raises(ValueError, match="81 cells"):
        saccade_zoo.build("saccader_cluttered100", num_glimpses=100)


@pytest.mark.parametrize("policy", POLICIES)
def test_engineered_policies_share_backbone_and_outputs(small_saccader, policy):
    model = small_saccader.with_policy(policy, seed=0)
    x = np.random.rand(3, 100, 100, 1).astype("float32")
    out = model(x)
    assert set(out) == {"logits", "step_logits", "locations", "boxes"}
    assert out["locations"].shape == (3, 6, 2)
    assert model.backbone is small_saccader.backbone
    for row in out["locations"].numpy():
        assert len({tuple(c) for c in row.tolist()}) == 6


def test_save_and_load_in_a_fresh_process(small_saccader, tmp_path):
    x = np.random.rand(3, 100, 100, 1).astype("float32")
    np.save(tmp_path / "x.npy", x)
    models = {"saccader": small_saccader, "sobel": small_saccader.with_policy("sobel_var"),
              "bagnet": small_saccader.backbone}
    for name, model in models.items():
        model.save(tmp_path / f"{name}.keras")
    code = f"""
import numpy as np, keras, saccade_zoo
x = np.load({str(tmp_path / 'x.npy')!r})
for name in ["saccader", "sobel", "bagnet"]:
    model = keras.models.load_model({str(tmp_path)!r} + f"/{{name}}.keras", safe_mode=True)
    out = model(x)
    np.savez({str(tmp_path)!r} + f"/{{name}}_out.npz", **{{k: np.asarray(v) for k, v in out.items()}})
    print(type(model).__name__)
"""
    assert run_python(code).split() == ["Saccader", "PolicyClassifier", "BagNet"]
    for name, model in models.items():
        expected = model(x)
        loaded = np.load(tmp_path / f"{name}_out.npz")
        for key in ("logits", "locations", "boxes", "logits_map"):
            if key in expected:
                np.testing.assert_array_equal(loaded[key], np.asarray(expected[key]), err_msg=f"{name}/{key}")


def test_loading_without_import_fails_clearly_but_with_import_succeeds(small_saccader, tmp_path):
    path = str(tmp_path / "m.keras")
    small_saccader.save(path)
    code = f"""
import keras
try:
    keras.models.load_model({path!r})
except Exception as e:
    print("FAILED", type(e).__name__)
"""
    assert "FAILED" in run_python(code)


@pytest.mark.parametrize(
    "images,message",
    [
        (np.zeros((100, 100, 1), "float32"), "rank 4"),
        (np.zeros((2, 100, 100, 3), "float32"), "expects 1 channel"),
        (np.zeros((2, 100, 100, 1), "uint8"), "floating-point images"),
        (np.zeros((2, 20, 20, 1), "float32"), "smaller than one receptive field"),
        (np.zeros((2, 96, 100, 1), "float32"), "expects 100x100 images"),
        (np.full((2, 100, 100, 1), np.nan, "float32"), "NaN or Inf"),
        (np.full((2, 100, 100, 1), np.inf, "float32"), "NaN or Inf"),
    ],
)
def test_bad_input_gets_a_clear_error(small_saccader, images, message):
    for call in (small_saccader, small_saccader.predict, small_saccader.backbone):
        with pytest.raises(ValueError, match=message):
            call(images)


def test_models_run_inside_a_user_tf_function(small_saccader):
    x = np.random.rand(2, 100, 100, 1).astype("float32")
    traced = tf.function(lambda images: small_saccader(images)["locations"])
    np.testing.assert_array_equal(traced(tf.constant(x)), small_saccader(x)["locations"])
    with pytest.raises(ValueError, match="expects 1 channel"):  # static checks still apply when tracing
        tf.function(lambda images: small_saccader(images))(tf.zeros((1, 100, 100, 3)))


def test_bad_configuration_gets_a_clear_error():
    with pytest.raises(ValueError, match="smaller than one receptive field"):
        BagNet(image_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="Unknown model 'saccader_imagnet'. Did you mean saccader_imagenet"):
        saccade_zoo.build("saccader_imagnet")
    with pytest.raises(ValueError, match="Unknown policy"):
        saccade_zoo.build("policy_bagnet33_cluttered100", policy="edges")
    with pytest.raises(TypeError, match="unexpected keyword argument.*synchronised_bn"):
        saccade_zoo.build("saccader_cluttered100", synchronised_bn=True)
    with pytest.raises(ValueError, match="must be a saccade_zoo BagNet"):
        Saccader(keras.Sequential([keras.layers.Dense(2)]))


def test_registry_and_preprocessing():
    names = saccade_zoo.list_models()
    assert {"bagnet77_lowd_imagenet", "saccader_imagenet", "saccader_cluttered100"} <= set(names)
    assert saccade_zoo.list_models("saccader*") == ["saccader_cluttered100", "saccader_convnet_cluttered100",
                                                    "saccader_imagenet", "saccader_nasnet_imagenet"]
    preset = saccade_zoo.get_preset("saccader_imagenet")
    assert preset["preprocessing"]["image_size"] == [224, 224] and preset["config"]["num_classes"] == 1001
    x = saccade_zoo.preprocess(np.full((1, 2, 2, 3), 255, "uint8"), "saccader_imagenet")
    np.testing.assert_allclose(x[0, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]),
                               rtol=1e-6)
    model = saccade_zoo.build("policy_bagnet33_cluttered100", policy="center", num_classes=19)
    assert isinstance(model, PolicyClassifier) and model.num_classes == 19 and model.policy == "center"
