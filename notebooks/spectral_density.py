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
# **Claim.** The Hessian spectrum of the fMNIST MLP is a bulk near zero plus a few outliers. An instability moves the
# outliers down: after the first loss spike, and at the end of unstable training, the top eigenvalues sit lower than
# at the end of progressive sharpening, while the bulk barely changes.
#
# ```{admonition} Where this comes from
# :class: note
# - **Talk** (seeds/003): Hessian spectra with outliers and bulk; instabilities flatten.
# - **Our reconstruction**: the snapshots compared (the epoch before the first loss spike, the epoch it resolves,
#   the last epoch of the shared run), the density by stochastic Lanczos quadrature (`curvature.slq_density`,
#   Gaussian smoothing), the top eigenvalues by Lanczos from the run's table, every number. Data: the copy named
#   below.
# ```

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from instab_lib import claims, curvature, landscape
from instab_lib.plotting import apply_style, progress

apply_style()

# %% tags=["parameters"]
limit_etas = [0.0125, 0.025, 0.05, 0.1]  # grid that brackets the stability limit (shared by the fMNIST pages)
limit_epochs = 300
limit_eval_every = 5
eta_factor = 3.0  # η = eta_factor × measured limit (1 significant digit), as in phases_of_training
epochs = 400  # the shared main run
slq_probes = 4  # Rademacher probes
slq_order = 60  # Lanczos steps per probe
sigma = 0.3  # Gaussian smoothing of the density
spike_rel = 0.02  # loss-spike definition, as in phases_of_training
spike_window = 10
min_spike_length = 3

# %%
rec = claims.Recorder("spectral_density")

# %%
shared = landscape.shared_run(limit_etas, eta_factor, epochs, limit_epochs=limit_epochs,
                              limit_eval_every=limit_eval_every)
eta, run = shared.eta, shared.run
tab = run.table.set_index("epoch", drop=False)
shared.record(rec)
spikes = landscape.resolved_spikes(run.table, rel=spike_rel, window=spike_window, min_length=min_spike_length)
if not spikes:
    raise RuntimeError("no loss spike in the run: nothing to compare (η below the limit?)")
moments = {"before the first spike": spikes[0].last_stable, "first spike resolved": spikes[0].resolved,
           "end of training": epochs}
display(Markdown(f"{shared.describe()} Snapshots: {moments}."))

# %%
f = landscape.run_loss(run)
dens, rows = {}, []
for name, t in progress(list(moments.items()), desc="SLQ"):
    op = landscape.PointHessian(f, run.snapshot(t)["theta"])
    nodes, weights = curvature.slq_density(op, slq_probes, slq_order, seed=t)
    dens[name] = (nodes, weights)
    top = [float(tab.loc[t, f"eig_top_{k}"]) for k in (1, 2, 3)]
    bulk = (nodes.abs() < 1.0).double()
    rows.append({"snapshot": name, "epoch": t, "λ₁": top[0], "λ₂": top[1], "λ₃": top[2],
                 "λ_min": float(tab.loc[t, "lambda_min"]), "largest SLQ node": float(nodes.max()),
                 "mass with |λ| < 1": float((weights * bulk).sum(1).mean()), "loss": float(tab.loc[t, "train_loss"])})
spec = pd.DataFrame(rows).set_index("snapshot")
b = spec.loc["before the first spike"]
rec.record("top3_before", [float(b[c]) for c in ("λ₁", "λ₂", "λ₃")])
rec.record("top3_ratio_after", {k: float(spec.loc[k, ["λ₁", "λ₂", "λ₃"]].mean() / b[["λ₁", "λ₂", "λ₃"]].mean())
                                for k in ("first spike resolved", "end of training")})
rec.record("slq_edge_ratio_end", float(spec.loc["end of training", "largest SLQ node"] / b["largest SLQ node"]))
rec.record("bulk_mass", [float(x) for x in spec["mass with |λ| < 1"]])
spec.round(3)

# %% [markdown]
# ## The figure
#
# The smoothed SLQ density (log scale; it integrates to 1 over the 27,562 eigenvalues) at the three snapshots, with
# the top three Lanczos eigenvalues as ticks and $2/\eta$ dashed. Right: a zoom on the outliers.

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.4, 1]})
hi = float(spec[["λ₁", "largest SLQ node"]].max().max()) * 1.1
lo = float(min(spec["λ_min"].min(), -1)) * 1.1
grid_l = torch.linspace(lo, hi, 800, dtype=torch.float64)
colors = ["tab:blue", "tab:orange", "tab:green"]
for c, (name, (nodes, weights)) in zip(colors, dens.items()):
    phi = curvature.density_on_grid(nodes.double(), weights.double(), grid_l, sigma)
    for ax in axes:
        ax.plot(grid_l, phi.clamp_min(1e-12), color=c, label=f"{name} (epoch {moments[name]})")
        for k in ("λ₁", "λ₂", "λ₃"):
            ax.axvline(spec.loc[name, k], color=c, lw=2, ls=":", ymax=0.3)
for ax in axes:
    ax.axvline(2 / eta, color="0.4", ls="--", lw=1)
    ax.set(yscale="log", xlabel="eigenvalue λ", ylim=(1e-7, 10))
axes[0].set(ylabel="density (SLQ, smoothed)", title="Hessian spectrum: bulk and outliers")
axes[0].legend(fontsize=8)
axes[1].set(xlim=(5, hi), ylim=(1e-7, 1e-2), title="Outliers (dotted ticks: Lanczos top 3)")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Reading.** The outliers sit highest at the end of progressive sharpening (epoch before the first spike); the
# spike moves them down to about $2/\eta$, and with training continuing at the edge of stability they stay in a
# band around $2/\eta$ (the end-of-training drop is smaller than the one right after the spike). The bulk near zero
# is essentially unchanged (`bulk_mass`).
#
# ## Claims checked on these numbers

# %%
rec.report()
