# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Does rotation predict generalisation? Rank correlations (A Figs 7–8, Fashion-MNIST)
#
# **Claim.** Over the learning-rate sweep of the [Goldilocks page](goldilocks), the rank correlation between
# validation accuracy and the rotation of the top Hessian eigenvector, ρ, has the same sign in every seed. We report
# next to it the rank correlations with η and with the final sharpness, with their spread over seeds, and say
# plainly whether the sharpness's sign is stable too.
#
# ```{admonition} Where this comes from
# :class: note
# - **Reviews of paper A** (REFERENCE §4.1, §2.6): Fig 7 is a "3d plot" with a table of quantities including ρ
#   (a reviewer asks "How is ρ defined? (i.e. with respect to what is similarity calculated?)"); Fig 8 shows the
#   **rank correlation** of generalisation with η, ρ and sharpness over "5 samples". The paper's text, its exact ρ and
#   its correlation statistic were **not read**: Spearman's rank correlation is our reading.
# - **Paper A's abstract**: the findings "challenge the primacy of sharpness as a sole generalization predictor";
#   REFERENCE §7 lists "ρ predicts generalisation with a more consistent sign than sharpness" as a qualitative claim.
# - **Author's code** (`lawrencewang94/jax_eigs`): the eigenvector similarities `cos_sim` (absolute cosine) and
#   `dk_cos` (subspace similarity) that ρ is built from.
# - **Our reconstruction** (REFERENCE §10, `instab_lib.generalization`): two working definitions of ρ, both computed
#   from the runs' tables: ρ_rot = mean over consecutive spectrum evaluations of 1 − |cos(v₁(t), v₁(t'))| (mean
#   rotation per evaluation interval) and ρ_sub = similarity of the top eigenvector (k = 1) at initialisation and at
#   the end (a similarity: it runs opposite to ρ_rot). The runs are those of the Goldilocks page, read back from the
#   run cache (identical configurations); only runs that trained (not diverged or collapsed) enter the correlations.
#   Which data copy was used is printed below.
# ```

# %%
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from instab_lib import claims
from instab_lib import generalization as gen
from instab_lib.plotting import apply_style, lr_colors

apply_style()

# %% tags=["parameters"]
etas = [0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6]  # the Goldilocks grid (identical: the runs are reused)
seeds = [0, 1, 2]  # one rank correlation per seed over the η grid
epochs = 6000  # epoch cap (as goldilocks)
target_train_acc = 0.999  # early stop (as goldilocks)
eval_every = 50  # spectrum every this many epochs (as goldilocks; ρ_rot is per evaluation interval)
n_test = 2000  # validation images (as goldilocks)
min_abs = 0.3  # a sign counts as stable only if every seed's |correlation| is at least this
n_boot = 2000  # bootstrap resamples of the pooled runs
executor = None  # None: local processes (or one after the other); or a Dask scheduler address

# %%
base = gen.goldilocks_config(epochs=epochs, target_train_acc=target_train_acc, eval_every=eval_every, n_test=n_test)
rec = claims.Recorder("rotation_predicts_generalization")

# %% [markdown]
# ## The runs and their ρ

# %%
runs, df = gen.lr_seed_runs(base, etas, seeds, executor=executor)
display(Markdown(gen.describe_runs(df)))
ok = df[df["outcome"].isin(["target", "capped"])].copy()
limit = gen.stability_of_runs(df)
ok[["lr", "seed", "outcome", "test_acc", "final_sharpness", "rho_rot", "rho_sub", "n_evals"]].round(4)

# %% [markdown]
# ## Rank correlations per seed
#
# For each seed, Spearman's correlation over the η grid between validation accuracy and each factor; below, their
# mean, standard deviation, range and sign counts over seeds, and a bootstrap interval (90 %) over all trained runs
# pooled (resampling (factor, accuracy) pairs).

# %%
factors = {"lr": "η", "final_sharpness": "final sharpness S", "rho_rot": "ρ_rot (mean 1−|cos|)",
           "rho_sub": "ρ_sub (similarity init→end)"}
per_seed = gen.spearman_by_group(ok, "test_acc", list(factors), by="seed")
spread = gen.correlation_spread(per_seed, min_abs=min_abs)
boot = {f: gen.bootstrap_spearman(ok[f], ok["test_acc"], n_boot=n_boot, seed=1) for f in factors}
spread["pooled"] = [gen.spearman(ok[f], ok["test_acc"]) for f in spread.index]
spread["boot_lo"] = [boot[f][0] for f in spread.index]
spread["boot_hi"] = [boot[f][1] for f in spread.index]
spread["boot_frac_pos"] = [boot[f][2] for f in spread.index]
for f in factors:
    rec.record(f"r_{f}_per_seed", {str(k): float(v) for k, v in per_seed[f].items()})
    rec.record(f"r_{f}_sign_stable", bool(spread.loc[f, "sign_stable"]))
    rec.record(f"r_{f}_mean", float(spread.loc[f, "mean"]))
display(per_seed.round(3))
spread.round(3)

# %% [markdown]
# ## The figure
#
# Left (A Fig 7's quantities): validation accuracy against ρ_rot, one point per trained run, coloured by η (dark
# purple low → light yellow high), ✕ below / ○ above the measured stability limit. Middle: the same against the
# final sharpness. Right (A Fig 8): the rank correlation of validation accuracy with each factor, one dot per seed,
# bar = mean over seeds, black line = the 90 % bootstrap interval of the pooled correlation.

# %% tags=["hide-input"]
grid = sorted(set(df["lr"]))
col = dict(zip(grid, lr_colors(grid)))
fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), gridspec_kw={"width_ratios": [1, 1, 1.1]})
for ax, f in zip(axes[:2], ["rho_rot", "final_sharpness"]):
    for _, r in ok.iterrows():
        unstable = limit.smallest_unstable is not None and r["lr"] >= limit.smallest_unstable
        ax.scatter(r[f], r["test_acc"], color=col[r["lr"]], edgecolor="k", s=55 if unstable else 70,
                   marker="o" if unstable else "X", zorder=3)
    ax.set(xlabel=factors[f], ylabel="validation accuracy")
axes[0].set_title("Accuracy vs rotation ρ_rot")
axes[1].set(xscale="log", title="Accuracy vs final sharpness")
axes[1].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
axes[1].xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
for e in grid:
    axes[0].scatter([], [], color=col[e], edgecolor="k", label=f"η = {e:g}")
axes[0].scatter([], [], marker="X", color="0.6", edgecolor="k", label="below the limit")
axes[0].scatter([], [], marker="o", color="0.6", edgecolor="k", label="above the limit")
axes[0].legend(fontsize=7, ncol=2, loc="lower right")
ax = axes[2]
xs = np.arange(len(factors))
ax.bar(xs, spread["mean"].to_numpy(), color="0.8", edgecolor="k", width=0.6)
for i, f in enumerate(factors):
    v = per_seed[f].to_numpy()
    ax.scatter(np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)), v, color="tab:blue", zorder=3, s=22)
    ax.plot([i + 0.33, i + 0.33], [spread.loc[f, "boot_lo"], spread.loc[f, "boot_hi"]], color="k", lw=2)
ax.axhline(0, color="k", lw=0.8)
ax.set_xticks(xs, [factors[f].split(" (")[0] for f in factors])
ax.set(ylim=(-1.05, 1.05), ylabel="Spearman correlation with accuracy",
       title=f"Rank correlations ({len(seeds)} seeds; dots = seeds)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## What the numbers say

# %%
stable = {factors[f]: bool(spread.loc[f, "sign_stable"]) for f in factors}
display(Markdown("Sign stable over seeds (every seed one sign, |r| ≥ {:.2g}): ".format(min_abs)
                 + "; ".join(f"{k}: **{'yes' if v else 'no'}**" for k, v in stable.items()) + "."))
r_eta = spread.loc["lr", "mean"]
r_s, r_rot = spread.loc["final_sharpness", "mean"], spread.loc["rho_rot", "mean"]
same_as_eta = float(np.mean([gen.spearman(sub["lr"], sub["rho_rot"]) for _, sub in ok.groupby("seed")]))
display(Markdown(
    f"Mean correlations with accuracy: η {r_eta:+.2f}, final sharpness {r_s:+.2f}, ρ_rot {r_rot:+.2f}, "
    f"ρ_sub {spread.loc['rho_sub', 'mean']:+.2f}. Within a seed, ρ_rot itself ranks the runs almost as η does "
    f"(mean Spearman(η, ρ_rot) = {same_as_eta:+.2f}), so at this scale ρ_rot carries little information beyond η. "
    + ("The final sharpness's sign is **as stable** as ρ_rot's (negative in every seed): the papers' contrast, ρ "
       "predicting with a more consistent sign than sharpness, is **not** reproduced here."
       if spread.loc["final_sharpness", "sign_stable"] else
       "The final sharpness's sign is **not** stable over seeds, unlike ρ_rot's.")))
rec.record("spearman_eta_rho_rot", same_as_eta)
rec.record("n_trained_per_seed", {str(k): int(v) for k, v in ok.groupby("seed").size().items()})
rec.record("min_abs", min_abs)
rec.record("rho_any_sign_stable", bool(spread.loc["rho_rot", "sign_stable"] or spread.loc["rho_sub", "sign_stable"]))

# %% [markdown]
# ## Claims checked on these numbers
#
# `instab verify rotation_predicts_generalization`; thresholds in `notebooks/rotation_predicts_generalization.yaml`.
# Without instabilities there is nothing to rotate, so a grid entirely below the limit should lose the sign
# stability; we have not run that check cleanly at CI cost (η below 0.01 needs more than 6,000 epochs to reach the
# target). A cheap stand-in (`-p etas "[0.002, 0.003, 0.004, 0.006]" -p epochs 300`) fails the claim, but because
# most of those runs never learned (collapsed), not because ρ lost its sign. Note also that ρ_rot ranks the runs
# almost exactly as η does, so this claim cannot separate "rotation predicts accuracy" from "η predicts accuracy".

# %%
rec.report()
