"""Evaluation of glimpse policies: accuracy vs number of glimpses, image coverage, object hits, occlusion,
and pictures (glimpse boxes drawn on images, accuracy curves)."""
from saccade_zoo.evaluation.metrics import (accuracy_vs_glimpses, coverage_vs_glimpses, evaluate_policies,
                                            format_accuracy_table,
                                            occlusion_accuracy, occlude)
from saccade_zoo.evaluation.visualize import plot_accuracy_vs_glimpses, plot_glimpses

__all__ = ["accuracy_vs_glimpses", "coverage_vs_glimpses", "evaluate_policies", "format_accuracy_table",
           "occlusion_accuracy", "occlude", "plot_accuracy_vs_glimpses", "plot_glimpses"]
