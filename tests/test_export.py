"""Export: .keras + SavedModel + TFLite variants, parity with Keras on real cluttered images, bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras

import saccade_zoo
from saccade_zoo.data.sample import FASHION_MNIST_CLASSES
from saccade_zoo.export import (ParityError, UnsupportedOpsError, compare_outputs, convert_tflite, export_model,
                                labelled_task, load_manifest, real_images, verify_files)
from saccade_zoo.export import parity as parity_gates
from tests.helpers import run_python

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


FIXTURE_GATES = {"float16": {"relative_max_abs_logits": 1e-3, "top1_agreement": 0.95, "location_agreement": 0.9}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """saccader_cluttered100 with a briefly trained BagNet (one epoch of cross entropy on 192 real cluttered
    images) and a location network pretrained on them (paper step 2, two epochs): a learned glimpse policy.
    Calibrated on those training images, checked on 48 test-split images (unlabelled: the quantised variants are
    gated on agreement); the center-policy export is checked on 48 labelled images with the accuracy gate (its
    bound loosened to 1 image in 48, see test_accuracy_gate_on_labelled_images)."""
    keras.utils.set_random_seed(0)
    model = saccade_zoo.build("saccader_cluttered100", class_names=FASHION_MNIST_CLASSES)  # the names travel along
    x, y = real_images(model.image_shape, 192, split="train")
    backbone = model.backbone
    clf = keras.Model(backbone.inputs, backbone.output["logits"])
    clf.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    clf.fit(x, y, batch_size=32, epochs=1, verbose=0)
    model.compile(keras.optimizers.Adam(1e-3), stage="location")
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    images, labels = real_images(model.image_shape, 48)
    root = tmp_path_factory.mktemp("exports")
    # A model this briefly trained has near-tied location logits, so a float16 rounding can move one glimpse of one
    # image in 48 (2.1 %, above the default 2 % allowance): its trajectory gate is loosened here. The default gates
    # hold on trained models: the shipped model (tests/test_pretrained.py) and the quick start's.
    manifest = export_model(model, root / "saccader", x[:64], parity_images=images, thresholds=FIXTURE_GATES)
    center = model.with_policy("center")
    center_manifest = export_model(center, root / "center", images, variants=("int8",), parity_labels=labels,
                                   min_labelled_images=48, thresholds={"int8": {"accuracy_drop": 1 / 48 + 1e-9}})
    return {"model": model, "images": images, "dir": root / "saccader", "manifest": manifest,
            "center_dir": root / "center", "center_manifest": center_manifest}


def test_files_and_manifest(trained):
    folder, manifest = trained["dir"], trained["manifest"]
    for rel in ("model.keras", "saved_model/saved_model.pb", "model_float32.tflite", "model_float16.tflite",
                "model_dynamic.tflite", "model_int8.tflite", "manifest.json"):
        assert (folder / rel).is_file(), rel
    assert not os.path.exists(str(folder) + ".partial")
    assert load_manifest(folder) == json.loads(json.dumps(manifest))
    assert manifest["model"]["num_glimpses"] == 6 and manifest["model"]["preset"] == "saccader_cluttered100"
    assert manifest["class_names"][0] == "T-shirt/top" and len(manifest["class_names"]) == 10
    assert manifest["input"]["shape"] == [None, 100, 100, 1] and manifest["input"]["value_range"] == [0.0, 1.0]
    assert manifest["preprocessing"]["mean"] == [0.0] and manifest["preprocessing"]["std"] == [1.0]
    assert set(manifest["outputs"]) == {"logits", "probabilities", "step_logits", "locations", "boxes"}
    assert verify_files(folder) == []
    size = os.path.getsize(folder / "model_dynamic.tflite")
    assert manifest["files"]["model_dynamic.tflite"]["bytes"] == size
    assert size < 0.3 * os.path.getsize(folder / "model_float32.tflite")
    assert os.path.getsize(folder / "model_int8.tflite") < 0.3 * os.path.getsize(folder / "model_float32.tflite")
    assert manifest["parity"]["num_calibration_images"] == 64


def test_hashes_detect_tampering(trained, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained["dir"], copy)
    with open(copy / "model_float16.tflite", "ab") as handle:
        handle.write(b"x")
    assert verify_files(copy) == ["model_float16.tflite"]


def test_parity_numbers_meet_the_spec(trained):
    results = trained["manifest"]["parity"]["results"]
    assert trained["manifest"]["parity"]["num_images"] == 48
    for variant in ("keras_reload", "savedmodel", "tflite_float32"):
        assert results[variant]["max_abs_logits"] <= 1e-4, variant
        assert results[variant]["location_agreement"] == 1.0, variant
    float16 = results["tflite_float16"]
    scale = max(1.0, float(np.abs(trained["model"](trained["images"], training=False)["logits"]).max()))
    assert float16["relative_max_abs_logits"] <= 1e-3
    assert float16["relative_max_abs_logits"] <= float16["max_abs_logits"] / scale * (1 + 1e-6)
    assert float16["thresholds"] == FIXTURE_GATES["float16"]
    assert float16["top1_agreement"] >= 0.95 and float16["location_agreement"] >= 0.9
    # No labels: the quantised variants are gated on agreement, and the manifest says so.
    assert not trained["manifest"]["parity"]["labelled"]
    assert "agreement" in trained["manifest"]["parity"]["quantised_gate"]
    assert results["tflite_dynamic"]["thresholds"] == {"top1_agreement": 0.95}
    assert results["tflite_dynamic"]["top1_agreement"] >= 0.95
    assert results["tflite_int8"]["top1_agreement"] >= 0.95
    # Full int8 of the learned policy picks the same cells as Keras for most glimpses. With the paper's literal
    # -1e5 mask the int8 cell cannot tell free cells apart after the first glimpse: 0.0 / 0.18 here.
    assert results["tflite_int8"]["location_agreement"] >= 0.25
    assert results["tflite_int8"]["glimpse_location_agreement"] >= 0.6
    center = trained["center_manifest"]["parity"]["results"]["tflite_int8"]
    assert center["top1_agreement"] >= 0.95 and center["location_agreement"] == 1.0
    assert all(r["passed"] for r in results.values())


def test_accuracy_gate_on_labelled_images(trained):
    """The center-policy export was gated on accuracy: its numbers are the accuracies of the Keras model and of
    the int8 file on the labelled images, recomputed here from the files."""
    from saccade_zoo.export import TFLiteRunner

    manifest = trained["center_manifest"]
    assert manifest["parity"]["labelled"] and "accuracy" in manifest["parity"]["quantised_gate"]
    result = manifest["parity"]["results"]["tflite_int8"]
    assert result["thresholds"] == {"accuracy_drop": pytest.approx(1 / 48)} and result["passed"]
    _, labels = real_images(trained["model"].image_shape, 48)
    center = keras.models.load_model(trained["center_dir"] / "model.keras", safe_mode=True)
    keras_logits = center(trained["images"], training=False)["logits"]
    assert result["keras_accuracy"] == pytest.approx(float(np.mean(np.argmax(keras_logits, -1) == labels)))
    int8 = TFLiteRunner(trained["center_dir"] / "model_int8.tflite").predict(trained["images"])
    assert result["accuracy"] == pytest.approx(float(np.mean(np.argmax(int8["logits"], -1) == labels)))
    assert result["accuracy_drop"] == pytest.approx(abs(result["accuracy"] - result["keras_accuracy"]))


def test_parity_gates_on_hand_made_outputs():
    """The gates of the issue: float16 relative to the logits' scale, quantised variants on accuracy (1 point on
    >= 1000 labelled images), agreement as the fallback without labels."""
    rng = np.random.default_rng(0)
    labels = np.arange(1000) % 10
    ref_logits = rng.normal(size=(1000, 10)) * 10.0
    ref_logits[:, 0] = 50.0  # the largest logit anywhere: the float16 scale
    ref_logits[np.arange(800), labels[:800]] = 60.0  # Keras is right on 800 of 1000: accuracy 0.8
    ref_logits[np.arange(800, 1000), labels[800:]] = -60.0
    reference = {"logits": ref_logits}
    candidate = {"logits": ref_logits + 0.05}  # 0.05 / 60 = 8.3e-4 <= 1e-3
    metrics = compare_outputs(reference, candidate, labels)
    assert metrics["relative_max_abs_logits"] == pytest.approx(0.05 / 60)
    parity_gates.check("float16", metrics, parity_gates.gates("float16", True))
    with pytest.raises(ParityError, match=r"relative_max_abs_logits = 0.00166667 \(required <= 0.001\)"):
        parity_gates.check("float16", compare_outputs(reference, {"logits": ref_logits + 0.1}),
                           parity_gates.gates("float16", False))
    # float32 and the SavedModel: 1e-4 of the logits' scale (a trained model's logits of +-60 may move by 6e-3).
    parity_gates.check("float32", compare_outputs(reference, {"logits": ref_logits + 0.005}),
                       parity_gates.gates("float32", True))
    with pytest.raises(ParityError, match=r"relative_max_abs_logits = 0.000166667 \(required <= 0.0001\)"):
        parity_gates.check("savedmodel", compare_outputs(reference, {"logits": ref_logits + 0.01}),
                           parity_gates.gates("savedmodel", True))
    # With glimpses: the bound holds over the images whose trajectory is Keras's; one moved glimpse is not rounding.
    locations = np.zeros((1000, 6, 2), "int32")
    moved = {"logits": ref_logits + 0.05, "locations": locations.copy()}
    moved["logits"][3] += 5.0
    moved["locations"][3, 5] = 1
    metrics = compare_outputs({"logits": ref_logits, "locations": locations}, moved, labels)
    assert metrics["max_abs_logits"] == pytest.approx(5.05) and metrics["location_agreement"] == 0.999
    assert metrics["relative_max_abs_logits"] == pytest.approx(0.05 / 60)
    parity_gates.check("float16", metrics, parity_gates.gates("float16", True))
    worse = ref_logits.copy()
    worse[np.arange(789, 800), labels[789:800]] = -60.0  # 11 images wrong: accuracy 0.789, 1.1 points below
    metrics = compare_outputs(reference, {"logits": worse}, labels)
    assert metrics["keras_accuracy"] == 0.8 and metrics["accuracy"] == pytest.approx(0.789)
    with pytest.raises(ParityError, match=r"accuracy_drop = 0.011 .*Keras: 0.8000, int8: 0.7890 on 1000 labelled"):
        parity_gates.check("int8", metrics, parity_gates.gates("int8", True))
    worse[np.arange(790, 800), labels[790:800]] = 60.0  # 1 image wrong: within the point
    parity_gates.check("int8", compare_outputs(reference, {"logits": worse}, labels), parity_gates.gates("int8", True))
    # Agreement is recorded but is not the gate when labels exist: flipping 60 near-tied wrong images passes.
    tied = ref_logits.copy()
    rows = np.arange(900, 960)  # 60 images that Keras gets wrong change to another wrong class
    tied[rows, (labels[rows] + 1) % 10] = tied[rows].max(axis=1) + 1.0
    metrics = compare_outputs(reference, {"logits": tied}, labels)
    assert metrics["top1_agreement"] < 0.95 and metrics["accuracy_drop"] <= 0.01
    parity_gates.check("int8", metrics, parity_gates.gates("int8", True))
    with pytest.raises(ParityError, match="top1_agreement"):
        parity_gates.check("int8", metrics, parity_gates.gates("int8", False))
    with pytest.raises(ParityError, match="needs labelled parity images"):
        parity_gates.check("int8", compare_outputs(reference, candidate), parity_gates.gates("int8", True))


def test_float16_keeps_small_tensors_float32(trained):
    """float16 stores weight tensors of >= 4096 elements as float16 behind DEQUANTIZE ops, the rest float32."""
    from ai_edge_litert.interpreter import Interpreter
    from saccade_zoo.export.tflite import FLOAT16_MIN_ELEMENTS

    folder = trained["dir"]
    details = Interpreter(model_path=str(folder / "model_float16.tflite")).get_tensor_details()
    half = [int(np.prod(t["shape"])) for t in details if t["dtype"] == np.float16]
    assert half and min(half) >= FLOAT16_MIN_ELEMENTS
    float32_size = os.path.getsize(folder / "model_float32.tflite")
    params = trained["model"].count_params()
    in_half = sum(half)
    assert in_half > 0.9 * params  # nearly every weight is float16 ...
    # ... so the file is about half the float32 file's size.
    assert os.path.getsize(folder / "model_float16.tflite") < 0.55 * float32_size
    everything = convert_tflite(folder / "saved_model", "float32")
    assert len(everything) == pytest.approx(float32_size, rel=0.01)


def test_labelled_task_matches_the_models_classes():
    assert labelled_task(saccade_zoo.build("saccader_cluttered100")) == "single"
    assert labelled_task(saccade_zoo.build("saccader_cluttered100", class_names=FASHION_MNIST_CLASSES)) == "single"
    assert labelled_task(saccade_zoo.build("saccader_cluttered100", activation="sigmoid")) == "identify"
    assert labelled_task(saccade_zoo.build("saccader_cluttered100", num_classes=19,
                                           class_names=[str(i) for i in range(19)])) == "sum"
    assert labelled_task(saccade_zoo.build("saccader_cluttered100", class_names=[str(i) for i in range(10)])) is None
    images, labels = real_images((100, 100, 1), 5, task="identify")
    assert labels.shape == (5, 10) and set(labels.sum(axis=1)) <= {1, 2}


def test_tflite_runs_with_litert_and_matches_keras(trained):
    from ai_edge_litert.interpreter import Interpreter

    images = trained["images"][:3]
    expected = trained["model"](images, training=False)
    runner = Interpreter(model_path=str(trained["dir"] / "model_float32.tflite")).get_signature_runner()
    for i in range(3):
        out = runner(images=images[i : i + 1])
        np.testing.assert_allclose(out["logits"], expected["logits"][i : i + 1], atol=1e-4)
        np.testing.assert_array_equal(out["locations"], expected["locations"][i : i + 1])
        np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, atol=1e-5)


def test_saved_model_loads_without_saccade_zoo(trained, tmp_path):
    images = trained["images"][:4]
    np.save(tmp_path / "x.npy", images)
    expected = trained["model"](images, training=False)
    out = run_python(f"""
import sys, json, numpy as np, tensorflow as tf
m = tf.saved_model.load({str(trained["dir"] / "saved_model")!r})
fn = m.signatures["serving_default"]
out = fn(images=tf.constant(np.load({str(tmp_path / "x.npy")!r})))
assert "saccade_zoo" not in sys.modules
np.save({str(tmp_path / "logits.npy")!r}, out["logits"].numpy())
np.save({str(tmp_path / "locations.npy")!r}, out["locations"].numpy())
print(json.dumps(sorted(out)), "saccade_zoo" in sys.modules)
""")
    assert out.split("\n")[-2] == json.dumps(sorted(trained["manifest"]["outputs"])) + " False"
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), expected["logits"], atol=1e-4)
    np.testing.assert_array_equal(np.load(tmp_path / "locations.npy"), expected["locations"])


def test_first_hour_snippet_runs_the_saved_model_and_int8_file(trained):
    """exports/quickstart_check.py is the snippet of exports/README.md, and it runs on an export folder."""
    script = os.path.join(ROOT, "exports", "quickstart_check.py")
    with open(script) as handle:
        code = handle.read()
    with open(os.path.join(ROOT, "exports", "README.md")) as handle:
        readme = handle.read()
    assert code[code.index("import json, sys"):] in readme
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, script, str(trained["dir"])], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    saved, int8 = (float(line.rsplit(" ", 1)[1]) for line in lines[:2])
    assert lines[0].startswith("SavedModel") and lines[1].startswith("full int8 TFLite")
    images, labels = real_images(trained["model"].image_shape, 200, seed=7)
    keras_accuracy = float(np.mean(np.argmax(trained["model"](images, training=False)["logits"], -1) == labels))
    assert saved == pytest.approx(keras_accuracy, abs=1e-9) and abs(int8 - keras_accuracy) <= 0.05
    assert lines[2].startswith("image 0:") and "glimpse boxes" in lines[2]


def test_keras_file_loads_in_fresh_process(trained):
    out = run_python(f"""
import keras, saccade_zoo
m = keras.models.load_model({str(trained["dir"] / "model.keras")!r}, safe_mode=True)
print(type(m).__name__, m.num_glimpses)
""")
    assert out.strip().endswith("Saccader 6")


def test_parity_failure_is_loud_and_leaves_nothing(tmp_path):
    keras.utils.set_random_seed(0)
    model = saccade_zoo.build("saccader_cluttered100")  # untrained: int8 logits are nearly tied
    images, _ = real_images(model.image_shape, 24)
    with pytest.raises(ParityError, match=r"tflite_int8: .*top1_agreement = "):
        export_model(model, tmp_path / "out", images, variants=("int8",))
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_unsupported_ops_name_op_and_layer(tmp_path):
    model = saccade_zoo.build("policy_bagnet33_cluttered100", policy="random")
    images, _ = real_images(model.image_shape, 4)
    with pytest.raises(UnsupportedOpsError, match=r"StatelessRandomUniformV2 in layer 'random_policy'") as info:
        export_model(model, tmp_path / "out", images, variants=("float32",))
    assert "random_policy" in info.value.ops_to_layers["StatelessRandomUniformV2"]


def test_bad_input(trained, tmp_path):
    model = trained["model"]
    images = trained["images"][:4]
    with pytest.raises(FileExistsError, match="already exists"):
        export_model(model, trained["dir"], images)
    with pytest.raises(ValueError, match=r"raw pixels in \[0, 1\]"):
        export_model(model, tmp_path / "a", images * 255.0)
    with pytest.raises(ValueError, match=r"shape \(N >= 1, 100, 100, 1\)"):
        export_model(model, tmp_path / "b", images[:, :50])
    with pytest.raises(ValueError, match="Unknown TFLite variant"):
        export_model(model, tmp_path / "c", images, variants=("int4",))
    with pytest.raises(ValueError, match="class_names must be 10 strings"):
        export_model(model, tmp_path / "d", images, class_names=["a"])
    assert not any(tmp_path.iterdir())


def _cli(*args):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "export.py"), *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env=env)


def test_cli_bad_input(trained, tmp_path):
    not_model = tmp_path / "notes.txt"
    not_model.write_text("hello")
    proc = _cli("--model", str(not_model))
    assert proc.returncode != 0 and "is not a .keras model file" in proc.stderr
    bogus = tmp_path / "bogus.keras"
    bogus.write_text("not a zip")
    proc = _cli("--model", str(bogus))
    assert proc.returncode != 0 and "could not be loaded as a Keras model" in proc.stderr
    proc = _cli("--model", "saccader_clutered100")
    assert proc.returncode != 0 and "Unknown model 'saccader_clutered100'" in proc.stderr
    assert "Did you mean saccader_cluttered100" in proc.stderr
    proc = _cli("--model", "saccader_cluttered100", "--out_dir", str(trained["dir"]))
    assert proc.returncode != 0 and "already exists; pass --overwrite" in proc.stderr
    proc = _cli("--model", "saccader_cluttered100", "--out_dir", str(tmp_path / "few"), "--num_images", "500")
    assert proc.returncode != 0 and "--num_images=500: the quantised variants' accuracy gate needs >= 1000" in proc.stderr


def test_exported_keras_file_fine_tunes_with_fit(tmp_path):
    """A compiled (trained) model's exported model.keras restores its training setup: fit continues."""
    keras.utils.set_random_seed(1)
    model = saccade_zoo.build("saccader_cluttered100")
    x, y = real_images(model.image_shape, 32, split="train")
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True), stage="policy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    export_model(model, tmp_path / "exp", x[:16], variants=(), check_parity=False)
    loaded = keras.models.load_model(tmp_path / "exp" / "model.keras", safe_mode=True)
    assert loaded.training_options["stage"] == "policy" and int(loaded.optimizer.iterations) == 2
    before = [w.numpy().copy() for w in loaded.trainable_weights]
    history = loaded.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and int(loaded.optimizer.iterations) == 4
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, loaded.trainable_weights))


def test_keras_file_without_compile_state_is_smaller_and_equal(tmp_path):
    """--nocompile_state: the weights and the architecture only (no optimizer moments, in model.keras and in the
    SavedModel), the same outputs; the loaded model is uncompiled and fine-tunes once compiled."""
    keras.utils.set_random_seed(1)
    model = saccade_zoo.build("saccader_cluttered100", class_names=FASHION_MNIST_CLASSES)
    x, y = real_images(model.image_shape, 32, split="train")
    model.compile(keras.optimizers.Adam(1e-3), stage="policy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    full = export_model(model, tmp_path / "full", x[:16], variants=(), check_parity=False)
    lean = export_model(model, tmp_path / "lean", x[:16], variants=(), compile_state=False)
    assert model.optimizer is not None  # the caller's model keeps its compile state
    assert lean["artifacts"]["keras_compile_state"] is False and full["artifacts"]["keras_compile_state"] is True
    size = {name: os.path.getsize(tmp_path / name / "model.keras") for name in ("full", "lean")}
    assert size["lean"] < 0.5 * size["full"], size  # Adam's two moments per weight are gone
    # The SavedModel holds each weight once (float32), compile state or not.
    weights = 4 * model.count_params()
    for name in ("full", "lean"):
        saved = os.path.getsize(tmp_path / name / "saved_model" / "variables" / "variables.data-00000-of-00001")
        assert 0.9 * weights < saved < 1.05 * weights, (name, saved, weights)
    assert lean["parity"]["results"]["keras_reload"]["max_abs_logits"] == 0.0
    loaded = keras.models.load_model(tmp_path / "lean" / "model.keras", safe_mode=True)
    assert getattr(loaded, "optimizer", None) is None and loaded.class_names == model.class_names
    loaded.compile(keras.optimizers.Adam(1e-4), stage="policy")
    assert np.isfinite(loaded.fit(x, y, batch_size=16, epochs=1, verbose=0).history["loss"][0])
