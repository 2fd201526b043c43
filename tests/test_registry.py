"""Registry-wide checks, in the spirit of timm's test_models: every preset builds, runs on valid input, returns
exactly its output contract, keeps its preset (name, preprocessing, class names) through a save/load round trip
and gives the same outputs after it. A new family's presets are covered the moment they are registered."""
import functools

import numpy as np
import pytest

import keras
import saccade_zoo
from saccade_zoo.contract import OutputContract
from saccade_zoo.models.base import GlimpseModel, ZooModel

# Big presets are checked at a small input size (the architecture, not the size, is what is tested here).
SMALL = {"image_shape": (96, 96, 3), "num_classes": 7}


@functools.lru_cache(maxsize=None)
def built(name):
    """Each preset built once per test session (both registry tests read it; neither changes it)."""
    return saccade_zoo.build(name, **small_overrides(name))


def small_overrides(name):
    config = saccade_zoo.get_preset(name)["config"]
    shape = config.get("image_shape", (0, 0, 3))
    if shape[0] <= 100:
        return {}
    overrides = dict(SMALL, image_shape=(*SMALL["image_shape"][:2], shape[-1]))
    if "crop_size" in config:  # a crop-grid model (CropResNet): 3 x 3 crops of 32 px
        overrides.update(crop_size=32, grid=3)
    return overrides


@pytest.mark.parametrize("name", saccade_zoo.list_models())
def test_every_preset_builds_runs_keeps_its_contract_and_round_trips(name, tmp_path):
    model = built(name)
    assert isinstance(model, ZooModel)
    contract = model.contract
    assert isinstance(contract, OutputContract)
    assert model.preset == name and model.preprocessing["channels"] == model.image_shape[-1]
    assert len(model.class_names) == contract.num_classes == model.num_classes

    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, *model.image_shape)).astype("float32")
    outputs = {k: np.asarray(v) for k, v in model(images).items()}
    contract.check(outputs, batch=2, where=name)
    if isinstance(model, GlimpseModel):
        assert contract.has_glimpses and contract.num_glimpses == model.num_glimpses
        boxes = outputs["boxes"]
        assert (boxes[..., 2] > boxes[..., 0]).all() and (boxes[..., 3] > boxes[..., 1]).all()
        # logits: the glimpses' mean, or the last step's for a recurrent model (the contract's aggregation)
        np.testing.assert_allclose(outputs["logits"], contract.cumulative_logits(outputs["step_logits"])[:, -1],
                                   rtol=1e-5, atol=1e-5)

    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert type(loaded) is type(model)
    assert loaded.metadata == model.metadata and loaded.contract == contract
    again = {k: np.asarray(v) for k, v in loaded(images).items()}
    for key in outputs:
        np.testing.assert_allclose(again[key], outputs[key], rtol=1e-5, atol=1e-5, err_msg=f"{name}: {key}")


@pytest.mark.parametrize("name", saccade_zoo.list_models())
def test_every_preset_declares_its_training_stages(name):
    model = built(name)
    stages = getattr(model, "stages", ())
    for stage in stages:
        assert stage.metrics[0] == "loss" and stage.epochs >= 1 and stage.learning_rate > 0
        assert {"weight_decay", "l2_reduction"} <= set(stage.all_options())
    if isinstance(model, saccade_zoo.PolicyClassifier):
        assert stages == ()  # evaluated, not trained
    elif isinstance(model, saccade_zoo.BagNet):
        assert model.stage_names == ("representation",)  # Eq. 4: the Saccader's first step
    elif not model.contract.has_glimpses:
        assert model.stage_names == ("classifier",)  # a plain full-image classifier: one cross-entropy stage
    elif isinstance(model, saccade_zoo.models.VariationalSaccader):
        assert model.stage_names == ("variational",)  # Eq. 5 end to end: one stage
    elif isinstance(model, (saccade_zoo.models.RAM, saccade_zoo.models.DRAM)):
        assert model.stage_names == ("reinforce",)  # RAM's hybrid loss end to end: one stage
    else:
        assert stages and stages[0].name == "representation"


def test_contract_refuses_wrong_outputs():
    contract = OutputContract(num_classes=3, num_glimpses=2)
    good = {"logits": np.zeros((4, 3), "float32"), "step_logits": np.zeros((4, 2, 3), "float32"),
            "locations": np.zeros((4, 2, 2), "int32"), "boxes": np.zeros((4, 2, 4), "float32")}
    contract.check(good, batch=4)
    with pytest.raises(ValueError, match="lack boxes"):
        contract.check({k: v for k, v in good.items() if k != "boxes"})
    with pytest.raises(ValueError, match=r"step_logits has shape \(4, 3, 3\), the contract says \(4, 2, 3\)"):
        contract.check({**good, "step_logits": np.zeros((4, 3, 3), "float32")})
    with pytest.raises(ValueError, match="locations is float32, the contract says int32"):
        contract.check({**good, "locations": np.zeros((4, 2, 2), "float32")})
    continuous = OutputContract(num_classes=3, num_glimpses=2, location_kind="continuous")
    with pytest.raises(ValueError, match="lack scales"):
        continuous.check({**good, "locations": np.zeros((4, 2, 2), "float32")})
    with pytest.raises(ValueError, match="activation must be one of"):
        OutputContract(num_classes=3, activation="relu")


def test_contract_activation_decides_probabilities_and_correctness():
    logits = np.array([[2.0, -1.0, 0.5], [-3.0, 1.0, 2.0]])
    single = OutputContract(num_classes=3)
    np.testing.assert_allclose(single.probabilities(logits).sum(axis=-1), 1.0, rtol=1e-6)
    assert single.correct(logits, [0, 1]).tolist() == [True, False]
    multi = OutputContract(num_classes=3, activation="sigmoid")
    np.testing.assert_allclose(multi.probabilities(logits), 1 / (1 + np.exp(-logits)), rtol=1e-6)
    # Exact match: every class decision right. Image 1 predicts {0, 2}; image 2 predicts {1, 2}.
    labels = np.array([[1, 0, 1], [0, 1, 0]], "float32")
    assert multi.correct(logits, labels).tolist() == [True, False]
    assert multi.label_accuracy(logits, labels) == pytest.approx(5 / 6)
    assert OutputContract.from_config(multi.get_config()) == multi
