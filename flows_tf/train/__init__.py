"""Training: :func:`fit` over an objective, settings, checkpoint state and stopping rule."""

from flows_tf.train.loop import OBJECTIVES, TrainingDiverged, TrainResult, fit, set_seeds
from flows_tf.train.settings import DEFAULT_SETTINGS, check_settings
from flows_tf.train.state import restore_flow

__all__ = [
    "DEFAULT_SETTINGS",
    "OBJECTIVES",
    "TrainResult",
    "TrainingDiverged",
    "check_settings",
    "fit",
    "restore_flow",
    "set_seeds",
]
