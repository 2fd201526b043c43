"""Variational saccading presets: cluttered 100x100 (one item, two items' sum, two items' identification), the
paper's large setting (two-item identification on 2528x2528 canvases, sized like the paper's 7.4M-parameter model)
and RGB photographs (the paper's MIT-Adobe 5k setting, six classes)."""
from saccade_zoo.data.cluttered import ClutteredConfig, class_names
from saccade_zoo.models.bagnet.presets import GREY100, IMAGENET
from saccade_zoo.models.variational.model import VariationalSaccader
from saccade_zoo.registry import register_preset

# The reference's settings for two-digit cluttered MNIST: T = 4 glimpses of 64x64, a 32x32 proxy, a 2-layer LSTM,
# window side at most 30% of the image side (here 10-40%: a 28 px item on a 100 px canvas fits a 0.3 window).
# Widths: LSTM / hidden 256, proxy features 256, crop classifier 32-64-128-256 convs + 512 units.
SMALL = dict(num_glimpses=4, glimpse_size=64, min_scale=0.1, max_scale=0.4, encoder_filters=(32, 64, 128),
             feature_dim=256, units=256, num_layers=2, decoder_filters=(64, 32), crop_filters=(32, 64, 128, 256),
             crop_units=512, groups=8)
# Sized like the paper's model (Table 1: 7.4M parameters; the reference's is 6.99M with 10 classes).
PAPER = dict(SMALL, units=352, feature_dim=352)

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
