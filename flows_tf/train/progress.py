"""Human-readable progress lines of a training run, at most one per ``every`` seconds."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["Progress", "hms"]


def hms(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """``[objective] step s/cap <where> loss l val v elapsed h:mm:ss eta h:mm:ss``."""

    def __init__(
        self,
        say: Callable[[str], None] | None,
        label: str,
        total_steps: int,
        every: float,
        start_step: int,
    ):
        self.say = say or (lambda line: None)
        self.label, self.total, self.every = label, total_steps, every
        self.start_step, self.t0, self.last = start_step, time.perf_counter(), -math.inf

    def line(
        self,
        step: int,
        loss: float,
        *,
        where: str = "",
        val: float | None = None,
        elapsed: float = 0.0,
        final: bool = False,
        force: bool = False,
    ) -> None:
        now = time.perf_counter()
        if not (final or force) and now - self.last < self.every:
            return
        self.last = now
        rate = (now - self.t0) / max(1, step - self.start_step)
        parts = [f"[{self.label}] step {step}/{self.total}"]
        parts += [where] if where else []
        parts.append(f"loss {loss:.4f}")
        parts += [f"val {val:.4f}"] if val is not None else []
        tail = "done" if final else f"eta {hms(rate * max(0, self.total - step))}"
        parts += [f"elapsed {hms(elapsed)}", tail]
        self.say(" ".join(parts))
