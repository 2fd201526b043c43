"""Evaluation of glimpse policies: accuracy (top-1, top-k) vs number of glimpses, image coverage, object hits,
occlusion (black in pixel space, whatever the model's standardisation), and pictures (glimpse boxes drawn on
images, accuracy curves)."""
from saccade_zoo.evaluation.metrics import (accuracy_vs_glimpses, black_value, coverage_vs_glimpses,
                                            evaluate_policies, format_accuracy_table, occlude, occlusion_accuracy,
                                            standardise, top_k_accuracy_vs_glimpses, top_k_correct, top_k_note)
from saccade_zoo.evaluation.visualize import plot_accuracy_vs_glimpses, plot_glimpses

__all__ = ["accuracy_vs_glimpses", "black_value", "coverage_vs_glimpses", "evaluate_policies",
           "format_accuracy_table", "occlude", "occlusion_accuracy", "plot_accuracy_vs_glimpses", "plot_glimpses",
           "standardise", "top_k_accuracy_vs_glimpses", "top_k_correct", "top_k_note"]
