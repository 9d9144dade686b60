r"""The companion's reconstruction of paper B §5 (flatness bias from instabilities).

**Reconstruction, not the paper's statements**: B's Definition 5.1 ("instability surplus"),
Theorem 5.4 ("point-mass contraction"), Corollary 5.5, Theorem 5.6 ("upper-envelope drift")
and Theorem 5.12 ("even-time median drift") are known by name only (REFERENCE §3, §10;
seeds/001). This module holds the working definitions and the model the companion simulates.

Working definitions (REFERENCE §10):

* instability surplus :math:`U_t = \eta\lambda_{1,t} - 2` (:func:`instability_surplus`): how far the
  step exceeds the stability threshold along the top eigenvector;
* :math:`\gamma_{U_t} = 1 - \eta\lambda_{1,t} = -(1+U_t)` (:func:`gamma_u`): the one-step multiplier
  of the displacement along :math:`v_1` of a locally quadratic loss, so :math:`|\gamma_{U_t}| = 1+U_t`
  grows with :math:`\lambda_{1,t}` (the reading of B's condition C3).

The coupled instability/curvature model (:func:`simulate_coupled`), per path, with
:math:`\xi_t` i.i.d. standard normal:

.. math::

    Y_{t+1} = (1-\eta X_t)\,Y_t + \sigma\xi_t, \qquad
    \bar X_{t+1} = \bar X_t / (1 + d\,Y_t^2), \qquad
    X_t = \bar X_t + c\,Y_t,

:math:`Y` the signed oscillation along :math:`v_1` (GD on a locally quadratic loss of curvature
:math:`X_t`, plus noise), :math:`\bar X` the curvature of the valley floor (self-stabilisation:
it contracts with the squared oscillation, as :math:`\theta_2^2-\theta_1^2` does in the DLN,
:func:`dln_reduced_step`), :math:`X_t = \lambda_{1,t}` the curvature at the iterate (a third-order
term :math:`c` makes it alternate with the sign of :math:`Y`). Start: the point mass
:math:`X_0 = \bar X_0 = u`, :math:`Y_0 = 0`.

Also: the exact DLN reduced to its two invariants (:func:`dln_invariants`,
:func:`dln_reduced_step`, :func:`dln_sharpness_from_invariants`) and a distribution-free
bootstrap band for medians computed exactly from the binomial law (:func:`median_band`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..validation import check_int_at_least, check_positive
from . import seeding

__all__ = [
    "measured_gamma_u",
    "gamma_u_correlation",
    "instability_surplus",
    "gamma_u",
    "CoupledPaths",
    "simulate_coupled",
    "median_band",
    "prob_at_most",
    "dln_invariants",
    "dln_reduced_step",
    "dln_sharpness_from_invariants",
]


def instability_surplus(eta: float, lam1: np.ndarray | float) -> np.ndarray:
    r""":math:`U_t = \eta\lambda_{1,t} - 2` (companion's reading of B Def 5.1); any shape → same shape."""
    check_positive("eta", eta)
    return eta * np.asarray(lam1, dtype=np.float64) - 2.0


def gamma_u(eta: float, lam1: np.ndarray | float) -> np.ndarray:
    r""":math:`\gamma_{U_t} = 1 - \eta\lambda_{1,t} = -(1 + U_t)`: the one-step multiplier of the
    oscillation along :math:`v_1` on a locally quadratic loss; any shape → same shape."""
    check_positive("eta", eta)
    return 1.0 - eta * np.asarray(lam1, dtype=np.float64)


def measured_gamma_u(osc: np.ndarray) -> np.ndarray:
    r"""Measured one-step multiplier of the instability, :math:`|\hat\gamma_{U_t}| = a_{t+1}/a_t`.

    ``osc`` holds :math:`a_t = \|\theta_t - \theta^*_t\|_2`, the magnitude of the period-2
    oscillation (the ``osc`` column of a training table, period-2 centre
    :math:`\theta^*_t = (\theta_{t-1} + 2\theta_t + \theta_{t+1})/4`). Shape (T,) → (T−1,),
    NaN where a ratio is undefined. On a locally quadratic loss the oscillation along
    :math:`v_1` obeys :math:`a_{t+1} = |1 - \eta\lambda_{1,t}|\, a_t`, i.e. :func:`gamma_u`; on a
    network the ratio is measured, not assumed (companion's reading of B's C3).
    """
    a = np.asarray(osc, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"osc must be 1-d, got shape {a.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = a[1:] / a[:-1]
    ratio[~np.isfinite(ratio)] = np.nan
    return ratio


def gamma_u_correlation(osc: np.ndarray, lam1: np.ndarray, eta: float) -> dict[str, float]:
    r"""Spearman correlation of the measured :math:`|\hat\gamma_{U_t}|` with :math:`\lambda_{1,t}`.

    ``osc`` and ``lam1`` are per-epoch arrays of the same length T (NaN where not measured);
    the pair at epoch t is :math:`(a_{t+1}/a_t, \lambda_{1,t})`, over the epochs from the first
    with :math:`\eta\lambda_{1,t} \ge 2` on (the unstable phase, where the oscillation is the
    instability). Returns ``spearman``, ``n`` (pairs used) and ``frac_growth_when_unstable``:
    the share of unstable epochs (ηλ₁ > 2) whose oscillation grew.
    """
    from .generalization import spearman

    check_positive("eta", eta)
    lam = np.asarray(lam1, dtype=np.float64)
    if lam.shape != np.shape(osc):
        raise ValueError(f"osc and lam1 must have the same shape, got {np.shape(osc)} and {lam.shape}")
    g = measured_gamma_u(osc)
    lam_t = lam[:-1]
    unstable = np.flatnonzero(eta * lam_t >= 2.0)
    if unstable.size == 0:
        return {"spearman": float("nan"), "n": 0, "frac_growth_when_unstable": float("nan")}
    sel = np.arange(unstable[0], lam_t.size)
    ok = np.isfinite(g[sel]) & np.isfinite(lam_t[sel])
    above = ok & (eta * lam_t[sel] > 2.0)
    return {
        "spearman": spearman(g[sel], lam_t[sel]),
        "n": int(ok.sum()),
        "frac_growth_when_unstable": float(np.mean(g[sel][above] > 1.0)) if above.any() else float("nan"),
    }


@dataclass
class CoupledPaths:
    """Monte Carlo paths of the coupled model; arrays of shape (n_paths, steps + 1)."""

    X: np.ndarray  # curvature at the iterate, λ_{1,t}
    Xbar: np.ndarray  # valley-floor curvature
    Y: np.ndarray  # signed oscillation along v₁
    eta: float
    u: float

    @property
    def surplus(self) -> np.ndarray:
        """U_t = η X_t − 2, shape (n_paths, steps + 1)."""
        return instability_surplus(self.eta, self.X)


def simulate_coupled(eta: float, u: float, c: float, d: float, sigma: float, steps: int,
                     n_paths: int, seed: int = 0) -> CoupledPaths:
    r"""Simulate the coupled instability/curvature model of this module's docstring.

    :math:`Y_{t+1} = (1-\eta X_t)Y_t + \sigma\xi_t`, :math:`\bar X_{t+1} = \bar X_t/(1+dY_t^2)`,
    :math:`X_t = \bar X_t + cY_t`, from :math:`X_0 = \bar X_0 = u`, :math:`Y_0 = 0`.
    ``d`` may be negative (then :math:`\bar X` grows: the "wrong physics" used to show that the
    claims can fail); ``c`` any real; ``sigma`` ≥ 0. Float64, vectorised over ``n_paths``;
    reproducible from ``seed``. Returns arrays of shape (n_paths, steps+1).
    """
    check_positive("eta", eta)
    check_positive("u", u)
    check_int_at_least("steps", steps, 1)
    check_int_at_least("n_paths", n_paths, 1)
    if not np.isfinite(c) or not np.isfinite(d) or not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"c, d must be finite and sigma >= 0, got c={c!r}, d={d!r}, sigma={sigma!r}")
    rng = seeding.numpy_rng(seed)
    X = np.empty((n_paths, steps + 1))
    Xb = np.empty_like(X)
    Y = np.empty_like(X)
    Xb[:, 0], Y[:, 0] = u, 0.0
    X[:, 0] = u
    for t in range(steps):
        xi = rng.standard_normal(n_paths)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            Y[:, t + 1] = (1 - eta * X[:, t]) * Y[:, t] + sigma * xi
            Xb[:, t + 1] = Xb[:, t] / (1 + d * Y[:, t] ** 2)
            X[:, t + 1] = Xb[:, t + 1] + c * Y[:, t + 1]
    return CoupledPaths(X, Xb, Y, float(eta), float(u))


def median_band(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Sample median and its bootstrap percentile band, per column, computed exactly.

    ``samples`` (M, T) → three arrays (T,): the median :math:`x_{(k)}`, :math:`k=\lfloor M/2\rfloor+1`
    (the middle order statistic; ``np.median`` for odd M), and the band :math:`[x_{(j_-)}, x_{(j_+)}]`.
    A bootstrap resample's median is :math:`\le x_{(j)}` iff at least k of its M draws are
    :math:`\le x_{(j)}`, and that count is Binomial(M, j/M) (no ties). So the bootstrap distribution
    of the median is :math:`F(j) = P(\mathrm{Bin}(M, j/M) \ge k)` exactly, and :math:`j_\pm` are its
    (1∓level)/2 quantiles, with no resampling noise (tested against brute-force resampling).
    """
    x = np.sort(np.asarray(samples, dtype=np.float64), axis=0)
    if x.ndim == 1:
        x = x[:, None]
    m = x.shape[0]
    if m < 3:
        raise ValueError("median_band needs at least 3 samples")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    k = m // 2 + 1
    j = np.arange(1, m + 1)
    cdf = stats.binom.sf(k - 1, m, j / m)  # P(Bin(M, j/M) >= k), increasing in j
    alpha = (1 - level) / 2
    j_lo = int(np.searchsorted(cdf, alpha))  # 0-based index of the first j with F(j) >= alpha
    j_hi = int(np.searchsorted(cdf, 1 - alpha))
    j_hi = min(j_hi, m - 1)
    return x[k - 1], x[j_lo], x[j_hi]


def prob_at_most(samples: np.ndarray, u: float) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`\hat p_t = \frac1M\#\{X_t \le u\}` per column and its binomial standard error
    :math:`\sqrt{\hat p(1-\hat p)/M}`; ``samples`` (M, T) → two arrays (T,)."""
    x = np.asarray(samples, dtype=np.float64)
    p = np.mean(x <= u, axis=0)
    return p, np.sqrt(p * (1 - p) / x.shape[0])


# ----------------------------------------------------------------- the DLN as a coupled system


def dln_invariants(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Depth-2 DLN state ``theta`` (..., 2) → :math:`(\Delta, \Theta) = (\theta_2^2-\theta_1^2,\ \theta_1\theta_2)`."""
    t = np.asarray(theta, dtype=np.float64)
    return t[..., 1] ** 2 - t[..., 0] ** 2, t[..., 0] * t[..., 1]


def dln_reduced_step(delta: np.ndarray, big_theta: np.ndarray, eta: float) -> tuple[np.ndarray, np.ndarray]:
    r"""One exact GD step of :math:`L = (\theta_1\theta_2)^2` written in :math:`(\Delta, \Theta)` only.

    With :math:`z' = 2\Theta` and :math:`\theta_1^2+\theta_2^2 = \sqrt{\Delta^2 + 4\Theta^2}`:

    .. math::
        \Delta' = \Delta\,(1 - 4\eta^2\Theta^2), \qquad
        \Theta' = \Theta\,(1 + 4\eta^2\Theta^2 - 2\eta\sqrt{\Delta^2+4\Theta^2}).

    (REFERENCE §2.2's γ_{|θ₂²−θ₁²|} and γ_Θ, with :math:`k z' = 2(\theta_1^2+\theta_2^2)`.) So the DLN
    is a closed coupled system: the instability Θ and the curvature scale Δ (the flat-minimum
    sharpness is 2|Δ|), with |Δ| contracting whenever 0 < 4η²Θ² < 2. Arrays broadcast.
    """
    check_positive("eta", eta)
    d = np.asarray(delta, dtype=np.float64)
    b = np.asarray(big_theta, dtype=np.float64)
    s = np.sqrt(d**2 + 4 * b**2)
    return d * (1 - 4 * eta**2 * b**2), b * (1 + 4 * eta**2 * b**2 - 2 * eta * s)


def dln_sharpness_from_invariants(delta: np.ndarray, big_theta: np.ndarray) -> np.ndarray:
    r"""Top Hessian eigenvalue of the depth-2 DLN from :math:`(\Delta,\Theta)`.

    :math:`\mathrm{tr} H = 2(\theta_1^2+\theta_2^2) = 2\sqrt{\Delta^2+4\Theta^2}`,
    :math:`\det H = 4\theta_1^2\theta_2^2 - 16\theta_1^2\theta_2^2 = -12\Theta^2`, so
    :math:`\lambda_1 = (\mathrm{tr} + \sqrt{\mathrm{tr}^2 + 48\Theta^2})/2`. Arrays broadcast.
    """
    d = np.asarray(delta, dtype=np.float64)
    b = np.asarray(big_theta, dtype=np.float64)
    tr = 2 * np.sqrt(d**2 + 4 * b**2)
    return (tr + np.sqrt(tr**2 + 48 * b**2)) / 2
