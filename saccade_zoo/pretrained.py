"""Trained models shipped with the zoo: ``saccade_zoo.load_pretrained(name)``.

Each shipped model is an export folder written by ``tools/export.py`` (``model.keras``, ``saved_model/``, four
TFLite files, ``manifest.json`` with sha256 of every file, and a model card ``README.md`` with the data, the exact
command that regenerates it and its measured accuracy). They live in the repository's ``exports/<name>/`` and are
installed with the package under ``<prefix>/share/saccade_zoo/exports/<name>/`` (setup.py's ``data_files``).

    import saccade_zoo
    saccade_zoo.list_pretrained()                     # ['saccader_fashion100', ...]
    model = saccade_zoo.load_pretrained("saccader_fashion100")      # a keras.Model (Saccader), ready for fit
    folder = saccade_zoo.pretrained_dir("saccader_fashion100")      # the SavedModel / TFLite files

Folders are searched in this order: ``$SACCADE_ZOO_EXPORTS`` (a folder of export folders, if set), the source
checkout's ``exports/`` (editable installs, running from the repository), the installed ``share/saccade_zoo/exports``.
A file whose sha256 differs from its manifest (a truncated download, a Git LFS pointer) is refused by name.
"""
import os
import sys

EXPORTS_ENV = "SACCADE_ZOO_EXPORTS"


def search_path():
    """The folders searched for shipped models, in order (only those that exist)."""
    candidates = []
    if os.environ.get(EXPORTS_ENV):
        candidates.append(os.environ[EXPORTS_ENV])
    candidates.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "exports"))
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix, getattr(sys, "exec_prefix", sys.prefix))):
        candidates.append(os.path.join(prefix, "share", "saccade_zoo", "exports"))
    seen, found = set(), []
    for folder in candidates:
        folder = os.path.abspath(folder)
        if folder not in seen and os.path.isdir(folder):
            seen.add(folder)
            found.append(folder)
    return found


def list_pretrained():
    """Names of the shipped models (export folders with a manifest.json and a model.keras), sorted."""
    from saccade_zoo.export.core import KERAS_FILE, MANIFEST

    names = set()
    for root in search_path():
        for name in os.listdir(root):
            folder = os.path.join(root, name)
            if os.path.isfile(os.path.join(folder, MANIFEST)) and os.path.isfile(os.path.join(folder, KERAS_FILE)):
                names.add(name)
    return sorted(names)


def pretrained_dir(name):
    """The export folder of the shipped model ``name`` (first match on `search_path`); a ValueError naming the
    shipped models when there is none."""
    from saccade_zoo.export.core import MANIFEST

    for root in search_path():
        folder = os.path.join(root, name)
        if os.path.isfile(os.path.join(folder, MANIFEST)):
            return folder
    available = list_pretrained()
    raise ValueError(f"No shipped model named {name!r}. Shipped models: {', '.join(available) or 'none found'} "
                     f"(searched {', '.join(search_path()) or 'nothing: no exports folder found'}; set "
                     f"{EXPORTS_ENV} to a folder of export folders to add your own).")


def load_pretrained(name, verify=True, compile=True):
    """Load the shipped model ``name`` as a Keras model (its ``model.keras``).

    Args:
        name: a name from `list_pretrained`, e.g. "saccader_fashion100".
        verify: check model.keras's sha256 against the folder's manifest first (a corrupt, truncated or Git LFS
            pointer file is refused with a ValueError naming it).
        compile: restore the training setup saved with the model (stage and optimizer), so that ``fit``
            fine-tunes it at once; False loads it for inference only.
    Returns:
        The model (e.g. a `saccade_zoo.Saccader`), with its metadata: preset, preprocessing and class names.
        Its input is preprocessed images: ``saccade_zoo.preprocess(uint8_images, model)``.
    """
    import keras

    import saccade_zoo  # noqa: F401  (registers the classes for load_model)
    from saccade_zoo.export.core import KERAS_FILE, load_manifest, sha256

    folder = pretrained_dir(name)
    path = os.path.join(folder, KERAS_FILE)
    if verify:
        expected = load_manifest(folder).get("files", {}).get(KERAS_FILE, {}).get("sha256")
        if expected is None:
            raise ValueError(f"{os.path.join(folder, 'manifest.json')} lists no sha256 for {KERAS_FILE}.")
        actual = sha256(path)
        if actual != expected:
            size = os.path.getsize(path)
            with open(path, "rb") as handle:
                lfs_pointer = handle.read(64).startswith(b"version https://git-lfs")
            hint = (" It is a Git LFS pointer, not the model: run `git lfs pull`." if lfs_pointer else
                    " The file is corrupt or truncated: restore it from the repository.")
            raise ValueError(f"{path} ({size} bytes) does not match its manifest (sha256 {actual[:12]}..., "
                             f"expected {expected[:12]}...).{hint}")
    return keras.models.load_model(path, safe_mode=True, compile=compile)
