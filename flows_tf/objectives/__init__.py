"""Training objectives: losses, and the objective objects that :func:`flows_tf.train.fit` runs.

- :mod:`~flows_tf.objectives.losses`: the scalar losses (maximum likelihood, reverse KL,
  density distillation and its mass-covering variants), each with its math.
- :mod:`~flows_tf.objectives.base`: the contract ``fit`` asks of an objective.
- :data:`OBJECTIVES`: the registry, name -> class; a config's ``method`` (or its section's
  objective) names one entry. Adding an objective is one class and one entry here.

Example:
    >>> from flows_tf.objectives import OBJECTIVES
    >>> sorted(OBJECTIVES)
    ['distill', 'distill_paired', 'mle', 'vi']
    >>> OBJECTIVES["vi"].needs
    ('target',)
"""

from flows_tf.objectives import losses
from flows_tf.objectives.base import Objective, SampledObjective
from flows_tf.objectives.distill import Distill, DistillPaired
from flows_tf.objectives.losses import *  # noqa: F403 (its __all__, re-exported below)
from flows_tf.objectives.mle import MaximumLikelihood
from flows_tf.objectives.vi import ReverseKL

OBJECTIVES = {cls.name: cls for cls in (MaximumLikelihood, ReverseKL, Distill, DistillPaired)}

__all__ = [
    "OBJECTIVES",
    "Distill",
    "DistillPaired",
    "MaximumLikelihood",
    "Objective",
    "ReverseKL",
    "SampledObjective",
    *losses.__all__,
]
