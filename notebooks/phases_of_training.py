# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Stable and unstable phases of training (B Fig 1)
#
# **Claim.** An MLP trained on Fashion-MNIST with full-batch gradient descent first sharpens (the sharpness
# $S = \lambda_{\max}$ of the loss Hessian grows) until $S \approx 2/\eta$; from then on the sharpness stays in a band
# around $2/\eta$ instead of growing further, the loss spikes, and the parameters oscillate. The magnitude of that
# oscillation, $\|\theta-\theta^*\|_2$, separates the stable from the unstable phase.
#
# ```{admonition} Where this comes from
# :class: note
# - **Paper's caption** (B Fig 1): "The magnitude of parameter oscillations, measured by $\|\theta-\theta^*\|_2$,
#   cleanly separates stable and unstable phases in an MLP trained on fMNIST with GD. Sharpness increases until
#   $\lambda_{\max} \approx 2/\eta$ (progressive sharpening), after which loss and curvature exhibit spikes
#   corresponding to valley jumping."
# - **Author's code** (`lawrencewang94/jax_eigs`, REFERENCE §4.2): the setting: MLP 784-32-32-32-10 ReLU, the first
#   1,000 training images standardised with mean 0.2859 and std 0.3530, softmax cross-entropy, full-batch GD,
#   Lanczos spectra every epoch on the same 1,000 images, η = 0.1 for 400 epochs.
# - **Our reconstruction**: the choice of $\theta^*$ (the paper's definition was not read): we use the period-2
#   centre $\theta^*_t = (\theta_{t-1} + 2\theta_t + \theta_{t+1})/4$ (REFERENCE §10; column `osc` of
#   `instab_lib.train`), and as a check that the separation does not hinge on it, the step length
#   $\|\theta_t - \theta_{t-1}\|$. Also ours: the learning rate chosen relative to the *measured* stability limit,
#   the phase labels (`instab_lib.landscape.find_episodes`: evaluated epochs with $\eta S_t \ge 2$), and every number.
#   Data: the copy named in the output below.
# ```

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from instab_lib import claims, landscape
from instab_lib.plotting import apply_style

apply_style()

# %% tags=["parameters"]
limit_etas = [0.0125, 0.025, 0.05, 0.1]  # grid that brackets the stability limit (shared by the fMNIST pages)
limit_epochs = 300  # epochs of each limit run
limit_eval_every = 5  # top eigenvalue every 5 epochs in the limit runs
eta_factor = 3.0  # η = eta_factor × measured limit, rounded to 1 significant digit (→ 0.1, the author's η)
epochs = 400  # epochs of the main run (the author's 400: CI = paper)
onset_margin = 2  # evaluated epochs before the first episode not counted as the stable phase
spike_rel = 0.02  # a loss spike: loss > (1 + spike_rel) × its minimum over the previous spike_window epochs
spike_window = 10

# %%
rec = claims.Recorder("phases_of_training")

# %% [markdown]
# ## The stability limit of this network, measured
#
# The sharpness at initialisation $S_0$ gives $2/S_0$, but the sharpness grows during training, so $2/S_0$ is not
# the limit (NOTES.md). We train the same network at a few learning rates and call the smallest η whose run reaches
# $\eta S_t \ge 2$ the **stability limit** (`instab_lib.stability`); its estimate is the geometric mean of the
# bracket. The main run uses $\eta$ = `eta_factor` × that limit (`landscape.shared_run`, the set-up every
# mechanism page shares).

# %%
shared = landscape.shared_run(limit_etas, eta_factor, epochs, limit_epochs=limit_epochs,
                              limit_eval_every=limit_eval_every)
grid, limit, eta, run, tab, S0 = shared.grid, shared.limit, shared.eta, shared.run, shared.table, shared.S0
shared.record(rec)
rec.record("limit_consistent", limit.consistent)
display(grid["table"].round(4))
display(Markdown(shared.describe()))

# %% [markdown]
# ## Phases
#
# The **unstable phase** starts at the first epoch with $\eta S_t \ge 2$ (`landscape.find_episodes`); the **stable
# phase** is everything before it (less `onset_margin` epochs). Within the unstable phase, a **loss spike** (a valley
# jump, one instability) is a run of epochs whose loss exceeds its minimum over the previous `spike_window` epochs
# by more than `spike_rel` (`landscape.find_spikes`).

# %%
episodes = landscape.find_episodes(tab)
sp = run.spectra
first = episodes[0].start if episodes else None
stable = tab[(tab["epoch"] < first - onset_margin)] if first is not None else tab
unstable = tab[tab["epoch"] >= first] if first is not None else tab.iloc[0:0]
sp_unst = sp[sp["epoch"] >= first] if first is not None else sp.iloc[0:0]
ratio_band = (sp_unst["sharpness"] * sp_unst["lr"] / 2)
osc_ratio = float(unstable["osc"].median() / stable["osc"].median()) if len(unstable) else float("nan")
step_ratio = float(unstable["step_norm"].median() / stable["step_norm"].median()) if len(unstable) else float("nan")
spikes = landscape.find_spikes(tab, rel=spike_rel, window=spike_window)
spike_epochs = np.array([sp_.start for sp_ in spikes])
rec.record("first_unstable_epoch", first if first is not None else -1)
rec.record("n_episodes", len(episodes))
rec.record("spike_epochs", [int(x) for x in spike_epochs])
rec.record("median_S_eta_over_2_unstable", float(ratio_band.median()) if len(ratio_band) else float("nan"))
rec.record("q90_S_eta_over_2_unstable", float(ratio_band.quantile(0.9)) if len(ratio_band) else float("nan"))
rec.record("S_growth_stable", float(sp["sharpness"].iloc[max(0, (first or 1) - 1)] / S0))
rec.record("osc_ratio", osc_ratio)
rec.record("step_ratio", step_ratio)
rec.record("spikes_stable", int(np.sum(spike_epochs < (first if first is not None else np.inf))))
rec.record("spikes_unstable", int(np.sum(spike_epochs >= (first if first is not None else np.inf))))
pd.DataFrame([{"phase": "stable", "epochs": f"0–{(first or epochs) - onset_margin - 1}",
               "median ‖θ−θ*‖": stable["osc"].median(), "median ‖Δθ‖": stable["step_norm"].median(),
               "median ηS/2": float((sp[sp['epoch'] < (first or epochs)]['sharpness'] * eta / 2).median()),
               "loss spikes": rec.numbers["spikes_stable"]},
              {"phase": "unstable", "epochs": f"{first}–{epochs}" if first is not None else "—",
               "median ‖θ−θ*‖": unstable["osc"].median(), "median ‖Δθ‖": unstable["step_norm"].median(),
               "median ηS/2": rec.numbers["median_S_eta_over_2_unstable"],
               "loss spikes": rec.numbers["spikes_unstable"]}]).set_index("phase").round(4)

# %% [markdown]
# ## The figure
#
# Top: training loss (log scale) and sharpness with $2/\eta$ (dashed); the unstable phase is shaded grey, the loss
# spikes red.
# For comparison the sharpness of the stable limit run at η = 0.0125 (evaluated every 5 epochs) keeps growing.
# Bottom: the oscillation magnitude $\|\theta_t-\theta^*_t\|_2$ (log scale), coloured by phase, and the step length.

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, 2, figsize=(12, 7), sharex=True)
e = tab["epoch"].to_numpy()
for ax in axes.flat:
    if first is not None:
        ax.axvspan(first - 0.5, epochs, color="0.92", lw=0, zorder=0)
    for sp_ in spikes:
        ax.axvspan(sp_.start - 0.5, sp_.end + 0.5, color="tab:red", alpha=0.12, lw=0, zorder=0)
axes[0, 0].plot(e, tab["train_loss"], color="k", lw=1.2)
axes[0, 0].set(yscale="log", ylabel="training loss", title="Loss (spikes = valley jumps)")
axes[0, 1].plot(sp["epoch"], sp["sharpness"], color="tab:blue", lw=1.2, label=f"S, η = {eta:g}")
axes[0, 1].axhline(2 / eta, color="tab:blue", ls="--", lw=1, label="2/η")
small_eta = min(grid["runs"])
ss = grid["runs"][small_eta].spectra
axes[0, 1].plot(ss["epoch"], ss["sharpness"], color="tab:orange", lw=1, label=f"S, η = {small_eta:g} (stable)")
axes[0, 1].set(ylabel=r"sharpness $\lambda_{\max}$", title="Progressive sharpening, then edge of stability",
               xlim=(0, epochs))
axes[0, 1].legend(fontsize=8)
is_unst = e >= (first if first is not None else np.inf)
axes[1, 0].semilogy(e[~is_unst], tab["osc"][~is_unst], ".", ms=3, color="tab:green", label="stable phase")
axes[1, 0].semilogy(e[is_unst], tab["osc"][is_unst], ".", ms=3, color="tab:red", label="unstable phase")
axes[1, 0].set(xlabel="epoch", ylabel=r"$\|\theta_t-\theta^*_t\|_2$", title="Parameter oscillation (period-2 part)")
axes[1, 0].legend(fontsize=8)
axes[1, 1].semilogy(e, tab["step_norm"], color="0.3", lw=1)
axes[1, 1].set(xlabel="epoch", ylabel=r"$\|\theta_t-\theta_{t-1}\|_2$", title="Step length (second reading)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Claims checked on these numbers
#
# Thresholds live in `notebooks/phases_of_training.yaml`; `instab verify phases_of_training` re-checks them.

# %%
rec.report()
