"""ConvNet (full-image CNN: the occlusion judge, the RAM paper's ConvNet baseline): exact parameter counts of its
presets, output contract, save/load, multi-label, bad input, a loss that falls on real data, tools/train.py."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
import saccade_zoo
from saccade_zoo.data import ClutteredConfig, generate_cluttered, load_sample
from saccade_zoo.models import ConvNet
from tests.test_train_tool import ROOT, env


def conv_params(kernel, cin, cout, bn):
    """A k x k conv: kernel + (bias, or BatchNorm's gamma, beta, moving mean and variance)."""
    return kernel * kernel * cin * cout + (4 * cout if bn else cout)


def dense_params(cin, cout):
    return cin * cout + cout


def judge_params(classes=10):
    # convnet_cluttered100: 3x3 convs 1->16->32->64->128 without bias, each with BatchNorm; global average pooling
    # leaves 128 features; dense 128 -> 128, logits 128 -> classes.
    widths = (1, 16, 32, 64, 128)
    convs = sum(conv_params(3, cin, cout, bn=True) for cin, cout in zip(widths[:-1], widths[1:]))
    return convs + dense_params(128, 128) + dense_params(128, classes)


def ram_convnet2_params(side, classes=10):
    # conv 8 @ 10x10 stride 5 "valid" with bias: (side - 10) // 5 + 1 positions a side, flattened; FC 256; logits.
    positions = (side - 10) // 5 + 1
    return conv_params(10, 1, 8, bn=False) + dense_params(positions * positions * 8, 256) + dense_params(256, classes)


PARAMS = {"convnet_cluttered100": judge_params, "convnet2_cluttered60": lambda c=10: ram_convnet2_params(60, c),
          "convnet2_cluttered100": lambda c=10: ram_convnet2_params(100, c)}
EXPECTED = {name: count() for name, count in PARAMS.items()}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exact_parameter_counts(name):
    assert saccade_zoo.build(name).count_params() == EXPECTED[name]
    assert saccade_zoo.build(name, num_classes=19).count_params() == PARAMS[name](19)
    # The numbers in README.md's "Models" table.
    assert EXPECTED == {"convnet_cluttered100": 115_674, "convnet2_cluttered60": 251_442,
                        "convnet2_cluttered100": 742_962}


def test_outputs_only_float32_logits_and_a_full_image_contract():
    model = saccade_zoo.build("convnet_cluttered100")
    contract = model.contract
    assert not contract.has_glimpses and contract.extra_outputs == () and contract.activation == "softmax"
    assert contract.output_specs() == {"logits": ((10,), "float32")}
    out = model(np.random.rand(3, 100, 100, 1).astype("float32"))
    assert set(out) == {"logits"} and tuple(out["logits"].shape) == (3, 10)
    contract.check({k: np.asarray(v) for k, v in out.items()}, batch=3)
    assert model.stage_names == ("classifier",) and model.stage("classifier").learning_rate == 0.05
    assert model.preprocessing["image_size"] == [100, 100]
    assert saccade_zoo.build("convnet2_cluttered60").preprocessing["image_size"] == [60, 60]


def test_mixed_precision_keeps_float32_logits_and_variables(tmp_path):
    model = ConvNet(image_shape=(32, 32, 1), num_classes=4, filters=(8, 8), dense_units=(8,), dropout=0.2,
                    dtype="mixed_bfloat16")
    out = model(np.random.rand(2, 32, 32, 1).astype("float32"))
    assert keras.backend.standardize_dtype(out["logits"].dtype) == "float32"
    for layer in model._flatten_layers():
        if layer is model or isinstance(layer, keras.layers.InputLayer):
            continue
        assert layer.compute_dtype == ("float32" if layer.name == "logits" else "bfloat16"), layer.name
    assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in model.weights)
    model.save(tmp_path / "mixed.keras")
    loaded = keras.models.load_model(tmp_path / "mixed.keras", safe_mode=True)
    assert loaded.dtype_policy.name == "mixed_bfloat16" and loaded.get_layer("conv1").compute_dtype == "bfloat16"


def test_save_load_round_trip_keeps_outputs_and_training_setup(tmp_path):
    model = saccade_zoo.build("convnet_cluttered100", dropout=0.25)
    images = np.random.rand(8, 100, 100, 1).astype("float32")
    labels = np.arange(8) % 10
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True), stage="classifier", weight_decay=5e-4)
    model.fit(images, labels, batch_size=4, epochs=1, verbose=0)  # moves the BatchNorm statistics too
    path = str(tmp_path / "convnet.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded) is ConvNet and loaded.get_config() == model.get_config()
    assert loaded.preset == "convnet_cluttered100" and loaded.dropout == 0.25
    np.testing.assert_allclose(loaded(images)["logits"], model(images)["logits"], rtol=1e-5, atol=1e-5)
    assert loaded.training_options == model.training_options
    assert loaded.training_options["stage"] == "classifier" and loaded.training_options["weight_decay"] == 5e-4
    loaded.fit(images, labels, batch_size=4, epochs=1, verbose=0)  # continues training
    assert int(loaded.optimizer.iterations) == 4


def test_sigmoid_variant_trains_on_multi_hot_labels():
    model = saccade_zoo.build("convnet2_cluttered60", activation="sigmoid")
    assert model.contract.multi_label and model.get_config()["activation"] == "sigmoid"
    rng = np.random.default_rng(0)
    images = rng.random((8, 60, 60, 1)).astype("float32")
    labels = np.zeros((8, 10), "float32")
    labels[np.arange(8), np.arange(8) % 10] = labels[np.arange(8), (np.arange(8) + 3) % 10] = 1
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True), stage="classifier")
    history = model.fit(images, labels, batch_size=4, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"])) and set(history) == {"loss", "ce", "l2", "accuracy"}
    # the sigmoid cross entropy is summed over the 10 classes: about 10 * log 2 for a fresh model
    assert 3.0 < history["ce"][0] < 15.0
    with pytest.raises(ValueError, match="multi-hot labels"):
        model.fit(images, np.arange(8) % 10, batch_size=4, epochs=1, verbose=0)


@pytest.mark.parametrize("images,message", [
    (np.zeros((2, 96, 100, 1), "float32"), "expects 100x100 images"),
    (np.zeros((2, 60, 60, 1), "float32"), "expects 100x100 images"),
    (np.zeros((2, 100, 100, 3), "float32"), "expects 1 channel"),
    (np.zeros((2, 100, 100, 1), "uint8"), "floating-point images"),
    (np.full((2, 100, 100, 1), np.nan, "float32"), "NaN or Inf"),
])
def test_bad_input_gets_a_clear_error(images, message):
    model = saccade_zoo.build("convnet_cluttered100")
    for call in (model, model.predict):
        with pytest.raises(ValueError, match=message):
            call(images)


def test_bad_configuration_gets_a_clear_error():
    with pytest.raises(ValueError, match="conv layer 2 .*leaves no pixels"):
        ConvNet(image_shape=(12, 12, 1), filters=(4, 4), kernel_sizes=(10, 10), strides=1, padding="valid", pool=False)
    with pytest.raises(ValueError, match="kernel_sizes needs one value per conv layer"):
        ConvNet(filters=(8, 8), kernel_sizes=(3, 3, 3))
    with pytest.raises(ValueError, match="padding must be one of"):
        ConvNet(padding="full")
    with pytest.raises(ValueError, match="activation must be one of"):
        ConvNet(activation="relu")
    with pytest.raises(TypeError, match="unexpected keyword argument.*num_glimpses"):
        saccade_zoo.build("convnet_cluttered100", num_glimpses=6)
    with pytest.raises(ValueError, match="has no training stage 'representation'; its stages: classifier"):
        saccade_zoo.build("convnet_cluttered100").compile("sgd", stage="representation")


@pytest.fixture(scope="module")
def real_batches():
    items, labels = load_sample("train")
    batches = {}
    for side, distractors in ((100, 8), (60, 4)):
        data = generate_cluttered(items, labels, 32, ClutteredConfig(canvas_size=side, num_distractors=distractors),
                                  seed=3)
        batches[side] = data["images"], data["labels"]
    return batches


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loss_falls_on_real_data(real_batches, name):
    model = saccade_zoo.build(name)
    images, labels = real_batches[model.image_shape[0]]
    rate = model.stage("classifier").learning_rate  # the rate tools/train.py uses (peak of its cosine schedule)
    model.compile(keras.optimizers.SGD(rate, momentum=0.9, nesterov=True), stage="classifier")
    history = model.fit(images, labels, batch_size=32, epochs=8, verbose=0).history
    assert all(np.isfinite(history["loss"]))
    assert history["ce"][-1] < 0.9 * history["ce"][0], history["ce"]
    assert history["loss"][-1] < 0.9 * history["loss"][0], history["loss"]


@pytest.mark.slow
def test_train_tool_trains_a_convnet(tmp_path):
    small = ["--train_examples=64", "--test_examples=32", "--batch_size=16", "--epochs=1", "--checkpoint_every=0",
             "--verbose=0", "--validation_examples=16"]

    def train(*flags):
        return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "train.py"), *small, *flags], env=env(),
                              capture_output=True, text=True, timeout=600)

    judge = train("--preset=convnet_cluttered100", f"--output_dir={tmp_path}/judge")
    assert judge.returncode == 0, judge.stderr[-3000:]
    assert "stage 1/1: classifier" in judge.stdout
    results = json.load(open(tmp_path / "judge" / "results.json"))
    assert results["policies"] == {} and 0.0 <= results["full_image"] <= 1.0 and results["steps"] == ["classifier"]
    model = keras.models.load_model(tmp_path / "judge" / "model.keras")
    assert isinstance(model, ConvNet) and model.preset == "convnet_cluttered100"
    assert model.class_names[0] == "T-shirt/top" and int(model.optimizer.iterations) == 4

    # RAM's 60x60 canvas, two-item identification: a multi-label ConvNet end to end.
    ram = train("--preset=convnet2_cluttered60", "--canvas_size=60", "--num_distractors=4", "--task=identify",
                f"--output_dir={tmp_path}/ram")
    assert ram.returncode == 0, ram.stderr[-3000:]
    model = keras.models.load_model(tmp_path / "ram" / "model.keras")
    assert model.contract.multi_label and model.image_shape == (60, 60, 1)

    glimpses = train("--preset=convnet_cluttered100", "--glimpses=3", f"--output_dir={tmp_path}/g")
    assert glimpses.returncode != 0 and "takes no glimpses" in glimpses.stderr
