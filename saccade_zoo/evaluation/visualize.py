"""Pictures a person would rather look at than read: glimpses on images, accuracy vs glimpses."""
import textwrap

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path):
    """Lay out, write (100 dpi) and close a figure; returns ``path``."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def label_text(target, class_names=None):
    """A label or prediction as text: the class's name for an integer, the names of the positive classes joined
    with "+" for a multi-hot vector (entries > 0.5; "none" when there is none). ``class_names``: one per class
    (default: the class indices)."""
    one = (lambda c: str(class_names[int(c)])) if class_names is not None else (lambda c: str(int(c)))  # noqa: E731
    target = np.asarray(target)
    if target.ndim == 0:
        return one(target)
    return "+".join(one(c) for c in np.flatnonzero(target > 0.5)) or "none"


def _wrap(text, width=36):
    """Break a title at its "+" (multi-label names) so that no line is much longer than ``width`` characters."""
    lines = []
    for part in text.split("+"):
        if lines and len(lines[-1]) + 1 + len(part) <= width:
            lines[-1] += "+" + part
        else:
            lines.append(part if not lines else "+" + part)
    return "\n".join(lines)


def plot_glimpses(images, boxes, path, labels=None, predictions=None, class_names=None, columns=4, title=None):
    """Draw each glimpse box (numbered in visiting order, early = bright) on its image and save a PNG.

    Args:
        images: (N, H, W, C) images (any range; shown min-max scaled), C in {1, 3}.
        boxes: (N, T, 4) pixel boxes (y0, x0, y1, x1), half-open, possibly fractional (continuous glimpses);
            box t is labelled t + 1 (1 = first glimpse).
        labels / predictions: optional (N,) ints, or (N, C) multi-hot vectors (multi-label models: the title
            lists the positive classes joined with "+", `label_text`); a title per image shows them (green if
            equal, red if not).
        class_names: names of the classes in the titles (default: the class indices).
    """
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    images = np.asarray(images, dtype="float32")
    n = images.shape[0]
    columns = min(columns, n)
    rows = int(np.ceil(n / columns))

    def same(a, b):
        return np.array_equal(np.asarray(a) > 0.5, np.asarray(b) > 0.5) if np.ndim(a) else int(a) == int(b)

    titles = [None] * n  # (text, colour) per image
    if labels is not None or predictions is not None:
        for i in range(n):
            parts = []
            if labels is not None:
                parts.append(_wrap(f"true: {label_text(labels[i], class_names)}"))
            if predictions is not None:
                parts.append(_wrap(f"pred: {label_text(predictions[i], class_names)}"))
            ok = labels is None or predictions is None or same(labels[i], predictions[i])
            titles[i] = ("\n".join(parts), "green" if ok else "red")
    lines = max([t[0].count("\n") + 1 for t in titles if t] or [2])  # room for the longest title
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, (3.3 + 0.15 * lines) * rows), squeeze=False)
    colours = plt.cm.autumn(np.linspace(0, 1, boxes.shape[1]))

    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= n:
            continue
        image = images[i]
        image = (image - image.min()) / max(float(image.max() - image.min()), 1e-8)
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
        corners = []  # where earlier numbers went: a box at (nearly) the same corner gets its number beside them
        step = 0.07 * image.shape[1]
        for t, (y0, x0, y1, x1) in enumerate(np.asarray(boxes[i], dtype="float64")):
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=1.5, ec=colours[t]))
            shift = sum(abs(y0 - y) < 3 and abs(x0 - x) < 3 for y, x in corners)
            corners.append((y0, x0))
            ax.text(x0 + 1 + shift * step, y0 + 1, str(t + 1), color=colours[t], fontsize=7, va="top", ha="left",
                    clip_on=True)
        if titles[i]:
            ax.set_title(titles[i][0], fontsize=8, color=titles[i][1])
    if title:  # wrapped to the figure's width (3 inches a column, about 12 characters an inch at 10 pt)
        fig.suptitle("\n".join(textwrap.wrap(title, max(24, 36 * columns))), fontsize=10)
    return _save(plt, fig, path)


def plot_accuracy_vs_glimpses(results, path, trained_glimpses=None, full_image=None, title=None, ylabel="top-1"):
    """Line plot of accuracy vs number of glimpses for several policies ({name: [acc at 1..T]})."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    colors = plt.get_cmap("tab10" if len(results) <= 10 else "tab20").colors  # one colour per curve
    for i, (name, values) in enumerate(results.items()):
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=name, color=colors[i % len(colors)])
    if full_image is not None:
        ax.axhline(full_image, color="k", ls=":", label="full image (all cells)")
    if trained_glimpses:
        ax.axvline(trained_glimpses, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("number of glimpses")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(plt, fig, path)
