"""DRAM, the deep recurrent attention model (Ba, Mnih, Kavukcuoglu 2015), and the Saccader authors' ImageNet DRAM."""
import collections
import dataclasses

import keras

from saccade_zoo.models.base import check_activation, reject_unknown_kwargs, shape_hwc
from saccade_zoo.models.dram.layers import ContextNetwork, DRAMGlimpseNetwork
from saccade_zoo.models.ram.base import RecurrentAttentionModel, baseline_head, check_policy, classifier_head
from saccade_zoo.models.ram.layers import LocationNetwork, RandomLocations, Zeros

DRAMParts = collections.namedtuple("DRAMParts", "centre state glimpse context lower upper classifier location "
                                                "baseline random")
CONTEXTS = ("network", "glimpse")
BASELINES = ("learned", "batch_mean")


@keras.saving.register_keras_serializable(package="saccade_zoo")
class DRAM(RecurrentAttentionModel):
    """The deep recurrent attention model (Ba et al. 2015).

    Graph: a context step places the first glimpse; then for each of the T glimpses the `DRAMGlimpseNetwork` reads
    views around l_t, the lower LSTM r1 (``units[0]``) integrates them and the classifier reads it
    (``step_logits[:, t]``; the last step's is the prediction), the upper LSTM r2 (``units[1]``) reads r1 and emits
    the mean of the next location's Gaussian policy, tanh(Linear(r2)). Two stacked LSTMs: classification below,
    location above, so the location pathway does not have to carry the class evidence (the paper's argument).

    Context (``context``):
    - ``"network"`` (Ba et al.): a `ContextNetwork` on a down-sampled whole image gives the upper LSTM's initial
      output (its cell starts at zero); the first location is emitted from it.
    - ``"glimpse"`` (the Saccader authors' DRAM, ``dram_imagenet``): a first step at the image centre shows every
      view (77, 150 and 224 px fields of view) through the glimpse network and both LSTMs, and the first location is
      emitted from its upper state; its classification is not read. No parameters of its own.

    Training (``compile(optimizer, stage="reinforce")``, ``fit``): cross entropy of the last step's logits +
    ``reinforce_weight`` x REINFORCE on the T sampled locations (l ~ N(mean, ``location_std``^2 I), the sample not
    differentiated through), reward 1 when the final classification is right, minus a baseline: ``"learned"``
    (Linear on the gradient-stopped upper state, regressed on the reward) or ``"batch_mean"`` (the mean reward of
    the global batch; the Saccader authors'). Inference uses the policy's mean. The stage's default optimiser is
    SGD with momentum (the papers'), not Adam: Adam collapses DRAM's policy (see ``stages``).

    The ``dram_imagenet`` preset is the Saccader authors' configuration (their Table Supp.1): views 77/150/224 px
    resized to 77, RGB + 2 position channels each (15 channels) into a ResNet-v2-50 (2048-d), LSTMs of 1024 and
    1024, std 0.1, REINFORCE weight 0.1, batch-mean baseline: 45,610,219 parameters with 1001 classes.

    Outputs: as `saccade_zoo.models.ram.RAM` (contract "continuous", aggregation "last"); ``boxes`` are the finest
    view.

    Args:
        image_shape: (H, W, C).
        num_classes, num_glimpses, activation: as every zoo model.
        glimpse_size: side every view is resampled to; sides: each view's side in image pixels, finest first.
        where: "multiply" (Ba et al.: what x where) or "channels" (position channels, the Saccader authors').
        encoder: "convnet" (``glimpse_filters`` / ``glimpse_kernels``, then Linear to ``glimpse_units``) or
            "resnet50v2".
        units: (lower, upper) LSTM widths.
        context: "network" or "glimpse"; context_size / context_filters / context_kernels: the context network.
        baseline: "learned" or "batch_mean". location_std: the policy's fixed std. policy: "learned" or "random".
    """

    def __init__(self, image_shape=(100, 100, 1), num_classes=10, num_glimpses=6, glimpse_size=12, sides=(12, 24),
                 where="multiply", encoder="convnet", glimpse_filters=(64, 64, 128), glimpse_kernels=(5, 3, 3),
                 glimpse_units=256, units=(256, 256), context="network", context_size=24,
                 context_filters=(16, 32, 32), context_kernels=(5, 3, 3), baseline="learned", location_std=0.1,
                 policy="learned", activation="softmax", seed=None, name="dram", **kwargs):
        reject_unknown_kwargs(type(self).__name__, kwargs)
        image_shape = shape_hwc(image_shape)
        check_activation(activation)
        check_policy(policy, location_std)
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}.")
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}.")
        if int(num_glimpses) < 1:
            raise ValueError(f"num_glimpses must be >= 1, got {num_glimpses}.")
        units = tuple(int(u) for u in units)
        if len(units) != 2:
            raise ValueError(f"units gives the (lower, upper) LSTM widths, got {units}.")
        dtype = kwargs.get("dtype")
        learned = policy == "learned"
        glimpse = DRAMGlimpseNetwork(glimpse_size, sides, where, encoder, glimpse_filters, glimpse_kernels,
                                     glimpse_units, name="glimpse_network", dtype=dtype)
        parts = DRAMParts(
            centre=Zeros([2], name="first_location"),
            state=Zeros([units[0], units[0], units[1], units[1]], name="initial_state"),
            glimpse=glimpse,
            context=(ContextNetwork(context_size, context_filters, context_kernels, units[1], name="context_network",
                                    dtype=dtype) if context == "network" else None),
            lower=keras.layers.LSTMCell(units[0], name="lstm_classification", dtype=dtype),
            upper=keras.layers.LSTMCell(units[1], name="lstm_location", dtype=dtype),
            classifier=classifier_head(num_classes),
            location=LocationNetwork(name="location_network") if learned else None,
            baseline=baseline_head() if learned and baseline == "learned" else None,
            random=None if learned else RandomLocations(num_glimpses, seed, name="random_locations"))
        images = keras.Input(image_shape, name="images")
        fovea = (float(glimpse.sides[0]),) * 2
        out = self._run(parts, images, int(num_glimpses), fovea, float(location_std))
        keys = ("logits", "step_logits", "locations", "boxes", "scales", "normalized_locations")
        super().__init__(inputs=images, outputs={k: out[k] for k in keys}, name=name, **kwargs)
        (self.first_location, self.initial_state, self.glimpse_network, self.context_network, self.lstm_classification,
         self.lstm_location, self.classifier, self.location_network, self.baseline, self.random_locations) = parts
        self.num_glimpses, self.glimpse_size = int(num_glimpses), int(glimpse_size)
        self.sides = tuple(glimpse.sides)
        self.where, self.encoder = where, encoder
        self.glimpse_filters, self.glimpse_kernels = glimpse.filters, glimpse.kernel_sizes
        self.glimpse_units, self.units = int(glimpse_units), units
        self.context, self.context_size = context, int(context_size)
        self.context_filters = tuple(int(f) for f in context_filters)
        self.context_kernels = tuple(int(k) for k in context_kernels)
        self.baseline_kind, self.location_std = baseline, float(location_std)
        self.policy, self._activation, self.seed = policy, activation, seed

    # The papers' optimiser (SGD with momentum; here Nesterov 0.9, lr 0.1 with cosine decay), not RAM's Adam. DRAM's
    # location pathway (the context network, the upper LSTM, the emission) learns from REINFORCE alone, and Adam
    # normalises that noisy gradient to full-size steps whatever its weight: every weight of the context network's
    # 1,568-input dense layer moves by the learning rate in the sign of x * delta, with x >= 0 (ReLU features), so the
    # first emitted location moves coherently and the tanh saturates within ~10 steps (pre-tanh -0.1 -> -0.5 after
    # one Adam step at 1e-3; every glimpse in a corner after 100 steps, the collapse of the runs of 3b242b0). Under
    # SGD the REINFORCE weight sets the pathway's step: pilot on 60x60 canvases, 10,000 canvases x 5 epochs, 1,000
    # test canvases, seed 0 (top-1): Adam 1e-3 13.4% (collapsed at step 1), Adam 1e-4 25.2%, SGD 0.02 23.0%, 0.05
    # 28.7%, **0.1 44.3%**, 0.2 24.1% (first location saturated), 0.1 with REINFORCE weight 0.1 10.6% (collapsed).
    # Not a cure at 100x100: there the first location (the context network's) still drifted into a corner under SGD
    # 0.1 within ~200 steps in the 8- and 6-glimpse runs (the 4-glimpse run's stayed near the centre), the later
    # ones do not (docs/results.md, "RAM and DRAM").
    stages = (dataclasses.replace(RecurrentAttentionModel.stages[0], optimizer="sgd", learning_rate=0.1),)

    @property
    def fovea(self):
        return (self.sides[0], self.sides[0])

    def _parts(self):
        return DRAMParts(self.first_location, self.initial_state, self.glimpse_network, self.context_network,
                         self.lstm_classification, self.lstm_location, self.classifier, self.location_network,
                         self.baseline, self.random_locations)

    @classmethod
    def _begin(cls, parts, images, training):
        h0, c0, h1, c1 = parts.state(images)
        lower, upper = [h0, c0], [h1, c1]
        if parts.context is not None:  # Ba et al.: the context network starts the location LSTM
            context = parts.context(images)
            return (lower, [context, c1]), context
        centre = parts.centre(images)[0]  # the Saccader authors': a context step with every view at the centre
        features = parts.glimpse(images, centre, context=True)
        r1, lower = parts.lower(features, lower, training=training)
        r2, upper = parts.upper(r1, upper, training=training)
        return (lower, upper), r2

    @classmethod
    def _step(cls, parts, images, locations, state, training):
        lower, upper = state
        features = parts.glimpse(images, locations)
        r1, lower = parts.lower(features, lower, training=training)
        r2, upper = parts.upper(r1, upper, training=training)
        return (lower, upper), r1, r2

    def _network_config(self):
        return {
            "glimpse_size": self.glimpse_size,
            "sides": list(self.sides),
            "where": self.where,
            "encoder": self.encoder,
            "glimpse_filters": list(self.glimpse_filters),
            "glimpse_kernels": list(self.glimpse_kernels),
            "glimpse_units": self.glimpse_units,
            "units": list(self.units),
            "context": self.context,
            "context_size": self.context_size,
            "context_filters": list(self.context_filters),
            "context_kernels": list(self.context_kernels),
            "baseline": self.baseline_kind,
        }
