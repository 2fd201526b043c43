"""saccade_zoo: Keras 3 hard-attention image classifiers (Saccader, variational saccading, RAM, DRAM).

`import saccade_zoo` registers every layer and model under the package name "saccade_zoo", so
`keras.models.load_model(path)` (with the default safe_mode=True) works afterwards.

    import saccade_zoo
    model = saccade_zoo.build("saccader_imagenet")
    saccade_zoo.list_models()
    model = saccade_zoo.load_pretrained("saccader_fashion100")   # a trained model shipped in exports/
"""
from saccade_zoo import layers  # noqa: F401  (registers the layers)
from saccade_zoo.contract import OutputContract
from saccade_zoo.models import BagNet, GlimpseModel, PolicyClassifier, Saccader
from saccade_zoo.pretrained import list_pretrained, load_pretrained, pretrained_dir
from saccade_zoo.registry import build, get_preset, list_models, preprocess

__version__ = "0.2.0"
__all__ = ["BagNet", "GlimpseModel", "OutputContract", "PolicyClassifier", "Saccader", "build", "get_preset",
           "list_models", "list_pretrained", "load_pretrained", "pretrained_dir", "preprocess"]
