"""RAM presets: cluttered 60x60 and 100x100 (the RAM paper's Table 2 settings: 12x12 retina, 3 and 4 scales), the
two-item tasks at 100x100 (identification, sum) and the paper's "random glimpses" baseline."""
from saccade_zoo.data.cluttered import ClutteredConfig, class_names
from saccade_zoo.models.bagnet.presets import GREY100
from saccade_zoo.models.ram.model import RAM
from saccade_zoo.registry import register_preset

GREY60 = {**GREY100, "image_size": [60, 60]}
SUM = class_names(ClutteredConfig(task="sum", num_items=2))
# The RAM paper's networks (section 4): glimpse network 128 + 128 -> 256, core 256 rectifier units, 12x12 patches.
PAPER = dict(glimpse_size=12, glimpse_units=128, location_units=128, units=256, location_std=0.1)
SIXTY = dict(PAPER, image_shape=(60, 60, 1), num_scales=3)
HUNDRED = dict(PAPER, image_shape=(100, 100, 1), num_scales=4)

register_preset("ram_cluttered60", RAM, "RAM on 60x60 cluttered images, one item: 8 glimpses of a 12x12 retina with 3 "
                "scales (RAM paper, Table 2)", GREY60, task="single", num_classes=10, num_glimpses=8, **SIXTY)
register_preset("ram_cluttered100", RAM, "RAM on 100x100 cluttered images, one item: 8 glimpses of a 12x12 retina "
                "with 4 scales (RAM paper, Table 2)", GREY100, task="single", num_classes=10, num_glimpses=8,
                **HUNDRED)
register_preset("ram_cluttered100_identify", RAM, "RAM on 100x100 cluttered images: identify two items (10 sigmoid "
                "outputs, multi-hot labels)", GREY100, task="identify", num_classes=10, num_glimpses=8,
                activation="sigmoid", **HUNDRED)
register_preset("ram_cluttered100_sum", RAM, "RAM on 100x100 cluttered images: the sum of two items, 19 classes",
                GREY100, class_names=SUM, task="sum", num_classes=19, num_glimpses=8, **HUNDRED)
register_preset("ram_random_cluttered60", RAM, "The RAM paper's random-glimpses baseline on 60x60 cluttered images: "
                "RAM's network given 8 uniform random locations", GREY60, task="single", num_classes=10,
                num_glimpses=8, policy="random", **SIXTY)
register_preset("ram_random_cluttered100", RAM, "The RAM paper's random-glimpses baseline on 100x100 cluttered "
                "images: RAM's network given 8 uniform random locations", GREY100, task="single", num_classes=10,
                num_glimpses=8, policy="random", **HUNDRED)
