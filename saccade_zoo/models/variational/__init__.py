"""The variational saccading family (Ramapuram et al.): a VRNN over a small proxy image c infers, step by step, the
posterior q(z_t | c, z_<t) over glimpse parameters z_t = (scale, x, y); each z_t places a spatial-transformer crop of
the full-resolution image, a crop classifier reads the T crops, and training maximises the classification
log-likelihood plus the VRNN ELBO (paper Eq. 5). The model is ``model.py`` (`VariationalSaccader`), its layers
``vrnn.py`` (`ProxyEncoder`, `VRNNCell`) and ``crop.py`` (`CropClassifier`), its loss terms ``losses.py``, proxies
for a model that takes its own ``proxy.py`` (the noisy-proxy ablation) and its presets ``presets.py``.
"""
from saccade_zoo.models.variational.crop import CropClassifier
from saccade_zoo.models.variational.model import GlimpseWindow, VariationalSaccader
from saccade_zoo.models.variational.proxy import make_proxies, proxy_inputs
from saccade_zoo.models.variational.vrnn import ProxyEncoder, VRNNCell

__all__ = ["CropClassifier", "GlimpseWindow", "ProxyEncoder", "VRNNCell", "VariationalSaccader", "make_proxies",
           "proxy_inputs"]
