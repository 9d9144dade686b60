# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Large learning rates and generalisation on CIFAR-10 (B, CIFAR-10 across architectures)
#
# **Claim.** For a small VGG and a ResNet-20 (base width 8, BatchNorm) trained on a balanced CIFAR-10 subset, the
# best validation accuracy reached with a learning rate *above* the stability limit exceeds the best reached
# below it: "large learning rates improve generalization on CIFAR10".
#
# ```{admonition} Where this comes from
# :class: note
# - **Paper's caption** (B, a figure titled "Large learning rates improve generalization on CIFAR10. Validation
#   accuracy across architectures and datasets"): the claim and the axes (validation accuracy against η, per
#   architecture). The figure's numbers, grid and seeds were not read.
# - **Author's code** (`lawrencewang94/jax_eigs`, REFERENCE §4.2): the architectures VGG10_base8_BN and
#   ResNet20_base8_Identity_BN, the "CIFAR5k" subset (512 images per class, 2,000 test images), the normalisation,
#   the 2-step linear warm-up, the early stop at 99.9% train accuracy, the 5 seeds. These are the `paper` preset.
# - **Our reconstruction**: the η grids, the stability limit measured from the runs (`instab_lib.stability`: the
#   smallest η whose run reaches η·S ≥ 2 at an evaluation or diverges; not 2/S₀), the noise estimate and the
#   tolerance of the CI check, all plots. **CI scale is far smaller than the paper's** (see "What this scale can
#   say" below): 1,000 training images, minibatches of 100, a few epochs, one or two seeds.
# - **Data**: the original CIFAR-10 when torchvision finds or downloads it, otherwise the JPEG re-encoding
#   `../shared/data/cifar10-jpeg` (pixels differ slightly from the original); the copy used is printed below.
# ```

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from instab_lib import adaptive, claims
from instab_lib import generalization as gen
from instab_lib.plotting import apply_style, lr_colors, mark_stability_limit
from instab_lib.train import TrainConfig

apply_style()

# %% tags=["parameters"]
n_train = 1000  # balanced training subset (n_train/10 images per class); paper: 5120 (CIFAR5k)
n_test = 1000  # first n_test test images; paper: 2000
batch_size = 100  # minibatch size; None = full-batch GD (paper: full batch, 5120)
vgg_etas = [0.002, 0.02, 0.2, 1.2]  # learning rates of the VGG grid
vgg_seeds = [0, 1]  # VGG seeds
vgg_epochs = 6  # VGG epoch cap
resnet_etas = [0.005, 0.1, 1.0]  # learning rates of the ResNet grid
resnet_seeds = [0]  # ResNet seeds
resnet_epochs = 6  # ResNet epoch cap
target_train_acc = 0.999  # early stop (REFERENCE §4.2)
warmup_steps = 2  # linear warm-up steps (REFERENCE §4.2)
n_spectra = 1  # train-mode sharpness at this many evenly spaced epochs (the cap included) ...
spectrum_at_init = False  # ... and at initialisation (off at CI: see below; S₀ is shared by a seed's runs)
hessian_n = 100  # Hessian on the first hessian_n training images (CI: one minibatch) ...
hessian_chunk = 250  # ... in BatchNorm chunks of this many images when training is full batch (else: the batch size)
eig_tol = 0.01  # relative residual of the top eigenpair (k_top = 1)
collapse_acc = 0.12  # a run ending below this train accuracy counts as collapsed (chance is 0.10)
paper_scale = False  # True in the paper preset: the claim then asks for a positive margin, not "within noise"

# %%
ARCHS = {
    "vgg": {"label": "VGG10_base8_BN", "etas": sorted(vgg_etas), "seeds": list(vgg_seeds), "epochs": vgg_epochs},
    "resnet20": {"label": "ResNet20_base8 (BN)", "etas": sorted(resnet_etas), "seeds": list(resnet_seeds),
                 "epochs": resnet_epochs},
}
rec = claims.Recorder("cifar_generalization")


full_batch = batch_size in (None, n_train)
bn_chunk = hessian_chunk if full_batch else batch_size  # BatchNorm statistics per chunk of this many images


def spectra_epochs(epochs):
    """Epoch 0 and n_spectra evenly spaced epochs up to the cap."""
    return sorted({0, *np.linspace(0, epochs, n_spectra + 1).round().astype(int).tolist()})


def base_config(model, epochs):
    """One run's settings: θ saved at spectra_epochs for the train-mode sharpness (train's own eval-mode spectra
    are switched off: see the next section)."""
    return TrainConfig(dataset="cifar10", n_train=n_train, n_test=n_test, balanced=True, model=model, loss="ce",
                       optimizer="gd", batch_size=None if full_batch else batch_size,
                       lr_schedule={"kind": "constant", "warmup_steps": warmup_steps}, epochs=epochs,
                       target_train_acc=target_train_acc, eval_every=0,
                       snapshot_epochs=tuple(spectra_epochs(epochs)))


# %% [markdown]
# ## The runs
#
# One run per (architecture, η, seed), cached under `_build/runs`: SGD with the minibatch size above (plain GD on
# the full subset when `batch_size` is `None`), cross-entropy, constant η after a 2-step linear warm-up. A run ends at
# the train-accuracy target (*target*), at the epoch cap (*capped*), when its loss blows up (*diverged*) or at chance
# level (*collapsed*: train accuracy below `collapse_acc`, just above the 10% of chance, because at CI scale a slow
# but healthy run at a small η is still far from 2/#classes after a few epochs); only *target* and *capped* runs have
# an accuracy that enters the means.

# %%
runs, dfs, sharp = {}, {}, {}
for arch, a in ARCHS.items():
    runs[arch] = gen.run_grid(base_config(arch, a["epochs"]), {"lr": a["etas"], "seed": a["seeds"]})
    df = gen.summarize_runs(runs[arch], collapse_acc=collapse_acc)
    df.insert(0, "arch", arch)
    # train-mode sharpness at the snapshots (see the next section); train's eval-mode numbers kept apart
    # θ₀ depends on the seed only: S₀ is computed once per seed and shared by that seed's runs
    s0, sharp[arch] = {}, []
    for r in runs[arch]:
        if spectrum_at_init and r.config.seed not in s0:
            s0[r.config.seed] = adaptive.snapshot_sharpness(r, [0], hessian_n=hessian_n, chunk=bn_chunk,
                                                            tol=min(eig_tol, 1e-3))[0]
        later = [e for e in spectra_epochs(a["epochs"]) if e > 0]
        sharp[arch].append({**({0: s0[r.config.seed]} if spectrum_at_init else {}), **adaptive.snapshot_sharpness(
            r, later, hessian_n=hessian_n, chunk=bn_chunk, tol=eig_tol)})
    df["max_sharpness"] = [max(d.values()) if d else np.nan for d in sharp[arch]]
    df["eta_max_s"] = df["lr"] * df["max_sharpness"]
    dfs[arch] = df
df_all = pd.concat(dfs.values(), ignore_index=True)
sources = sorted(set(df_all["data_source"]))
display(Markdown(f"Data (`RunResult.data_source`): **{'; '.join(sources)}**. Batch size: "
                 f"**{'full batch (GD)' if batch_size in (None, n_train) else batch_size}**, {n_train} training "
                 f"images, {n_test} test images; {len(df_all)} runs."))
rec.record("data_source", sources)
rec.record("n_runs", len(df_all))
df_all[["arch", "lr", "seed", "outcome", "epochs", "train_acc", "test_acc", "max_sharpness", "eta_max_s",
        "wall_time_s"]].round(4)

# %% [markdown]
# ## The stability limit, measured from the runs
#
# A run is unstable when η·S_t ≥ 2 at one of its spectrum evaluations, or when it diverges or collapses; the limit is
# the smallest unstable η of the grid, bracketed by the largest stable one (`instab_lib.stability`). S_t is the top
# eigenvalue (k_top = 1, Lanczos to a relative residual `eig_tol`) of the Hessian of the training loss on the first
# `hessian_n` training images, **with BatchNorm in train mode** (batch statistics over chunks of the batch size, i.e.
# the objective the minibatch steps descend; one chunk of `hessian_chunk` images for full-batch runs), computed from
# θ saved at a few epochs (`adaptive.snapshot_sharpness`). `train`'s own spectra put the network in eval mode
# (running statistics, which start as the identity and lag the weights early in training): the Hessian of a
# different function, orders of magnitude off at initialisation, so it is not used here. At CI scale S is evaluated
# once per run, at the epoch cap; the `paper` preset adds initialisation (`spectrum_at_init`, computed once per seed
# to a residual 10⁻³ × max|λ|: at initialisation a large negative eigenvalue dominates max|λ|, and with a loose
# tolerance Lanczos can stop on a Ritz value that is not the top one) and 20 evaluations along each run. With few
# evaluations, a run that goes unstable between them and comes back is missed: the measured limit is an upper bound
# on the grid. S decides stability only through η·S ≥ 2.

# %%
limits, cmp_rows = {}, []
for arch, df in dfs.items():
    lim = gen.stability_of_runs(df)
    limits[arch] = lim
    trained = df["outcome"].isin(gen.TRAINED)
    score = df["test_acc"].where(trained)
    split = adaptive.best_below_above(df["lr"], score, lim.smallest_unstable if lim.smallest_unstable else np.inf)
    # noise of a mean accuracy at one η: seed spread (sample std over seeds, or the pooled std of this
    # architecture's η's when there is one seed) and the binomial error of the shared test set
    per = gen.by_setting(df)
    pooled = float(np.sqrt(np.nanmean(per["std"] ** 2))) if per["std"].notna().any() else float("nan")
    if not np.isfinite(pooled):
        other = [gen.by_setting(d)["std"] for k, d in dfs.items() if k != arch]
        pooled = float(np.sqrt(np.nanmean(pd.concat(other) ** 2))) if other else float("nan")

    def se(eta):
        if not np.isfinite(eta):
            return float("nan")
        row = per[per["lr"] == eta].iloc[0]
        s = row["std"] if np.isfinite(row["std"]) else pooled
        p = row["mean"]
        return float(np.sqrt(s ** 2 / row["n"] + p * (1 - p) / n_test))

    noise = float(np.hypot(se(split["eta_below"]), se(split["eta_above"])))
    cmp_rows.append({"arch": arch, "limit": str(lim), "best below": split["best_below"],
                     "η below": split["eta_below"], "best above": split["best_above"], "η above": split["eta_above"],
                     "margin": split["margin"], "noise σ": noise, "margin/σ": split["margin"] / noise,
                     "seed std (pooled)": pooled,
                     "runs at target": int((df["outcome"] == "target").sum()), "runs": len(df),
                     "median final train acc": float(df["train_acc"].median())})
    rec.record(f"{arch}_limit", {"estimate": lim.estimate, "largest_stable": lim.largest_stable,
                                 "smallest_unstable": lim.smallest_unstable, "consistent": lim.consistent})
    rec.record(f"{arch}_split", {"margin": split["margin"], "noise": noise, "best_below": split["best_below"],
                                 "best_above": split["best_above"], "eta_below": split["eta_below"],
                                 "eta_above": split["eta_above"], "seed_std": pooled,
                                 "paper_scale": bool(paper_scale)})
    rec.record(f"{arch}_outcomes", {o: int((df["outcome"] == o).sum()) for o in gen.OUTCOMES})
    rec.record(f"{arch}_median_train_acc", float(df["train_acc"].median()))
    rec.record(f"{arch}_eta_max_s", {f"{e:g}/{sd}": float(v) for e, sd, v in zip(df["lr"], df["seed"], df["eta_max_s"])})
cmp = pd.DataFrame(cmp_rows).set_index("arch")
if spectrum_at_init:
    s0_text = "; ".join(f"{ARCHS[k]['label']}: S₀ = {np.median([d[0] for d in v]):.3g} (2/S₀ = "
                        f"{2 / np.median([d[0] for d in v]):.3g})" for k, v in sharp.items())
    display(Markdown(f"Train-mode sharpness at initialisation (median over seeds): {s0_text}."))
cmp.round(4)

# %% [markdown]
# ## The figure
#
# Per architecture, left: validation accuracy at the end of each run against η (log scale); large markers are the
# means over seeds (✕ below the measured stability limit, ○ above it; hollow when a seed stopped at the epoch cap
# instead of the train-accuracy target), small dots the single seeds, ▼ on the bottom axis runs that diverged or
# collapsed; the dotted line is the limit's estimate, the grey band its bracket. Right: how the limit was measured,
# the largest η·S_t of each run against the line η·S = 2, and the train accuracy each run reached (grey, right axis):
# at CI scale this shows how far from the paper's 99.9% the runs stopped.

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, 2, figsize=(13, 8.4), gridspec_kw={"width_ratios": [1.5, 1]})
for (arch, df), (ax, ax2) in zip(dfs.items(), axes):
    lim, grid = limits[arch], sorted(set(df["lr"]))
    col = dict(zip(grid, lr_colors(grid)))
    per = gen.by_setting(df)
    trained = df[df["outcome"].isin(gen.TRAINED)]
    lo = float(trained["test_acc"].min()) if len(trained) else 0.1
    hi = float(trained["test_acc"].max()) if len(trained) else 0.5
    floor = lo - 0.25 * (hi - lo) - 0.005
    for _, row in per.iterrows():
        e = row["lr"]
        unstable = lim.smallest_unstable is not None and e >= lim.smallest_unstable
        if row["n"] > 0:
            ax.errorbar([e], [row["mean"]], yerr=[0 if np.isnan(row["std"]) else row["std"]],
                        fmt="o" if unstable else "X", ms=11, capsize=4, color=col[e], mec="k", mew=0.8,
                        ecolor="0.3", zorder=3, mfc="none" if row["n_capped"] else col[e])
        single = trained[trained["lr"] == e]
        ax.scatter(single["lr"] * np.exp(np.linspace(-0.05, 0.05, len(single))), single["test_acc"], s=12,
                   color="0.25", zorder=4)
        if row["n_diverged"] + row["n_collapsed"]:
            ax.scatter([e], [floor], marker="v", s=110, color=col[e], edgecolor="k", zorder=3, clip_on=False)
    mark_stability_limit(ax, lim)
    ax.set_xscale("log")
    ax.set_ylim(floor - 0.01, hi + 0.15 * (hi - lo) + 0.005)
    ax.set(xlabel="learning rate η", ylabel=f"validation accuracy ({n_test} test images)",
           title=f"{ARCHS[arch]['label']}: accuracy vs η (✕ below, ○ above the limit)")
    ax.plot([], [], "X", color="0.5", mec="k", label="below the limit")
    ax.plot([], [], "o", color="0.5", mec="k", label="above the limit")
    ax.plot([], [], "o", mfc="none", mec="k", label="stopped at the epoch cap")
    ax.legend(fontsize=8, loc="lower right")
    for _, r in df.iterrows():
        ax2.scatter(r["lr"], r["eta_max_s"], color=col[r["lr"]], edgecolor="k", s=40,
                    marker="o" if r["outcome"] in gen.TRAINED else "v", zorder=3)
    ax2.axhline(2, color="k", lw=1, ls="--", label="η·S = 2")
    ax2.axvline(lim.estimate, ls=":", color="k", lw=1.5)
    ax2.set(xscale="log", yscale="log", xlabel="learning rate η", ylabel="max over evaluations of η·S_t",
            title=f"{ARCHS[arch]['label']}: measuring the limit")
    ax2.legend(fontsize=8, loc="upper left")
    tw = ax2.twinx()
    tw.scatter(df["lr"] * 1.08, df["train_acc"], marker="_", s=120, color="0.5")
    tw.set_ylim(0, 1.05)
    tw.set_ylabel("final train accuracy (grey —)", color="0.4")
    tw.grid(False)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Along the runs
#
# Test accuracy and training loss (eval mode) per epoch for every run (colour = η, as above; dashed: second seed),
# and the train-mode sharpness at the evaluations against 2/η (dotted horizontal lines in the colour of each η).

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, 3, figsize=(14, 7))
for (arch, rs), row_axes in zip(runs.items(), axes):
    grid = ARCHS[arch]["etas"]
    col = dict(zip(grid, lr_colors(grid)))
    first_seed = ARCHS[arch]["seeds"][0]
    for r, sd in zip(rs, sharp[arch]):
        t, e = r.table, r.config.lr
        ls = "-" if r.config.seed == first_seed else "--"
        row_axes[0].plot(t["epoch"], t["test_acc"], ls, color=col[e], label=f"η={e:g}" if ls == "-" else None)
        row_axes[1].plot(t["epoch"], t["train_loss"], ls, color=col[e])
        row_axes[2].plot(list(sd), list(sd.values()), "o" + ls, color=col[e], ms=4)
    for e in grid:
        row_axes[2].axhline(2 / e, color=col[e], ls=":", lw=1)
    row_axes[0].set(xlabel="epoch", ylabel="test accuracy", title=f"{ARCHS[arch]['label']}: test accuracy")
    row_axes[1].set(xlabel="epoch", ylabel="train loss (eval mode)", yscale="log", title="training loss")
    row_axes[2].set(xlabel="epoch", ylabel="S = λ_max (BN train mode)", yscale="log", title="sharpness and 2/η (dotted)")
    row_axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## What this scale can say
#
# The margin is the best mean accuracy above the limit minus the best below it; σ combines the seed spread of the
# two means (the pooled standard deviation over this architecture's learning rates; for a one-seed architecture the
# other architecture's) with the binomial error √(p(1−p)/n_test) of the test subset.

# %%
lines = []
for arch, r in cmp.iterrows():
    if not np.isfinite(r["margin/σ"]):
        verdict = ("**cannot be decided**: the grid has no trained run on one side of the measured limit (or no "
                   "noise estimate)")
    elif abs(r["margin/σ"]) < 2:
        verdict = "**within noise**: the data at this scale neither support nor contradict the claim"
    else:
        verdict = "**above the noise**: supports the claim" if r["margin"] > 0 else "**contradicts the claim** beyond the noise"
        if r["runs at target"] < r["runs"]:
            verdict += (" — but runs stopped at the epoch cap, so the margin measures training speed as much as "
                        "generalisation (see below)")
    lines.append(f"- {ARCHS[arch]['label']}: best above the limit {r['best above']:.3f} (η = {r['η above']:g}) vs "
                 f"best below {r['best below']:.3f} (η = {r['η below']:g}): margin {r['margin']:+.3f}, σ = "
                 f"{r['noise σ']:.3f} ({r['margin/σ']:+.1f}σ); {verdict}. {r['runs at target']}/{r['runs']} runs "
                 f"reached the {target_train_acc:.1%} train-accuracy target (median final train accuracy "
                 f"{r['median final train acc']:.2f}).")
display(Markdown("\n".join(lines)))

# %% [markdown]
# At the CI scale (a few epochs of minibatch SGD on 1,000 images) no run comes near the paper's 99.9% train
# accuracy, so accuracies are compared **during training**: a larger η that is still stable trains faster, and the
# margin then measures training speed as much as generalisation (NOTES.md warns about exactly this). The CI check
# therefore only asks that the best η above the limit is **not worse than the best below it beyond 2σ** (it fails
# when the unstable side is clearly worse, or when the grid does not bracket the limit); at `paper_scale` (the
# `paper` preset: CIFAR5k, full batch, runs to 99.9% train accuracy, 5 seeds) the check asks for a positive margin.
# Read a passing CI check as "consistent with", not as a reproduction of, B's figure.

# %% [markdown]
# ## Claims checked on these numbers

# %%
rec.report()
