"""Proxies for a variational saccader that takes its own (``proxy_input=True``): the area-resized image, optionally
with Gaussian noise, the paper's "robustness to a noisy proxy distribution" ablation (section 4.1.1, Fig. 4 left).
"""
import numpy as np

from saccade_zoo.data.inputs import image_array
from saccade_zoo.layers.resize import area_matrix


def make_proxies(images, proxy_shape, noise_stddev=0.0, seed=0, batch_size=1024):
    """(N, J, J', C) float32 proxies of (N, H, W, C) images: the area resize the model makes in-graph
    (`saccade_zoo.layers.resize.AreaResize`, same weights) plus i.i.d. N(0, noise_stddev^2) noise per pixel, drawn
    from ``seed`` (fixed per image, as a noisy sensor would give). The noise is in the images' own units: for the
    cluttered presets ([0, 1] pixels, mean 0, std 1 preprocessing) 0.5 is half the range of a pixel."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"make_proxies needs (N, H, W, C) images, got shape {images.shape}.")
    height, width = int(proxy_shape[0]), int(proxy_shape[1])
    if noise_stddev < 0 or not np.isfinite(noise_stddev):
        raise ValueError(f"noise_stddev must be finite and >= 0, got {noise_stddev}.")
    rows = area_matrix(images.shape[1], height).astype("float32")
    cols = area_matrix(images.shape[2], width).astype("float32")
    out = np.empty((len(images), height, width, images.shape[3]), np.float32)
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size].astype("float32")
        out[start:start + batch_size] = np.einsum("hH,nHWc,wW->nhwc", rows, chunk, cols, optimize=True)
    if noise_stddev:
        out += np.random.default_rng(seed).normal(0.0, noise_stddev, out.shape).astype("float32")
    return out


def proxy_inputs(model, images, noise_stddev=0.0, seed=0):
    """What ``model`` takes for these model-ready images: the images themselves, or, for a variational saccader
    built with ``proxy_input=True``, ``{"images": images, "proxy": make_proxies(...)}``. A model that makes its
    proxy in-graph takes no noise: asking for it raises."""
    images = image_array(images)
    if not getattr(model, "proxy_input", False):
        if noise_stddev:
            raise ValueError(f"A proxy noise of {noise_stddev} needs a model that takes its proxy "
                             f"(proxy_input=True); {type(model).__name__} '{model.name}' makes its own.")
        return images
    return {"images": images, "proxy": make_proxies(images, model.proxy_shape, noise_stddev, seed)}
