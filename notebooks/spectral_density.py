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
from instab_lib.experiments.plotting import apply_style, eta_color, progress

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
fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1.3, 1]})
keys = [k for k in ("before", "after first spike", "end", "stable, matched loss") if (s0, k) in dens]
hi = max(float(dens[s0, k][0].max()) for k in keys) * 1.1
lo = min(float(dens[s0, k][0].min()) for k in keys) * 1.1 - 0.5
grid = torch.linspace(lo, hi, 800, dtype=torch.float64)
colors = {"before": "0.3", "after first spike": "tab:orange", "end": eta_color(eta),
          "stable, matched loss": eta_color(eta_s)}
m0, matched0 = moments[s0]
for k in keys:
    nodes, weights = dens[s0, k]
    phi = curvature.density_on_grid(nodes.double(), weights.double(), grid, sigma)
    lab = f"{k} (epoch {m0[k]})" if k in m0 else f"{k} (η = {eta_s:g}, epoch {matched0})"
    for ax in axes:
        ax.plot(grid, phi.clamp_min(1e-12), color=colors[k], label=lab, ls="--" if k.startswith("stable") else "-")
for ax in axes:
    ax.axvline(2 / eta, color="0.4", ls=":", lw=1)
    ax.set(yscale="log", xlabel="eigenvalue λ", ylim=(1e-7, 10))
axes[0].set(ylabel="density (SLQ, smoothed)", title=f"Hessian spectrum, seed {s0}: bulk and outliers")
axes[0].legend(fontsize=8)
axes[1].set(xlim=(5, hi), ylim=(1e-7, 1e-2), title="The outliers")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Figure 1.** The smoothed SLQ density (log scale; it integrates to 1 over the 27,562 eigenvalues) of one seed, at the
# end of progressive sharpening (grey), after the first loss spike (orange), at the end of unstable training
# (η = 0.1) and for the stable run at the same training loss (dashed); $2/\eta$ dotted. Right: a zoom on the outliers.

# %%
n = rec.numbers
display(Markdown(
    f"Mean of the top three eigenvalues, medians over {n['n_seeds']} seeds: after the first spike "
    f"{n['top3_after_spike_over_before']['est']:.2f}× their value before the edge of stability, at the end "
    f"{n['top3_end_over_before']['est']:.2f}× [{n['top3_end_over_before']['lo']:.2f}, "
    f"{n['top3_end_over_before']['hi']:.2f}]; against the stable run at the same training loss, "
    f"{n['top3_end_over_stable_matched']['est']:.2f}× [{n['top3_end_over_stable_matched']['lo']:.2f}, "
    f"{n['top3_end_over_stable_matched']['hi']:.2f}] ({n['n_seeds_matched_loss']} seeds reach that loss). The bulk "
    f"mass with |λ| < 1 changes by {n['bulk_mass_change']['est']:+.3f}."))

# %% [markdown]
# ## Claims checked on these numbers

# %%
rec.report()
