# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Watch your own training
#
# **What this page shows.** `instab_lib.Monitor` attached to a training loop written with plain PyTorch: a model
# built from `torch.nn` layers that the library does not define, trained on a CIFAR-10 subset by full-batch
# `torch.optim.SGD` and by `torch.optim.Adam`. The Monitor reads the learning rate, the β's and Adam's second
# moments from the optimiser, so the loop gains two lines: the Monitor built beside the optimiser, and `mon.step()`. With SGD the sharpness $\lambda_1$ of
# the loss Hessian settles around the stability threshold $2/\eta$ (the *edge of stability*, Cohen et al., 2021): at
# these learning rates the network starts sharper than $2/\eta$, the first steps flatten it, it sharpens again up to
# the threshold and stays near it, so that the smaller η ends at the larger sharpness. With Adam the
# quantity that rises to its threshold is the **preconditioned** sharpness $\lambda_1(P^{-1/2} H P^{-1/2})$,
# $P = \mathrm{diag}(\sqrt{\hat v} + \epsilon)$, against $(2 + 2\beta_1)/((1 - \beta_1)\eta)$ (Cohen et al., 2022).
# The Monitor also records how far the top eigenvectors turn between measurements; the last section asks whether they
# turn more when the loss jumps up (the rotation of B's mechanism).
#
# ```{admonition} Where this comes from
# :class: note
# - **Not the papers' statements.** Wang & Roberts describe the mechanism (rotation of the sharpest directions
#   during instabilities) on their own networks; this page is the companion's demonstration of its library on a
#   model and optimisers it did not write, and every claim on it is of kind *beyond*. The two thresholds are Cohen
#   et al.'s: $2/\eta$ for gradient descent ("Gradient descent on neural networks typically occurs at the edge of
#   stability", 2021) and $(2 + 2\beta_1)/((1 - \beta_1)\eta)$ for Adam's preconditioned sharpness ("Adaptive
#   gradient methods at the edge of stability", 2022).
# - **Our choices**: the model, the data subset, the learning rates, the number of steps, the windows and the
#   statistics. The model is a fully connected `tanh` network of two hidden layers built from `torch.nn.Sequential`
#   (Cohen et al. 2021 train such networks on CIFAR-10 subsets), with the squared loss on one-hot targets. We
#   first tried torchvision's ResNet-18: one full-batch step on 120 images took about 1 s on this 2-core CPU and a
#   single top-eigenvalue measurement did not finish in 5 minutes, so it cannot fit this page's budget (the whole
#   page runs in about two minutes of CI); on a GPU the same loop takes any `nn.Module`.
# - **Data**: a balanced CIFAR-10 subset (the first images of each class), average-pooled from 32×32 to the
#   resolution set below; the original CIFAR-10 when torchvision finds it, otherwise the JPEG re-encoding
#   `../shared/data/cifar10-jpeg` (pixels differ slightly from the original); the copy used is printed below.
# - **The `paper` preset** is not a paper setting (there is none for this page): it trains on 5,000 full-resolution
#   images for longer, with five seeds, on a GPU when one is there.
# ```

# %% tags=["remove-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display
from torch import nn

from instab_lib import Monitor
from instab_lib.book import claims
from instab_lib.experiments import data, seeding, stats
from instab_lib.experiments.plotting import apply_style, eta_style, figure

apply_style()

# %% tags=["parameters"]
n_images = 500  # balanced CIFAR-10 training subset (n_images / 10 per class), the full batch
resolution = 16  # images average-pooled from 32×32 to this side (32: no pooling)
width = 32  # units in each of the two hidden layers
steps = 150  # optimiser steps per run
every = 10  # the Monitor measures after every `every`-th step
k = 2  # top eigenpairs measured (their subspace gives the rotation)
sgd_lrs = [0.1, 0.2]  # η's of torch.optim.SGD (no momentum), the first drawn in Figure 1
adam_lr = 0.003  # η of torch.optim.Adam (default β's)
seeds = [0, 1, 2]  # initialisation seeds
late = 0.5  # "late": the measurements after this fraction of the steps
device = "cpu"  # "cpu", "cuda", or "auto" (a GPU when there is one)

# %% tags=["remove-input"]
rec = claims.Recorder("watch_your_training")
dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
rec.record("seeds", sorted(seeds))
rec.record("n_seeds", len(seeds))

# %% [markdown]
# ## The data, the model and the loss
#
# Any `nn.Module` and any loss `loss_fn(outputs, targets)` will do. The set on which the Monitor takes the Hessian
# is here the training batch itself: full-batch training descends exactly the loss whose sharpness is measured.

# %% tags=["show-input"]
ds = data.load_dataset("cifar10", n_train=n_images, n_test=100, balanced=True)
X = F.adaptive_avg_pool2d(ds.X_train, resolution).to(dev)  # (n_images, 3, resolution, resolution)
y = ds.y_train.to(dev)


def make_model():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * resolution**2, width), nn.Tanh(),
                         nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 10)).to(dev)


def loss_fn(outputs, targets):
    """Half the squared error to the one-hot targets, summed over classes, averaged over images."""
    return 0.5 * (outputs - F.one_hot(targets, 10).to(outputs.dtype)).pow(2).sum(1).mean()


# %% tags=["remove-input"]
rec.record("data_source", ds.source)
display(Markdown(f"Data: **{ds.source}**; {len(y)} images at {resolution}×{resolution}, "
                 f"{sum(p.numel() for p in make_model().parameters()):,} parameters, on {dev.type}."))

# %% [markdown]
# ## The loop
#
# The training loop is plain PyTorch; the Monitor is built once, beside the optimiser, and `mon.step()` follows
# `opt.step()`. `mon.measure()` before the first step records the initial state. A measurement tracks the top-`k`
# eigenpairs by warm-started Lanczos, reads the threshold from the optimiser and, for Adam, the preconditioned
# sharpness from its state.

# %% tags=["show-input"]
def watch(make_optimizer, seed):
    seed = seeding.shifted(seed)  # the book's perturbation check shifts every seed (INSTAB_SEED_OFFSET); 0 here
    torch.manual_seed(seed)
    model = make_model()
    opt = make_optimizer(model.parameters())
    mon = Monitor(model, loss_fn, (X, y), optimizer=opt, k=k, every=every, loss_reduction="mean", seed=seed)
    mon.measure()  # step 0
    for step in range(steps):
        opt.zero_grad()
        loss_fn(model(X), y).backward()
        opt.step()
        mon.step()  # measures after every `every`-th step
    return mon, opt


optimizers = {("SGD", lr): lambda params, lr=lr: torch.optim.SGD(params, lr=lr) for lr in sgd_lrs}
optimizers["Adam", adam_lr] = lambda params: torch.optim.Adam(params, lr=adam_lr)
runs = {(name, lr, s): watch(make, s) for (name, lr), make in optimizers.items() for s in seeds}

# %% [markdown]
# ## SGD: the sharpness settles at $2/\eta$
#
# `mon.plot()` draws the edge-of-stability figure of one run: the sharpness against the threshold the Monitor read
# from the optimiser, the similarity of the top-`k` eigenspace to the measurement an even number of steps earlier
# (1: the sharpest directions did not move), and the loss on the Hessian set.

# %% tags=["show-input"]
mon, opt = runs["SGD", sgd_lrs[0], seeds[0]]
fig = mon.plot(title=f"torch.optim.SGD, η = {sgd_lrs[0]:g}, seed {seeds[0]}")
plt.show()

# %% tags=["remove-input"]
LATE = steps * late


def late_median(mon, column):
    """The median of a history column over the measurements after step LATE."""
    h = mon.history
    return float(h.loc[h["step"] > LATE, column].median())


m0 = runs["SGD", sgd_lrs[0], seeds[0]][0]
h0 = m0.history
low = h0["rotation"].idxmin()
display(Markdown(
    f"**Figure 1.** Full-batch SGD at η = {sgd_lrs[0]:g} (seed {seeds[0]}). Top: the sharpness λ₁ starts at "
    f"{h0['sharpness'].iloc[0]:.3g} ({h0['ratio'].iloc[0]:.2f} of 2/η = {h0['threshold'].iloc[0]:.3g}), peaks at "
    f"{h0['sharpness'].max():.3g} (step {int(h0.loc[h0['sharpness'].idxmax(), 'step'])}) and after step {LATE:g} "
    f"has the median {late_median(m0, 'sharpness'):.3g} ({late_median(m0, 'ratio'):.2f} of 2/η). Middle: the "
    f"same-parity similarity of the top-{k} eigenspace, {h0['rotation'].iloc[1]:.2f} at step "
    f"{int(h0['step'].iloc[1])} and lowest, {h0.loc[low, 'rotation']:.2f}, at step {int(h0.loc[low, 'step'])}. "
    f"Bottom: the loss on the training batch."))

# %% [markdown]
# ## Adam: the preconditioned sharpness settles at its threshold
#
# For an adaptive optimiser `mon.plot()` draws the preconditioned sharpness against
# $(2 + 2\beta_1)/((1 - \beta_1)\eta)$, with $\beta_1$ and $\eta$ read from `torch.optim.Adam` and $\hat v$ from its
# state (`exp_avg_sq`, bias-corrected as Adam applies it).

# %% tags=["show-input"]
mon, opt = runs["Adam", adam_lr, seeds[0]]
fig = mon.plot(title=f"torch.optim.Adam, η = {adam_lr:g}, seed {seeds[0]}")
plt.show()

# %% tags=["remove-input"]
m1 = runs["Adam", adam_lr, seeds[0]][0]
h1 = m1.history
display(Markdown(
    f"**Figure 2.** Full-batch Adam at η = {adam_lr:g} (seed {seeds[0]}). Top: the preconditioned sharpness is "
    f"{h1['preconditioned_sharpness'].iloc[1]:.3g} at step {int(h1['step'].iloc[1])} ({h1['ratio'].iloc[1]:.2f} "
    f"of its threshold {h1['threshold'].iloc[1]:.4g}, dashed) and after step {LATE:g} has the median ratio "
    f"{late_median(m1, 'ratio'):.2f}; the plain sharpness λ₁ has the late median {late_median(m1, 'sharpness'):.3g}, "
    f"{late_median(m1, 'sharpness') * adam_lr / 2:.3f} of 2/η = {2 / adam_lr:.3g}: what sits at Adam's edge is the "
    f"preconditioned Hessian. Middle: the same-parity similarity of the top-{k} eigenspace. Bottom: the loss."))

# %% [markdown]
# ## Every seed: the ratio to the threshold, and rotation during loss spikes
#
# The `ratio` column is the compared quantity (sharpness for SGD, preconditioned sharpness for Adam) over its
# threshold; each run's late value is its median over the measurements of the second part of training. A *spike*
# here is a measurement at which the loss is higher than at the previous one; the rotation at a measurement is the
# similarity of the top-`k` eigenspace to that of the previous measurement (`every` steps earlier, an even number,
# so the two iterates are on the same side of a period-two oscillation).

# %%
rows, sim_falling, sim_spikes = [], {}, {}
for (name, lr, s), (mon, opt) in runs.items():
    h = mon.history
    g = opt.param_groups[0]
    b1 = g["betas"][0] if "betas" in g else 0.0
    expected = 2 / g["lr"] if name == "SGD" else (2 + 2 * b1) / ((1 - b1) * g["lr"])  # Cohen et al. 2021, 2022
    spike = h["loss"].diff() > 0
    rot = h["rotation"]
    if spike.any():
        sim_falling[name, lr, s], sim_spikes[name, lr, s] = rot[~spike].to_numpy(float), rot[spike].to_numpy(float)
    rows.append({"optimiser": name, "η": lr, "seed": s, "initial ratio": float(h["ratio"].iloc[0]),
                 "late ratio": late_median(mon, "ratio"), "late sharpness": late_median(mon, "sharpness"),
                 "spikes": int(spike.sum()), "similarity, loss falling": float(rot[~spike].median()),
                 "similarity, spikes": float(rot[spike].median()) if spike.any() else np.nan,
                 "threshold error": float((h["threshold"] / expected - 1).abs().max()),
                 "max residual": float(h["residual"].max()), "converged": bool(h["converged"].all()),
                 "lags": sorted({int(v) for v in h["rotation_lag"].dropna()}), "hvps": int(h["hvps"].sum()),
                 "seconds": float(h["seconds"].sum())})
table = pd.DataFrame(rows)
sgd = table[table["optimiser"] == "SGD"]
rec.record("sgd_late_ratio", {f"{lr:g}": stats.bootstrap_ratio(g["late ratio"]) for lr, g in sgd.groupby("η")})
small, large = min(sgd_lrs), max(sgd_lrs)
per_seed = sgd.set_index(["η", "seed"])["late sharpness"]
rec.record("sgd_sharpness_ratio", stats.bootstrap_ratio([per_seed[small, s] / per_seed[large, s] for s in seeds]))
rec.record("sgd_lr_ratio", large / small)
rec.record("adam_late_ratio", stats.bootstrap_ratio(table.loc[table["optimiser"] == "Adam", "late ratio"]))
gaps = table.dropna(subset=["similarity, spikes"])
rec.record("n_runs_with_spikes", len(gaps))
NO_ESTIMATE = stats.Estimate(np.nan, np.nan, np.nan, np.nan, 0, 0.9, "fewer than two runs with spikes", ())
rec.record("rotation_gap", stats.bootstrap(gaps["similarity, loss falling"] - gaps["similarity, spikes"])
           if len(gaps) >= 2 else NO_ESTIMATE)
rec.record("rotation_gap_pooled", stats.pooled_contrast(sim_falling, sim_spikes, kind="difference") or NO_ESTIMATE)
rec.record("threshold_rel_error", float(table["threshold error"].max()))
rec.record("rotation_lags", sorted({lag for lags in table["lags"] for lag in lags}))
rec.record("frac_converged", float(table["converged"].mean()))
rec.record("max_residual", float(table["max residual"].max()))
rec.record("tol", float(m0.tol))
table.drop(columns=["lags"]).round(3)

# %% tags=["remove-input"]
fig, axes = figure(1, 2, sharey=True)
for ax, name in zip(axes, ("SGD", "Adam")):
    for (n, lr), _ in optimizers.items():
        if n != name:
            continue
        st = eta_style(lr)
        for s in seeds:
            h = runs[n, lr, s][0].history
            ax.plot(h["step"], h["ratio"], marker=st.marker, color=st.color, ms=4, lw=1, alpha=0.8,
                    label=f"η = {lr:g}" if s == seeds[0] else None)
    ax.axhline(1, color="k", ls="--", lw=1)
    ax.axvspan(LATE, steps, color="0.9", zorder=0)
    ax.set(xlabel="step", title=f"{name}: {'λ₁ over 2/η' if name == 'SGD' else 'preconditioned λ₁ over threshold'}")
    ax.legend(loc="lower right")
axes[0].set_ylabel("ratio to the threshold")
plt.show()
sr, ar = rec.numbers["sgd_late_ratio"], rec.numbers["adam_late_ratio"]
display(Markdown(
    f"**Figure 3.** The ratio of the compared quantity to its threshold, every seed ({len(seeds)} per learning "
    f"rate); each run's late value is its median in the grey window (after step {LATE:g}). Late ratio, median over "
    f"seeds with its 90 % bootstrap interval: "
    + "; ".join(f"SGD η = {lr} {e['est']:.2f} [{e['lo']:.2f}, {e['hi']:.2f}]" for lr, e in sr.items())
    + f"; Adam η = {adam_lr:g} {ar['est']:.2f} [{ar['lo']:.2f}, {ar['hi']:.2f}] "
    f"({rec.verdict('sgd_settles_at_threshold').verdict_html}, {rec.verdict('adam_settles_at_threshold').verdict_html}). "
    f"The late sharpness at η = {small:g} is {rec.numbers['sgd_sharpness_ratio']['est']:.2f} "
    f"[{rec.numbers['sgd_sharpness_ratio']['lo']:.2f}, {rec.numbers['sgd_sharpness_ratio']['hi']:.2f}] times that "
    f"at η = {large:g}, where 2/η predicts {large / small:g} "
    f"({rec.verdict('sgd_sharpness_follows_eta').verdict_html})."))

# %% tags=["remove-input"]
gap, pooled = rec.numbers["rotation_gap"], rec.numbers["rotation_gap_pooled"]
display(Markdown(
    f"Rotation during spikes: in {len(gaps)} of {len(runs)} runs the loss rose at some measurement; there, the "
    f"mean similarity to the previous measurement while the loss falls minus that at the spikes, every run's "
    f"measurements pooled, is "
    + (f"{pooled['est']:+.3f} [{pooled['lo']:+.3f}, {pooled['hi']:+.3f}] (90 % run-cluster bootstrap interval; the "
       f"median over runs of each run's difference of medians is {gap['est']:+.2f} [{gap['lo']:+.2f}, {gap['hi']:+.2f}], "
       f"an interval that at five runs reaches down to the smallest run's value)"
       if len(gaps) >= 2 else "not estimable") + f": {rec.verdict('rotation_during_spikes').verdict_html}."))

# %%
rec.report()
