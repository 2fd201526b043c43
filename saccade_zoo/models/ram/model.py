"""RAM, the recurrent attention model (Mnih, Heess, Graves, Kavukcuoglu 2014)."""
import collections

import keras

from saccade_zoo.models.base import check_activation, reject_unknown_kwargs, shape_hwc
from saccade_zoo.models.ram.base import RecurrentAttentionModel, baseline_head, check_policy, classifier_head
from saccade_zoo.models.ram.layers import GlimpseNetwork, LocationNetwork, RandomLocations, Zeros

RAMParts = collections.namedtuple("RAMParts", "centre state glimpse core classifier location baseline random")


@keras.saving.register_keras_serializable(package="saccade_zoo")
class RAM(RecurrentAttentionModel):
    """The recurrent attention model (Mnih et al. 2014) for classification.

    Graph (paper sections 3-4): glimpse 1 at the image centre; at step t the `GlimpseNetwork` reads the retina
    (k patches of g x g around l_t, each twice as wide as the last) and l_t into g_t (128 + 128 -> 256); the core
    h_t = ReLU(Linear(h_{t-1}) + Linear(g_t)) (256 rectifier units, `keras.layers.SimpleRNNCell`); the location
    network emits the mean of the next location's Gaussian policy, tanh(Linear(h_t)); the action network classifies
    from h_t (``step_logits[:, t]``), the last step's is the prediction (``logits``).

    Training (``compile(optimizer, stage="reinforce")``, then ``fit``): the hybrid loss of section 3.2, cross
    entropy of the classification + REINFORCE on the T - 1 sampled locations l_2..l_T (l ~ N(mean, std^2 I),
    ``location_std`` fixed), reward 1 when the final classification is right (every label right for a multi-label
    model), minus a learned baseline b_t = Linear(h_t) regressed on the reward (its input gradient-stopped, so the
    regression does not shape the core). The sampled location is not differentiated through.

    Where the paper is silent, and our choices: the first glimpse is at the image centre (the paper does not say
    where l_1 comes from; a fixed point keeps inference deterministic); the location mean is squashed by tanh into
    the image (a linear mean in the paper; the issue's spec and every working port squash it); ``location_std``
    0.1 (in units of half the image side); the retina point-samples its coarse patches (`Retina`).
    ``policy="random"`` is the paper's "random glimpses" baseline: the same network given uniform random
    locations (no location network, no REINFORCE).

    Outputs (contract "continuous", aggregation "last"): ``logits`` (B, C), ``step_logits`` (B, T, C),
    ``locations`` (B, T, 2) glimpse centres (y, x) in pixels, ``scales`` (B, T, 2) the finest patch's side in
    pixels, ``boxes`` (B, T, 4) the finest patch (the fovea), ``normalized_locations`` (B, T, 2) in [-1, 1].

    Args:
        image_shape: (H, W, C).
        num_classes: classes (10 multi-hot with ``activation="sigmoid"`` for two-item identification, 19 for a sum).
        num_glimpses: T.
        glimpse_size: g (12 on cluttered MNIST), num_scales: k (3 on 60 x 60, 4 on 100 x 100), scale_factor: 2.
        glimpse_units, location_units, units: the glimpse network's widths (128, 128, 256) and the core's (256).
        location_std: the location policy's fixed standard deviation (normalised units).
        policy: "learned" or "random".
        activation: "softmax" or "sigmoid".
        seed: seed of the random policy's generator.
    """

    def __init__(self, image_shape=(60, 60, 1), num_classes=10, num_glimpses=8, glimpse_size=12, num_scales=3,
                 scale_factor=2.0, glimpse_units=128, location_units=128, units=256, location_std=0.1,
                 policy="learned", activation="softmax", seed=None, name="ram", **kwargs):
        reject_unknown_kwargs(type(self).__name__, kwargs)
        image_shape = shape_hwc(image_shape)
        check_activation(activation)
        check_policy(policy, location_std)
        if int(num_glimpses) < 1:
            raise ValueError(f"num_glimpses must be >= 1, got {num_glimpses}.")
        dtype = kwargs.get("dtype")
        learned = policy == "learned"
        parts = RAMParts(
            centre=Zeros([2], name="first_location"),
            state=Zeros([units], name="initial_state"),
            glimpse=GlimpseNetwork(glimpse_size, num_scales, scale_factor, glimpse_units, location_units, units,
                                   name="glimpse_network", dtype=dtype),
            core=keras.layers.SimpleRNNCell(int(units), activation="relu", name="core", dtype=dtype),
            classifier=classifier_head(num_classes),
            location=LocationNetwork(name="location_network") if learned else None,
            baseline=baseline_head() if learned else None,
            random=None if learned else RandomLocations(num_glimpses, seed, name="random_locations"))
        images = keras.Input(image_shape, name="images")
        out = self._run(parts, images, int(num_glimpses), (glimpse_size, glimpse_size), float(location_std))
        keys = ("logits", "step_logits", "locations", "boxes", "scales", "normalized_locations")
        super().__init__(inputs=images, outputs={k: out[k] for k in keys}, name=name, **kwargs)
        (self.first_location, self.initial_state, self.glimpse_network, self.core, self.classifier,
         self.location_network, self.baseline, self.random_locations) = parts
        self.num_glimpses, self.num_scales, self.scale_factor = int(num_glimpses), int(num_scales), float(scale_factor)
        self.glimpse_units, self.location_units, self.units = int(glimpse_units), int(location_units), int(units)
        self.policy, self._activation, self.seed = policy, activation, seed
        self.glimpse_size, self.location_std = int(glimpse_size), float(location_std)

    @property
    def fovea(self):
        """(h, w) of the finest retina patch in pixels: the glimpse box."""
        return (self.glimpse_size, self.glimpse_size)

    def _parts(self):
        return RAMParts(self.first_location, self.initial_state, self.glimpse_network, self.core, self.classifier,
                        self.location_network, self.baseline, self.random_locations)

    @classmethod
    def _begin(cls, parts, images, training):
        return parts.state(images)[0], None

    @classmethod
    def _step(cls, parts, images, locations, state, training):
        g = parts.glimpse(images, locations)
        h, _ = parts.core(g, [state], training=training)
        return h, h, h

    def _network_config(self):
        return {
            "glimpse_size": self.glimpse_size,
            "num_scales": self.num_scales,
            "scale_factor": self.scale_factor,
            "glimpse_units": self.glimpse_units,
            "location_units": self.location_units,
            "units": self.units,
        }
