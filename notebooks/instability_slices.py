# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Slices through one instability (A Fig 3, B Fig 2)
#
# **Claim.** During an instability the parameters move out along the sharpest directions, the loss and the
# sharpness $S(\theta)$ rise, and the *curve* of the sharpness along the gradient direction changes shape until a
# flatter region is reached and stability returns ($S < 2/\eta$).
#
# ```{admonition} Where this comes from
# :class: note
# - **Paper's captions.** A Fig 3: "Parameter growth along the sharpest Hessian eigenvectors leads to exploration of
#   the peripheries of the local minima, driving up $L(\theta)$ and $S(\theta)$ in the process. As the instability
#   develops, the $S(\theta)$ curve undergoes large changes until a flat region is found to enable a return to
#   stability. We show snapshots along the instability cycle taken along the direction of the gradient. The
#   dotted/solid vertical lines indicate the positions of previous/current parameters, respectively."
#   B Fig 2: "We plot the loss (top) and curvature (bottom; leading Hessian eigenvalue estimated via Hutchinson's
#   trick) across representative snapshots."
# - **Author's code** (`lawrencewang94/jax_eigs`, REFERENCE §2.6): the toy version plots $\lambda_{\max}$ along the
#   ray $\theta_t - s\,\eta\nabla L(\theta_t)$ for $s \in [-0.5, 1.5]$; the network setting of REFERENCE §4.2.
# - **Our reconstruction**: which snapshots (evenly spaced from the epoch before the first loss spike of at least
#   `min_episode_length` epochs to the epoch after it resolves, `landscape.find_spikes`), the range $s \in [-1, 2]$ (so $s = 0$ is the current parameters and
#   $s = 1$ the next GD iterate), the previous parameters *projected* onto the line, and "Hutchinson's trick" read as
#   $\mathrm{tr}(H^p)^{1/p}$ with Rademacher probes (an upper bound on $\lambda_{\max}$ for even $p$, REFERENCE §10),
#   shown beside Lanczos. Data: the copy named below.
# ```

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from instab_lib import claims, landscape
from instab_lib.plotting import apply_style, progress

apply_style()

# %% tags=["parameters"]
limit_etas = [0.0125, 0.025, 0.05, 0.1]  # grid that brackets the stability limit (shared by the fMNIST pages)
limit_epochs = 300
limit_eval_every = 5
eta_factor = 3.0  # η = eta_factor × measured limit (1 significant digit), as in phases_of_training
epochs = 400  # main run (shared with phases_of_training, eigenvector_rotation, curvature_moments)
n_snapshots = 6  # snapshots through the instability cycle
offsets = [-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 2.0]  # s in θ_t − s·η∇L(θ_t)
hutchinson_samples = 8  # Rademacher probes per point
hutchinson_power = 6  # tr(H^p)^(1/p)
min_episode_length = 3  # the cycle shown is the first loss spike with at least this many epochs that resolves
spike_rel = 0.02  # loss-spike definition, as in phases_of_training
spike_window = 10

# %%
rec = claims.Recorder("instability_slices")

# %%
shared = landscape.shared_run(limit_etas, eta_factor, epochs, limit_epochs=limit_epochs,
                              limit_eval_every=limit_eval_every)
eta, run, tab = shared.eta, shared.run, shared.table
shared.record(rec)
episodes = landscape.resolved_spikes(tab, rel=spike_rel, window=spike_window, min_length=min_episode_length)
display(Markdown(
    f"{shared.describe()} Loss spikes of ≥ {min_episode_length} epochs that resolve: "
    f"{[(e.start, e.end) for e in episodes]}."))

# %% [markdown]
# ## The cycle and its snapshots

# %%
if not episodes:
    raise RuntimeError("no instability episode that resolves: nothing to slice (η below the limit?)")
ep = episodes[0]
snap_epochs = sorted(set(int(round(x)) for x in np.linspace(ep.last_stable, min(ep.resolved + 1, epochs),
                                                            n_snapshots)))
f = landscape.run_loss(run)
rows, slices = [], {}
for t in progress(snap_epochs, desc="slices"):
    th = run.snapshot(t)["theta"].to(torch.float32)
    th_prev = run.snapshot(t - 1)["theta"].to(torch.float32)
    g = landscape.PointHessian(f, th).grad
    step = eta * float(g.norm())  # length of the GD step from θ_t
    u = -g / g.norm()
    sl = landscape.slice_along(f, th, u, [s * step for s in offsets], lanczos=True,
                               hutchinson_samples=hutchinson_samples, hutchinson_power=hutchinson_power, seed=t)
    s_prev = float((th_prev - th) @ u) / step
    slices[t] = (sl, s_prev)
    i0 = offsets.index(0.0)
    row = tab.set_index("epoch").loc[t]
    rows.append({"epoch": t, "ηS/2 (table)": eta * row["sharpness"] / 2, "λ_max at s=0": sl.lanczos[i0],
                 f"Hutchinson tr(H^{hutchinson_power})^(1/{hutchinson_power})": sl.hutch[i0],
                 "min λ_max on the line": np.nanmin(sl.lanczos), "loss": sl.loss[i0],
                 "|cos(v₁(t−1), v₁(t))|": row.get("cos_prev_1", np.nan), "s of θ_{t−1}": s_prev})
snaps = pd.DataFrame(rows).set_index("epoch")
i0 = offsets.index(0.0)
lam0 = np.array([slices[t][0].lanczos[i0] for t in snap_epochs])
hut0 = np.array([slices[t][0].hutch[i0] for t in snap_epochs])
rec.record("episode", [ep.start, ep.end])
rec.record("snapshot_epochs", snap_epochs)
Sc = tab.set_index("epoch")["sharpness"]
S_cycle_peak = float(Sc.loc[ep.start:ep.end].max())
rec.record("S_start_over_limit", float(eta * Sc.loc[ep.last_stable] / 2))
rec.record("S_peak_over_limit", float(eta * S_cycle_peak / 2))
rec.record("S_resolved_over_limit", float(eta * tab.set_index("epoch").loc[ep.resolved, "sharpness"] / 2))
rec.record("peak_to_resolved_drop", float(1 - Sc.loc[ep.resolved] / S_cycle_peak))
rec.record("hutch_over_lanczos", [float(x) for x in hut0 / lam0])
rec.record("lanczos_vs_table_rel", float(np.max(np.abs(lam0 / snaps["ηS/2 (table)"].to_numpy() * eta / 2 - 1))))
rec.record("min_cos_prev_1_in_cycle", float(tab[(tab.epoch >= ep.start) & (tab.epoch <= ep.resolved)]["cos_prev_1"].min()))
snaps.round(4)

# %% [markdown]
# ## The figure
#
# One column per snapshot (epoch on top). Top row: the training loss on the line $\theta_t - s\,\eta\nabla L(\theta_t)$;
# bottom row: the sharpness on the same line by Lanczos (solid) and by Hutchinson's $\mathrm{tr}(H^p)^{1/p}$ (dots
# with standard errors), with the stability threshold $2/\eta$ dashed. Solid vertical line: the current
# parameters $\theta_t$ ($s = 0$); dotted: the previous parameters $\theta_{t-1}$ projected on the line.

# %% tags=["hide-input"]
n = len(snap_epochs)
fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 5.6), sharey="row")
for j, t in enumerate(snap_epochs):
    sl, s_prev = slices[t]
    ax, bx = axes[0, j], axes[1, j]
    ax.plot(offsets, sl.loss, color="k", marker=".")
    bx.plot(offsets, sl.lanczos, color="tab:blue", marker=".", label="Lanczos λ_max")
    bx.errorbar(offsets, sl.hutch, yerr=sl.hutch_se, fmt="o", ms=3, color="tab:orange", capsize=2,
                label=f"Hutchinson tr(H^{hutchinson_power})^(1/{hutchinson_power})")
    bx.axhline(2 / eta, color="0.4", ls="--", lw=1, label="2/η")
    for a in (ax, bx):
        a.axvline(0, color="k", lw=1.2)
        a.axvline(s_prev, color="k", lw=1.2, ls=":")
    in_spike = ep.start <= t <= ep.end
    ax.set_title(f"epoch {t}{' (spike)' if in_spike else ''}\nηS/2 = {eta * Sc.loc[t] / 2:.2f}", fontsize=9)
    bx.set_xlabel("s  (step units)")
axes[0, 0].set_ylabel("training loss")
axes[1, 0].set_ylabel("sharpness on the line")
axes[1, 0].legend(fontsize=7, loc="upper left")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Claims checked on these numbers

# %%
rec.report()
