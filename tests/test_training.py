"""Staged training through fit: gradients reach exactly the right weights, losses fall on real data, the compile
setup survives save/load, and keyed sampling does not depend on how the batch is split."""
import numpy as np
import pytest
import tensorflow as tf

import keras
import saccade_zoo
from saccade_zoo.data import ClutteredConfig, generate_cluttered, load_sample
from saccade_zoo.models.saccader.losses import location_targets
from saccade_zoo.training.losses import aggregated_cross_entropy
from saccade_zoo.training.sampling import example_keys, keyed_gumbel


@pytest.fixture(scope="module")
def real_batch():
    items, labels = load_sample("train")
    data = generate_cluttered(items, labels, 32, ClutteredConfig(canvas_size=100, num_distractors=8), seed=3)
    return data["images"], data["labels"]


def stage_gradients(model, stage, images, labels):
    model.compile(keras.optimizers.SGD(0.01), stage=stage)
    with tf.GradientTape() as tape:
        loss, _, _ = model._run_stage((images, labels), training=True)
    grads = tape.gradient(loss, model.trainable_variables)
    backbone_ids = {id(v) for v in model.backbone.trainable_variables}
    location_ids = {id(v) for v in model.location_variables()}
    flows = lambda g: g is not None and float(tf.reduce_max(tf.abs(g))) > 0  # noqa: E731
    backbone = [flows(g) for v, g in zip(model.trainable_variables, grads) if id(v) in backbone_ids]
    location = [flows(g) for v, g in zip(model.trainable_variables, grads) if id(v) in location_ids]
    assert len(backbone) + len(location) == len(model.trainable_variables)
    return backbone, location


def test_gradients_reach_only_the_weights_of_each_stage(real_batch):
    images, labels = real_batch
    model = saccade_zoo.build("saccader_cluttered100")
    backbone, location = stage_gradients(model, "representation", images, labels)
    assert any(backbone) and not any(location)
    backbone, location = stage_gradients(model, "location", images, labels)
    assert not any(backbone), "location pretraining must not touch the frozen BagNet"
    assert all(location)
    backbone, location = stage_gradients(model, "policy", images, labels)
    assert any(backbone) and all(location)


def test_location_stage_keeps_bagnet_statistics_frozen(real_batch):
    images, labels = real_batch
    model = saccade_zoo.build("saccader_cluttered100")
    before = [w.numpy().copy() for w in model.backbone.weights]
    model.compile(keras.optimizers.SGD(0.01), stage="location")
    model.fit(images, labels, batch_size=16, epochs=1, verbose=0)
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before, model.backbone.weights))


@pytest.mark.parametrize("stage,lr,steps", [("representation", 0.05, 8), ("location", 0.2, 6), ("policy", 0.01, 8)])
def test_each_stage_loss_falls_on_a_real_batch(real_batch, stage, lr, steps):
    images, labels = real_batch
    keras.utils.set_random_seed(0)
    model = saccade_zoo.build("saccader_cluttered100")
    model.compile(keras.optimizers.SGD(lr, momentum=0.9, nesterov=True), stage=stage)
    history = model.fit(images, labels, batch_size=32, epochs=steps, verbose=0).history
    # The supervised term of each stage must fall. (The policy stage's total also holds the REINFORCE
    # surrogate, whose value follows the sign of r - b and is not a quantity that decreases.)
    key = {"representation": "ce", "location": "location_ce", "policy": "ce"}[stage]
    assert history[key][-1] < 0.9 * history[key][0], history[key]
    if stage != "policy":
        assert history["loss"][-1] < 0.9 * history["loss"][0], history["loss"]
    assert all(np.isfinite(history["loss"]))


def test_trained_model_reloads_and_keeps_training(real_batch, tmp_path):
    images, labels = real_batch
    model = saccade_zoo.build("saccader_cluttered100")
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True), stage="policy", num_trajectories=2)
    model.fit(images, labels, batch_size=16, epochs=1, verbose=0)
    path = str(tmp_path / "trained.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.training_options == model.training_options
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 2
    momentum = [v for v in loaded.optimizer.variables if "momentum" in v.path]
    assert momentum and any(float(tf.reduce_max(tf.abs(v))) > 0 for v in momentum)
    before = [w.numpy().copy() for w in loaded.trainable_weights]
    history = loaded.fit(images, labels, batch_size=16, epochs=1, verbose=0).history
    assert set(history) == {"loss", "reinforce", "ce", "l2", "reward", "accuracy"}
    assert int(loaded.optimizer.iterations) == 4
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, loaded.trainable_weights))


def test_bagnet_alone_trains_the_representation_step(real_batch):
    images, labels = real_batch
    model = saccade_zoo.build("bagnet33_cluttered100")
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), stage="representation")
    history = model.fit(images, labels, batch_size=32, epochs=6, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    with pytest.raises(ValueError, match="BagNet has no training stage 'policy'; its stages: representation"):
        model.compile("sgd", stage="policy")


def test_losses_match_the_paper_definitions():
    logits = np.random.randn(3, 5, 4).astype("float32")
    labels = np.array([0, 3, 1])
    # Eq. 4: -log( prod_i P(y|X_i)^(1/n) / sum_k prod_i P(k|X_i)^(1/n) )
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    score = log_p.mean(axis=1)
    expected = -(score[np.arange(3), labels] - np.log(np.exp(score).sum(-1)))
    np.testing.assert_allclose(aggregated_cross_entropy(tf.constant(logits), labels), expected, rtol=1e-5)
    logits_map = np.random.randn(2, 3, 3, 4).astype("float32")
    # The paper's targets: cells by their largest logit over classes.
    targets = location_targets(tf.constant(logits_map), 4, "max_logit").numpy()
    for b in range(2):
        np.testing.assert_array_equal(targets[b], np.argsort(-logits_map[b].max(axis=-1).ravel())[:4])
    # The authors' code's targets (default): the predicted class's cells.
    targets = location_targets(tf.constant(logits_map), 4).numpy()
    for b in range(2):
        predicted = logits_map[b].mean(axis=(0, 1)).argmax()
        np.testing.assert_array_equal(targets[b], np.argsort(-logits_map[b, :, :, predicted].ravel())[:4])
    # A hand-made case where the two rules disagree: class 0 wins on average, class 1 peaks in one cell.
    case = np.zeros((1, 2, 2, 2), "float32")
    case[0, :, :, 0] = [[1.0, 1.0], [1.0, 2.0]]
    case[0, 0, 0, 1] = 5.0
    assert location_targets(tf.constant(case), 1, "max_logit").numpy()[0, 0] == 0
    assert location_targets(tf.constant(case), 1, "predicted_class").numpy()[0, 0] == 3
    with pytest.raises(ValueError, match="location_targets"):
        location_targets(tf.constant(case), 1, "largest")


def test_keyed_sampling_does_not_depend_on_batch_split():
    images = tf.constant(np.random.rand(6, 10, 10, 1).astype("float32"))
    whole = keyed_gumbel(example_keys(images), 7, 1, (3, 5))
    halves = tf.concat([keyed_gumbel(example_keys(images[:3]), 7, 1, (3, 5)),
                        keyed_gumbel(example_keys(images[3:]), 7, 1, (3, 5))], axis=0)
    np.testing.assert_array_equal(whole, halves)
    assert not np.array_equal(whole, keyed_gumbel(example_keys(images), 8, 1, (3, 5)))
    assert not np.array_equal(whole, keyed_gumbel(example_keys(images), 7, 0, (3, 5)))
    # Gumbel(0, 1): mean ~ 0.5772
    many = keyed_gumbel(example_keys(tf.constant(np.random.rand(64, 4, 4, 1).astype("float32"))), 0, 0, (50, 50))
    assert abs(float(tf.reduce_mean(many)) - 0.5772) < 0.02


def test_training_errors_are_clear(real_batch):
    images, labels = real_batch
    model = saccade_zoo.build("saccader_cluttered100")
    with pytest.raises(ValueError, match="compile"):
        model.fit(images, labels, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="has no training stage 'reinforce'; its stages: representation, location, policy"):
        model.compile("sgd", stage="reinforce")
    with pytest.raises(ValueError, match="takes no `loss`"):
        model.compile("sgd", stage="policy", loss="mse")
    with pytest.raises(ValueError, match=r"location_targets must be one of \('max_logit', 'predicted_class'\)"):
        model.compile("sgd", stage="location", location_targets="largest")
    model.compile("sgd", stage="location")
    assert model.training_options["location_targets"] == "max_logit"  # the paper's, by default
    model.compile("sgd", stage="policy")
    with pytest.raises(TypeError, match="Stage 'policy' of Saccader has no option"):
        model.compile("sgd", stage="policy", location_glimpses=6)
    with pytest.raises(ValueError, match="integer class indices"):
        model.fit(images, np.eye(10, dtype="float32")[labels], epochs=1, verbose=0)
    # A spent schedule (what a model saved by tools/train.py carries): fit warns that nothing will move.
    spent = keras.optimizers.schedules.CosineDecay(0.01, decay_steps=2)
    model.compile(keras.optimizers.Adam(spent), stage="policy")
    model.optimizer.iterations.assign(5)
    with pytest.warns(UserWarning, match="fit starts with a learning rate of 0"):
        model.fit(images[:8], labels[:8], batch_size=8, epochs=1, verbose=0)


def test_multi_label_saccader_trains_every_stage_on_two_item_identification():
    items, labels = load_sample("train")
    config = ClutteredConfig(canvas_size=100, num_distractors=4, num_items=2, task="identify")
    data = generate_cluttered(items, labels, 16, config, seed=4)
    assert data["labels"].shape == (16, 10) and data["labels"].dtype == np.float32
    model = saccade_zoo.build("saccader_cluttered100", activation="sigmoid")
    assert model.contract.multi_label and model.backbone.activation == "sigmoid"
    for stage in model.stage_names:
        model.compile(keras.optimizers.SGD(0.01), stage=stage)
        history = model.fit(data["images"], data["labels"], batch_size=8, epochs=1, verbose=0).history
        assert all(np.isfinite(v[-1]) for v in history.values()), (stage, history)
    # Integer labels for a multi-label model (and the reverse) are refused by name.
    with pytest.raises(ValueError, match=r"multi-hot labels of shape \(batch, 10\)"):
        model.fit(data["images"], np.argmax(data["labels"], -1), batch_size=8, epochs=1, verbose=0)
    # The representation loss of a multi-label BagNet is the sigmoid cross entropy of the averaged logits.
    logits = tf.constant([[[2.0, -1.0], [0.0, 1.0]]])
    expected = tf.nn.sigmoid_cross_entropy_with_logits(labels=[[1.0, 0.0]], logits=[[1.0, 0.0]])
    np.testing.assert_allclose(aggregated_cross_entropy(logits, tf.constant([[1.0, 0.0]]), "sigmoid"),
                               tf.reduce_sum(expected, -1), rtol=1e-6)
