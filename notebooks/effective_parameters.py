# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The effective number of parameters at equal fit, small vs large η (beyond the papers)
#
# ```{admonition} Beyond the papers
# :class: warning
# Neither paper has this figure. It follows the background talk and SANE (arXiv:2305.18490, same group): the
# effective number of parameters as a measure of how many directions the data pin down. It is **this companion's
# own experiment**.
# ```
#
# **Expectation tested** (the verdict is in the claim table at the foot of the page). Training beyond the stability
# limit ends with fewer well-determined directions: MacKay's
# effective number of parameters $N_\mathrm{eff}(\alpha) = \sum_i \lambda_i/(\lambda_i + \alpha)$ of the Hessian is
# lower for a large-η run than for a stable small-η run **at the same training loss** (the two runs are compared where
# they fit the data equally well, not at equal epochs). Decided per seed on an ensemble.
#
# ```{admonition} Where this comes from
# :class: note
# - **Talk** (S. Roberts, "Instability is all you need", seeds/003): the effective number of parameters (after Moody
#   1991 and SANE) as a measure of what the data determine.
# - **SANE** (arXiv:2305.18490, {doc}`../notes/reference` §6): $N_\mathrm{eff}$ and its sharpness-adjusted form with
#   $\alpha = c\,\lambda_{\max}$ ($c = 0.5$ in the author's `compute_neff`, inferred).
# - **Our reconstruction**: the runs compared (the unstable mechanism runs at η = 0.1 and the long stable runs at
#   η = 0.01), the training-loss levels at which they are compared (each seed's final loss of the unstable run, and an
#   intermediate level), a fixed $\alpha$ for the claim, negative eigenvalues dropped, $N_\mathrm{eff}$ from stochastic
#   Lanczos quadrature (`effective_parameters.n_eff_from_slq`, exact for few distinct eigenvalues, tested), every number. Data:
#   the copy named below.
# ```

# %% tags=["remove-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from instab_lib import curvature
from instab_lib.book import claims
from instab_lib.experiments import effective_parameters, landscape, mechanism, shared_runs, stats
from instab_lib.experiments.plotting import apply_style, figure, progress

apply_style()

# %% tags=["parameters"]
scale = "ci"  # the shared experiments' scale: "ci" (5 seeds) or "paper" (10 seeds)
alpha = 1.0  # the prior precision α of N_eff(α) in the claim
sane_c = 0.5  # sharpness-adjusted α = c·λ_max (shown, no claim)
levels = [0.5, 1.0]  # training-loss levels: fractions of the way in log-loss from the first common loss to the final one
slq_probes = 4
slq_order = 50
final_window = 10  # the unstable run's final loss: median over its last this-many epochs
executor = None  # None: local worker processes; or a Dask scheduler address

# %% tags=["remove-input"]
rec = claims.Recorder("effective_parameters")

# %%
mech = shared_runs.get("fmnist_mechanism", scale)
stab = shared_runs.get("fmnist_stable", scale)
runs = mech.run(executor=executor)
sruns = {r.config.seed: r for r in stab.run(executor=executor)}
eta, eta_s = float(mech.base.lr), float(stab.base.lr)
rec.record("n_seeds", len(runs))
rec.record("seeds", sorted({r.config.seed for r in runs} | set(sruns)))
rec.record("data_source", sorted({r.data_source for r in runs + list(sruns.values())}))
display(Markdown(f"Data: **{runs[0].data_source}**. Large η: {mech.description}. Small η: {stab.description}."))

# %% [markdown]
# ## Matched training loss
#
# For each seed, loss levels $L_j$ between the loss both runs have reached early on (epoch 25 of the unstable run) and
# the unstable run's final loss, spaced on a log scale by `levels`; each run is read at its first snapshot whose
# training loss is at most $L_j$.

# %%
def neff_at(run, epoch, seed):
    f = landscape.run_loss(run)
    op = landscape.PointHessian(f, run.snapshot(int(epoch))["theta"])
    nodes, weights = curvature.slq_density(op, slq_probes, slq_order, seed=seed)
    lam_max = float(run.table.set_index("epoch").loc[int(epoch), "sharpness"]) if "sharpness" in run.table else np.nan
    ne, se = effective_parameters.n_eff_from_slq(nodes, weights, op.dim, alpha)
    ns, _ = effective_parameters.n_eff_from_slq(nodes, weights, op.dim, sane_c * lam_max)
    return ne, se, ns


rows = []
for r in progress(runs, desc="seeds"):
    s_ = r.config.seed
    small = sruns[s_]
    start = float(r.table.set_index("epoch").loc[25, "train_loss"])
    final = float(r.table["train_loss"].iloc[-final_window:].median())
    for j, frac in enumerate(levels):
        L = float(np.exp(np.log(start) + frac * (np.log(final) - np.log(start))))
        e_big = mechanism.first_epoch_at_or_below(r.table, L, epochs=r.config.snapshot_epochs)
        e_small = mechanism.first_epoch_at_or_below(small.table, L, epochs=small.config.snapshot_epochs)
        if e_small is not None and float(mechanism.eta_s_over_2(small.table).loc[:e_small].max()) >= 1:
            e_small = None  # the small-η run reached the edge of stability first: not a stable comparison
        row = {"seed": s_, "level": frac, "loss": L, "epoch large η": e_big, "epoch small η": e_small,
               "max ηS/2 small η up to it": float(mechanism.eta_s_over_2(small.table).loc[:e_small].max())
               if e_small is not None else np.nan}
        if e_big is not None and e_small is not None:
            for name, run_, e in (("large η", r, e_big), ("small η", small, e_small)):
                ne, se, ns = neff_at(run_, e, seed=1000 * s_ + e)
                row.update({f"N_eff {name}": ne, f"se {name}": se, f"SANE {name}": ns})
        rows.append(row)
neff = pd.DataFrame(rows)
ok = neff.dropna(subset=["N_eff large η", "N_eff small η"]) if "N_eff large η" in neff else neff.iloc[0:0]
final_lv = ok[ok.level == max(levels)]
rec.record("n_seeds_matched", int(final_lv["seed"].nunique()))
rec.record("small_max_eta_S_over_2", float(np.nanmax(ok["max ηS/2 small η up to it"])) if len(ok) else float("nan"))
rec.record("neff_ratio_final_loss", stats.bootstrap_ratio(final_lv["N_eff large η"] / final_lv["N_eff small η"]))
rec.record("neff_ratio_by_level", {f"{lv:g}": stats.bootstrap_ratio(g["N_eff large η"] / g["N_eff small η"])
                                   for lv, g in ok.groupby("level") if len(g) >= 2})
rec.record("neff_se_max", float(np.nanmax(ok[["se large η", "se small η"]].to_numpy())) if len(ok) else float("nan"))
rec.record("epochs_ratio_small_over_large", stats.bootstrap_ratio(final_lv["epoch small η"] / final_lv["epoch large η"]))
neff.round(3)

# %% [markdown]
# ## The figure

# %% tags=["hide-input"]
fig, axes = figure(1, 2, height=3.5)
level_style = dict(zip(levels, ("o", "s", "^", "D", "v")))
for lv in levels:
    g = ok[ok.level == lv]
    axes[0].scatter(g["N_eff small η"], g["N_eff large η"], marker=level_style[lv], color="0.2",
                    label=f"loss level {lv:g}")
    axes[1].scatter(g["SANE small η"], g["SANE large η"], marker=level_style[lv], color="0.2")
for ax, cols in ((axes[0], ["N_eff small η", "N_eff large η"]), (axes[1], ["SANE small η", "SANE large η"])):
    if len(ok):
        v = ok[cols].to_numpy()
        lims = [float(np.nanmin(v)) * 0.9, float(np.nanmax(v)) * 1.1]
        ax.plot(lims, lims, color="0.5", ls="--", lw=1)
axes[0].set(xlabel=f"$N_{{eff}}$(α = {alpha:g}), η = {eta_s:g}", ylabel=f"$N_{{eff}}$, η = {eta:g}",
            title="Equal training loss")
axes[0].legend(loc="upper left")
axes[1].set(xlabel=f"SANE $N_{{eff}}$, η = {eta_s:g}", ylabel=f"η = {eta:g}", title=f"α = {sane_c:g}·λ_max (SANE)")
plt.show()
n = rec.numbers
rr = n["neff_ratio_final_loss"]
display(Markdown(
    f"**Figure 1.** Left: the effective number of parameters $N_\\mathrm{{eff}}(\\alpha)$ of the unstable run "
    f"(η = {eta:g}) against that of the stable run (η = {eta_s:g}) at the same training loss, one point per seed and "
    "loss level; a point below the dashed diagonal means fewer effective parameters after the large learning rate. "
    f"At the final loss the ratio is {rr['est']:.3f} [{rr['lo']:.3f}, {rr['hi']:.3f}] over {n['n_seeds_matched']} "
    "seeds. Right: SANE's sharpness-adjusted $N_\\mathrm{eff}(c\\,\\lambda_{\\max})$, shown for reference (no claim)."))

# %%
n = rec.numbers
rr = n["neff_ratio_final_loss"]
v_neff = rec.verdict("neff_lower_after_large_eta")
display(Markdown(
    f"At the unstable run's final training loss, the small-η run needs {n['epochs_ratio_small_over_large']['est']:.1f}× "
    f"more epochs to get there; the ratio $N_\\mathrm{{eff}}$(large η)/$N_\\mathrm{{eff}}$(small η) is {rr['est']:.3f} "
    f"[{rr['lo']:.3f}, {rr['hi']:.3f}] over {n['n_seeds_matched']} seeds: "
    + ("the unstable run has fewer effective parameters at equal fit." if rr["hi"] < 1 else
       "**no** reduction of the effective number of parameters at equal fit (the expectation, beyond the papers: "
       f"{v_neff.verdict_html})."
       if rr["lo"] <= 1 else "the unstable run has *more* effective parameters at equal fit.")))

# %% [markdown]
# ## Claims checked on these numbers

# %%
rec.report()
