"""ResNet-18 (torchvision's BasicBlock network, the variational saccading paper's full-image baseline): torchvision's
exact parameter count, the presets' counts, output contract, config and save/load round trips, memorisation with
softmax and multi-hot labels, mixed precision, bad labels / images / configurations."""
import json

import numpy as np
import pytest

import keras
import saccade_zoo
from saccade_zoo.models import ResNet

TORCHVISION_RESNET18 = 11_689_512  # sum(p.numel() for p in torchvision.models.resnet18().parameters())


def resnet18_params(channels, classes):
    """(trainable, non-trainable) parameters of ResNet-18: bias-free convs, BatchNorm gamma/beta (trainable) and
    moving mean/variance (non-trainable), the dense head."""
    trainable, frozen = 0, 0

    def conv_bn(kernel, cin, cout):
        nonlocal trainable, frozen
        trainable += kernel * kernel * cin * cout + 2 * cout
        frozen += 2 * cout

    conv_bn(7, channels, 64)  # stem
    cin = 64
    for stage, width in enumerate((64, 128, 256, 512)):
        for block in range(2):
            conv_bn(3, cin, width)
            conv_bn(3, width, width)
            if block == 0 and stage > 0:
                conv_bn(1, cin, width)  # the projection shortcut
            cin = width
    trainable += 512 * classes + classes
    return trainable, frozen


def trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def tiny(**kwargs):
    """A narrow ResNet on 32x32x1 images with the "small" stem: the architecture, at a CPU-friendly size."""
    config = dict(image_shape=(32, 32, 1), num_classes=5, blocks=(1, 1, 1, 1), filters=(8, 16, 16, 32), stem="small")
    return ResNet(**{**config, **kwargs})


def test_resnet18_has_torchvision_parameter_count_and_shapes():
    model = ResNet()  # 224x224x3, 1000 classes, blocks (2, 2, 2, 2), filters (64, 128, 256, 512), "imagenet" stem
    assert resnet18_params(3, 1000) == (TORCHVISION_RESNET18, 9_600)
    assert trainable_count(model) == TORCHVISION_RESNET18
    assert model.count_params() == TORCHVISION_RESNET18 + 9_600 == 11_699_112  # + BN moving statistics
    assert sum(int(np.prod(v.shape)) for v in model.non_trainable_weights) == 9_600
    # torchvision's feature map sizes: 224 -> 112 (conv) -> 56 (pool) -> 56, 28, 14, 7.
    shapes = {name: tuple(model.get_layer(name).output.shape[1:]) for name in (
        "stem_conv", "stem_pool", "stage1_block2_out", "stage2_block1_out", "stage3_block2_out", "stage4_block2_out")}
    assert shapes == {"stem_conv": (112, 112, 64), "stem_pool": (56, 56, 64), "stage1_block2_out": (56, 56, 64),
                      "stage2_block1_out": (28, 28, 128), "stage3_block2_out": (14, 14, 256),
                      "stage4_block2_out": (7, 7, 512)}
    assert model.feature_map_shape == (7, 7, 512)
    # Shortcut projections only where the shape changes; bias-free convs; BN gammas start at one.
    projections = sorted(layer.name for layer in model.layers if layer.name.endswith("shortcut_conv"))
    assert projections == ["stage2_block1_shortcut_conv", "stage3_block1_shortcut_conv",
                           "stage4_block1_shortcut_conv"]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 20 and not any(layer.use_bias for layer in convs)
    assert all(np.all(layer.gamma.numpy() == 1) for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization))
    # He-normal with fan_out (torchvision's kaiming_normal_(mode="fan_out")): std sqrt(2 / (3 * 3 * 512)).
    kernel = model.get_layer("stage4_block2_conv2").kernel.numpy()
    assert abs(kernel.std() / np.sqrt(2 / (9 * 512)) - 1) < 0.02 and abs(kernel.mean()) < 1e-3
    assert model.get_layer("logits").compute_dtype == "float32"


def test_strided_convs_sample_torchvision_grid():
    """torchvision pads a 3x3 stride-2 conv by 1 on every side, so output (i, j) is centred on input (2i, 2j);
    Keras' "same" would centre it on (2i + 1, 2j + 1) for even sizes. A centre-tap kernel shows which."""
    model = tiny()
    block_in, conv = model.get_layer("stage1_block1_out").output, model.get_layer("stage2_block1_conv1")
    probe = keras.Model(block_in, conv.output)
    kernel = np.zeros(conv.kernel.shape, "float32")  # (3, 3, 8, 16)
    kernel[1, 1] = np.eye(8, 16)
    conv.kernel.assign(kernel)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 8)).astype("float32")
    np.testing.assert_array_equal(np.asarray(probe(x))[..., :8], x[:, ::2, ::2])
    projection = keras.Model(block_in, model.get_layer("stage2_block1_shortcut_conv").output)
    assert tuple(projection.output.shape[1:]) == (16, 16, 16)  # 1x1 stride 2, no padding: also (2i, 2j)


PRESETS = {"resnet18_imagenet": (3, 1000), "resnet18_cluttered100": (1, 10), "resnet18_cluttered100_sum": (1, 19),
           "resnet18_cluttered100_identify": (1, 10)}


@pytest.mark.parametrize("name", sorted(set(PRESETS) - {"resnet18_imagenet"}))
def test_cluttered_preset_parameter_counts(name):
    model = saccade_zoo.build(name)
    trainable, frozen = resnet18_params(*PRESETS[name])
    assert (trainable_count(model), model.count_params()) == (trainable, trainable + frozen)
    # The numbers reported for the presets (1 input channel: 6,272 stem weights fewer than RGB).
    assert {n: resnet18_params(*PRESETS[n])[0] for n in PRESETS} == {
        "resnet18_imagenet": 11_689_512, "resnet18_cluttered100": 11_175_370, "resnet18_cluttered100_sum": 11_179_987,
        "resnet18_cluttered100_identify": 11_175_370}
    assert model.count_params() == {"resnet18_cluttered100": 11_184_970, "resnet18_cluttered100_sum": 11_189_587,
                                    "resnet18_cluttered100_identify": 11_184_970}[name]
    assert model.image_shape == (100, 100, 1) and model.stem == "imagenet" and model.feature_map_shape == (4, 4, 512)


def test_build_carries_preset_and_outputs_only_logits():
    model = saccade_zoo.build("resnet18_cluttered100")
    assert isinstance(model, ResNet) and model.preset == "resnet18_cluttered100"
    assert model.preprocessing == {"image_size": [100, 100], "channels": 1, "mean": [0.0], "std": [1.0],
                                   "value_range": [0, 1]}
    assert model.stage_names == ("classifier",) and model.stage("classifier").learning_rate > 0
    contract = model.contract
    assert not contract.has_glimpses and contract.activation == "softmax" and contract.extra_outputs == ()
    assert contract.output_specs() == {"logits": ((10,), "float32")}
    out = model(np.random.rand(2, 100, 100, 1).astype("float32"))
    assert set(out) == {"logits"} and tuple(out["logits"].shape) == (2, 10)
    contract.check({k: np.asarray(v) for k, v in out.items()}, batch=2)

    assert saccade_zoo.get_preset("resnet18_cluttered100_sum")["class_names"] == [str(i) for i in range(19)]
    identify = saccade_zoo.get_preset("resnet18_cluttered100_identify")
    assert identify["config"]["activation"] == "sigmoid" and identify["config"]["num_classes"] == 10
    imagenet = saccade_zoo.get_preset("resnet18_imagenet")
    assert imagenet["preprocessing"]["mean"] == (0.485, 0.456, 0.406) and imagenet["config"]["num_classes"] == 1000


def test_config_and_save_load_round_trip(tmp_path):
    model = tiny(activation="sigmoid", metadata={"preset": "tiny", "class_names": list("abcde")})
    config = model.get_config()
    clone = ResNet.from_config(json.loads(json.dumps(config)))
    assert clone.get_config() == config and clone.count_params() == model.count_params()
    assert clone.contract == model.contract and clone.contract.multi_label

    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 32, 32, 1)).astype("float32")
    labels = (rng.random((4, 5)) < 0.4).astype("float32")
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), stage="classifier")
    model.fit(images, labels, batch_size=4, epochs=1, verbose=0)  # moves the BatchNorm statistics too
    path = str(tmp_path / "resnet.keras")
    model.save(path)
    loaded = keras.models.load_model(path)  # safe_mode default (True): works because saccade_zoo is imported
    assert type(loaded) is ResNet and loaded.get_config() == config
    assert loaded.class_names == list("abcde") and loaded.get_layer("stage2_block1_conv1").strides == (2, 2)
    np.testing.assert_allclose(loaded(images)["logits"], model(images)["logits"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loaded.predict(images, verbose=0)["logits"], model.predict(images, verbose=0)["logits"],
                               rtol=1e-5, atol=1e-5)
    assert loaded.training_options["stage"] == "classifier"
    loaded.fit(images, labels, batch_size=4, epochs=1, verbose=0)  # continues training
    assert int(loaded.optimizer.iterations) == 2


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_loss_falls_when_memorising_a_fixed_batch(activation):
    model = tiny(activation=activation)
    rng = np.random.default_rng(1)
    images = rng.normal(size=(8, 32, 32, 1)).astype("float32")
    if activation == "softmax":
        labels = np.arange(8) % 5
    else:  # two-item identification: multi-hot
        labels = np.zeros((8, 5), "float32")
        labels[np.arange(8), np.arange(8) % 5] = labels[np.arange(8), (np.arange(8) + 2) % 5] = 1
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True), stage="classifier")
    history = model.fit(images, labels, batch_size=8, epochs=12, verbose=0).history
    assert set(history) == {"loss", "ce", "l2", "accuracy"} and np.all(np.isfinite(history["loss"]))
    assert history["ce"][-1] < 0.5 * history["ce"][0], history["ce"]
    assert history["loss"][-1] < 0.6 * history["loss"][0], history["loss"]


def test_wrong_labels_for_the_task_get_a_clear_error():
    images = np.zeros((4, 32, 32, 1), "float32")
    softmax, sigmoid = tiny(), tiny(activation="sigmoid")
    for model in (softmax, sigmoid):
        model.compile("sgd", stage="classifier")
    with pytest.raises(ValueError, match="integer class indices"):
        softmax.fit(images, np.ones((4, 5), "float32"), batch_size=4, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"multi-hot labels of shape \(batch, 5\)"):
        sigmoid.fit(images, np.arange(4), batch_size=4, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"multi-hot labels of shape \(batch, 5\)"):
        sigmoid.fit(images, np.ones((4, 7), "float32"), batch_size=4, epochs=1, verbose=0)


def test_mixed_precision_keeps_float32_logits_and_variables():
    model = tiny(dtype="mixed_bfloat16")
    out = model(np.random.rand(2, 32, 32, 1).astype("float32"))
    assert keras.backend.standardize_dtype(out["logits"].dtype) == "float32"
    for layer in model._flatten_layers():
        if layer is model or isinstance(layer, keras.layers.InputLayer):
            continue
        assert layer.compute_dtype == ("float32" if layer.name == "logits" else "bfloat16"), layer.name
    assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in model.weights)
    assert ResNet.from_config(model.get_config()).get_layer("stem_conv").compute_dtype == "bfloat16"


@pytest.mark.parametrize("images,message", [
    (np.zeros((32, 32, 1), "float32"), "rank 4.*add a batch axis"),
    (np.zeros((2, 28, 32, 1), "float32"), "expects 32x32 images"),
    (np.zeros((2, 32, 32, 3), "float32"), "expects 1 channel"),
    (np.zeros((2, 32, 32, 1), "uint8"), "floating-point images"),
])
def test_bad_input_gets_a_clear_error(images, message):
    model = tiny()
    for call in (model, model.predict):
        with pytest.raises(ValueError, match=message):
            call(images)


def test_bad_configuration_gets_a_clear_error():
    with pytest.raises(ValueError, match="too small for this ResNet: side 16 px.*'imagenet'.*>= 32 px"):
        ResNet(image_shape=(16, 16, 3), num_classes=10)
    with pytest.raises(ValueError, match="too small for this ResNet: side 31 px"):
        ResNet(image_shape=(64, 31, 1), num_classes=10)
    with pytest.raises(ValueError, match="too small for this ResNet: side 7 px.*'small'.*>= 8 px"):
        tiny(image_shape=(7, 7, 1))
    assert tiny(image_shape=(8, 8, 1)).feature_map_shape == (1, 1, 32)
    with pytest.raises(ValueError, match="stem must be one of"):
        tiny(stem="cifar")
    with pytest.raises(ValueError, match="filters needs one width"):
        tiny(filters=(8, 16))
    with pytest.raises(ValueError, match="activation must be one of"):
        tiny(activation="relu")
    with pytest.raises(ValueError, match=r"image_shape must be \(height, width, channels\)"):
        tiny(image_shape=(32, 32))
    with pytest.raises(TypeError, match="unexpected keyword argument.*num_glimpses"):
        saccade_zoo.build("resnet18_cluttered100", num_glimpses=6)
    with pytest.raises(ValueError, match="has no training stage 'representation'; its stages: classifier"):
        tiny().compile("sgd", stage="representation")
