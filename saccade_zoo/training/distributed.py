"""Distributed training: strategies, a custom training loop for multi-worker / TPU, and chief-only saving.

One machine, several devices: build and compile the model inside ``MirroredStrategy().scope()`` and call
``model.fit`` as usual (the staged ``train_step`` scales every term for the global batch; build with
``synchronized_bn=True`` so that N replicas train exactly like one device).

Several machines: Keras 3's ``fit`` fails under ``MultiWorkerMirroredStrategy`` (keras#20585, "Attempt to convert
a value (PerReplica...)", raised from ``Trainer._maybe_symbolic_build`` before the first step), so `train_loop`
runs the model's own ``train_step`` -- the step ``fit`` would run -- through ``strategy.run`` in a ``tf.function``.
It works with every strategy (default, mirrored, multi-worker, TPU).

Saving in a cluster: every worker must call `save_model` (reading distributed variables may need collective ops),
but only the chief writes to the real path; the other workers write to a private temporary directory that is
deleted afterwards (the pattern of the TensorFlow multi-worker guide).

See docs/distributed.md.
"""
import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

import keras

KINDS = ("default", "mirrored", "multi_worker", "tpu")


def make_strategy(kind="default", devices=None, tpu=None, communication="auto", cluster_resolver=None):
    """A ``tf.distribute`` strategy by name.

    Args:
        kind: ``"default"`` (no distribution: the default strategy, one device), ``"mirrored"`` (all local GPUs, or
            ``devices``), ``"multi_worker"`` (``MultiWorkerMirroredStrategy``; the cluster comes from the
            ``TF_CONFIG`` environment variable or ``cluster_resolver``; create it at program start, before any
            other TensorFlow op) or ``"tpu"`` (``TPUStrategy`` through a ``TPUClusterResolver``).
        devices: device names for ``"mirrored"`` (default: all GPUs, else the CPU).
        tpu: TPU name / address for ``"tpu"``; ``None`` lets the resolver look it up (``TPU_NAME`` on Cloud,
            use ``"local"`` on a TPU VM).
        communication: collective implementation for ``"multi_worker"``: ``"auto"``, ``"ring"`` (gRPC, CPU
            clusters) or ``"nccl"`` (GPU clusters).
        cluster_resolver: an explicit cluster resolver for ``"multi_worker"`` (default: ``TF_CONFIG``).
    """
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices=devices)
    if kind == "multi_worker":
        implementations = {
            "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
            "ring": tf.distribute.experimental.CommunicationImplementation.RING,
            "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
        }
        if communication not in implementations:
            raise ValueError(f"communication must be one of {sorted(implementations)}, got {communication!r}.")
        options = tf.distribute.experimental.CommunicationOptions(implementation=implementations[communication])
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=cluster_resolver,
                                                         communication_options=options)
    if kind == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown strategy kind {kind!r}; expected one of {', '.join(KINDS)}.")


# ------------------------------------------------------------------------------------------------ cluster roles
def task_info(strategy=None):
    """``(task_type, task_id, cluster_spec_dict)`` of this process; ``(None, None, {})`` outside a cluster.

    Read from the strategy's cluster resolver when it has one, else from ``TF_CONFIG``."""
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is not None and getattr(resolver, "task_type", None) is not None:
        spec = resolver.cluster_spec()
        return resolver.task_type, int(resolver.task_id or 0), spec.as_dict() if spec else {}
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = config.get("task", {})
    if not task.get("type"):
        return None, None, config.get("cluster", {})
    return task["type"], int(task.get("index", 0)), config.get("cluster", {})


def is_chief(strategy=None):
    """Whether this process is the chief: no cluster, the ``chief`` task, or worker 0 of a cluster without one."""
    task_type, task_id, cluster = task_info(strategy)
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def write_dir(base, strategy=None):
    """Where this process writes output meant for ``base``: ``base`` itself on the chief, a fresh private
    temporary directory on any other worker (delete it with `shutil.rmtree` after writing; `save_model` does)."""
    if is_chief(strategy):
        os.makedirs(base, exist_ok=True)
        return base
    _, task_id, _ = task_info(strategy)
    return tempfile.mkdtemp(prefix=f"saccade_zoo_worker{task_id}_")


def save_model(model, filepath, strategy=None):
    """Save ``model`` (``.keras`` archive or ``.weights.h5``) from a possibly distributed run.

    Call it on EVERY worker, at the same point of training: the chief writes ``filepath``; the other workers write
    to a private temporary directory that is removed again. Returns the path written on the chief, else ``None``.
    """
    directory, name = os.path.split(os.path.abspath(filepath))
    target = write_dir(directory, strategy)
    path = os.path.join(target, name)
    try:
        if name.endswith(".weights.h5"):
            model.save_weights(path)
        else:
            model.save(path)
    finally:
        if target != directory:
            shutil.rmtree(target, ignore_errors=True)
    return path if target == directory else None


# ------------------------------------------------------------------------------------------------ custom loop
def _check_model(model, strategy):
    if not getattr(model, "optimizer", None) or not model.metrics:
        raise ValueError("train_loop needs a compiled model: call model.compile(optimizer, stage=...) inside "
                         "strategy.scope() first.")
    variables = list(model.trainable_variables) + list(model.optimizer.variables)
    # Keras 3 variables wrap the tf.Variable (a distributed variable when created in a strategy scope).
    if not all(strategy.extended.variable_created_in_scope(getattr(v, "value", v)) for v in variables):
        raise ValueError(f"The model or its optimizer was not built under this {type(strategy).__name__}: build and "
                         "compile the model inside `with strategy.scope():`.")


def make_train_function(model, strategy):
    """A ``tf.function`` that takes the next global batch from a distributed iterator, runs ``model.train_step``
    on every replica (``strategy.run``) and returns ``{metric: value}`` for that global batch.

    The metric trackers are reset before the step and read in cross-replica context, where a Keras ``Mean``
    tracker sums its (sync-on-read) total and count over all replicas: the values are exact global-batch means,
    also when the replicas hold different numbers of examples."""

    @tf.function(reduce_retracing=True)
    def train_function(iterator):
        for tracker in model.metrics:
            tracker.reset_state()
        batch = next(iterator)
        strategy.run(model.train_step, args=(batch,))
        return {tracker.name: tracker.result() for tracker in model.metrics}

    return train_function


def distribute_dataset(dataset, strategy, shard_policy=None):
    """``strategy.experimental_distribute_dataset(dataset)``, optionally with an auto-shard policy
    (``"off"``, ``"auto"``, ``"data"``, ``"file"``). ``dataset`` must be batched with the GLOBAL batch size."""
    if shard_policy is not None:
        policies = {"off": tf.data.experimental.AutoShardPolicy.OFF, "auto": tf.data.experimental.AutoShardPolicy.AUTO,
                    "data": tf.data.experimental.AutoShardPolicy.DATA,
                    "file": tf.data.experimental.AutoShardPolicy.FILE}
        if shard_policy not in policies:
            raise ValueError(f"shard_policy must be one of {sorted(policies)}, got {shard_policy!r}.")
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = policies[shard_policy]
        dataset = dataset.with_options(options)
    return strategy.experimental_distribute_dataset(dataset)


def train_loop(model, dataset, steps, strategy=None, callbacks=None, log_every=None, shard_policy=None):
    """Train ``model`` for ``steps`` global batches with its own ``train_step`` -- the function ``fit`` runs --
    under any ``tf.distribute`` strategy, including ``MultiWorkerMirroredStrategy`` where Keras 3's ``fit`` fails.

    Args:
        model: a zoo model built AND compiled (``compile(optimizer, stage=...)``) inside ``strategy.scope()``.
        dataset: a ``tf.data.Dataset`` of ``(images, labels)`` batched with the GLOBAL batch size (it is
            distributed with ``strategy.experimental_distribute_dataset``; under multi-worker set its auto-shard
            policy, see `distribute_dataset` and docs/distributed.md), or an already distributed dataset.
            It must yield at least ``steps`` batches on every worker.
        steps: number of training steps (global batches).
        strategy: default: the strategy the model was built under.
        callbacks: Keras callbacks; they see one epoch of ``steps`` batches (``on_train_batch_end`` gets the
            step's metrics). A callback that saves must do so on every worker (see `save_model`).
        log_every: print the metrics every ``log_every`` steps (chief only); ``None``: silent.
        shard_policy: auto-shard policy set on ``dataset`` before distributing it (see `distribute_dataset`);
            ``None`` keeps the dataset's own options (TensorFlow's default AUTO: FILE, falling back to DATA).

    Returns:
        ``{metric: np.ndarray (steps,)}``: the global-batch value of each metric at each step (not a running mean).
    """
    strategy = strategy or model.distribute_strategy
    _check_model(model, strategy)
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    if isinstance(dataset, tf.data.Dataset):
        dataset = distribute_dataset(dataset, strategy, shard_policy)
    iterator = iter(dataset)
    train_function = make_train_function(model, strategy)
    callback_list = keras.callbacks.CallbackList(callbacks, model=model, epochs=1, steps=steps, verbose=0)
    model.stop_training = False
    history = {tracker.name: [] for tracker in model.metrics}
    chief = is_chief(strategy)
    callback_list.on_train_begin()
    callback_list.on_epoch_begin(0)
    logs = {}
    for step in range(steps):
        callback_list.on_train_batch_begin(step)
        try:
            logs = {name: float(value) for name, value in train_function(iterator).items()}
        except tf.errors.OutOfRangeError as error:
            raise ValueError(f"The dataset ran out after {step} of {steps} steps; use dataset.repeat() or fewer "
                             "steps.") from error
        for name, value in logs.items():
            history[name].append(value)
        callback_list.on_train_batch_end(step, logs)
        if log_every and chief and ((step + 1) % int(log_every) == 0 or step + 1 == steps):
            print(f"step {step + 1}/{steps} - " + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
        if model.stop_training:  # a callback asked to stop (must happen on every worker alike)
            break
    callback_list.on_epoch_end(0, logs)
    callback_list.on_train_end(logs)
    return {name: np.asarray(values, np.float32) for name, values in history.items()}
