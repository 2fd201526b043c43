"""Variational saccading presets: cluttered 100x100 (one item, two items' sum, two items' identification), the
paper's large setting (two-item identification on 2528x2528 canvases, sized like the paper's 7.4M-parameter model)
and RGB photographs (the paper's MIT-Adobe 5k setting, six classes)."""
from saccade_zoo.data.cluttered import ClutteredConfig, class_names
from saccade_zoo.models.bagnet.presets import GREY100, IMAGENET
from saccade_zoo.models.variational.model import VariationalSaccader
from saccade_zoo.registry import register_preset

# The reference's settings for two-digit cluttered MNIST: T = 4 glimpses of 64x64, a 32x32 proxy, a 2-layer LSTM of
# 256 units; crop classifier 32-64-128-256 convs + 512 units. Sized like the paper's model (Table 1: 7.4M parameters;
# the reference's is 6.99M with 10 classes) with 352 LSTM units: the 2528x2528 and photo presets.
#
# Window side between 10% and 64% of the image side. The reference caps it at 30%; at 100x100 a 64 px window is the
# largest one a 64x64 glimpse still samples at full resolution, and the larger windows are what make the model learn
# on a CPU budget: on 4,000 one-item canvases, 3 epochs, validation top-1 55.6% with windows up to 64% vs 26.5% with
# windows up to 40% (docs/results.md, "Variational saccading").
REFERENCE = dict(num_glimpses=4, glimpse_size=64, min_scale=0.1, max_scale=0.64, encoder_filters=(32, 64, 128),
                 feature_dim=256, units=256, num_layers=2, decoder_filters=(64, 32), crop_filters=(32, 64, 128, 256),
                 crop_units=512, groups=8)
PAPER = dict(REFERENCE, units=352, feature_dim=352)
# The 100x100 presets: the reference's layout at half its recurrent width (LSTM, proxy features and phi(z) 128,
# decoder 32-16, crop classifier dense 256; the crop classifier's convs unchanged): 1.78M parameters, so that a
# model trains in well under an hour on 2 CPU cores and its model.keras ships under 10 MB.
SMALL = dict(REFERENCE, units=128, feature_dim=128, decoder_filters=(32, 16), crop_units=256)

GREY2528 = {**GREY100, "image_size": [2528, 2528]}
SUM = class_names(ClutteredConfig(task="sum", num_items=2))

register_preset("variational_cluttered100", VariationalSaccader,
                "Variational saccading on 100x100 cluttered images, one item, 10 classes, 4 glimpses of 64x64 from "
                "a 32x32 proxy", GREY100, task="single", image_shape=(100, 100, 1), num_classes=10, **SMALL)
register_preset("variational_cluttered100_sum", VariationalSaccader,
                "Variational saccading on 100x100 cluttered images: sum of two items, 19 classes", GREY100,
                class_names=SUM, task="sum", image_shape=(100, 100, 1), num_classes=19, **SMALL)
register_preset("variational_cluttered100_identify", VariationalSaccader,
                "Variational saccading on 100x100 cluttered images: identify two items (10 sigmoid outputs, "
                "multi-hot labels)", GREY100, task="identify", image_shape=(100, 100, 1), num_classes=10,
                activation="sigmoid", **SMALL)
register_preset("variational_cluttered2528_identify", VariationalSaccader,
                "Variational saccading, the paper's large setting: identify two items on 2528x2528 canvases, "
                "sized like the paper's model (7.4M parameters)", GREY2528, task="identify",
                image_shape=(2528, 2528, 1), num_classes=10, activation="sigmoid", **PAPER)
register_preset("variational_photo", VariationalSaccader,
                "Variational saccading on 2528x2528 RGB photographs, 6 classes (the paper's MIT-Adobe 5k setting)",
                {**IMAGENET, "image_size": [2528, 2528]},
                class_names=["abstract", "animals", "man-made", "nature", "none", "people"],
                image_shape=(2528, 2528, 3), num_classes=6, **PAPER)

# The megapixel task of attention sampling / IPS (`saccade_zoo.data.megapixel`: 1500x1500 canvases, 3 items of the
# target class + 2 others + 50 two-line noise patches; label = the majority class). A 28 px item is 1.8 px of a
# 96x96 proxy (a 32x32 proxy would shrink it to 0.6 px), read from pyramid level 1 (750 px); 6 glimpses of 64x64 from
# windows of 3-20% of the side (45-300 px: one item up to a neighbourhood), sampled from a 2-level pyramid.
register_preset("variational_megapixel", VariationalSaccader,
                "Variational saccading on the 1500x1500 megapixel task of attention sampling (majority class of 5 "
                "items among line noise), 10 classes, 6 glimpses of 64x64 from a 96x96 proxy",
                {**GREY100, "image_size": [1500, 1500]}, task="single", image_shape=(1500, 1500, 1), num_classes=10,
                **dict(SMALL, num_glimpses=6, proxy_shape=(96, 96, 1), min_scale=0.03, max_scale=0.2))
