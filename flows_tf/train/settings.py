"""Training settings: defaults, validation, and which settings a resumed run may change."""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_SETTINGS", "FREE_ON_RESUME", "check_settings"]

DEFAULT_SETTINGS = {
    "batch_size": 256,  # minibatch (mle) or Monte Carlo sample size (vi, distill)
    "learning_rate": 1e-3,
    "max_epochs": 100,  # mle: the step cap is max_epochs x steps per epoch
    "steps": 1000,  # vi, distill: the step cap
    "patience": 10,  # evaluations without improvement before stopping; None: never stop
    "min_delta": 0.0,  # nats an evaluation must improve on the best to count as better
    "lr_decays": 0,  # plateau cuts of the learning rate before patience stops the run
    "lr_decay_factor": 0.2,  # each cut multiplies the learning rate by this
    "eval_every": None,  # steps between evaluations; None: one epoch (mle) or 100 steps
    "weight_decay": 0.0,  # decoupled (AdamW-style), 0: off
    "lr_schedule": "constant",  # or "cosine" (to 0 at the step cap)
    "anneal_steps": 0,  # vi, distill: T of beta_t = min(1, 0.01 + t/T); 0: no annealing
    "clip_norm": None,  # global gradient-norm clipping, None: off
    "steps_per_call": 50,  # training steps inside one compiled call (an in-graph loop)
    "jit_compile": False,  # XLA for the compiled block of steps (other rounding: fixed per run)
    "checkpoint_every": 1000,  # steps; checked at evaluations, and the end is always saved
    "on_nonfinite": "fail",  # or "retry": restore the last checkpoint and halve the lr
    "max_retries": 3,
    "progress_seconds": 10.0,  # at most one progress line per this many seconds
    "eval_batch_size": 4096,  # validation log-likelihood batches
}

# settings that do not change the trained weights, so a resumed run may change them
FREE_ON_RESUME = (
    "checkpoint_every",
    "on_nonfinite",
    "max_retries",
    "progress_seconds",
    "eval_batch_size",
    "steps_per_call",
)
_CHOICES = {"lr_schedule": ("constant", "cosine"), "on_nonfinite": ("fail", "retry")}
_POSITIVE_INTS = ("batch_size", "max_epochs", "steps", "checkpoint_every", "steps_per_call")


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_settings(settings: dict, extra: dict | None = None) -> dict:
    """Defaults (plus an objective's ``extra`` defaults) merged with ``settings``.

    Unknown keys and bad values raise ``ValueError`` naming the key and what is accepted.
    """
    defaults = {**DEFAULT_SETTINGS, **(extra or {})}
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise ValueError(f"unknown training settings {unknown}; known: {sorted(defaults)}")
    s = {**defaults, **settings}
    for key in _POSITIVE_INTS:
        if not _is_int(s[key]) or s[key] < 1:
            raise ValueError(f"training setting {key!r} must be a positive integer, got {s[key]!r}")
    for key in ("max_retries", "anneal_steps", "lr_decays"):
        if not _is_int(s[key]) or s[key] < 0:
            raise ValueError(f"training setting {key!r} must be an integer >= 0, got {s[key]!r}")
    for key in ("patience", "eval_every"):
        if s[key] is not None and (not _is_int(s[key]) or s[key] < 1):
            raise ValueError(f"training setting {key!r} must be >= 1 or None, got {s[key]!r}")
    for key in ("learning_rate",):
        if not s[key] > 0:
            raise ValueError(f"training setting {key!r} must be > 0, got {s[key]!r}")
    for key in ("weight_decay", "min_delta"):
        if not s[key] >= 0:
            raise ValueError(f"training setting {key!r} must be >= 0, got {s[key]!r}")
    if not 0 < s["lr_decay_factor"] < 1:
        raise ValueError(
            f"training setting 'lr_decay_factor' must lie in (0, 1), got {s['lr_decay_factor']!r}"
        )
    for key, options in _CHOICES.items():
        if s[key] not in options:
            raise ValueError(f"training setting {key!r} must be one of {options}, got {s[key]!r}")
    return s
