r"""Generalisation across runs: summary tables, rotation measures ρ and rank correlations.

Used by the generalisation pages (A Figs 5, 7–8; B's SGD results). Three pieces:

* **Summary of runs** — :func:`run_summary` / :func:`summarize_runs` turn
  :class:`~instab_lib.experiments.train.RunResult` s into one row per run (η, batch size, seed,
  outcome, final accuracies, final and maximum sharpness, ``η·max S``, the rotation
  measures). The *outcome* of a run is one of

  ============== ===============================================================
  ``target``     stopped at the train-accuracy target (``status == "early_stopped"``)
  ``capped``     reached the epoch cap below the target
  ``diverged``   non-finite or blown-up loss (``RunResult.diverged_step`` kept)
  ``collapsed``  did not diverge but ended at chance level (train accuracy below
                 ``collapse_acc``, default 2/#classes): it never learned
  ============== ===============================================================

  Only ``target`` and ``capped`` runs have a meaningful test accuracy; the others are
  *shown*, never dropped, but kept out of means and correlations.

* **Rotation measures ρ** (REFERENCE §10: the papers' own definition was not read;
  both working definitions are computed):

  - :func:`rho_rotation` — ``ρ_rot = mean over evaluations of 1 − |cos(v₁(t), v₁(t'))|``
    for consecutive spectrum evaluations ``t < t'`` (the table's ``cos_prev_1``): the
    mean rotation of the top eigenvector per evaluation interval (0 = no rotation).
    It depends on the evaluation interval, so compare runs with the same
    ``eval_every``.
  - :func:`rho_subspace` — ``ρ_sub`` = top-k subspace similarity (``dk_cos``) between
    the first evaluation (``reference_epoch = 0``, the initialisation) and the last
    (the table's ``subspace_ref``): 1 = the top eigenspace never moved, 0 = it ended
    orthogonal. It is a *similarity*, so it runs opposite to ``ρ_rot``.
  - :func:`rho_parity` — ``ρ_par``, the measure the generalisation pages use: the median,
    over the evaluations in the second half of a run, of ``1 − |cos(v₁(t − L), v₁(t))|``
    with ``L`` an even number of epochs (the table's ``cos_par_1``: the same-parity
    comparison, so the period-2 flip of the edge of stability is not counted as rotation).
    A median over the late half does not grow with the number of evaluations; with the
    spectrum interval set to a fixed multiple of 1/η (:func:`instab_lib.experiments.shared_runs.gf_interval`)
    ``L`` is the same stretch of gradient-flow time ``η·L`` for every η.

* **Controls for η** — :func:`partial_spearman` (rank correlation of two quantities with a
  third partialled out) and :func:`spearman_within` (rank correlation within groups, e.g.
  across seeds at each η, pooled): does a predictor add anything beyond η?

* **Goldilocks statistics** — :func:`best_gain` (best mean accuracy above the limit minus the
  best below it), :func:`phase_transition_fit` (accuracy against log η: smooth, with a jump
  at the limit, or flat below it and rising above; compared by BIC) and :func:`seed_slope`.

* **Rank correlations** — :func:`spearman` (average ranks for ties, NaN when one side
  is constant or fewer than 3 pairs).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd


__all__ = [
    "OUTCOMES", "rankdata", "spearman", "rho_rotation", "rho_subspace", "outcome", "run_summary", "summarize_runs",
    "stability_of_runs", "describe_runs", "rho_parity", "partial_spearman", "spearman_within", "comparable",
    "best_gain", "phase_transition_fit", "seed_slope", "cumulative_drift", "DRIFT_K", "DRIFT_EPOCH",
]

OUTCOMES = ("target", "capped", "diverged", "collapsed")
TRAINED = ("target", "capped")


# --------------------------------------------------------------------------- ranks
def rankdata(x: Sequence[float]) -> np.ndarray:
    """Ranks 1…n of ``x`` with ties given their average rank (``scipy.stats.rankdata``'s
    ``"average"``); float array of the same length."""
    a = np.asarray(x, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"rankdata needs a 1-D sequence, got shape {a.shape}")
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    ranks = np.empty(len(a), dtype=float)
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and sorted_a[j + 1] == sorted_a[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation of ``x`` and ``y`` (Pearson correlation of the average
    ranks), over the pairs where both are finite. NaN when fewer than 3 such pairs remain
    or one side is constant (no ranking, hence no sign)."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError(f"spearman needs two 1-D sequences of equal length, got {xa.shape} and {ya.shape}")
    ok = np.isfinite(xa) & np.isfinite(ya)
    if ok.sum() < 3:
        return float("nan")
    rx, ry = rankdata(xa[ok]), rankdata(ya[ok])
    rx -= rx.mean()
    ry -= ry.mean()
    den = math.sqrt(float(rx @ rx) * float(ry @ ry))
    if den == 0:
        return float("nan")
    return float(np.clip(float(rx @ ry) / den, -1.0, 1.0))


# --------------------------------------------------------------------------- ρ
def _spectra(table: pd.DataFrame) -> pd.DataFrame:
    if "sharpness" not in table:
        return table.iloc[0:0]
    return table[table["sharpness"].notna()]


def rho_rotation(table: pd.DataFrame, column: str = "cos_prev_1") -> float:
    """``ρ_rot``: mean over consecutive spectrum evaluations of ``1 − |cos(v₁(t), v₁(t'))|``
    (``column`` holds the absolute cosines, NaN at the first evaluation). NaN when the
    run has fewer than two evaluations."""
    if column not in table:
        return float("nan")
    c = _spectra(table)[column].to_numpy(dtype=float)
    c = c[np.isfinite(c)]
    return float(np.mean(1.0 - c)) if len(c) else float("nan")


def rho_subspace(table: pd.DataFrame, column: str = "subspace_ref") -> float:
    """``ρ_sub``: the top-k subspace similarity between the reference evaluation (the
    initialisation when ``reference_epoch = 0``) and the last evaluation of the run. NaN
    when the run has no evaluation after the reference."""
    if column not in table:
        return float("nan")
    sp = _spectra(table)
    v = sp[column].to_numpy(dtype=float)
    if len(sp) < 2 or not np.isfinite(v[-1]):
        return float("nan")
    return float(v[-1])


def rho_parity(table: pd.DataFrame, column: str = "cos_par_1", start_frac: float = 0.5) -> float:
    """``ρ_par``: median of ``1 − column`` (same-parity absolute cosines of the top eigenvector,
    see the module docstring) over the evaluations at epochs ≥ ``start_frac`` × the run's last
    epoch. NaN when no such evaluation has a same-parity partner."""
    if column not in table or not len(table):
        return float("nan")
    sp = _spectra(table)
    last = float(table["epoch"].iloc[-1])
    c = sp.loc[sp["epoch"] >= start_frac * last, column].to_numpy(dtype=float)
    c = c[np.isfinite(c)]
    return float(np.median(1.0 - c)) if len(c) else float("nan")


def partial_spearman(x: Sequence[float], y: Sequence[float], z: Sequence[float]) -> float:
    r"""Spearman correlation of ``x`` and ``y`` with ``z`` partialled out:
    :math:`(r_{xy} - r_{xz} r_{yz}) / \sqrt{(1 - r_{xz}^2)(1 - r_{yz}^2)}` on the rank
    correlations, over the triples where all three are finite. NaN when undefined (fewer
    than 4 triples, or ``z`` ranks exactly like ``x`` or ``y``)."""
    xa, ya, za = (np.asarray(v, dtype=float) for v in (x, y, z))
    ok = np.isfinite(xa) & np.isfinite(ya) & np.isfinite(za)
    if ok.sum() < 4:
        return float("nan")
    rxy, rxz, ryz = spearman(xa[ok], ya[ok]), spearman(xa[ok], za[ok]), spearman(ya[ok], za[ok])
    den = (1 - rxz ** 2) * (1 - ryz ** 2)
    if not (den > 0) or not all(math.isfinite(r) for r in (rxy, rxz, ryz)):
        return float("nan")
    return float(np.clip((rxy - rxz * ryz) / math.sqrt(den), -1.0, 1.0))


def spearman_within(x: Sequence[float], y: Sequence[float], groups: Sequence[Any]) -> float:
    """Rank correlation of ``x`` and ``y`` *within* groups, pooled: both are ranked inside each
    group (average ranks), the ranks centred per group, and the Pearson correlation of the
    pooled centred ranks returned. With groups = η it asks whether, at a fixed learning rate,
    the run with the larger ``x`` is the more accurate one. Groups with fewer than two finite
    pairs add nothing; NaN when nothing is left."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    g = np.asarray(groups)
    cx, cy = [], []
    for key in pd.unique(g):
        sel = (g == key) & np.isfinite(xa) & np.isfinite(ya)
        if sel.sum() < 2:
            continue
        rx, ry = rankdata(xa[sel]), rankdata(ya[sel])
        cx.append(rx - rx.mean())
        cy.append(ry - ry.mean())
    if not cx:
        return float("nan")
    vx, vy = np.concatenate(cx), np.concatenate(cy)
    den = math.sqrt(float(vx @ vx) * float(vy @ vy))
    return float(np.clip(float(vx @ vy) / den, -1.0, 1.0)) if den > 0 else float("nan")


#: Top-k of :func:`cumulative_drift`: 6, as in the author's cell it is modelled on.
DRIFT_K = 6
#: The early epoch of :func:`cumulative_drift`.
DRIFT_EPOCH = 9


def cumulative_drift(result: Any, early_epoch: int = DRIFT_EPOCH, k: int = DRIFT_K, tol: float = 1e-4) -> float:
    r"""Cumulative drift of the top-``k`` Hessian eigenspace of one full-batch run, from ``early_epoch``
    to the end:

    .. math:: \mathrm{drift} = 1 - \mathrm{dk\_cos}(V_{t_0}, V_{T}),

    ``V_t`` (dim, k) the top-``k`` eigenvectors of the loss Hessian on the run's Hessian set at θ_t,
    ``t_0 = early_epoch``, ``T`` the run's last epoch; ``dk_cos`` is
    :func:`instab_lib.rotation.subspace_similarity` (cosine of the normalised Grassmann distance).

    Ours, modelled on a scratch cell of the author's code (``lawrencewang94/jax_eigs``,
    ``notebooks/fmnist-1LNN.ipynb``: ``dk_cos(eigvecs[9, :6].T, eigvecs[-1, :6].T)``, the top-6 subspace
    at the 10th Hessian evaluation against the last, there with ``hess_freq = 10`` in a 100-epoch run of a
    linear model, i.e. epoch 90 against 100); the author's figures' ρ is not this statistic.

    θ_{t_0} is recomputed by replaying the first ``t_0`` epochs of full-batch gradient descent from the
    run's seeded initialisation (:func:`instab_lib.experiments.loop.init_run`, ``run_epoch``): the run
    stores only its final θ (``snapshot_final``), and full-batch GD is deterministic, so the replay is
    the run's own trajectory (replayed on one torch thread, as the harness's worker processes train;
    tested exact against a saved snapshot in float64). θ_T is the run's final snapshot. Eigenvectors by
    :func:`instab_lib.curvature.lanczos` (``tol``, seeded by the run's seed). NaN for a run that
    diverged, stopped before ``t_0`` or kept no final θ; a ``ValueError`` for a minibatch run (its
    replay would need the batch order too)."""
    import torch

    from .. import curvature
    from ..rotation import subspace_similarity
    from .loop import init_run, load_flat_parameters, run_epoch
    from .seeding import shifted

    cfg = result.config
    if cfg.batch_size not in (None, cfg.n_train):
        raise ValueError(f"cumulative_drift replays full-batch GD; run {result.key} has batch size {cfg.batch_size}")
    if result.status == "diverged" or result.epochs_run <= early_epoch or not cfg.snapshot_final:
        return float("nan")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run, state = init_run(cfg)
        for _ in range(early_epoch):
            state, diverged = run_epoch(run, state)
            if diverged:
                return float("nan")

        def top() -> Any:
            op = curvature.HessianOperator(run.model, run.loss_fn, run.hessian)
            r = curvature.lanczos(op, k, "LA", tol=tol, seed=shifted(cfg.seed))
            op.release()
            return r.eigenvectors

        early = top()
        load_flat_parameters(run.params, result.snapshot(result.epochs_run)["theta"])
        return 1.0 - subspace_similarity(early, top())
    finally:
        torch.set_num_threads(threads)


def comparable(acc: pd.DataFrame, etas: Sequence[float], side: str) -> list[float]:
    """The learning rates of ``etas`` that may be "best" on their ``side`` of the limit, from a
    seed × η table of accuracies (NaN: not at the target). ``"above"``: every seed reached the
    target (an η that loses seeds is not best on its survivors); ``"below"``: at least half did
    (its mean is over those; leaving it out could only help a claim that above beats below)."""
    if side not in ("above", "below"):
        raise ValueError(f"side must be 'above' or 'below', got {side!r}")
    need = 1.0 if side == "above" else 0.5
    return [e for e in etas if e in acc and acc[e].notna().mean() >= need]


def best_gain(acc: pd.DataFrame, below: Sequence[float], above: Sequence[float], seeds: Sequence[Any]) -> float:
    """Best mean accuracy among the learning rates ``above`` minus the best among ``below``.

    ``acc``: one row per seed, one column per η (NaN: a run left out, e.g. it did not reach
    the target); ``seeds``: the rows to average over (repeats count, as in a bootstrap
    resample). A column's mean is over its non-NaN entries; NaN when a side has no value."""
    sub = acc.loc[list(seeds)]
    means = sub.mean(axis=0, skipna=True)
    hi = means[[e for e in above if e in means.index]].max()
    lo = means[[e for e in below if e in means.index]].max()
    return float(hi - lo) if np.isfinite(hi) and np.isfinite(lo) else float("nan")


def _design(x: np.ndarray, seeds: np.ndarray, *cols: np.ndarray) -> np.ndarray:
    levels = list(pd.unique(seeds))
    dummies = [(seeds == lv).astype(float) for lv in levels]
    return np.column_stack(dummies + list(cols))


def _bic_fit(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    r"""Least-squares coefficients and BIC :math:`n\log(\mathrm{RSS}/n) + k\log n`."""
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    n = len(y)
    rss = float(np.sum((y - design @ coef) ** 2))
    return coef, n * math.log(max(rss, 1e-300) / n) + design.shape[1] * math.log(n)


def seed_slope(x: Sequence[float], y: Sequence[float], seeds: Sequence[Any]) -> float:
    """The common slope of ``y`` on ``x`` with one intercept per seed (least squares); NaN with
    fewer than two distinct ``x``."""
    xa, ya, s = np.asarray(x, dtype=float), np.asarray(y, dtype=float), np.asarray(seeds)
    if len(np.unique(xa)) < 2:
        return float("nan")
    coef, _ = _bic_fit(_design(xa, s, xa), ya)
    return float(coef[-1])


def phase_transition_fit(log_eta: Sequence[float], acc: Sequence[float], seeds: Sequence[Any],
                         log_limit: float) -> dict[str, float]:
    r"""Accuracy against :math:`x = \log\eta`, with one intercept :math:`\alpha_s` per seed (seeds
    differ in overall accuracy), fitted by least squares three ways, :math:`u = (x - x_0)_+` the
    distance above the limit :math:`x_0`:

    .. math:: \text{smooth: } \alpha_s + b x + d x^2, \qquad
              \text{jump: } \alpha_s + b x + d x^2 + j\,\mathbf 1[x > x_0], \qquad
              \text{kink: } \alpha_s + c\,u + e\,u^2

    (the kink model: accuracy flat below the limit, rising — and bending — above it). Returns
    ``{"jump": j, "slope_above": c, "bic_smooth", "bic_jump", "bic_kink", "delta_bic_jump",
    "delta_bic_kink", "n"}`` with ``delta_bic_* = bic_smooth − bic_*`` (positive: the data prefer
    that break over the smooth curve; > 2 counts as positive evidence, > 6 strong), for
    Gaussian errors."""
    x, a = np.asarray(log_eta, dtype=float), np.asarray(acc, dtype=float)
    s = np.asarray(seeds)
    ok = np.isfinite(x) & np.isfinite(a)
    x, a, s = x[ok], a[ok], s[ok]
    n = len(a)
    keys = ("jump", "slope_above", "bic_smooth", "bic_jump", "bic_kink", "delta_bic_jump", "delta_bic_kink")
    above = x > log_limit
    if n <= len(pd.unique(s)) + 3 or above.all() or (~above).all():
        return {**{k: float("nan") for k in keys}, "n": int(n)}
    u = np.maximum(x - log_limit, 0.0)
    _, bic_s = _bic_fit(_design(x, s, x, x ** 2), a)
    cj, bic_j = _bic_fit(_design(x, s, x, x ** 2, above.astype(float)), a)
    ck, bic_k = _bic_fit(_design(x, s, u, u ** 2), a)
    return {"jump": float(cj[-1]), "slope_above": float(ck[-2]), "bic_smooth": bic_s, "bic_jump": bic_j,
            "bic_kink": bic_k, "delta_bic_jump": bic_s - bic_j, "delta_bic_kink": bic_s - bic_k, "n": int(n)}


# --------------------------------------------------------------------------- summaries
def outcome(status: str, final_train_acc: float, collapse_acc: float) -> str:
    """The outcome of a run (module docstring) from its status and final train accuracy."""
    if status == "diverged":
        return "diverged"
    if status == "failed":
        raise ValueError("a failed run (an exception, not a result) has no outcome: fix and rerun it")
    if status == "stalled" or not (final_train_acc >= collapse_acc):  # NaN counts as collapsed
        return "collapsed"
    if status == "early_stopped":
        return "target"
    if status == "finished":
        return "capped"
    raise ValueError(f"unknown run status {status!r}")


def run_summary(result: Any, collapse_acc: float | None = None) -> dict[str, Any]:
    """One row for a :class:`~instab_lib.experiments.train.RunResult` (see :func:`summarize_runs`)."""
    cfg = result.config
    table = result.table
    n_train = cfg.n_train
    bs = cfg.batch_size or n_train
    if collapse_acc is None:
        from .train import chance_ceiling

        collapse_acc = chance_ceiling(cfg.n_classes)
    last = table.iloc[-1] if len(table) else None
    train_acc = float(last["train_acc"]) if last is not None else float("nan")
    sp = _spectra(table)
    max_s = float(sp["sharpness"].max()) if len(sp) else float("nan")
    out = outcome(result.status, train_acc, collapse_acc)
    return {
        "lr": float(cfg.lr), "batch_size": int(bs) if bs is not None else None, "seed": int(cfg.seed),
        "status": result.status, "outcome": out,
        "epochs": int(table["epoch"].iloc[-1]) if len(table) else 0,
        "steps": int(table["step"].iloc[-1]) if len(table) else 0,
        "diverged_step": result.diverged_step,
        "train_acc": train_acc,
        "test_acc": float(last["test_acc"]) if last is not None else float("nan"),
        "train_loss": float(last["train_loss"]) if last is not None else float("nan"),
        "final_sharpness": float(sp["sharpness"].iloc[-1]) if len(sp) and out in TRAINED else float("nan"),
        "max_sharpness": max_s,
        "eta_max_s": float(cfg.lr) * max_s,
        "rho_rot": rho_rotation(table),
        "rho_sub": rho_subspace(table),
        "rho_par": rho_parity(table),
        "n_evals": int(len(sp)),
        "wall_time_s": float(result.wall_time_s),
        "data_source": result.data_source,
    }


def summarize_runs(results: Iterable[Any], collapse_acc: float | None = None) -> pd.DataFrame:
    """One row per run: ``lr, batch_size, seed, status, outcome, epochs, steps,
    diverged_step, train_acc, test_acc, train_loss, final_sharpness`` (NaN unless the run
    trained), ``max_sharpness`` (over its evaluations, before any divergence),
    ``eta_max_s`` (≥ 2: the run went unstable), ``rho_rot``, ``rho_sub``, ``n_evals``,
    ``wall_time_s``, ``data_source``. Raises on a run that failed with an exception."""
    rows = []
    for r in results:
        if getattr(r, "status", None) == "failed":
            raise RuntimeError(f"run {r.key} (lr={r.config.lr}, seed={r.config.seed}) failed: {r.error}")
        rows.append(run_summary(r, collapse_acc))
    return pd.DataFrame(rows)


def stability_of_runs(df: pd.DataFrame) -> Any:
    """:func:`instab_lib.experiments.stability.stability_limit` of the runs in a summary table (η, max
    sharpness over each run, diverged); collapsed runs count as unstable, like divergence."""
    from .stability import stability_limit

    blown = df["outcome"].isin(("diverged", "collapsed")).to_numpy()
    return stability_limit(df["lr"].to_numpy(float), df["max_sharpness"].to_numpy(float), blown)


def describe_runs(df: pd.DataFrame) -> str:
    """One Markdown line for a summary table: the data copies used, the number of runs, how
    many did not blow up (outcome ``target`` or ``capped``) and how many reached the target."""
    sources = "; ".join(sorted(set(df["data_source"])))
    n_ok = int(df["outcome"].isin(TRAINED).sum())
    n_target = int((df["outcome"] == "target").sum())
    return (f"Data: **{sources}**; {len(df)} runs, of which {n_ok} did not diverge or collapse and {n_target} "
            "reached the train-accuracy target.")
