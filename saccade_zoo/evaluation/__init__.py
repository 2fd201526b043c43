"""Evaluation of glimpse policies: accuracy (top-1, top-k; exact match and per-label for multi-label models) vs
number of glimpses, image coverage, object hits, occlusion (black in pixel space, whatever the model's
standardisation), and pictures (glimpse boxes drawn on images, right and wrong predictions, accuracy curves)."""
from saccade_zoo.evaluation.metrics import (accuracy_vs_glimpses, black_value, coverage_vs_glimpses,
                                            evaluate_policies, format_accuracy_table, label_accuracy_vs_glimpses,
                                            occlude, occlusion_accuracy, right_and_wrong, standardise,
                                            top_k_accuracy_vs_glimpses, top_k_correct, top_k_note)
from saccade_zoo.evaluation.visualize import label_text, plot_accuracy_vs_glimpses, plot_glimpses

__all__ = ["accuracy_vs_glimpses", "black_value", "coverage_vs_glimpses", "evaluate_policies",
           "format_accuracy_table", "label_accuracy_vs_glimpses", "label_text", "occlude", "occlusion_accuracy",
           "plot_accuracy_vs_glimpses", "plot_glimpses", "right_and_wrong", "standardise",
           "top_k_accuracy_vs_glimpses", "top_k_correct", "top_k_note"]
