"""tools/train.py end to end: all three steps on real (shipped) data, a run killed mid-epoch resumes and ends
with exactly the weights of an uninterrupted run, outputs (model, results, pictures) are written."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import keras
import saccade_zoo  # noqa: F401  (registers the classes for load_model)
from tests.helpers import load_tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["--train_examples=64", "--test_examples=32", "--batch_size=16", "--epochs=2,1,1", "--checkpoint_every=1",
        "--eval_glimpses=3", "--eval_policies=ordered_logits", "--verbose=0", "--seed=5"]


def train_cmd(out_dir):
    return [sys.executable, os.path.join(ROOT, "tools", "train.py"), f"--output_dir={out_dir}", *FAST]


def env():
    return dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")


@pytest.mark.slow
def test_killed_run_resumes_and_matches_an_uninterrupted_run(tmp_path):
    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    # The uninterrupted reference needs only the step the kill interrupts (the representation step); the killed run
    # goes on through all three steps and the evaluation after its resume.
    done = subprocess.run(train_cmd(whole) + ["--steps=representation", "--epochs=2"], env=env(), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    proc = subprocess.Popen(train_cmd(killed), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = os.path.join(killed, "representation", "checkpoint.keras")
    deadline = time.time() + 600
    while not os.path.exists(checkpoint) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)  # mid-epoch: step 1 has 2 epochs of 4 steps
    proc.wait()
    assert not os.path.exists(os.path.join(killed, "representation", "final.keras"))
    at_kill = keras.models.load_model(checkpoint)
    interrupted_at = int(at_kill.optimizer.iterations)
    assert 1 <= interrupted_at < 8

    resumed = subprocess.run(train_cmd(killed), env=env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {checkpoint} at step {interrupted_at}/8" in resumed.stdout

    # The representation step makes no discrete choices: the resumed run must end where the uninterrupted
    # one did (same batches, optimizer state and schedule) up to float rounding, which is not bitwise here (a
    # resumed process runs freshly traced graphs; seen: 2.8e-6, and once 1.9e-5 on one BatchNorm beta). So
    # compare with the motion of the steps after the checkpoint: one lost or repeated step would be ~1/7 of it.
    x = keras.models.load_model(os.path.join(whole, "representation", "final.keras"))
    y = keras.models.load_model(os.path.join(killed, "representation", "final.keras"))
    assert int(x.optimizer.iterations) == int(y.optimizer.iterations) == 8
    norm = lambda ws: float(np.sqrt(sum(np.sum(np.square(w)) for w in ws)))  # noqa: E731
    gap = norm([u.numpy() - v.numpy() for u, v in zip(x.trainable_weights, y.trainable_weights)])
    remaining = norm([u.numpy() - v.numpy() for u, v in zip(x.trainable_weights, at_kill.trainable_weights)])
    assert remaining > 0 and gap < 0.01 * remaining, (gap, remaining)
    # The later steps make discrete choices (top-k location targets, sampled glimpses) that such rounding can
    # flip, so they are checked for completion, not bitwise equality.
    assert "Test top-1 vs number of glimpses" in resumed.stdout
    for name, steps in (("location", 4), ("policy", 4)):
        b = keras.models.load_model(os.path.join(killed, name, "final.keras"))
        assert b.training_options["stage"] == name and int(b.optimizer.iterations) == steps

    results = json.load(open(os.path.join(killed, "results.json")))
    assert set(results["policies"]) == {"learned", "ordered_logits"}
    assert len(results["policies"]["learned"]["accuracy"]) == 3
    for name in ("glimpses.png", "accuracy_vs_glimpses.png"):
        assert os.path.getsize(os.path.join(killed, name)) > 5000
    assert os.listdir(os.path.join(killed, "tensorboard", "policy"))


def test_bad_flags_fail_clearly(tmp_path):
    bad = subprocess.run(train_cmd(str(tmp_path)) + ["--steps=representation,reinforce"], env=env(),
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0
    assert "--steps: Saccader has no training stage 'reinforce'; its stages: representation, location, policy" \
        in bad.stderr
    missing = subprocess.run(train_cmd(str(tmp_path)) + ["--data=idx", f"--data_dir={tmp_path}/nothing"], env=env(),
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "apt-get install dataset-fashion-mnist" in missing.stderr


@pytest.mark.slow
def test_tools_dispatch_on_what_the_model_declares(tmp_path):
    """A BagNet preset trains its one stage; a policy preset is refused by name; a two-item identification run
    trains a multi-label Saccader end to end, and the reloaded file evaluates and exports with no --preset."""
    small = ["--train_examples=32", "--test_examples=16", "--batch_size=16", "--epochs=1", "--checkpoint_every=0",
             "--eval_glimpses=2", "--eval_policies=random", "--verbose=0", "--validation_examples=16"]

    def tool(name, *flags):
        return subprocess.run([sys.executable, os.path.join(ROOT, "tools", name), *flags], env=env(),
                              capture_output=True, text=True, timeout=900)

    bagnet = tool("train.py", f"--output_dir={tmp_path}/bagnet", "--preset=bagnet33_cluttered100", *small)
    assert bagnet.returncode == 0, bagnet.stderr[-3000:]
    assert "stage 1/1: representation" in bagnet.stdout
    assert set(json.load(open(tmp_path / "bagnet" / "results.json"))["policies"]) == {"random"}

    policy = tool("train.py", f"--output_dir={tmp_path}/policy", "--preset=policy_bagnet33_cluttered100", *small)
    assert policy.returncode != 0 and "has no training stages: it is evaluated, not trained" in policy.stderr
    glimpses = tool("train.py", f"--output_dir={tmp_path}/g", "--preset=bagnet33_cluttered100", "--glimpses=3", *small)
    assert glimpses.returncode != 0 and "takes no glimpses" in glimpses.stderr
    ignored = tool("train.py", f"--output_dir={tmp_path}/b", "--preset=bagnet33_cluttered100", "--beta=0.5", *small)
    assert ignored.returncode != 0 and "--beta: no stage of preset bagnet33_cluttered100 (representation)" \
        in ignored.stderr

    identify = tool("train.py", f"--output_dir={tmp_path}/identify", "--task=identify", "--steps=representation,policy",
                    *small)
    assert identify.returncode == 0, identify.stderr[-3000:]
    assert "Test exact-match accuracy vs number of glimpses" in identify.stdout
    path = str(tmp_path / "identify" / "model.keras")
    model = keras.models.load_model(path)
    assert model.contract.multi_label and model.preset == "saccader_cluttered100"
    assert model.class_names[0] == "T-shirt/top"

    evaluated = tool("evaluate.py", f"--model={path}", "--test_examples=16", "--glimpses=2", "--policies=random",
                     f"--output_dir={tmp_path}/eval")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    results = json.load(open(tmp_path / "eval" / "results.json"))
    assert set(results["policies"]) == {"learned", "random"}

    exported = tool("export.py", f"--model={path}", f"--out_dir={tmp_path}/export", "--variants=float32",
                    "--num_images=8", "--num_calibration_images=8")
    assert exported.returncode == 0, exported.stdout[-2000:] + exported.stderr[-3000:]
    manifest = json.load(open(tmp_path / "export" / "manifest.json"))
    assert manifest["model"]["contract"]["activation"] == "sigmoid"
    assert manifest["class_names"][0] == "T-shirt/top"
    assert "sigmoid" in manifest["outputs"]["probabilities"]["description"]
    # Labelled two-item images (multi-hot) record the exact-match accuracy; no quantised variant, so 8 are enough.
    assert manifest["parity"]["labelled"] and "two items per image" in manifest["parity"]["images"]
    assert 0.0 <= manifest["parity"]["results"]["savedmodel"]["keras_accuracy"] <= 1.0


@pytest.mark.slow
def test_variational_saccading_and_resnet_through_the_tools(tmp_path):
    """Variational saccading trains through tools/train.py with its stage's own defaults (Adam, clipping, no weight
    penalty) on the task its preset declares (two-item identification without --task), evaluates and exports with
    no --preset; a multi-label ResNet-18 preset trained with --task=single becomes a softmax model."""
    small = ["--train_examples=32", "--test_examples=16", "--batch_size=16", "--epochs=1", "--checkpoint_every=0",
             "--eval_glimpses=2", "--verbose=0", "--validation_examples=16"]

    def tool(name, *flags):
        return subprocess.run([sys.executable, os.path.join(ROOT, "tools", name), *flags], env=env(),
                              capture_output=True, text=True, timeout=900)

    vs = tool("train.py", f"--output_dir={tmp_path}/vs", "--preset=variational_cluttered100_identify", *small)
    assert vs.returncode == 0, vs.stderr[-3000:]
    assert "stage 1/1: variational" in vs.stdout and "exact-match accuracy" in vs.stdout
    settings = json.load(open(tmp_path / "vs" / "variational" / "settings.json"))
    assert settings["optimizer"] == "adam" and settings["clipnorm"] == 10.0
    history = json.load(open(tmp_path / "vs" / "variational" / "history.json"))
    assert {"ce", "reconstruction", "kl", "label_accuracy"} <= set(history)
    path = str(tmp_path / "vs" / "model.keras")
    model = keras.models.load_model(path)
    assert model.contract.multi_label and model.contract.location_kind == "continuous"
    assert model.training_options["weight_decay"] == 0.0 and model.training_options["beta"] == 0.001
    results = json.load(open(tmp_path / "vs" / "results.json"))
    assert results["task"] == "identify" and set(results["policies"]) == {"learned"}

    exported = tool("export.py", f"--model={path}", f"--out_dir={tmp_path}/export", "--variants=float32",
                    "--num_images=8", "--num_calibration_images=8")
    assert exported.returncode == 0, exported.stdout[-2000:] + exported.stderr[-3000:]
    manifest = json.load(open(tmp_path / "export" / "manifest.json"))
    assert manifest["model"]["contract"]["location_kind"] == "continuous"
    assert manifest["parity"]["results"]["tflite_float32"]["max_abs_locations_px"] < 1e-2

    # The noisy-proxy ablation: the model takes its proxy, and train.py feeds it noisy ones.
    noisy = tool("train.py", f"--output_dir={tmp_path}/noisy", "--preset=variational_cluttered100",
                 "--proxy_noise=0.5", "--window_scale=0.2,0.3", *small)
    assert noisy.returncode == 0, noisy.stderr[-3000:]
    noisy_model = keras.models.load_model(str(tmp_path / "noisy" / "model.keras"))
    assert noisy_model.proxy_input and (noisy_model.min_scale, noisy_model.max_scale) == (0.2, 0.3)
    assert json.load(open(tmp_path / "noisy" / "results.json"))["proxy_noise"] == 0.5
    refused = tool("train.py", f"--output_dir={tmp_path}/refused", "--preset=resnet18_cluttered100",
                   "--proxy_noise=0.5", *small)
    assert refused.returncode != 0 and "--proxy_noise: preset resnet18_cluttered100 is not a variational" \
        in refused.stderr
    window = tool("train.py", f"--output_dir={tmp_path}/refused", "--preset=variational_cluttered100",
                  "--window_scale=0.5,0.2", *small)
    assert window.returncode != 0 and "--window_scale takes 'min,max' fractions" in window.stderr

    resnet = tool("train.py", f"--output_dir={tmp_path}/resnet", "--preset=resnet18_cluttered100_identify",
                  "--task=single", *small)
    assert resnet.returncode == 0, resnet.stderr[-3000:]
    assert "Test top-1 on the full image" in resnet.stdout
    assert keras.models.load_model(str(tmp_path / "resnet" / "model.keras")).contract.activation == "softmax"


def test_warnings_for_a_chance_level_model_and_a_collapsed_policy():
    tool = load_tool(os.path.join(ROOT, "tools", "train.py"), "train_tool")
    contract = saccade_zoo.build("dram_cluttered60").contract
    labels = np.arange(20) % 10

    def results(accuracy, coverage):
        return {"policies": {"learned": {"accuracy": accuracy, "coverage": coverage}}, "full_image": None}

    healthy = results([0.3, 0.4, 0.5], [0.05, 0.09, 0.13])
    assert tool.chance_warning(healthy, contract, labels, 3) is None
    assert tool.collapse_warning(healthy, 3) is None
    assert "near chance" in tool.chance_warning(results([0.3, 0.2, 0.14], [0.05, 0.09, 0.13]), contract, labels, 3)
    # Evaluated with fewer glimpses than trained: the warning names the count it read.
    assert "accuracy 14.0% with 3 glimpses" in tool.chance_warning(results([0.3, 0.2, 0.14], [0.1] * 3), contract,
                                                                   labels, 6)
    # DRAM under Adam: every glimpse on one spot (coverage of 8 glimpses = one glimpse's).
    collapsed = results([0.3] * 8, [0.0144, 0.0150, 0.0160, 0.0170, 0.0175, 0.0178, 0.0179, 0.018])
    assert "REINFORCE" in tool.collapse_warning(collapsed, 8)
    # A variational saccader has no REINFORCE term: its advice names its own knobs.
    advice = tool.collapse_warning(collapsed, 8, variational=True)
    assert "collapsed" in advice and "--window_scale" in advice and "REINFORCE" not in advice
    assert tool.collapse_warning(collapsed, 1) is None  # one glimpse cannot pile up
    assert tool.collapse_warning({"policies": {}, "full_image": 0.5}, 8) is None  # a full-image model


def test_two_tools_that_define_the_same_flag_load_in_one_process():
    """tools/train.py and tools/convert_to_tiff.py both define --output_dir; one pytest worker may load both
    (absl's DuplicateFlagError broke CI when they did)."""
    for _ in range(2):
        train = load_tool(os.path.join(ROOT, "tools", "train.py"), "train_tool")
        convert = load_tool(os.path.join(ROOT, "tools", "convert_to_tiff.py"), "convert_to_tiff_tool")
        assert callable(train.collapse_warning) and callable(convert.convert_files)
