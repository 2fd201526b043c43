"""ResNet-18 over a grid of crops (the variational saccading paper's 144-crop baseline): the crop geometry (offsets,
coverage), the crops and the whole forward pass against manual slicing, the presets' exact parameter counts (built,
never run, at 2528x2528), config and save/load round trips, one training step, bad images and configurations.
Behaviour is tested at a small size: 96x96 images, 4 x 4 crops of 32 px, a narrow one-block-per-stage trunk."""
import json

import numpy as np
import pytest

import keras
import saccade_zoo
from saccade_zoo.models.resnet import CropResNet, ResNet, crop_offsets


def small(**kwargs):
    """96x96x1 images, a 4 x 4 grid of 32 px crops (offsets 0, 21, 43, 64: overlapping, rounded), a narrow trunk."""
    config = dict(image_shape=(96, 96, 1), num_classes=5, crop_size=32, grid=4, crop_units=6, blocks=(1, 1, 1, 1),
                  filters=(4, 8, 8, 8))
    return CropResNet(**{**config, **kwargs})


def trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def manual_crops(images, rows, cols, size):
    """(B * n * n, size, size, C): every image's crops by plain slicing, row-major."""
    return np.stack([image[r:r + size, c:c + size] for image in images for r in rows for c in cols])


@pytest.mark.parametrize("side,crop,grid", [(2528, 224, 12), (96, 32, 4), (100, 30, 4), (10, 4, 5), (7, 7, 1),
                                            (64, 32, 2), (33, 32, 2)])
def test_offsets_follow_the_formula_and_cover_the_image(side, crop, grid):
    offsets = crop_offsets(side, crop, grid)
    assert len(offsets) == grid and offsets[0] == 0 and offsets[-1] + crop == side
    if grid > 1:  # round(i * (S - c) / (n - 1)), half up
        assert offsets == tuple(int(np.floor(i * (side - crop) / (grid - 1) + 0.5)) for i in range(grid))
    covered = np.zeros(side, bool)
    for offset in offsets:
        covered[offset:offset + crop] = True
    assert covered.all() and len(set(offsets)) == grid and list(offsets) == sorted(offsets)


def test_paper_geometry_and_rounding():
    offsets = crop_offsets(2528, 224, 12)
    assert offsets == (0, 209, 419, 628, 838, 1047, 1257, 1466, 1676, 1885, 2095, 2304)
    assert offsets == tuple(round(i * (2528 - 224) / 11) for i in range(12))  # no ties here: Python's round agrees
    assert set(np.diff(offsets)) == {209, 210}  # neighbours overlap by 15 or 14 px
    assert crop_offsets(10, 4, 5) == (0, 2, 3, 5, 6)  # 1.5 and 4.5 round half up (Python's round: 2 and 4)
    assert crop_offsets(96, 32, 4) == (0, 21, 43, 64)


def test_crops_and_forward_pass_equal_manual_slicing():
    model = small(image_shape=(96, 80, 1))  # non-square: offsets per axis
    rows, cols = model.crop_offsets
    assert rows == (0, 21, 43, 64) and cols == (0, 16, 32, 48) and model.num_crops == 16
    images = np.random.default_rng(0).normal(size=(2, 96, 80, 1)).astype("float32")
    expected = manual_crops(images, rows, cols, 32)
    crops = keras.Model(model.input, model.get_layer("crop_grid").output)(images)
    np.testing.assert_array_equal(np.asarray(crops), expected)

    # The whole pass: the trunk + crop fc on each manually cut crop, summed per image, then the head.
    per_crop = keras.Model(model.get_layer("crop_grid").output, model.get_layer("crop_logits").output)
    crop_logits = np.asarray(per_crop(expected)).reshape(2, 16, 6)
    head = model.get_layer("logits")
    expected_logits = crop_logits.sum(axis=1) @ head.kernel.numpy() + head.bias.numpy()
    np.testing.assert_allclose(np.asarray(model(images)["logits"]), expected_logits, rtol=1e-5, atol=1e-5)
    # One image's logits do not depend on the other images of the batch (inference mode).
    np.testing.assert_allclose(np.asarray(model(images[1:])["logits"]), expected_logits[1:], rtol=1e-5, atol=1e-5)


def test_presets_have_the_exact_parameter_counts():
    """Built (not run) at 2528x2528: 144 crops of 224, ResNet-18 with a 512-wide crop fc, a 512 -> classes head."""
    identify = saccade_zoo.build("resnet18_crops144_cluttered2528_identify")
    assert isinstance(identify, CropResNet) and identify.image_shape == (2528, 2528, 1)
    assert (identify.crop_size, identify.grid, identify.num_crops, identify.crop_units) == (224, 12, 144, 512)
    assert identify.crop_offsets == (crop_offsets(2528, 224, 12),) * 2 and identify.feature_map_shape == (7, 7, 512)
    assert tuple(identify.get_layer("crop_grid").output.shape) == (None, 224, 224, 1)
    # ResNet-18's trunk (1 channel) 11,170,240 + crop fc 512 * 512 + 512 + head 512 * 10 + 10; 9,600 BN statistics.
    assert trainable_count(identify) == 11_170_240 + 262_656 + 5_130 == 11_438_026  # the paper's "11.4M"
    assert identify.count_params() == 11_447_626
    full_image = ResNet(image_shape=(100, 100, 1), num_classes=10)  # the trunk is the same network's
    assert trainable_count(full_image) - 5_130 == 11_170_240
    assert identify.contract.activation == "sigmoid" and identify.contract.output_specs() == {
        "logits": ((10,), "float32")}
    assert identify.preprocessing == {"image_size": [2528, 2528], "channels": 1, "mean": [0.0], "std": [1.0],
                                      "value_range": [0, 1]}
    assert saccade_zoo.get_preset("resnet18_crops144_cluttered2528_identify")["task"] == "identify"

    photo = saccade_zoo.build("resnet18_crops144_photo")
    assert photo.image_shape == (2528, 2528, 3) and photo.contract.activation == "softmax"
    assert trainable_count(photo) == 11_176_512 + 262_656 + 3_078 == 11_442_246
    assert photo.count_params() == 11_451_846
    assert photo.class_names == ["abstract", "animals", "man-made", "nature", "none", "people"]
    assert photo.preprocessing["mean"] == [0.485, 0.456, 0.406] and photo.preprocessing["image_size"] == [2528, 2528]
    # The other readings of "sum the logits, dense head" (see CropResNet's docstring).
    per_class = small(image_shape=(224, 224, 1), num_classes=10, crop_size=224, grid=1, crop_units=10,
                      blocks=(2, 2, 2, 2), filters=(64, 128, 256, 512))
    assert trainable_count(per_class) == 11_175_480
    summed_features = small(image_shape=(224, 224, 1), num_classes=10, crop_size=224, grid=1, crop_units=None,
                            blocks=(2, 2, 2, 2), filters=(64, 128, 256, 512))
    assert trainable_count(summed_features) == 11_175_370 == trainable_count(full_image)


def test_config_and_save_load_round_trip_then_training(tmp_path):
    model = small(activation="sigmoid", metadata={"preset": "small", "class_names": list("abcde")})
    config = model.get_config()
    clone = CropResNet.from_config(json.loads(json.dumps(config)))
    assert clone.get_config() == config and clone.count_params() == model.count_params()
    assert clone.contract == model.contract and clone.contract.multi_label and clone.crop_offsets == model.crop_offsets

    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 96, 96, 1)).astype("float32")
    labels = (rng.random((4, 5)) < 0.4).astype("float32")
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), stage="classifier")
    before = [w.numpy().copy() for w in model.weights]
    history = model.fit(images, labels, batch_size=4, epochs=1, verbose=0).history
    assert set(history) == {"loss", "ce", "l2", "accuracy"} and np.isfinite(history["loss"]).all()
    after = model.weights
    for name in ("stem_conv", "stage4_block1_conv2", "crop_logits", "logits"):  # trunk, crop fc and head all move
        kernel = model.get_layer(name).kernel
        index = next(i for i, w in enumerate(after) if w is kernel)
        assert not np.allclose(before[index], kernel.numpy()), name
    assert all(np.isfinite(w.numpy()).all() for w in after)
    moving_mean = next(i for i, w in enumerate(after) if w is model.get_layer("stem_bn").moving_mean)
    assert not np.allclose(before[moving_mean], after[moving_mean].numpy())  # BatchNorm statistics moved too

    path = str(tmp_path / "crops.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded) is CropResNet and loaded.get_config() == config and loaded.class_names == list("abcde")
    np.testing.assert_allclose(loaded(images)["logits"], model(images)["logits"], rtol=1e-5, atol=1e-5)
    assert loaded.training_options["stage"] == "classifier"
    loaded.fit(images, labels, batch_size=4, epochs=1, verbose=0)  # continues training
    assert int(loaded.optimizer.iterations) == 2


def test_mixed_precision_keeps_the_sum_and_logits_float32():
    model = small(dtype="mixed_bfloat16")
    out = model(np.random.rand(2, 96, 96, 1).astype("float32"))
    assert keras.backend.standardize_dtype(out["logits"].dtype) == "float32"
    float32 = {"crop_logits", "crop_sum", "logits"}
    for name in ("crop_grid", "stem_conv", "stage4_block1_out", "global_pool", *float32):
        assert model.get_layer(name).compute_dtype == ("float32" if name in float32 else "bfloat16"), name
    assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in model.weights)


@pytest.mark.parametrize("images,message", [
    (np.zeros((2, 64, 96, 1), "float32"), "expects 96x96 images, got height 64"),
    (np.zeros((2, 96, 96, 3), "float32"), "expects 1 channel"),
    (np.zeros((96, 96, 1), "float32"), r"rank 4 \(batch, 96, 96, 1\)"),
])
def test_wrong_images_name_the_expected_shape(images, message):
    model = small()
    for call in (model, model.predict):
        with pytest.raises(ValueError, match=message):
            call(images)


def test_crops_that_do_not_fit_are_refused_at_construction():
    with pytest.raises(ValueError, match="crop_size 128 px does not fit in the image: the image side is 96 px"):
        small(crop_size=128)
    with pytest.raises(ValueError, match="does not fit.*side is 80 px"):
        small(image_shape=(96, 80, 1), crop_size=88, grid=2)
    with pytest.raises(ValueError, match="grid must be >= 1"):
        small(grid=0)
    with pytest.raises(ValueError, match=r"leave gaps.*grid \* crop_size = 96 must be >= 100"):
        small(image_shape=(100, 100, 1), grid=3)
    with pytest.raises(ValueError, match="would repeat crops"):
        small(image_shape=(34, 34, 1), grid=4)
    with pytest.raises(ValueError, match="crop_size 16 px is too small for the ResNet trunk.*>= 32 px"):
        small(crop_size=16, grid=6)
    with pytest.raises(ValueError, match="crop_units must be >= 1"):
        small(crop_units=0)
    with pytest.raises(ValueError, match="filters needs one width"):
        small(filters=(4, 8))
    with pytest.raises(TypeError, match="unexpected keyword argument.*num_glimpses"):
        small(num_glimpses=4)
