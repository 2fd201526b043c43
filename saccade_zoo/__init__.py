"""saccade_zoo: Keras 3 hard-attention image classifiers (Saccader, variational saccading, RAM, DRAM).

`import saccade_zoo` registers every layer and model under the package name "saccade_zoo", so
`keras.models.load_model(path)` (safe_mode=True) works afterwards.
"""
__version__ = "0.1.0"
