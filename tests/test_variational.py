"""Variational saccading (Ramapuram et al.): the model, Eq. 5 through fit, the proxy, bad input, save/load."""
import os

import numpy as np
import pytest
import tensorflow as tf

import keras
import saccade_zoo
from saccade_zoo.contract import OutputContract
from saccade_zoo.layers.resize import AreaResize, area_matrix
from saccade_zoo.models.variational import GlimpseWindow, VariationalSaccader
from saccade_zoo.models.variational.losses import gaussian_kl, gaussian_nll
from saccade_zoo.training.losses import correct

# A narrow model on 40x40 images: the architecture, not its size, is what these tests check.
TINY = dict(image_shape=(40, 40, 1), num_classes=5, num_glimpses=3, proxy_shape=(16, 16, 1), glimpse_size=8,
            min_scale=0.2, max_scale=0.5, encoder_filters=(8, 16), feature_dim=16, units=16, num_layers=2,
            decoder_filters=(8, 8), crop_filters=(8, 16), crop_units=16, groups=4)


def tiny(**overrides):
    keras.utils.set_random_seed(0)
    return VariationalSaccader(**{**TINY, **overrides})


def images(n=8, seed=0, shape=(40, 40, 1)):
    return np.random.default_rng(seed).random((n, *shape)).astype("float32")


# ------------------------------------------------------------------------------------------------------- proxy
def test_area_resize_equals_tf_area_resize_and_rows_sum_to_one():
    for n_in, n_out in ((100, 32), (40, 16), (12, 4), (7, 10)):
        matrix = area_matrix(n_in, n_out)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)
    x = images(3, shape=(100, 60, 2))
    ours = AreaResize((32, 24))(x)
    theirs = tf.image.resize(x, (32, 24), method="area")
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    with pytest.raises(ValueError, match="known height and width"):
        AreaResize(8).build((None, None, None, 1))


# ------------------------------------------------------------------------------------------------------ outputs
def test_outputs_follow_the_contract_and_windows_stay_inside_the_image():
    model = tiny()
    out = {k: np.asarray(v) for k, v in model(images()).items()}
    contract = model.contract
    assert contract.location_kind == "continuous" and contract.num_glimpses == 3
    contract.check(out, batch=8)
    boxes = out["boxes"]
    assert (boxes[..., :2] >= -1e-4).all() and (boxes[..., 2:] <= 40 + 1e-4).all()
    side = boxes[..., 2] - boxes[..., 0]
    assert (side >= 0.2 * 40 - 1e-4).all() and (side <= 0.5 * 40 + 1e-4).all()
    np.testing.assert_allclose(out["scales"], np.stack([side, boxes[..., 3] - boxes[..., 1]], -1), atol=1e-5)
    np.testing.assert_allclose(out["locations"], (boxes[..., :2] + boxes[..., 2:]) / 2, atol=1e-5)
    np.testing.assert_allclose(out["logits"], out["step_logits"].mean(axis=1), atol=1e-5)
    # Inference is the posterior mean: deterministic.
    again = model(images())
    np.testing.assert_array_equal(again["boxes"], boxes)


def test_glimpse_window_ranges():
    window = GlimpseWindow(0.1, 0.4)
    z = np.array([[[-50.0, 50.0, -50.0], [50.0, -50.0, 50.0], [0.0, 0.0, 0.0]]], "float32")
    s, x, y = np.moveaxis(np.asarray(window(z)), -1, 0)
    np.testing.assert_allclose(s, [[0.1, 0.4, 0.25]], atol=1e-6)
    np.testing.assert_allclose(x, [[0.9, -0.6, 0.0]], atol=1e-6)  # |x| + s <= 1: the window fits
    np.testing.assert_allclose(y, [[-0.9, 0.6, 0.0]], atol=1e-6)
    with pytest.raises(ValueError, match="min_scale <= max_scale"):
        GlimpseWindow(0.5, 0.2)


def test_paper_sized_preset_parameter_count():
    model = saccade_zoo.build("variational_cluttered2528_identify")
    assert model.image_shape == (2528, 2528, 1) and model.contract.multi_label
    # Sized like the paper's model (Table 1: 7.4M; the reference code's is 6.99M with 10 classes).
    assert model.count_params() == 7_382_877  # 7,370,845 trainable
    assert saccade_zoo.build("variational_cluttered100").count_params() == 1_784_397  # 1,778,765 trainable


# ----------------------------------------------------------------------------------------------------- training
def terms(model, x, y, beta=1.0, training=True):
    model.compile(keras.optimizers.Adam(1e-3), stage="variational", beta=beta)
    return model._stage_terms("variational", x, tf.constant(y), training, model.training_options)


def test_loss_is_a_sum_of_the_classification_nll_and_the_elbo():
    model = tiny()
    x, y = images(), np.arange(8) % 5
    out = terms(model, x, y, beta=0.5, training=False)
    reference = model.forward(x, decode=True)
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=reference["logits"])
    recon = sum(gaussian_nll(reference["proxy"], reference["reconstruction"][:, t]) for t in range(3))
    kl = tf.reduce_sum(gaussian_kl(reference["posterior_mean"], reference["posterior_logvar"],
                                   reference["prior_mean"], reference["prior_logvar"]), axis=1)
    np.testing.assert_allclose(out["per_example"]["ce"], ce, rtol=1e-5)
    np.testing.assert_allclose(out["per_example"]["reconstruction"], 0.5 * recon, rtol=1e-5)
    np.testing.assert_allclose(out["per_example"]["kl"], 0.5 * kl, rtol=1e-5, atol=1e-6)
    model.compile(keras.optimizers.Adam(1e-3), stage="variational", beta=0.5)
    _, values, _ = model._run_stage((x, y), training=False)
    total = float(np.mean(ce) + 0.5 * np.mean(recon) + 0.5 * np.mean(kl))
    assert float(values["loss"]) == pytest.approx(total, rel=1e-5)  # a sum, not the reference's product


def test_gradients_flow_where_they_must_and_nowhere_else():
    model = tiny()
    x, y = images(), np.arange(8) % 5
    model.compile(keras.optimizers.Adam(1e-3), stage="variational")
    variables = {v.path: v for v in model.trainable_variables}

    def grads(term):
        with tf.GradientTape() as tape:
            out = terms(model, x, y)
            loss = tf.reduce_mean(out["per_example"][term])
        return {path: g for path, g in zip(variables, tape.gradient(loss, list(variables.values())))}

    def reached(g, part):
        return any(v is not None and float(tf.reduce_max(tf.abs(v))) > 0 for p, v in g.items()
                   if any(name.startswith(part) for name in p.split("/")))

    ce, recon, kl = grads("ce"), grads("reconstruction"), grads("kl")
    # Classification: pathwise through the spatial transformer into the posterior, the proxy encoder and the LSTM.
    for part in ("crop_classifier", "posterior_mu", "proxy_encoder", "lstm1"):
        assert reached(ce, part), part
    assert not reached(ce, "decoder") and not reached(ce, "prior_")  # the prior and decoder are the ELBO's
    # The reconstruction never reaches the crop classifier; the KL reaches prior and posterior, not the decoder.
    assert reached(recon, "decoder") and not reached(recon, "crop_classifier")
    assert reached(kl, "prior_mu") and reached(kl, "initial_prior") and reached(kl, "posterior_mu")
    assert not reached(kl, "decoder") and not reached(kl, "crop_classifier")


def test_fit_memorises_a_batch_then_save_load_fine_tune(tmp_path):
    model = tiny()
    x, y = images(16), np.arange(16) % 5
    model.compile(keras.optimizers.Adam(1e-2), stage="variational", beta=0.01)
    history = model.fit(x, y, epochs=30, batch_size=16, verbose=0).history
    assert history["ce"][-1] < 0.5 * history["ce"][0], history["ce"]
    assert np.isfinite(history["loss"]).all()
    path = str(tmp_path / "vs.keras")
    model.save(path)
    loaded = keras.models.load_model(path)  # safe_mode
    assert type(loaded) is VariationalSaccader and loaded.training_options["beta"] == 0.01
    for key, value in model(x).items():
        np.testing.assert_allclose(loaded(x)[key], value, rtol=1e-5, atol=1e-5, err_msg=key)
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0)  # fine-tunes after load
    clone = VariationalSaccader.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    six = model.with_glimpses(6)
    out6 = six(x)
    assert out6["step_logits"].shape == (16, 6, 5)  # the VRNN unrolls further with the same weights
    np.testing.assert_allclose(out6["boxes"][:, :3], model(x)["boxes"], atol=1e-4)  # causal


def test_two_item_identification_exact_match_and_per_label_accuracy():
    # Hand-made: both items right / one wrong / an extra label / nothing predicted.
    labels = np.array([[1, 0, 1, 0], [1, 0, 1, 0], [1, 0, 1, 0], [1, 0, 1, 0]], "float32")
    logits = np.array([[3, -2, 4, -1], [3, -2, -4, -1], [3, 2, 4, -1], [-3, -2, -4, -1]], "float32")
    exact = correct(tf.constant(logits), tf.constant(labels), "sigmoid").numpy()
    np.testing.assert_array_equal(exact, [1, 0, 0, 0])
    contract = OutputContract(num_classes=4, num_glimpses=2, location_kind="continuous", activation="sigmoid")
    assert contract.label_accuracy(logits, labels) == pytest.approx(12 / 16)
    # A sigmoid model trains on multi-hot labels and reports both accuracies.
    model = tiny(activation="sigmoid")
    x = images(8)
    y = np.zeros((8, 5), "float32")
    y[np.arange(8), np.arange(8) % 5] = 1
    y[np.arange(8), (np.arange(8) + 2) % 5] = 1
    model.compile(keras.optimizers.Adam(1e-3), stage="variational")
    logs = model.fit(x, y, epochs=1, batch_size=8, verbose=0).history
    assert {"accuracy", "label_accuracy"} <= set(logs)
    with pytest.raises(ValueError, match="multi-hot labels of shape"):
        model.fit(x, np.arange(8) % 5, epochs=1, batch_size=8, verbose=0)
    softmax = tiny()
    softmax.compile(keras.optimizers.Adam(1e-3), stage="variational")
    assert "label_accuracy" not in [m.name for m in softmax.metrics]
    with pytest.raises(ValueError, match="integer class indices"):
        softmax.fit(x, y, epochs=1, batch_size=8, verbose=0)


# ---------------------------------------------------------------------------------------------------- bad input
def test_a_proxy_of_its_own_and_bad_input():
    model = tiny(proxy_input=True, proxy_shape=(16, 16, 3))  # another modality: a 3-channel proxy
    x, proxy = images(4), images(4, shape=(16, 16, 3))
    out = model({"images": x, "proxy": proxy})
    assert out["logits"].shape == (4, 5)
    other = model({"images": x, "proxy": proxy[::-1]})
    assert not np.allclose(other["boxes"], out["boxes"])  # the boxes come from the proxy
    with pytest.raises(ValueError, match=r"proxy input\) expects 16x16 images"):
        model({"images": x, "proxy": images(4, shape=(20, 20, 3))})
    with pytest.raises(ValueError, match="proxy_input=True: pass"):
        model(x)
    plain = tiny()
    with pytest.raises(ValueError, match="expects 40x40 images"):
        plain(images(2, shape=(50, 50, 1)))
    bad = images(2)
    bad[0, 3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        plain(bad)
    with pytest.raises(ValueError, match="channels"):
        tiny(proxy_shape=(16, 16, 3))


# ------------------------------------------------------------------------------------------------------- export
@pytest.mark.slow
def test_export_savedmodel_and_every_tflite_variant_with_parity(tmp_path):
    from saccade_zoo.export import export_model

    model = tiny()
    x, y = images(48), np.arange(48) % 5
    model.compile(keras.optimizers.Adam(3e-3), stage="variational", beta=0.01)
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    preprocessing = {"image_size": [40, 40], "channels": 1, "mean": [0.0], "std": [1.0], "value_range": [0, 1]}
    # Random pixels and a barely trained model: its logits are near ties, so the quantised variants' agreement gate
    # (meant for trained models; the trained model's numbers are in docs/results.md) is relaxed here.
    relaxed = {"dynamic": {"top1_agreement": 0.3}, "int8": {"top1_agreement": 0.3}}
    manifest = export_model(model, str(tmp_path / "vs"), x[:16], preprocessing=preprocessing, parity_images=x[16:],
                            thresholds=relaxed)
    parity = manifest["parity"]["results"]
    # Built-in ops only (the conversion raises otherwise), every variant within its gate; the float exports
    # place every glimpse where Keras does (continuous centres within CONTINUOUS_LOCATION_TOLERANCE pixels).
    assert set(parity) >= {"savedmodel", "tflite_float32", "tflite_float16", "tflite_dynamic", "tflite_int8"}
    for variant in ("savedmodel", "tflite_float32"):
        assert parity[variant]["max_abs_logits"] <= 1e-4 and parity[variant]["location_agreement"] == 1.0
        assert parity[variant]["max_abs_locations_px"] < 1e-3
    assert parity["tflite_float16"]["location_agreement"] >= 0.98
    from saccade_zoo.export.tflite import TFLiteRunner

    out = TFLiteRunner(str(tmp_path / "vs" / "model_int8.tflite")).predict(x[16:20])
    assert out["boxes"].shape == (4, 3, 4) and out["scales"].shape == (4, 3, 2)


def test_blank_glimpses_do_not_amplify_rounding_noise():
    # Cluttered canvases are mostly exact zeros: GroupNorm with PyTorch's epsilon (1e-5) turned 1e-6 of input noise
    # on blank glimpses into logit changes of order 1 (and float32 TFLite missed Keras by 1e-3). With GN_EPSILON the
    # classifier is Lipschitz-tame there.
    from saccade_zoo.models.variational.crop import CropClassifier

    keras.utils.set_random_seed(0)
    glimpses = np.zeros((8, 4, 16, 16, 1), "float32")
    glimpses[:4, :, 4:9, 4:9] = 1.0  # half the crops see an item, half are blank background
    noise = np.random.default_rng(0).normal(0, 1e-6, glimpses.shape).astype("float32")
    classifier = CropClassifier(10, filters=(8, 16, 32), units=16, groups=4)
    h = np.zeros((8, 4, 8), "float32")
    change = np.abs(np.asarray(classifier(glimpses + noise, h)) - np.asarray(classifier(glimpses, h))).max()
    assert change < 1e-3, change


def test_fixed_posterior_variance_ablation():
    model = tiny(posterior_variance=1.4)
    out = model(images(4))
    np.testing.assert_allclose(out["posterior_logvar"], np.log(1.4), rtol=1e-6)
    learned = tiny()
    assert not np.allclose(learned(images(4))["posterior_logvar"], np.log(1.4))
    assert VariationalSaccader.from_config(model.get_config()).posterior_variance == 1.4
    with pytest.raises(ValueError, match="posterior_variance must be > 0"):
        tiny(posterior_variance=0.0)


# ------------------------------------------------------------------------------------------- noisy-proxy ablation
def test_proxies_for_a_model_that_takes_its_own_train_and_evaluate(tmp_path):
    """make_proxies equals the in-graph proxy (plus seeded noise of the asked size); a proxy_input model trains
    through train_stage and evaluates through evaluate_policies / right_and_wrong on {"images", "proxy"} arrays."""
    from saccade_zoo.evaluation import evaluate_policies, right_and_wrong
    from saccade_zoo.models.variational import make_proxies, proxy_inputs
    from saccade_zoo.training.runner import train_stage

    x = images(12)
    clean = make_proxies(x, (16, 16), batch_size=5)  # in chunks
    np.testing.assert_allclose(clean, AreaResize((16, 16))(x), atol=1e-6)
    noisy = make_proxies(x, (16, 16), noise_stddev=0.5, seed=3)
    assert abs(float((noisy - clean).std()) - 0.5) < 0.03
    np.testing.assert_array_equal(noisy, make_proxies(x, (16, 16), noise_stddev=0.5, seed=3))
    assert not np.allclose(noisy, make_proxies(x, (16, 16), noise_stddev=0.5, seed=4))
    with pytest.raises(ValueError, match="noise_stddev"):
        make_proxies(x, (16, 16), noise_stddev=-1.0)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        make_proxies(x[0], (16, 16))

    plain = tiny()
    assert proxy_inputs(plain, x) is x
    with pytest.raises(ValueError, match="proxy_input=True"):
        proxy_inputs(plain, x, noise_stddev=0.5)
    model = tiny(proxy_input=True)
    inputs = proxy_inputs(model, x, noise_stddev=0.5, seed=3)
    np.testing.assert_array_equal(inputs["proxy"], noisy)
    labels = np.arange(12) % 5
    model = train_stage(model, "variational", (inputs, labels), str(tmp_path), 1, 4, "adam", 1e-3,
                        validation=(inputs, labels), verbose=0)
    assert os.path.exists(tmp_path / "variational" / "final.keras")
    results = evaluate_policies(model, inputs, labels, max_glimpses=3, item_boxes=None)
    assert set(results["policies"]) == {"learned"} and len(results["policies"]["learned"]["coverage"]) == 3
    expected = np.asarray(model.predict(inputs, verbose=0)["step_logits"]).mean(axis=1).argmax(-1) == labels
    assert results["policies"]["learned"]["accuracy"][-1] == pytest.approx(expected.mean())
    found = right_and_wrong(model, inputs, labels, count=2, batch_size=5)
    assert len(found["right"]["index"]) == min(2, int(expected.sum()))
    assert len(found["wrong"]["index"]) == min(2, int((~expected).sum()))
