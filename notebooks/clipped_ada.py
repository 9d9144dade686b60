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
# # Clipped-Ada: restoring instabilities in adaptive optimisers (toys)
#
# **Claim.** RMSProp escapes an instability by growing its denominator $\sqrt{\hat v}$, which shrinks the step:
# on $L = \tfrac{S}{2}w^2$ with $\eta S > 2$ it stays bounded where GD diverges, and on the DLN it slides into the
# sharp minimum next to its start. Clipping the denominator from above (Clipped-Ada "UB",
# $\min(\sqrt{\hat v}, c)$) keeps the effective step at least $\eta/c$, so the instability returns whenever
# $\eta S/c > 2$: RMS-UB oscillates with growing amplitude for $S = 2.3$ ($\eta S/c = 2.09$) and not for $S = 1.9$
# ($1.73$), and on the DLN it oscillates like GD and drifts toward the flatter region. Clipping from below
# ("LB", $\max(\sqrt{\hat v}, c)$) caps the step instead.
#
# ```{admonition} Where this comes from
# :class: note
# - **Paper's claim** (B abstract and highlights): "restoring instabilities in Adam further improves
#   generalization"; the name Clipped-Ada (REFERENCE §1, [STACK]). B's Algorithm 1 was not read.
# - **Author's code** (`lawrencewang94/jax_eigs`, `optax_adam_bounded.py`, commit 2591571; REFERENCE §5.2): the
#   update rule with `min(√v̂, c)` ("adam-UB"/"rms-UB"), the toy settings of both cells (S ∈ {2.3, 1.9}, w₀ = 0.1,
#   η = 1, 100 steps, β₂ = 0.9, v₀ = (S w₀)², RMS-LB with c = 11 and η = 10, RMS-UB with c = 1.1; DLN from
#   (−0.1, 10), η = 0.011, β₂ = 0.9, c = 1, 10 steps) and the printed final iterates we compare with.
# - **Our reconstruction**: the identification of `adam_ub` with Clipped-Ada (inferred in REFERENCE §5.2), the
#   DLN cell's bias-correction setting (the printed numbers match runs *without* bias correction, $v_0 = 0$; see
#   below), the plots. The update rules are `instab_lib.optim`'s (a colleague's module), driven by
#   `instab_lib.toys.run_optimizer`. No data set is used; CI scale = paper scale for these toy cells. The network
#   comparison is a later section of this page.
# ```

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from instab_lib import claims, dln, optim, toys
from instab_lib.plotting import apply_style

apply_style()

# %% tags=["parameters"]
sharpness_values = [2.3, 1.9]  # S of the 1-D quadratic L = S/2 w² (REFERENCE §5.2(a))
w0 = 0.1  # start of the 1-D toy
eta = 1.0  # learning rate of GD, RMSProp and RMS-UB in the 1-D toy
steps = 100  # steps of the 1-D toy
beta2 = 0.9  # second-moment decay in both toys
c_ub = 1.1  # RMS-UB clip (1-D toy)
c_lb = 11.0  # RMS-LB clip (1-D toy) ...
eta_lb = 10.0  # ... with this learning rate (same ratio η/c as UB)
dln_theta0 = [-0.1, 10.0]  # DLN start (REFERENCE §5.2(b))
dln_eta = 0.011  # DLN learning rate (just above 2/S₀ = 0.009996)
dln_c = 1.0  # DLN clip for UB and LB
dln_steps = 10  # DLN steps
dln_bias_correction = False  # the printed DLN numbers match v₀ = 0 without bias correction
net_n_train = 1000  # (c) network: first n Fashion-MNIST training images (REFERENCE §4.2)
net_n_test = 1000  # (c) test images
net_eta = 0.005  # (c) learning rate of every optimiser (REFERENCE §5.2)
net_clips = [0.1, 1.0]  # (c) the author's Clipped-Ada clips c run here (c = 10 ⊃ c = 1: see the text; paper: all three)
net_extra_c = [0.003]  # (c) the companion's extra clip(s), small enough to bind at this network's gradient scale
net_seeds = [0, 1, 2]  # (c) seeds
net_epochs = 100  # (c) epoch cap (early stop at 99.9% train accuracy)
net_eval_every = 10  # (c) preconditioned sharpness every this many epochs

# %%
rec = claims.Recorder("clipped_ada")

# %% [markdown]
# ## (a) The 1-D quadratic
#
# The four optimisers of the author's cell, each from $w_0 = 0.1$ with $v_0 = (S w_0)^2$ and no bias correction
# (the `nu_init` and `bias_correction` options of `instab_lib.optim`):
#
# | name | update |
# |---|---|
# | GD | $w \leftarrow w - \eta\,S w$ |
# | RMSProp | $w \leftarrow w - \eta\,g/\sqrt{v}$, $v \leftarrow \beta_2 v + (1-\beta_2) g^2$ |
# | RMS-LB | $w \leftarrow w - \eta\,g/\max(\sqrt{v}, c)$, $c = 11$, $\eta = 10$ |
# | RMS-UB | $w \leftarrow w - \eta\,g/\min(\sqrt{v}, c)$, $c = 1.1$ |
#
# When the clip is active both clipped variants are GD with learning rate $\eta/c$, so $\eta S/c$ decides stability:
# 2.09 (unstable) for $S = 2.3$, 1.73 (stable) for $S = 1.9$.

# %%
def one_d_optimisers(S: float) -> dict:
    kw = dict(beta2=beta2, nu_init=(S * w0) ** 2, bias_correction=False)
    return {"GD": optim.gd(eta), "RMSProp": optim.rmsprop(eta, **kw),
            "RMS-LB": optim.clipped_ada(eta_lb, c_lb, mode="LB", beta1=0.0, **kw),
            "RMS-UB": optim.clipped_ada(eta, c_ub, mode="UB", beta1=0.0, **kw)}


paths_1d, final_1d, amp_1d = {}, {}, {}
for S in sharpness_values:
    for name, opt in one_d_optimisers(S).items():
        w = toys.run_optimizer(opt, [w0], toys.quadratic_1d_grad(S), steps)[:, 0]
        key = f"{name}@{S:g}"
        paths_1d[key] = w
        final_1d[key] = float(w[-1])
        amp_1d[key] = float(np.max(np.abs(w[-10:])))  # amplitude over the last 10 steps
rec.record("final_1d", final_1d)
rec.record("amp_1d", amp_1d)
rec.record("ratio_eta_S_over_c", {f"{S:g}": eta * S / c_ub for S in sharpness_values})
table = pd.DataFrame({f"S = {S:g} (ηS/c = {eta * S / c_ub:.2f})":
                      {name: final_1d[f"{name}@{S:g}"] for name in ("GD", "RMSProp", "RMS-LB", "RMS-UB")}
                      for S in sharpness_values})
display(Markdown("Final iterates $w_{100}$ (REFERENCE §5.2(a) prints: S = 2.3: GD ≈ 2.5e10, RMSProp ≈ 0.49–0.60, "
                 "RMS-LB 4.8, RMS-UB ≈ 1e4–2e4; S = 1.9: GD 2.7e-6, RMSProp ≈ 0.49–0.60, RMS-LB 1.5e-15, RMS-UB ≈ 0.5)"))
table

# %%
fig, axes = plt.subplots(1, len(sharpness_values), figsize=(13, 3.8), sharey=True)
cols = {"GD": "k", "RMSProp": "tab:blue", "RMS-LB": "tab:green", "RMS-UB": "tab:red"}
for ax, S in zip(np.atleast_1d(axes), sharpness_values):
    for name, col in cols.items():
        ax.plot(np.abs(paths_1d[f"{name}@{S:g}"]) + 1e-300, color=col, lw=1.2, label=name)
    ax.set(yscale="log", ylim=(1e-16, 1e12), xlabel="step", title=f"S = {S:g}: ηS/c = {eta * S / c_ub:.2f}")
np.atleast_1d(axes)[0].set_ylabel("|w_t|")
np.atleast_1d(axes)[0].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## (b) The DLN
#
# $L = (\theta_1\theta_2)^2$ from $(-0.1, 10)$ at $\eta = 0.011$ (just above $2/S_0$), $\beta_2 = 0.9$, $c = 1$,
# 10 steps, $v_0 = 0$. The author's printed outputs (REFERENCE §5.2(b)): GD's $\theta_1$ oscillates with growing
# amplitude ($-0.1 \to -0.54$), $\theta_2$ drifts $10 \to 9.83$ and the loss rises $1 \to 28.4$; RMSProp and RMS-LB
# send $\theta_1 \to 0$ and keep $\theta_2 \approx 9.98$–$9.997$; RMS-UB oscillates like GD with $\theta_2 \to 9.74$.
# Without bias correction we obtain 9.74 (UB) and 9.996 (LB); with it, 9.80 and 9.991. REFERENCE §5.2(b) calls the
# printed UB run "bias-corrected", yet it is matched by `dln_bias_correction = False`; we follow the numbers and say
# so. (The printed UB run started at $(0.1, 10)$; the loss is even in $\theta_1$, so the run from $(-0.1, 10)$ is its
# mirror image with the same $|\theta_1|$ and $\theta_2$.) Our RMSProp ends at $\theta_2 = 9.94$: its $\theta_1$ also goes to 0
# without oscillating, but it travels further along $\theta_2$ than the printed range (the author's RMSProp cell
# settings were not recovered).

# %%
dln_opts = {"GD": optim.gd(dln_eta),
            "RMSProp": optim.rmsprop(dln_eta, beta2=beta2, bias_correction=dln_bias_correction),
            "RMS-LB": optim.clipped_ada(dln_eta, dln_c, mode="LB", beta1=0.0, beta2=beta2,
                                        bias_correction=dln_bias_correction),
            "RMS-UB": optim.clipped_ada(dln_eta, dln_c, mode="UB", beta1=0.0, beta2=beta2,
                                        bias_correction=dln_bias_correction)}
dln_paths = {name: toys.run_optimizer(opt, dln_theta0, toys.dln_grad, dln_steps) for name, opt in dln_opts.items()}
rows, dln_final, dln_sign_changes, dln_loss_final, dln_theta1_amp = [], {}, {}, {}, {}
for name, th in dln_paths.items():
    loss = (th[:, 0] * th[:, 1]) ** 2
    dln_final[name] = [float(th[-1, 0]), float(th[-1, 1])]
    dln_sign_changes[name] = int(np.sum(np.sign(th[1:, 0]) != np.sign(th[:-1, 0])))
    dln_loss_final[name] = float(loss[-1])
    dln_theta1_amp[name] = float(np.abs(th[-1, 0]))
    rows.append({"optimiser": name, "final θ₁": th[-1, 0], "final θ₂": th[-1, 1], "sign changes of θ₁":
                 dln_sign_changes[name], "L_0": loss[0], "L_10": loss[-1], "S at the end": dln.spectrum(th[-1]).sharpness})
rec.record("dln_final", dln_final)
rec.record("dln_sign_changes", dln_sign_changes)
rec.record("dln_loss_final", dln_loss_final)
rec.record("dln_two_over_S0", 2 / dln.spectrum(dln_theta0).sharpness)
pd.DataFrame(rows).set_index("optimiser").round(4)

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for name, col in cols.items():
    th = dln_paths[name]
    axes[0].plot(th[:, 0], "o-", ms=3, color=col, label=name)
    axes[1].plot(th[:, 1], "o-", ms=3, color=col, label=name)
axes[0].set(xlabel="step", ylabel="θ₁ (sharp direction)", title="θ₁: GD and RMS-UB oscillate and grow")
axes[1].set(xlabel="step", ylabel="θ₂ (flat direction)", title="θ₂: GD and RMS-UB drift to flatter minima")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## (c) A network: Adam, RMSProp and Clipped-Ada on the Fashion-MNIST MLP
#
# *This section was added by a second author of the companion; everything in it is the companion's reconstruction
# at CI scale* (REFERENCE §8.6 suggests it): the fMNIST MLP (784-32-32-32-10, ReLU) on the first 1,000 training
# images, 2,000 test images, cross-entropy, **full batch**, η = 5e-3, β₂ = 0.99 (β₁ = 0.9 for Adam and Clipped-Ada,
# 0 for RMSProp), ε = 1e-8, bias correction on, early stop at 99.9% train accuracy or an epoch cap. Clipped-Ada is
# `adam_ub`: $\theta_t = \theta_{t-1} - \eta\,\hat m_t/(\min(\sqrt{\hat v_t}, c) + \varepsilon)$ with the author's
# $c \in \{0.1, 1, 10\}$. At CI scale only c = 0.1 and c = 1 are run: the training loop records the largest
# $\sqrt{\hat v_t}$ of the Adam runs over every step and coordinate, and when that stays below 1 the clip
# $\min(\sqrt{\hat v}, c)$ never binds for any $c \ge 1$, so c = 1 and c = 10 are Adam step for step (the c = 1
# runs confirm it bit for bit; the `paper` preset runs c = 10 as well). `net_extra_c` adds a smaller clip (the
# companion's choice, not the author's) that does bind at this network's gradient scale. Data: Fashion-MNIST as
# printed below.
#
# **Instability** is measured two ways. (i) The *preconditioned sharpness* $\lambda_{\max}(P^{-1}H)$ with
# $P = \mathrm{diag}(\min(\sqrt{\hat v_t}, c) + \varepsilon)$, the denominator of the last step (Cohen et al. 2022),
# computed by Lanczos on $P^{-1/2}HP^{-1/2}$ (`instab_lib.adaptive`). Its threshold depends on the momentum:
# $(2+2\beta_1)/((1-\beta_1)\eta)$, i.e. $2/\eta$ for RMSProp but $38/\eta$ for Adam and Clipped-Ada with
# $\beta_1 = 0.9$ (the EMA-momentum recursion on a quadratic; derived and tested in `instab_lib.adaptive`). A run is
# at its (adaptive) edge of stability when the ratio λ_max(P⁻¹H)/threshold reaches 1 at an evaluation. The
# training loop records it as it goes (`TrainConfig(precond_every=…)`, the `Preconditioned` hook of
# `instab_lib.hooks`), reading the denominator from the optimiser's state at that step. (ii) *Loss spikes*: the training loss rising above twice its running
# minimum (`adaptive.loss_spikes`). Adam is known to sit *at* its adaptive edge of stability without blowing up
# (Cohen et al. 2022): its denominator grows and pulls the ratio back. We therefore call a run **unstable** when
# its loss spikes (or it diverges or collapses), the GD-like behaviour the paper wants back, and report the
# ratio separately.

# %%
from instab_lib import adaptive  # noqa: E402
from instab_lib import generalization as gen  # noqa: E402
from instab_lib.train import TrainConfig, train  # noqa: E402
from instab_lib.plotting import progress  # noqa: E402

net_base = TrainConfig(dataset="fashion-mnist", n_train=net_n_train, n_test=net_n_test, model="mlp", loss="ce",
                       optimizer="adam", lr=net_eta, epochs=net_epochs, target_train_acc=0.999, eval_every=0,
                       precond_every=net_eval_every)
variants = {"Adam": ("adam", {}), "RMSProp": ("rmsprop", {})}
variants.update({f"Clipped-Ada c={c:g}": ("adam_ub", {"c": float(c)}) for c in net_clips})
variants.update({f"Clipped-Ada c={c:g} (extra)": ("adam_ub", {"c": float(c)}) for c in net_extra_c})
net_rows, net_runs = [], {}
for label, (opt_name, kw) in progress(list(variants.items()), desc="optimisers"):
    for seed in net_seeds:
        run = train(net_base.replace(optimizer=opt_name, optimizer_kwargs=kw, seed=seed), progress=False)
        rep = adaptive.preconditioned_summary(run.table)
        spikes = adaptive.loss_spikes(run.table["train_loss"].to_numpy(), factor=2.0)
        net_runs[label, seed] = run
        summ = gen.run_summary(run)
        net_rows.append({"optimiser": label, "seed": seed, "outcome": summ["outcome"], "epochs": run.epochs_run,
                         "train_acc": summ["train_acc"], "test_acc": summ["test_acc"],
                         "max P-sharpness / threshold": rep["max_ratio"], "loss spikes": len(spikes),
                         "largest spike (× running min)": max([s.height for s in spikes], default=float("nan")),
                         "max clip fraction": rep["max_clip_fraction"], "max √v̂": rep["max_root"],
                         "at EoS": bool(rep["max_ratio"] >= 1),
                         "unstable": bool(len(spikes) > 0 or summ["outcome"] in ("diverged", "collapsed"))})
net = pd.DataFrame(net_rows)
display(Markdown(f"Data: **{net_runs[next(iter(net_runs))].data_source}**; {len(net)} runs, "
                 f"P-sharpness every {net_eval_every} epochs."))
net.round(4)

# %% [markdown]
# Per optimiser, over the seeds: mean and spread of the test accuracy (runs that diverged or collapsed have no
# accuracy and are counted apart), how many seeds went unstable, and the comparison of each Clipped-Ada with Adam
# (difference of means, its standard error from the seed spreads, with the binomial error √(p(1−p)/n_test) of the
# shared test set as a floor).

# %%
trained = net["outcome"].isin(gen.TRAINED)
adam_acc = net.loc[(net["optimiser"] == "Adam") & trained, "test_acc"]
binom = float(np.sqrt(adam_acc.mean() * (1 - adam_acc.mean()) / net_n_test))
net_summary, acc_vs_adam = [], {}
for label in variants:
    sub = net[net["optimiser"] == label]
    acc = sub.loc[sub["outcome"].isin(gen.TRAINED), "test_acc"]
    ms = adaptive.mean_spread(acc)
    cmpm = adaptive.compare_means(acc, adam_acc)
    noise = float(np.hypot(cmpm["se"], binom)) if np.isfinite(cmpm["se"]) else float("nan")
    acc_vs_adam[label] = {"diff": cmpm["diff"], "noise": noise}
    net_summary.append({"optimiser": label, "mean test acc": ms["mean"], "std": ms["std"], "min": ms["min"],
                        "max": ms["max"], "trained seeds": ms["n"], "seeds": len(sub),
                        "unstable seeds": int(sub["unstable"].sum()), "seeds at EoS": int(sub["at EoS"].sum()),
                        "max P-sharpness / threshold": float(sub["max P-sharpness / threshold"].max()),
                        "spikes (all seeds)": int(sub["loss spikes"].sum()),
                        "max clip fraction": float(sub["max clip fraction"].max()),
                        "Δ vs Adam": cmpm["diff"], "σ(Δ)": noise})
net_summary = pd.DataFrame(net_summary).set_index("optimiser")
author = [f"Clipped-Ada c={c:g}" for c in net_clips]
rec.record("net_data_source", net_runs[next(iter(net_runs))].data_source)
rec.record("net_unstable_seeds", {k: int(v) for k, v in net_summary["unstable seeds"].items()})
rec.record("net_eos_seeds", {k: int(v) for k, v in net_summary["seeds at EoS"].items()})
rec.record("net_max_ratio", {k: float(v) for k, v in net_summary["max P-sharpness / threshold"].items()})
rec.record("net_spikes", {k: int(v) for k, v in net_summary["spikes (all seeds)"].items()})
rec.record("net_clip_fraction", {k: float(v) for k, v in net_summary["max clip fraction"].items()})
rec.record("net_acc_mean", {k: float(v) for k, v in net_summary["mean test acc"].items()})
rec.record("net_acc_std", {k: float(v) for k, v in net_summary["std"].items()})
rec.record("net_acc_vs_adam", acc_vs_adam)
rec.record("net_author_clips", author)
rec.record("net_n_seeds", len(net_seeds))
rec.record("net_adam_max_root", float(net.loc[net["optimiser"] == "Adam", "max √v̂"].max()))
rec.record("net_adam_min_eos_ratio", float(net.loc[net["optimiser"] == "Adam", "max P-sharpness / threshold"].min()))
same_as_adam = {k: bool(net_summary.loc[k, "max clip fraction"] == 0 and all(
    net_runs[k, s].table["train_loss"].equals(net_runs["Adam", s].table["train_loss"]) for s in net_seeds))
    for k in author}
adam_root = float(net.loc[net["optimiser"] == "Adam", "max √v̂"].max())
display(Markdown(f"Largest √v̂ of the Adam runs over every step and coordinate: **{adam_root:.3g}**. Every clip "
                 f"c ≥ {adam_root:.3g} leaves Adam's steps unchanged; c = 1 and c = 10 are "
                 f"{'both above it' if adam_root < 1 else 'NOT both above it'}."))
rec.record("net_same_as_adam", same_as_adam)
net_summary.round(4)

# %% [markdown]
# Left: the training loss of each optimiser (first seed; ▲ marks the peaks of loss spikes; Adam's curve lies under
# Clipped-Ada c = 1's, which is identical). Middle: the preconditioned sharpness divided by its threshold (1 = the
# edge of stability of that optimiser). Right: test accuracy per seed (dots) and mean ± one standard deviation; runs
# that collapsed or diverged have no accuracy and are not drawn.

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
colors = dict(zip(variants, plt.get_cmap("tab10").colors))
s0 = net_seeds[0]
for label in variants:
    run = net_runs[label, s0]
    t = run.table
    axes[0].plot(t["epoch"], t["train_loss"], color=colors[label], lw=1.1, label=label)
    for sp in adaptive.loss_spikes(t["train_loss"].to_numpy(), factor=2.0):
        if np.isfinite(t["train_loss"].iloc[sp.peak]):
            axes[0].scatter(t["epoch"].iloc[sp.peak], t["train_loss"].iloc[sp.peak], marker="^", s=40,
                            color=colors[label], edgecolor="k", zorder=4)
    ev = t[t["p_sharpness"].notna()]
    axes[1].plot(ev["epoch"], ev["p_sharpness"] / ev["p_threshold"], "o-", ms=3, color=colors[label])
axes[0].set(yscale="log", xlabel="epoch", ylabel="training loss", title=f"Training loss (seed {s0})")
axes[0].legend(fontsize=7)
axes[1].axhline(1, color="k", ls="--", lw=1)
axes[1].set(yscale="log", xlabel="epoch", ylabel="λ_max(P⁻¹H) / threshold",
            title="Preconditioned sharpness / (2+2β₁)/((1−β₁)η)")
for i, label in enumerate(variants):
    sub = net[(net["optimiser"] == label) & net["outcome"].isin(gen.TRAINED)]
    axes[2].scatter(np.full(len(sub), i) + np.linspace(-0.12, 0.12, len(sub)), sub["test_acc"], s=14,
                    color=colors[label], edgecolor="k", zorder=3)
    row = net_summary.loc[label]
    if row["trained seeds"]:
        axes[2].errorbar([i], [row["mean test acc"]], yerr=[0 if np.isnan(row["std"]) else row["std"]], fmt="_",
                         ms=22, color="k", capsize=4)
    else:
        axes[2].text(i, float(net.loc[trained, "test_acc"].min()), "diverged /\ncollapsed", ha="center", fontsize=7)
axes[2].set_xticks(range(len(variants)), list(variants), rotation=35, ha="right", fontsize=8)
axes[2].set(ylabel=f"test accuracy ({net_n_test} images)", title="Test accuracy over seeds")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### What this scale says
#
# The verdicts below are computed from the tables above.

# %%
lines = []
adam_unstable = int(net_summary.loc["Adam", "unstable seeds"])
for label in author:
    row = net_summary.loc[label]
    d, s = acc_vs_adam[label]["diff"], acc_vs_adam[label]["noise"]
    lines.append(f"- **{label}**: clip binds on at most {row['max clip fraction']:.2%} of the coordinates; loss spikes "
                 f"in {int(row['unstable seeds'])}/{int(row['seeds'])} seeds (Adam: {adam_unstable}/{len(net_seeds)}); "
                 f"at its edge of stability in {int(row['seeds at EoS'])} seeds; "
                 f"test accuracy {row['mean test acc']:.4f} ± {row['std']:.4f} vs Adam "
                 f"{net_summary.loc['Adam', 'mean test acc']:.4f}: Δ = {d:+.4f}, σ(Δ) = {s:.4f} — "
                 f"{'within noise' if abs(d) < 2 * s else ('better beyond noise' if d > 0 else 'worse beyond noise')}.")
for label in variants:
    if label.endswith("(extra)"):
        row = net_summary.loc[label]
        lines.append(f"- {label} (the companion's extra clip): clip binds on up to {row['max clip fraction']:.1%} of "
                     f"the coordinates; loss spikes in {int(row['unstable seeds'])}/{int(row['seeds'])} seeds, "
                     f"max ratio {row['max P-sharpness / threshold']:.2f}, {int(row['spikes (all seeds)'])} spikes.")
row = net_summary.loc["RMSProp"]
row_a = net_summary.loc["Adam"]
lines.append(f"- Adam: ratio λ_max(P⁻¹H)/(38/η) up to {row_a['max P-sharpness / threshold']:.2f} (≥ 1 in "
             f"{int(row_a['seeds at EoS'])}/{int(row_a['seeds'])} seeds) with {int(row_a['spikes (all seeds)'])} loss spikes.")
lines.append(f"- RMSProp (threshold 2/η, no momentum): loss spikes in {int(row['unstable seeds'])}/{int(row['seeds'])} "
             f"seeds, max ratio {row['max P-sharpness / threshold']:.2f}, {int(row['spikes (all seeds)'])} spikes.")
display(Markdown("\n".join(lines)))

# %% [markdown]
# **Reading** (each statement is one of the checked claims below). Adam reaches its adaptive edge of stability
# (ratio ≈ 1) but its loss never spikes: it suppresses the GD-like instability. On this small network with the
# author's η = 5e-3 the gradients are small: √v̂ stays below 1, so c = 1 and c = 10 never bind and Clipped-Ada *is*
# Adam, step for step. With c = 0.1 the clip binds on a tiny fraction of coordinates and the run behaves like Adam.
# So at this CI scale **the paper's claim that Clipped-Ada restores the instabilities that Adam suppresses is not
# reproduced for the author's c grid**, and the accuracy differences to Adam are within the seed and test-set noise.
# The claims check these CI-scale findings (they fail if the runs change), not the paper's claim. The companion's
# smaller clip shows the mechanism at this gradient scale: once the clip binds on most coordinates the effective step
# η/c is large and loss spikes return, here with *lower* accuracy (some seeds never recover). Whether B's gain
# shows on CIFAR-5k with the author's batch sizes needs the full-scale runs (REFERENCE §8.6), not done here.

# %% [markdown]
# ## Claims checked on these numbers

# %%
rec.report()
