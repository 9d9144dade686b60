# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The Hessian spectrum before and after instabilities (beyond the papers)
#
# ```{admonition} Beyond the papers
# :class: warning
# Neither paper has this figure. It follows the background talk (S. Roberts, "Instability is all you need": Hessian
# spectra, outliers vs bulk) and is **this companion's own experiment**.
# ```
#
# **Tested.** The Hessian spectrum of the fMNIST MLP is a bulk near zero plus a few outliers. The talk's expectation:
# an instability moves the outliers down, so after the first loss spike, and at the end of unstable training, the top
# eigenvalues sit lower than just before the edge of stability. And the flatness bias in its cleanest form: a stable
# run trained to the **same training loss** ends sharper than the unstable one. Every comparison is made per seed and
# decided on the ensemble; the verdicts are in the claim table at the foot of the page.
#
# **How to read the first two comparisons.** "Before" is the last epoch before $\eta S$ first reaches 2, so there the
# top eigenvalue is below $2/\eta$ by definition, while after the first spike and at the end the sharpness sits at or
# above $2/\eta$: measured this way the outliers can hardly move down. The comparison with the stable run at equal
# training loss is the informative one, and it is dominated by the cap $2/\eta$ that holds the unstable run's sharpness
# while the stable run is free to keep sharpening.
#
# ```{admonition} Where this comes from
# :class: note
# - **Talk** (seeds/003): Hessian spectra with outliers and bulk; instabilities flatten.
# - **Our reconstruction**: the snapshots compared (the last epoch before the first $\eta S \ge 2$, the epoch the first
#   loss spike resolves, the end of the run; the stable control η = 0.01 at the first snapshot where its training loss
#   reaches the unstable run's final loss), outliers as the mean of the top three Lanczos eigenvalues over a 3-epoch
#   window, the density by stochastic Lanczos quadrature (`curvature.slq_density`, Gaussian smoothing), the seed
#   ensemble, every number. Data: the copy named below.
# ```

# %% tags=["remove-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from instab_lib import curvature
from instab_lib.book import claims
from instab_lib.experiments import landscape, mechanism, shared_runs, stats
from instab_lib.experiments.plotting import apply_style, eta_style, figure, progress

apply_style()

# %% tags=["parameters"]
scale = "ci"  # the shared experiments' scale: "ci" (5 seeds) or "paper" (10 seeds)
slq_probes = 4  # Rademacher probes
slq_order = 60  # Lanczos steps per probe
sigma = 0.3  # Gaussian smoothing of the density
final_window = 10  # the unstable run's final loss: median over its last this-many epochs
spike_rel = 0.02  # loss-spike definition, as on phases_of_training
spike_window = 10
min_spike_length = 3
executor = None  # None: local worker processes; or a Dask scheduler address

# %% tags=["remove-input"]
rec = claims.Recorder("spectral_density")

# %%
mech = shared_runs.get("fmnist_mechanism", scale)
stab = shared_runs.get("fmnist_stable", scale)
runs = mech.run(executor=executor)
sruns = {r.config.seed: r for r in stab.run(executor=executor)}
eta, eta_s = float(mech.base.lr), float(stab.base.lr)
rec.record("n_seeds", len(runs))
rec.record("seeds", sorted({r.config.seed for r in runs} | set(sruns)))
rec.record("data_source", sorted({r.data_source for r in runs + list(sruns.values())}))
display(Markdown(f"Data: **{runs[0].data_source}**. Unstable: {mech.description}. Stable control: "
                 f"{stab.description}. {len(runs)} seeds."))

# %% [markdown]
# ## The snapshots, seed by seed

# %%
rows, moments = [], {}
for r in runs:
    s_ = r.config.seed
    t = r.table
    ph = mechanism.phases(t)
    sp = mechanism.spikes(t, spike_rel, spike_window, min_spike_length)[0]
    final_loss = float(t["train_loss"].iloc[-final_window:].median())
    ctrl = sruns[s_]
    matched = mechanism.first_epoch_at_or_below(ctrl.table, final_loss, epochs=ctrl.config.snapshot_epochs)
    if matched is not None and float(mechanism.eta_s_over_2(ctrl.table).loc[:matched].max()) >= 1:
        matched = None  # the control reached the edge of stability before the matched loss: not a stable control
    m = {"before": ph.first_unstable - 1, "after first spike": sp.resolved, "end": r.epochs_run}
    moments[s_] = (m, matched)
    row = {"seed": s_, **{f"epoch {k}": v for k, v in m.items()}, "final loss": final_loss,
           "stable epoch at that loss": matched,
           "max ηS/2 of the control up to it": float(mechanism.eta_s_over_2(ctrl.table).loc[:matched].max())
           if matched is not None else np.nan}
    for k, e in m.items():
        row[f"top-3 {k}"] = mechanism.top_mean(t, e)
    row["top-3 stable, matched loss"] = (mechanism.top_mean(ctrl.table, matched, halfwidth=25)
                                         if matched is not None else np.nan)
    rows.append(row)
snap = pd.DataFrame(rows).set_index("seed")
has_ctrl = snap["stable epoch at that loss"].notna()
rec.record("n_seeds_matched_loss", int(has_ctrl.sum()))
rec.record("stable_control_max_eta_S_over_2", float(snap["max ηS/2 of the control up to it"].max()))
rec.record("top3_after_spike_over_before", stats.bootstrap_ratio(snap["top-3 after first spike"] / snap["top-3 before"]))
rec.record("top3_end_over_before", stats.bootstrap_ratio(snap["top-3 end"] / snap["top-3 before"]))
rec.record("top3_end_over_stable_matched", stats.bootstrap_ratio(
    (snap["top-3 end"] / snap["top-3 stable, matched loss"])[has_ctrl]))
snap.round(3)

# %% [markdown]
# ## Densities by stochastic Lanczos quadrature
#
# For every seed, the density at the "before" and "end" snapshots (its largest node is the SLQ estimate of the spectrum's
# edge); for seed 0 also after the first spike and for the stable control at matched loss (the figure).

# %%
def slq(run, epoch, seed):
    f = landscape.run_loss(run)
    op = landscape.PointHessian(f, run.snapshot(int(epoch))["theta"])
    return curvature.slq_density(op, slq_probes, slq_order, seed=seed)


edge, dens = [], {}
for r in progress(runs, desc="SLQ"):
    s_ = r.config.seed
    m, matched = moments[s_]
    for k in (("before", "after first spike", "end") if s_ == runs[0].config.seed else ("before", "end")):
        nodes, weights = slq(r, m[k], seed=1000 * s_ + m[k])
        dens[s_, k] = (nodes, weights)
    if s_ == runs[0].config.seed and matched is not None:
        dens[s_, "stable, matched loss"] = slq(sruns[s_], matched, seed=1000 * s_ + matched)
    bulk = {k: float(((dens[s_, k][0].abs() < 1.0).double() * dens[s_, k][1]).sum(1).mean()) for k in ("before", "end")}
    edge.append({"seed": s_, "edge before": float(dens[s_, "before"][0].max()), "edge end": float(dens[s_, "end"][0].max()),
                 "bulk mass before": bulk["before"], "bulk mass end": bulk["end"]})
edge = pd.DataFrame(edge).set_index("seed")
rec.record("slq_edge_end_over_before", stats.bootstrap_ratio(edge["edge end"] / edge["edge before"]))
rec.record("bulk_mass_change", stats.bootstrap(edge["bulk mass end"] - edge["bulk mass before"]))
edge.round(3)

# %% [markdown]
# ## The figure

# %% tags=["hide-input"]
s0 = runs[0].config.seed
fig, axes = figure(1, 2, height=3.6, gridspec_kw={"width_ratios": [1.25, 1]})
keys = [k for k in ("before", "after first spike", "end", "stable, matched loss") if (s0, k) in dens]
hi = max(float(dens[s0, k][0].max()) for k in keys) * 1.1
lo = min(float(dens[s0, k][0].min()) for k in keys) * 1.1 - 0.5
grid = torch.linspace(lo, hi, 800, dtype=torch.float64)
colors = {"before": "0.6", "after first spike": "tab:orange", "end": eta_style(eta).color,
          "stable, matched loss": eta_style(eta_s).color}
m0, matched0 = moments[s0]
for k in keys:
    nodes, weights = dens[s0, k]
    phi = curvature.density_on_grid(nodes.double(), weights.double(), grid, sigma)
    lab = f"{k} (epoch {m0[k]})" if k in m0 else f"stable η = {eta_s:g}, same loss (epoch {matched0})"
    for ax in axes:
        ax.plot(grid, phi.clamp_min(1e-12), color=colors[k], label=lab, ls="--" if k.startswith("stable") else "-")
for ax in axes:
    ax.axvline(2 / eta, color="0.4", ls=":", lw=1)
    ax.set(yscale="log", xlabel="eigenvalue λ", ylim=(1e-7, 10))
axes[0].set(ylabel="density (SLQ, smoothed)", title="Bulk and outliers")
axes[1].set(xlim=(5, hi), ylim=(1e-7, 1e-2), title="The outliers")
fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=2)
plt.show()
n = rec.numbers
display(Markdown(
    f"**Figure 1.** The smoothed density of the Hessian spectrum (stochastic Lanczos quadrature, log scale; it "
    f"integrates to 1 over the {runs[0].snapshot(m0['end'])['theta'].numel():,} eigenvalues) of seed {s0}: at the end of "
    f"progressive sharpening (grey), after the first loss spike (orange), at the end of unstable training at η = "
    f"{eta:g} (black), and for the stable run at η = {eta_s:g} at the same training loss (dashed); $2/\\eta$ dotted. "
    "Right: a zoom on the outliers. Look at where the outliers sit against the dotted line: the unstable run's stay "
    f"near $2/\\eta$; over all seeds its top three eigenvalues end at {n['top3_end_over_stable_matched']['est']:.2f}× "
    "those of the stable run at the same loss (median)."))

# %%
bulk = n["bulk_mass_change"]
display(Markdown(
    f"Mean of the top three eigenvalues, medians over {n['n_seeds']} seeds: after the first spike "
    f"{n['top3_after_spike_over_before']['est']:.2f}× their value before the edge of stability, at the end "
    f"{n['top3_end_over_before']['est']:.2f}× [{n['top3_end_over_before']['lo']:.2f}, "
    f"{n['top3_end_over_before']['hi']:.2f}]; against the stable run at the same training loss, "
    f"{n['top3_end_over_stable_matched']['est']:.2f}× [{n['top3_end_over_stable_matched']['lo']:.2f}, "
    f"{n['top3_end_over_stable_matched']['hi']:.2f}] ({n['n_seeds_matched_loss']} seeds reach that loss). The bulk "
    f"mass with |λ| < 1 changes by {bulk['est']:+.1e} [{bulk['lo']:+.1e}, {bulk['hi']:+.1e}] (end minus before)."))

# %% [markdown]
# ## Claims checked on these numbers

# %%
rec.report()
