"""Install saccade_zoo: `pip install .` or `pip install -e .`."""
import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent


def export_data_files():
    """The shipped trained models (exports/<name>/..., every file) as data_files under share/saccade_zoo/exports,
    where `saccade_zoo.load_pretrained` finds them in an installed package."""
    files = {}
    root = HERE / "exports"
    # Shipped folders have a model card (README.md) beside manifest.json; a user's own exports have none.
    shipped = [d for d in sorted(root.iterdir()) if (d / "README.md").is_file() and (d / "manifest.json").is_file()
               ] if root.is_dir() else []
    for path in (p for folder in shipped for p in sorted(folder.rglob("*"))):
        if path.is_file():
            target = pathlib.PurePosixPath("share", "saccade_zoo", "exports", *path.parent.relative_to(root).parts)
            files.setdefault(str(target), []).append(str(path.relative_to(HERE)))
    return sorted(files.items())

README = (HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else ""

SETUP = dict(
    name="saccade_zoo",
    version="0.2.0",
    description="Keras 3 model zoo of hard-attention image classifiers (Saccader, variational saccading, RAM, DRAM).",
    long_description=README,
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["saccade_zoo", "saccade_zoo.*"]),
    include_package_data=True,
    package_data={"saccade_zoo": ["data/assets/*.npz"]},
    data_files=export_data_files(),
    install_requires=[
        "tensorflow-cpu>=2.21,<2.22",
        "keras>=3.15,<3.16",
        "tensorflow-datasets>=4.9.10,<4.10",
        "numpy>=1.26,<3",
        "absl-py>=2.1,<3",
        "tensorboard>=2.20",
        "tifffile>=2025.1",
        "imagecodecs>=2025.1",
        "matplotlib>=3.8,<4",
    ],
    extras_require={
        "litert": ["ai-edge-litert>=2.3,<2.4"],
        "test": ["pytest>=8", "pytest-xdist>=3.5,<4", "dill", "importlib_resources", "ai-edge-litert>=2.3,<2.4"],
    },
)

if __name__ == "__main__":  # pip runs this file as __main__; tests import export_data_files
    setup(**SETUP)
