"""The output contract of every attention classifier in the zoo, declared once.

Models declare their contract (`GlimpseModel.contract`); export, parity checks, evaluation and the tools read it
and never re-derive what a model returns. A contract says:

* the keys, shapes (after the batch axis) and dtypes of the outputs;
* the *location kind*: ``"grid"`` (the Saccader family: ``locations`` are int32 (row, col) cells of a feature
  grid) or ``"continuous"`` (spatial transformers, RAM, DRAM: ``locations`` are float32 glimpse centres (y, x) in
  input pixels and ``scales`` the glimpse (height, width) in input pixels);
* the *output activation*: ``"softmax"`` (one class per image, integer labels) or ``"sigmoid"`` (multi-label,
  multi-hot labels, e.g. two-item identification), which decides probabilities, predictions, losses and what
  "correct" means (the exact match of every label for multi-label models);
* the *aggregation* of the glimpses: ``"mean"`` (Saccader, variational saccading: each glimpse is scored on its
  own, ``step_logits[:, t]`` are glimpse t's scores and the prediction after t glimpses is the mean of the first
  t, ``logits`` the mean of all) or ``"last"`` (recurrent models, RAM and DRAM: ``step_logits[:, t]`` are read
  from the recurrent state after glimpse t, which already summarises glimpses 1..t, so they *are* the prediction
  after t glimpses and ``logits`` is the last of them). `OutputContract.cumulative_logits` applies it.

Every glimpse model returns at least:

=============== ================ ======= ===========================================================================
key             shape            dtype   meaning
=============== ================ ======= ===========================================================================
``logits``      (B, C)           float32 class scores (the mean of the glimpses' logits, or the last step's)
``step_logits`` (B, T, C)        float32 the class scores of each glimpse / step (accuracy vs number of glimpses)
``locations``   (B, T, 2)        int32 / glimpse cells (row, col) ("grid") or centres (y, x) in input pixels
                                 float32 ("continuous")
``boxes``       (B, T, 4)        float32 glimpse pixel boxes (y0, x0, y1, x1), half-open, in input pixels
``scales``      (B, T, 2)        float32 ("continuous" only) glimpse (height, width) in input pixels
=============== ================ ======= ===========================================================================

A full-image classifier (a BagNet on its own, the ResNet-18 baseline) has ``num_glimpses=None`` and returns
``logits`` only (plus its extra outputs). A family may add outputs of its own (``extra_outputs``: (name, shape
without the batch axis, dtype), ``None`` for a size that is not fixed).
"""
import dataclasses

import numpy as np

GRID, CONTINUOUS = "grid", "continuous"
LOCATION_KINDS = (GRID, CONTINUOUS)
SOFTMAX, SIGMOID = "softmax", "sigmoid"
ACTIVATIONS = (SOFTMAX, SIGMOID)
MEAN, LAST = "mean", "last"
AGGREGATIONS = (MEAN, LAST)

OUTPUT_DOCS = {
    "logits": "class scores (glimpse models: the mean of the glimpses' logits, or the last step's for a recurrent "
              "model; see the contract's aggregation)",
    "probabilities": "softmax (one class) or sigmoid (multi-label) of logits, as the model's contract says",
    "step_logits": "logits of each glimpse",
    "locations": {GRID: "glimpse cells (row, col) on the feature grid, int32",
                  CONTINUOUS: "glimpse centres (y, x) in input pixels, float32"},
    "boxes": "glimpse pixel boxes (y0, x0, y1, x1), half-open, in input pixels",
    "scales": "glimpse (height, width) in input pixels",
}


@dataclasses.dataclass(frozen=True)
class OutputContract:
    """What a zoo model returns (see the module docstring)."""

    num_classes: int
    num_glimpses: int = None  # None: a full-image classifier (no glimpses)
    location_kind: str = GRID
    activation: str = SOFTMAX
    extra_outputs: tuple = ()  # ((name, shape without batch, dtype), ...)
    aggregation: str = MEAN  # how step_logits make the prediction after t glimpses: "mean" or "last"

    def __post_init__(self):
        if self.location_kind not in LOCATION_KINDS:
            raise ValueError(f"location_kind must be one of {LOCATION_KINDS}, got {self.location_kind!r}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}.")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}.")
        if int(self.num_classes) < 1 or (self.num_glimpses is not None and int(self.num_glimpses) < 1):
            raise ValueError(f"num_classes and num_glimpses must be >= 1, got {self.num_classes}, "
                             f"{self.num_glimpses}.")

    @property
    def has_glimpses(self):
        return self.num_glimpses is not None

    @property
    def closed_loop(self):
        """A recurrent glimpse model (aggregation "last": RAM, DRAM): where glimpse t + 1 goes depends on what glimpse
        t saw, so a rounding difference anywhere can move every later glimpse (see `saccade_zoo.export.parity`)."""
        return self.has_glimpses and self.aggregation == LAST

    @property
    def multi_label(self):
        return self.activation == SIGMOID

    def output_specs(self):
        """{key: (shape without the batch axis, dtype)} of every output."""
        c = int(self.num_classes)
        specs = {"logits": ((c,), "float32")}
        if self.has_glimpses:
            t = int(self.num_glimpses)
            specs.update(step_logits=((t, c), "float32"),
                         locations=((t, 2), "int32" if self.location_kind == GRID else "float32"),
                         boxes=((t, 4), "float32"))
            if self.location_kind == CONTINUOUS:
                specs["scales"] = ((t, 2), "float32")
        for name, shape, dtype in self.extra_outputs:
            specs[name] = (tuple(shape), dtype)
        return specs

    def check(self, outputs, batch=None, where="model outputs"):
        """Raise ValueError naming the first output whose presence, shape or dtype breaks the contract."""
        specs = self.output_specs()
        missing = sorted(set(specs) - set(outputs))
        if missing:
            raise ValueError(f"{where} lack {', '.join(missing)} (contract keys: {', '.join(specs)}).")
        for key, (shape, dtype) in specs.items():
            value = outputs[key]
            got_shape = tuple(value.shape)
            got_dtype = str(getattr(value.dtype, "name", value.dtype))
            expected = ((batch,) if batch is not None else got_shape[:1]) + tuple(shape)
            same = len(got_shape) == len(expected) and all(
                e is None or g is None or int(e) == int(g) for g, e in zip(got_shape, expected))
            if not same:
                raise ValueError(f"{where}: {key} has shape {got_shape}, the contract says {expected}.")
            if dtype is not None and got_dtype != dtype:
                raise ValueError(f"{where}: {key} is {got_dtype}, the contract says {dtype}.")
        return outputs

    # ------------------------------------------------------------------------------ what the aggregation decides
    def cumulative_logits(self, step_logits):
        """(N, T, C) step logits -> (N, T, C) float64 class scores after 1..T glimpses: the running mean of the
        first t glimpses' logits ("mean") or the step logits themselves ("last", a recurrent model). Index T - 1
        is the model's ``logits``."""
        step_logits = np.asarray(step_logits, np.float64)
        if step_logits.ndim != 3:
            raise ValueError(f"step_logits must be (N, T, C), got shape {step_logits.shape}.")
        if self.aggregation == LAST:
            return step_logits
        return np.cumsum(step_logits, axis=1) / np.arange(1, step_logits.shape[1] + 1)[:, None]

    # ------------------------------------------------------------------------------- what the activation decides
    def probabilities(self, logits):
        """Softmax (one class) or sigmoid (multi-label) of logits; NumPy in, NumPy out (float64 internally)."""
        logits = np.asarray(logits, np.float64)
        if self.multi_label:
            return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)

    def predictions(self, logits):
        """Class index (softmax) or multi-hot vector (sigmoid: logit > 0, i.e. probability > 0.5)."""
        logits = np.asarray(logits)
        return (logits > 0).astype(np.int64) if self.multi_label else logits.argmax(axis=-1)

    def correct(self, logits, labels):
        """(N,) bool: top-1 right (softmax) or every label right (sigmoid: exact match)."""
        predicted = self.predictions(logits)
        labels = np.asarray(labels)
        if self.multi_label:
            return (predicted == (labels > 0.5)).all(axis=-1)
        return predicted == labels

    def label_accuracy(self, logits, labels):
        """Per-label accuracy of a multi-label model: the fraction of (image, class) decisions that are right."""
        if not self.multi_label:
            raise ValueError("label_accuracy is for multi-label (sigmoid) models; use correct() for one class.")
        return float((self.predictions(logits) == (np.asarray(labels) > 0.5)).mean())

    def get_config(self):
        config = dataclasses.asdict(self)
        config["extra_outputs"] = [list(e) for e in self.extra_outputs]
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["extra_outputs"] = tuple((n, tuple(s), d) for n, s, d in config.get("extra_outputs", ()))
        return cls(**config)
