"""Two-dimensional toy densities: seeded samplers and, where one exists, the exact log-density.

The recipes follow the usual flow benchmarks (Grathwohl et al. 2019, FFJORD, arXiv:1810.01367),
with the rings redefined so that their density is exact:

- ``eight_gaussians``: equal mixture of N(c_k, s^2 I), c_k = 2 sqrt(2) (cos 2 pi k/8,
  sin 2 pi k/8), s = 0.5/sqrt(2).
- ``checkerboard``: uniform on the 8 "black" 2x2 squares of [-4, 4)^2, those with
  floor(x1/2) + floor(x2/2) even; density 1/32 there, 0 elsewhere.
- ``rings``: angle theta ~ U[0, 2 pi), signed radius R ~ sum_k 1/4 N(r_k, 0.1^2),
  r = (0.75, 1.5, 2.25, 3), x = R (cos theta, sin theta). A negative R lands at |R| with angle
  theta + pi (still uniform), so p(x) = [p_R(rho) + p_R(-rho)] / (2 pi rho), rho = |x|, exactly.
- ``two_moons``, ``pinwheel``, ``two_spirals``: samplers only (no closed form).
"""

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["MIXTURES", "TOYS", "mixture_components", "sample_toy", "toy_log_prob"]

_EG_RADIUS, _EG_STD = 2.0 * np.sqrt(2.0), 0.5 / np.sqrt(2.0)
_RING_RADII, _RING_STD = np.array([0.75, 1.5, 2.25, 3.0]), 0.1
_LOG_2PI = np.log(2.0 * np.pi)


def _eight_gaussians_components() -> dict[str, np.ndarray]:
    angle = 2.0 * np.pi * np.arange(8) / 8.0
    return {
        "means": _EG_RADIUS * np.stack([np.cos(angle), np.sin(angle)], axis=1),  # (8, 2)
        "scales": np.full(8, _EG_STD),
        "weights": np.full(8, 1.0 / 8.0),
    }


def _eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    k = rng.integers(0, 8, size=n)
    centers = _eight_gaussians_components()["means"][k]
    return centers + _EG_STD * rng.standard_normal((n, 2))


def _eight_gaussians_log_prob(x: np.ndarray) -> np.ndarray:
    c = _eight_gaussians_components()
    sq = ((x[:, None, :] - c["means"][None]) ** 2).sum(-1) / c["scales"] ** 2
    comp = -0.5 * sq - _LOG_2PI - 2.0 * np.log(c["scales"]) + np.log(c["weights"])
    return np.logaddexp.reduce(comp, axis=1)


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    col = rng.integers(-2, 2, size=n)  # unit column of x1 / 2 in {-2, -1, 0, 1}
    row = 2 * rng.integers(-1, 1, size=n) + np.mod(col, 2)  # rows with col + row even
    cells = np.stack([col, row], axis=1)
    return 2.0 * (cells + rng.random((n, 2)))


def _checkerboard_log_prob(x: np.ndarray) -> np.ndarray:
    cell = np.floor(x / 2.0)
    inside = np.all((x >= -4.0) & (x < 4.0), axis=1) & (np.mod(cell.sum(axis=1), 2) == 0)
    return np.where(inside, -np.log(32.0), -np.inf)


def _rings(n: int, rng: np.random.Generator) -> np.ndarray:
    k = rng.integers(0, len(_RING_RADII), size=n)
    radius = _RING_RADII[k] + _RING_STD * rng.standard_normal(n)
    theta = 2.0 * np.pi * rng.random(n)
    return radius[:, None] * np.stack([np.cos(theta), np.sin(theta)], axis=1)


def _rings_log_prob(x: np.ndarray) -> np.ndarray:
    rho = np.maximum(np.sqrt((x**2).sum(axis=1)), np.finfo(np.float64).tiny)
    signed = np.stack([rho, -rho], axis=1)[:, :, None]  # (n, 2, 1): +rho and -rho
    z = (signed - _RING_RADII[None, None, :]) / _RING_STD
    comp = -0.5 * z**2 - 0.5 * _LOG_2PI - np.log(_RING_STD) - np.log(len(_RING_RADII))
    log_pr = np.logaddexp.reduce(comp.reshape(len(x), -1), axis=1)
    return log_pr - np.log(2.0 * np.pi * rho)


def _two_moons(n: int, rng: np.random.Generator, noise: float = 0.1) -> np.ndarray:
    upper = rng.random(n) < 0.5
    t = np.pi * rng.random(n)
    x = np.where(upper, np.cos(t), 1.0 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    pts = np.stack([x, y], axis=1) + noise * rng.standard_normal((n, 2))
    return 2.0 * (pts - np.array([0.5, 0.25]))


def _pinwheel(
    n: int,
    rng: np.random.Generator,
    radial_std: float = 0.3,
    tangential_std: float = 0.1,
    arms: int = 5,
    rate: float = 0.25,
) -> np.ndarray:
    arm = rng.integers(0, arms, size=n)
    feats = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
    feats[:, 0] += 1.0
    angle = 2.0 * np.pi * arm / arms + rate * np.exp(feats[:, 0])
    c, s = np.cos(angle), np.sin(angle)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], axis=1)  # (n, 2, 2)
    return 2.0 * np.einsum("ni,nji->nj", feats, rot)


def _two_spirals(n: int, rng: np.random.Generator) -> np.ndarray:
    turn = np.sqrt(rng.random(n)) * 3.0 * np.pi  # up to 540 degrees
    arm = np.where(rng.random(n) < 0.5, 1.0, -1.0)[:, None]
    pts = np.stack([-np.cos(turn) * turn, np.sin(turn) * turn], axis=1)
    pts = arm * (pts + 0.5 * rng.random((n, 2)))
    return pts / 3.0 + 0.1 * rng.standard_normal((n, 2))


# name -> (sampler(n, rng) -> (n, 2), exact log-density(x) -> (n,) or None)
TOYS = {
    "two_moons": (_two_moons, None),
    "eight_gaussians": (_eight_gaussians, _eight_gaussians_log_prob),
    "checkerboard": (_checkerboard, _checkerboard_log_prob),
    "rings": (_rings, _rings_log_prob),
    "pinwheel": (_pinwheel, None),
    "two_spirals": (_two_spirals, None),
}


# name -> its components as an isotropic Gaussian mixture sum_k w_k N(mu_k, s_k^2 I)
MIXTURES = {"eight_gaussians": _eight_gaussians_components}


def mixture_components(name: str) -> dict | None:
    """Components of toy ``name`` when it is an isotropic Gaussian mixture, else None.

    Returns:
        ``{"means": (K, 2), "scales": (K,), "weights": (K,)}`` float64 arrays for
        ``p(x) = sum_k w_k N(x; mu_k, s_k^2 I)`` (fresh copies), or None (not a mixture of
        that form; the rings mix radii, not 2-D Gaussians).

    Example:
        >>> float(mixture_components("eight_gaussians")["weights"].sum())
        1.0
    """
    if name not in TOYS:
        raise ValueError(f"unknown toy density {name!r}; known: {sorted(TOYS)}")
    build = MIXTURES.get(name)
    return None if build is None else build()


def sample_toy(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points of toy ``name`` as float64 of shape (n, 2)."""
    return TOYS[name][0](int(n), rng).astype(np.float64)


def toy_log_prob(name: str, x: ArrayLike) -> np.ndarray | None:
    """Exact log-density of toy ``name`` at points x (n, 2), or None when it has no closed form."""
    fn = TOYS[name][1]
    if fn is None:
        return None
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"{name}: points must have shape (n, 2), got {x.shape}")
    return fn(x)
