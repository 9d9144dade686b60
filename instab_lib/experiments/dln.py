r"""The diagonal linear network (DLN) in closed form.

The papers' toy model (A §3.1, B's RPE section): parameters
:math:`\theta = (\theta_1, \dots, \theta_D)`, output :math:`\Theta = \prod_i \theta_i`
and loss :math:`L(\theta) = z(\Theta)` for a link :math:`z` (the papers' main
instance is :math:`z(\Theta) = \Theta^2`). Everything here is float64 NumPy and
exact: gradient, Hessian, GD trajectories, the orientation variable
:math:`\beta` and the one-step multipliers :math:`\gamma_\beta`, :math:`\gamma_\Theta`
(REFERENCE §2.2, the author's code ``lawrencewang94/jax_eigs``).

Notation: :math:`p_i = \prod_{k \ne i} \theta_k` and
:math:`p_{ij} = \prod_{k \ne i, j} \theta_k` (products of the others, computed
without division so :math:`\theta_i = 0` is fine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..validation import check_int_at_least, check_positive


@dataclass(frozen=True)
class Link:
    """A link :math:`z` with its first two derivatives (scalar or array → same shape)."""

    name: str
    z: Callable[[np.ndarray], np.ndarray]
    dz: Callable[[np.ndarray], np.ndarray]
    d2z: Callable[[np.ndarray], np.ndarray]


SQUARE = Link("square", lambda t: t**2, lambda t: 2 * t, lambda t: 2 * np.ones_like(t))
QUARTIC = Link("quartic", lambda t: t**4, lambda t: 4 * t**3, lambda t: 12 * t**2)
LINKS = {"square": SQUARE, "quartic": QUARTIC}


def get_link(link: str | Link) -> Link:
    if isinstance(link, Link):
        return link
    if link not in LINKS:
        raise ValueError(f"unknown link {link!r}; known: {', '.join(LINKS)}")
    return LINKS[link]


def _as_theta(theta) -> np.ndarray:
    t = np.asarray(theta, dtype=np.float64)
    if t.ndim != 1 or t.size < 1:
        raise ValueError(f"theta must be a 1-d vector of D >= 1 parameters, got shape {t.shape}")
    return t


def output(theta) -> float:
    r""":math:`\Theta = \prod_i \theta_i`."""
    return float(np.prod(_as_theta(theta)))


def loss(theta, link: str | Link = "square") -> float:
    r""":math:`L(\theta) = z(\Theta)`."""
    return float(get_link(link).z(np.float64(output(theta))))


def products_of_others(theta) -> np.ndarray:
    r""":math:`p_i = \prod_{k\ne i}\theta_k`, shape (D,)."""
    t = _as_theta(theta)
    return np.array([np.prod(np.delete(t, i)) for i in range(t.size)])


def pair_products(theta) -> np.ndarray:
    r""":math:`p_{ij} = \prod_{k\ne i,j}\theta_k` for i ≠ j, 0 on the diagonal; shape (D, D)."""
    t = _as_theta(theta)
    d = t.size
    out = np.zeros((d, d))
    for i in range(d):
        for j in range(d):
            if i != j:
                out[i, j] = np.prod(np.delete(t, [i, j]))
    return out


def gradient(theta, link: str | Link = "square") -> np.ndarray:
    r""":math:`\nabla L = z'(\Theta)\, p`, shape (D,)."""
    lk = get_link(link)
    return lk.dz(np.float64(output(theta))) * products_of_others(theta)


def hessian(theta, link: str | Link = "square") -> np.ndarray:
    r""":math:`H = z''(\Theta)\, p p^\top + z'(\Theta)\, P` with :math:`P_{ij} = p_{ij}` (i ≠ j), shape (D, D).

    For D = 2, z = Θ²: :math:`H = [[2\theta_2^2, 4\theta_1\theta_2], [4\theta_1\theta_2, 2\theta_1^2]]`.
    """
    lk = get_link(link)
    big_theta = np.float64(output(theta))
    p = products_of_others(theta)
    return lk.d2z(big_theta) * np.outer(p, p) + lk.dz(big_theta) * pair_products(theta)


@dataclass(frozen=True)
class Spectrum:
    """Eigen-decomposition of a DLN Hessian: eigenvalues descending, eigenvectors as columns.

    The sign of each eigenvector is fixed so that its largest-magnitude entry is positive
    (eigenvector signs are otherwise arbitrary).
    """

    eigenvalues: np.ndarray  # (D,), descending
    eigenvectors: np.ndarray  # (D, D), column i belongs to eigenvalues[i]

    @property
    def sharpness(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def lambda_min(self) -> float:
        return float(self.eigenvalues[-1])

    @property
    def top(self) -> np.ndarray:
        return self.eigenvectors[:, 0]


def spectrum(theta, link: str | Link = "square") -> Spectrum:
    """Exact eigenpairs of the Hessian at ``theta`` (``numpy.linalg.eigh``)."""
    w, v = np.linalg.eigh(hessian(theta, link))
    order = np.argsort(w)[::-1]
    w, v = w[order], v[:, order]
    signs = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
    return Spectrum(w, v * np.where(signs == 0, 1.0, signs))


def gd_step(theta, eta: float, link: str | Link = "square") -> np.ndarray:
    r"""One GD step :math:`\theta' = \theta - \eta \nabla L(\theta)`."""
    return _as_theta(theta) - eta * gradient(theta, link)


@dataclass
class Trajectory:
    """A GD run on the DLN.

    Arrays have one row per iterate that was reached (``steps + 1`` rows for a run that
    did not diverge). A run is ``diverged`` when the loss becomes non-finite or exceeds
    ``blowup``; ``diverged_step`` is the first step at which that happened.
    """

    eta: float
    theta: np.ndarray  # (T+1, D)
    loss: np.ndarray  # (T+1,)
    eigenvalues: np.ndarray  # (T+1, D), descending
    top: np.ndarray  # (T+1, D), top eigenvector, sign-fixed
    diverged: bool = False
    diverged_step: int | None = None
    link: str = "square"
    extra: dict = field(default_factory=dict)

    @property
    def sharpness(self) -> np.ndarray:
        return self.eigenvalues[:, 0]

    @property
    def final_sharpness(self) -> float:
        return float("nan") if self.diverged else float(self.sharpness[-1])

    @property
    def status(self) -> str:
        return f"diverged at step {self.diverged_step}" if self.diverged else "converged"


def run_gd(theta0, eta: float, steps: int, link: str | Link = "square", blowup: float = 1e12) -> Trajectory:
    """Run ``steps`` GD steps from ``theta0`` at learning rate ``eta`` (float64).

    Divergence (non-finite loss, or loss > ``blowup``) ends the run and is recorded, never raised.
    """
    check_positive("eta", eta)
    lk = get_link(link)
    return _run(theta0, eta, steps, lk, blowup, lambda theta, state: (gd_step(theta, eta, lk), state), None)


def run_author_rms(theta0, eta: float, steps: int, beta: float = 0.9, scale: float = 20.0, eps: float = 1e-8,
                   link: str | Link = "square", blowup: float = 1e12) -> Trajectory:
    r"""The RMSProp-style step of the author's B Fig 3 cell (``jax_eigs``, ``shape_of_loss_v1_rmsv3``):
    :math:`r_t = \beta r_{t-1} + (1-\beta) g_t^2` (element-wise, :math:`r_0 = 0`, no bias correction) and
    :math:`\theta_{t+1} = \theta_t - \frac{\text{scale}\cdot\eta}{\sqrt{r_t + \varepsilon}}\, g_t`, with
    :math:`g_t = \nabla L(\theta_t)`; defaults as in that cell (β = 0.9, scale 20, ε = 1e-8). The step is
    sign-like: every coordinate moves by about ``scale·η`` whatever its curvature. Same divergence rule
    as :func:`run_gd`; ``extra["rms"]`` is the final :math:`r`."""
    check_positive("eta", eta)
    check_positive("scale", scale)
    lk = get_link(link)

    def update(theta: np.ndarray, rms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = gradient(theta, lk)
        rms = beta * rms + (1 - beta) * g * g
        return theta - scale * eta / np.sqrt(rms + eps) * g, rms

    return _run(theta0, eta, steps, lk, blowup, update, np.zeros_like(_as_theta(theta0)))


def _run(theta0, eta: float, steps: int, lk: Link, blowup: float, update, state) -> Trajectory:
    """The loop of :func:`run_gd` and :func:`run_author_rms`: ``theta, state = update(theta, state)``."""
    check_int_at_least("steps", steps, 1)
    theta = _as_theta(theta0).copy()
    thetas, losses, eigs, tops = [], [], [], []
    diverged_step = None
    for t in range(steps + 1):
        val = loss(theta, lk)
        if not np.isfinite(val) or val > blowup or not np.all(np.isfinite(theta)):
            diverged_step = t
            break
        sp = spectrum(theta, lk)
        thetas.append(theta.copy())
        losses.append(val)
        eigs.append(sp.eigenvalues)
        tops.append(sp.top)
        if t < steps:
            with np.errstate(over="ignore", invalid="ignore"):
                theta, state = update(theta, state)
    return Trajectory(
        eta=float(eta),
        theta=np.array(thetas),
        loss=np.array(losses),
        eigenvalues=np.array(eigs),
        top=np.array(tops),
        diverged=diverged_step is not None,
        diverged_step=diverged_step,
        link=lk.name,
        extra={} if state is None else {"rms": state},
    )


def consecutive_abs_cosines(vectors: np.ndarray) -> np.ndarray:
    r""":math:`|\cos(v_t, v_{t+1})|` for rows of ``vectors`` (T, D) → (T−1,). Sign-invariant."""
    v = np.asarray(vectors, dtype=np.float64)
    num = np.abs(np.sum(v[:-1] * v[1:], axis=1))
    return num / (np.linalg.norm(v[:-1], axis=1) * np.linalg.norm(v[1:], axis=1))


# ----------------------------------------------------------------- depth 2: orientation and multipliers


def _pair(theta) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(theta, dtype=np.float64)
    if t.shape[-1] != 2:
        raise ValueError("beta and the gamma multipliers are defined for the two-parameter DLN (D = 2)")
    return t[..., 0], t[..., 1]


def beta(theta) -> np.ndarray:
    r"""Orientation variable :math:`\beta = |\theta_2^2-\theta_1^2| / |4\theta_1\theta_2|` (author's code).

    For z = Θ², :math:`\beta = |\cot 2\varphi|` with φ the angle of the top eigenvector
    from the θ₁ axis: large β = axis-aligned (unbalanced), β → 0 = balanced (45°).
    Accepts (..., 2) arrays.
    """
    t1, t2 = _pair(theta)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # β is undefined at θ₁θ₂ = 0
        return np.abs(t2**2 - t1**2) / np.abs(4 * t1 * t2)


def k_ratio(theta) -> np.ndarray:
    r""":math:`k = \theta_1/\theta_2 + \theta_2/\theta_1` (the code's ``k``)."""
    t1, t2 = _pair(theta)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return t1 / t2 + t2 / t1


def gamma_theta(theta, eta: float, link: str | Link = "square") -> np.ndarray:
    r"""Output multiplier :math:`\gamma_\Theta = \Theta'/\Theta = 1 + \eta^2 z'^2 - k\eta z'`."""
    t1, t2 = _pair(theta)
    zp = get_link(link).dz(t1 * t2)
    with np.errstate(over="ignore", invalid="ignore"):
        return 1 + eta**2 * zp**2 - k_ratio(theta) * eta * zp


def gamma_diff(theta, eta: float, link: str | Link = "square") -> np.ndarray:
    r"""Balance multiplier :math:`\gamma_{|\theta_2^2-\theta_1^2|} = |1 - \eta^2 z'^2|`."""
    t1, t2 = _pair(theta)
    zp = get_link(link).dz(t1 * t2)
    return np.abs(1 - eta**2 * zp**2)


def gamma_beta(theta, eta: float, link: str | Link = "square") -> np.ndarray:
    r""":math:`\gamma_\beta = \beta_{t+1}/\beta_t = |(1-\eta^2 z'^2)/(1+\eta^2 z'^2-k\eta z')|` (author's code)."""
    return gamma_diff(theta, eta, link) / np.abs(gamma_theta(theta, eta, link))


def gamma_beta_regimes(x: np.ndarray, r: float) -> np.ndarray:
    r"""The "phases of γ_β" curve: :math:`\gamma_\beta(x) = |1-x^2| / |1-Kx+x^2|`, :math:`K = r + 1/r`.

    ``x = η|z'|`` and ``r = |θ₂/θ₁|``. Vertical asymptote at x = 1/r (and x = r); γ_β < 1
    exactly for 2/K < x < K/2 (see :func:`rotation_threshold`), and 2/K ≈ 2/r is the η_eos line.
    """
    x = np.asarray(x, dtype=np.float64)
    kk = r + 1 / r
    with np.errstate(divide="ignore"):
        return np.abs(1 - x**2) / np.abs(1 - kk * x + x**2)


def rotation_threshold(r: float) -> float:
    r"""Smallest x = η|z'| with γ_β(x) < 1: :math:`x^* = 2/K = 2/(r + 1/r)`.

    Derivation: for 1/r < x < r the denominator :math:`1 - Kx + x^2` is negative, so
    γ_β < 1 ⟺ :math:`1 - x^2 < Kx - 1 - x^2` ⟺ :math:`x > 2/K`; below 1/r, γ_β < 1 would need
    x > K/2, impossible there. So the eigenvector rotates (β shrinks) exactly beyond
    2/K ≈ 2/r, which is η = 1/θ₂² ≈ 2/S₀ at the initialisation. (Above 1, the same algebra
    gives γ_β < 1 ⟺ x < K/2, far outside the plotted range.)
    """
    check_positive("r", r)
    return 2.0 / (r + 1.0 / r)


# ----------------------------------------------------------------- depth D: rotation from depth


def pair_difference_multiplier(theta, eta: float, i: int, j: int, link: str | Link = "square") -> float:
    r"""One GD step rescales :math:`\theta_i^2-\theta_j^2` by :math:`1-\eta^2 z'(\Theta)^2 p_{ij}^2`.

    From :math:`\theta_i' = \theta_i - \eta z' p_i`, :math:`p_i = \theta_j p_{ij}`:
    :math:`\theta_i'^2 - \theta_j'^2 = (\theta_i^2-\theta_j^2) - \eta^2 z'^2 p_{ij}^2 (\theta_i^2 - \theta_j^2)`
    (the cross terms cancel since :math:`\theta_i p_i = \theta_j p_j = \Theta`). For D = 2, p₁₂ = 1.
    """
    t = _as_theta(theta)
    if i == j or not (0 <= i < t.size and 0 <= j < t.size):
        raise ValueError(f"need two distinct indices in [0, {t.size}), got {i}, {j}")
    zp = get_link(link).dz(np.float64(output(t)))
    pij = np.prod(np.delete(t, [i, j]))
    return float(1 - eta**2 * zp**2 * pij**2)


def output_multiplier(theta, eta: float, link: str | Link = "square") -> float:
    r"""One GD step rescales the output: :math:`\Theta'/\Theta = \prod_i (1 - \eta z'(\Theta)\,p_i/\theta_i)`.

    From :math:`\theta_i' = \theta_i - \eta z' p_i` and :math:`\Theta' = \prod_i \theta_i'`; with
    :math:`p_i/\theta_i = \Theta/\theta_i^2` this is :math:`\prod_i (1 - \eta z'\Theta/\theta_i^2)`.
    D = 1: :math:`1 - \eta z'(\theta)/\theta` (for z = Θ²: the constant 1 − 2η); D = 2: the
    :func:`gamma_theta` of REFERENCE §2.2, :math:`1 + \eta^2 z'^2 - k\eta z'`. Needs every θᵢ ≠ 0.
    """
    t = _as_theta(theta)
    if np.any(t == 0):
        raise ValueError("output_multiplier needs every θ_i != 0 (Θ'/Θ is undefined at Θ = 0)")
    big = np.float64(output(t))
    zp = get_link(link).dz(big)
    return float(np.prod(1 - eta * zp * big / t**2))


def top_eigenvector_angles(tops: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    r"""Angle (radians) between each row of ``tops`` (T, D) and ``reference`` (D,) (default: row 0),
    sign-invariant: :math:`\arccos\min(1, |\langle v_t, v_{\mathrm{ref}}\rangle| / (\|v_t\|\|v_{\mathrm{ref}}\|))`.
    Shape (T,). For D = 1 it is identically 0.
    """
    v = np.asarray(tops, dtype=np.float64)
    ref = v[0] if reference is None else np.asarray(reference, dtype=np.float64)
    cos = np.abs(v @ ref) / (np.linalg.norm(v, axis=1) * np.linalg.norm(ref))
    return np.arccos(np.clip(cos, 0.0, 1.0))


def run_gd_final(theta0, etas, steps: int, link: str | Link = "square", blowup: float = 1e12) -> tuple[np.ndarray, np.ndarray]:
    r"""Many GD runs at once, keeping only the end: ``etas`` (n,) → final θ (n, D) and divergence step (n,).

    Vectorised over learning rates (no spectra along the way), with :func:`run_gd`'s rule: a run
    diverges at the first iterate t whose loss is non-finite or exceeds ``blowup``; its final θ is
    then NaN and its step is t, otherwise the step is −1. Gradient :math:`z'(\Theta)\,p` as in
    :func:`gradient`. Agrees with :func:`run_gd` to rounding (tested).
    """
    check_int_at_least("steps", steps, 1)
    eta = np.asarray(etas, dtype=np.float64).reshape(-1)
    check_positive("etas", [float(e) for e in eta])
    lk = get_link(link)
    t0 = _as_theta(theta0)
    d = t0.size
    th = np.tile(t0, (eta.size, 1))
    div = np.full(eta.size, -1, dtype=np.int64)
    alive = np.ones(eta.size, dtype=bool)
    for t in range(steps + 1):
        with np.errstate(over="ignore", invalid="ignore"):
            big = np.prod(th, axis=1)
            val = lk.z(big)
            bad = alive & (~np.isfinite(val) | (val > blowup) | ~np.all(np.isfinite(th), axis=1))
        div[bad] = t
        alive &= ~bad
        if t == steps or not alive.any():
            break
        with np.errstate(over="ignore", invalid="ignore"):
            p = np.stack([np.prod(np.delete(th, i, axis=1), axis=1) for i in range(d)], axis=1)
            th = np.where(alive[:, None], th - eta[:, None] * lk.dz(big)[:, None] * p, th)
    th[~alive] = np.nan
    return th, div
