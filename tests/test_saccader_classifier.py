"""SaccaderWithClassifier (Saccader-NASNet, paper section 4.3): the paper's parameter count, the high-resolution
boxes and patches, serialization, the frozen-Saccader classifier stage and the delegated Saccader stages."""
import json
import os

import numpy as np
import pytest

import keras
import saccade_zoo
from saccade_zoo import BagNet, Saccader
from saccade_zoo.layers.glimpse import crop_and_resize
from saccade_zoo.models.bagnet.backbone import KERNEL3
from saccade_zoo.models.convnet.convnet import ConvNet
from saccade_zoo.models.saccader.classifier import SaccaderWithClassifier

TINY = dict(planes=(8, 8, 8, 8), stem_filters=8, expansion=2, lowd_dim=8, blocks=(2, 2, 2, 2))
CLASSES, GLIMPSES = 5, 3


def tiny_saccader(size=64):
    """BagNet-17 (stride 8) on size x size grey images: a 6x6 grid at 64 px."""
    backbone = BagNet(image_shape=(size, size, 1), num_classes=CLASSES, kernel3=KERNEL3[17], **TINY)
    return Saccader(backbone, num_glimpses=GLIMPSES, attention_filters=(8, 8), mixing_dim=8)


def tiny_classifier(side=34):
    return ConvNet(image_shape=(side, side, 1), num_classes=CLASSES, filters=(4, 8), dense_units=(8,))


def tiny_model(high=128):
    """Saccader on 64 px images, high-resolution input `high` px (factor high / 64), patches of 17 * factor px."""
    return SaccaderWithClassifier(tiny_saccader(), tiny_classifier(17 * high // 64), image_shape=(high, high, 1))


def as_numpy(outputs):
    return {k: np.asarray(v) for k, v in outputs.items()}


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(3)
    return tiny_model()


@pytest.fixture(scope="module")
def high_images():
    return np.random.default_rng(0).normal(size=(4, 128, 128, 1)).astype("float32")


def test_exact_parameter_count_of_saccader_nasnet():
    model = saccade_zoo.build("saccader_nasnet_imagenet")
    assert model.count_params() == 124_537_764  # the paper's Saccader-NASNet
    assert model.saccader.count_params() == 35_583_913
    assert model.classifier.count_params() == 88_953_851  # NASNet-A-Large, 1001 classes
    assert len(model.weights) == len(model.saccader.weights) + len(model.classifier.weights)  # no weights of its own
    assert model.image_shape == (331, 331, 3) and model.saccader.image_shape == (224, 224, 3)
    assert model.patch_size == (113, 113) and model.num_glimpses == 6 and model.num_classes == 1001
    assert model.stage_names == ("representation", "location", "policy", "classifier")


def test_small_preset_outputs_follow_the_contract():
    model = saccade_zoo.build("saccader_convnet_cluttered100")
    images = np.random.default_rng(1).random((3, 100, 100, 1)).astype("float32")
    out = as_numpy(model(images))
    model.contract.check(out, batch=3)
    assert model.contract.location_kind == "grid" and model.num_glimpses == 6 and model.num_classes == 10
    assert out["step_logits"].shape == (3, 6, 10) and out["locations"].dtype == np.int32
    assert model.downsize is None and model.patch_size == (33, 33) and model.scale_factor == (1.0, 1.0)
    np.testing.assert_allclose(out["logits"], out["step_logits"].mean(axis=1), rtol=1e-5, atol=1e-6)
    inner = as_numpy(model.saccader(images))  # same resolution: the Saccader's own cells and boxes
    np.testing.assert_array_equal(out["locations"], inner["locations"])
    np.testing.assert_array_equal(out["boxes"], inner["boxes"])
    assert (out["boxes"][..., 2] - out["boxes"][..., 0] == 33).all()


def test_boxes_are_the_saccaders_in_high_resolution_pixels(tiny, high_images):
    assert tiny.scale_factor == (2.0, 2.0) and tiny.patch_size == (34, 34)
    out = as_numpy(tiny(high_images))
    low = np.asarray(tiny.downsized(high_images))
    # Area down-sizing by 2 is the mean of each 2x2 block.
    np.testing.assert_allclose(low, high_images.reshape(4, 64, 2, 64, 2, 1).mean(axis=(2, 4)), rtol=1e-5, atol=1e-5)
    inner = as_numpy(tiny.saccader(low))
    np.testing.assert_array_equal(out["locations"], inner["locations"])
    np.testing.assert_array_equal(out["boxes"], inner["boxes"] * 2.0)
    np.testing.assert_array_equal(out["boxes"][..., 2:] - out["boxes"][..., :2], 34.0)


def test_patches_are_crop_and_resize_of_the_high_resolution_image(tiny, high_images):
    out = as_numpy(tiny.forward(high_images))
    expected = np.asarray(crop_and_resize(high_images, out["boxes"], 34))
    assert out["patches"].shape == (4, GLIMPSES, 34, 34, 1)
    np.testing.assert_allclose(out["patches"], expected, rtol=1e-6, atol=1e-6)
    # Integer boxes resampled to their own size: exactly the image's pixels.
    b, t = 1, 2
    y0, x0, y1, x1 = out["boxes"][b, t].astype(int)
    np.testing.assert_array_equal(out["patches"][b, t], high_images[b, y0:y1, x0:x1])
    # Each glimpse's logits are the classifier's on its patch.
    scores = np.asarray(tiny.classifier(expected.reshape(-1, 34, 34, 1))["logits"]).reshape(4, GLIMPSES, CLASSES)
    np.testing.assert_allclose(out["step_logits"], scores, rtol=1e-5, atol=1e-5)


def test_save_and_load_give_identical_outputs(tiny, high_images, tmp_path):
    path = str(tmp_path / "tiny.keras")
    tiny.save(path)
    loaded = keras.models.load_model(path)  # safe_mode=True by default
    assert type(loaded) is SaccaderWithClassifier and loaded.get_config() == tiny.get_config()
    expected, again = as_numpy(tiny(high_images)), as_numpy(loaded(high_images))
    for key in expected:
        np.testing.assert_array_equal(again[key], expected[key], err_msg=key)


def test_config_round_trip_and_with_glimpses(tiny, high_images):
    config = tiny.get_config()
    clone = SaccaderWithClassifier.from_config(json.loads(json.dumps(config)))
    assert clone.get_config() == config
    clone.set_weights(tiny.get_weights())
    expected = as_numpy(tiny(high_images))
    for key, value in as_numpy(clone(high_images)).items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)
    longer = tiny.with_glimpses(5)
    out = as_numpy(longer(high_images))
    assert longer.num_glimpses == longer.saccader.num_glimpses == 5 and out["step_logits"].shape == (4, 5, CLASSES)
    np.testing.assert_array_equal(out["locations"][:, :GLIMPSES], expected["locations"])  # argmax: same first cells
    np.testing.assert_allclose(out["step_logits"][:, :GLIMPSES], expected["step_logits"], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="between 1 and the 6x6 = 36 cells"):
        tiny.with_glimpses(37)


def test_classifier_stage_trains_the_classifier_only(high_images):
    model = tiny_model()
    saccader_before = [w.numpy().copy() for w in model.saccader.weights]  # BatchNorm statistics included
    classifier_before = [w.numpy().copy() for w in model.classifier.trainable_weights]
    model.compile(keras.optimizers.SGD(0.1), stage="classifier")
    history = model.fit(high_images, np.arange(4) % CLASSES, epochs=1, batch_size=4, verbose=0)
    assert set(history.history) == {"loss", "ce", "l2", "accuracy"} and np.isfinite(history.history["loss"][0])
    for before, weight in zip(saccader_before, model.saccader.weights):
        np.testing.assert_array_equal(weight.numpy(), before, err_msg=weight.path)
    moved = [not np.array_equal(b, w.numpy()) for b, w in zip(classifier_before, model.classifier.trainable_weights)]
    assert all(moved), [w.path for w, m in zip(model.classifier.trainable_weights, moved) if not m]


def test_classifier_stage_loss_falls_on_a_fixed_batch():
    model = tiny_model()
    rng = np.random.default_rng(2)
    images, labels = rng.normal(size=(8, 128, 128, 1)).astype("float32"), np.arange(8) % CLASSES
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), stage="classifier")
    losses = model.fit(images, labels, epochs=8, batch_size=8, shuffle=False, verbose=0).history["ce"]
    assert losses[-1] < 0.8 * losses[0], losses


def test_saccader_stages_are_the_saccaders_own_on_downsized_images(high_images):
    """The policy stage (sampled trajectories keyed on the step) through the wrapper moves the inner Saccader
    exactly as the Saccader's own policy stage on the down-sized images, and leaves the classifier alone."""
    model = tiny_model()
    alone = Saccader.from_config(model.saccader.get_config())
    alone.set_weights(model.saccader.get_weights())
    classifier_before = [w.numpy().copy() for w in model.classifier.weights]
    saccader_before = [w.numpy().copy() for w in model.saccader.trainable_weights]
    low, labels = np.asarray(model.downsized(high_images)), np.arange(4) % CLASSES
    for network, images in ((model, high_images), (alone, low)):
        network.compile(keras.optimizers.SGD(0.05), stage="policy", num_trajectories=2)
        network.fit(images, labels, epochs=2, batch_size=2, shuffle=False, verbose=0)
    assert int(model.optimizer.iterations) == 4
    assert not np.array_equal(saccader_before[0], model.saccader.trainable_weights[0].numpy())  # it trained
    for mine, theirs in zip(model.saccader.weights, alone.weights):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6, err_msg=mine.path)
    for before, weight in zip(classifier_before, model.classifier.weights):
        np.testing.assert_array_equal(weight.numpy(), before, err_msg=weight.path)
    with pytest.raises(TypeError, match="has no option"):
        model.compile("sgd", stage="classifier", num_trajectories=2)
    with pytest.raises(ValueError, match="num_trajectories must be >= 1"):
        model.compile("sgd", stage="policy", num_trajectories=0)


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 64, 64, 1), "float32"), r"expects 128x128 images, got height 64"),
    (np.zeros((2, 128, 128, 3), "float32"), r"expects 1 channel\(s\), got 3"),
    (np.full((2, 128, 128, 1), np.nan, "float32"), "contain NaN or Inf"),
    (np.zeros((128, 128, 1), "float32"), r"add a batch axis"),
])
def test_bad_input_gets_a_clear_error(tiny, images, message):
    with pytest.raises(ValueError, match=f"SaccaderWithClassifier 'saccader_with_classifier'.*{message}"):
        tiny(images)


def test_bad_configuration_gets_a_clear_error():
    saccader = tiny_saccader()
    with pytest.raises(ValueError, match=r"takes \(33, 33, 1\) images but the patches are \(34, 34, 1\)"):
        SaccaderWithClassifier(saccader, tiny_classifier(33), image_shape=(128, 128, 1))
    with pytest.raises(ValueError, match="must output logits"):
        probabilities = keras.Sequential([keras.Input((17, 17, 1)), keras.layers.Flatten(),
                                          keras.layers.Dense(CLASSES, activation="softmax")])
        SaccaderWithClassifier(saccader, probabilities)
    with pytest.raises(ValueError, match="has 3 classes, the Saccader 5"):
        SaccaderWithClassifier(saccader, ConvNet(image_shape=(17, 17, 1), num_classes=3, filters=(4,)))
    with pytest.raises(ValueError, match="3 channel"):
        SaccaderWithClassifier(saccader, tiny_classifier(), image_shape=(128, 128, 3))
    with pytest.raises(ValueError, match="must be a saccade_zoo Saccader"):
        SaccaderWithClassifier(saccader.backbone, tiny_classifier())
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        SaccaderWithClassifier(saccader, tiny_classifier(17), patch=17)
    # A trained Saccader is wrapped, not copied, when the glimpse counts agree.
    assert SaccaderWithClassifier(saccader, tiny_classifier(17)).saccader is saccader


@pytest.mark.slow
def test_export_savedmodel_and_every_tflite_variant_with_parity(tmp_path):
    """SavedModel and the four TFLite variants (built-in ops only) of the two-network model: the argmax policy is
    open-loop here (the Saccader's cells come from one pass over the down-sized image), so float32 keeps every
    glimpse and the logits."""
    from saccade_zoo.export import export_model

    keras.utils.set_random_seed(5)
    model = tiny_model()
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(40, 128, 128, 1)).astype("float32")
    model.compile(keras.optimizers.SGD(0.05), stage="classifier")
    model.fit(x, np.arange(40) % CLASSES, epochs=1, batch_size=8, verbose=0)
    preprocessing = {"image_size": [128, 128], "channels": 1, "mean": [0.0], "std": [1.0], "value_range": [0, 1]}
    relaxed = {"dynamic": {"top1_agreement": 0.0}, "int8": {"top1_agreement": 0.0}}  # near-tied logits, barely trained
    manifest = export_model(model, str(tmp_path / "m"), x[:16], preprocessing=preprocessing, parity_images=x[16:],
                            thresholds=relaxed)
    parity = manifest["parity"]["results"]
    assert {"savedmodel", "tflite_float32", "tflite_float16", "tflite_dynamic", "tflite_int8"} <= set(parity)
    assert all(result["passed"] for result in parity.values()), parity
    assert manifest["model"]["contract"]["aggregation"] == "mean"
    for variant in ("savedmodel", "tflite_float32"):
        assert parity[variant]["location_agreement"] == 1.0 and parity[variant]["relative_max_abs_logits"] < 1e-4
    assert {"model_dynamic.tflite", "model_float16.tflite", "model_float32.tflite", "model_int8.tflite"} <= set(
        os.listdir(tmp_path / "m"))
