# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Flatness bias from instabilities: a reconstruction of B §5
#
# ```{warning}
# **Reconstruction.** Paper B's §5 results are known to the companion by *name* only: Definition 5.1 (instability
# surplus), Theorem 5.4 (point-mass contraction), Corollary 5.5 (mass conditions for median contraction), Theorem 5.6
# (upper-envelope drift), Theorem 5.12 (even-time median drift), and one sentence of Theorem 5.4 ("for any point-mass
# $X_0 = u$ and all $t \ge 1$, [an inequality] with strict inequality at even $t$. Hence every even-time median $m_t$
# satisfies $m_t < u$"). Their conditions and proofs were not read (REFERENCE §3, §10). Everything below, including the
# model, is this companion's reading, stated so that a simulation can check it. It is not the paper's wording.
# ```
#
# **Claim (companion's form).** In a coupled instability/curvature dynamics started from a point mass at curvature
# $u$ above the stability threshold ($\eta u > 2$), the probability that the curvature is at most $u$ is at least
# one half at every step and strictly more at even steps, so every even-time median lies below the start; the valley
# floor's curvature only falls; the process restabilises below $2/\eta$, and the larger the initial surplus, the
# flatter it ends.
#
# ```{admonition} Where this comes from
# :class: note
# - **Paper** (B §5, seeds/001): the names of the results above and the Theorem 5.4 fragment; the appendix figure
#   caption "Aggregate correlation statistics between $|\gamma_{U_t}|$ and $\lambda_{1,t}$. Strong correlations across
#   seeds affirm C3"; the abstract: instabilities "provably lead to flatter minima" through "a coupled
#   instability-dynamics framework".
# - **Author's code**: none for this section.
# - **Our reconstruction**: the working definitions $U_t = \eta\lambda_{1,t} - 2$ and
#   $\gamma_{U_t} = 1-\eta\lambda_{1,t}$ (REFERENCE §10), the model, its conditions, the statements as checked here, the
#   Monte Carlo and the exact bootstrap bands (`instab_lib.experiments.theory`); the DLN identity below (`theory.dln_reduced_step`);
#   the measured multiplier $|\hat\gamma_{U_t}| = a_{t+1}/a_t$ of the last section.
# - **Data**: the simulation and the DLN use none; the last section trains the fMNIST MLP on the first 1,000
#   Fashion-MNIST training images (the copy the resolver found is printed there).
# ```

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from instab_lib.book import claims
from instab_lib.experiments import dln, shared_runs, stats, theory
from instab_lib.experiments.plotting import apply_style, eta_style, figure

apply_style()

# %% tags=["parameters"]
eta = 0.01  # learning rate: threshold curvature 2/η = 200
u = 210.0  # point-mass start X_0 = u (surplus U_0 = ηu − 2 = 0.1)
c = 20.0  # third-order coupling: curvature at the iterate moves with the signed oscillation
d = 5.0  # self-stabilisation: the valley floor's curvature contracts by 1/(1 + d Y²)
sigma = 3e-3  # noise kicking the oscillation (GD rounding / minibatch noise)
steps = 400  # steps per path
n_paths = 40001  # Monte Carlo paths (odd: the median is one sample)
level = 0.95  # bootstrap band level
u_grid = [180.0, 190.0, 200.0, 205.0, 210.0, 220.0, 230.0]  # starts for the surplus sweep
seed = 0
dln_eta = 0.011  # the DLN run used to check the reduced (Δ, Θ) dynamics
scale = "ci"  # the fMNIST mechanism ensemble's scale ("ci": 5 seeds, "paper": 10) for the |γ_U| vs λ₁ check
executor = None  # None: local worker processes; or a Dask scheduler address

# %%
rec = claims.Recorder("flatness_theory")

# %% [markdown]
# ## Definitions (companion's reading)
#
# - **Instability surplus** (reading of B Def 5.1): $U_t = \eta\lambda_{1,t} - 2$, the amount by which the step exceeds
#   the stability threshold along the top eigenvector $v_1$; $U_t > 0$ is unstable.
# - **Instability multiplier**: on a locally quadratic loss of curvature $\lambda_{1,t}$ the displacement along $v_1$
#   is multiplied by $\gamma_{U_t} = 1-\eta\lambda_{1,t} = -(1+U_t)$ per step: it flips sign every step and grows iff
#   $U_t > 0$. $|\gamma_{U_t}| = 1 + U_t$ increases with $\lambda_{1,t}$ (our reading of condition C3).
#
# ## The model
#
# Per path, with $\xi_t$ i.i.d. standard normal,
#
# $$
# Y_{t+1} = (1-\eta X_t)\,Y_t + \sigma\xi_t,\qquad
# \bar X_{t+1} = \frac{\bar X_t}{1 + d\,Y_t^2},\qquad
# X_t = \bar X_t + c\,Y_t,
# $$
#
# from the point mass $X_0 = \bar X_0 = u$, $Y_0 = 0$. $Y_t$ is the signed oscillation along $v_1$, $X_t = \lambda_{1,t}$
# the curvature at the iterate and $\bar X_t$ the curvature of the valley floor. The three ingredients and why:
#
# 1. *Instability* ($Y$): GD along $v_1$ with multiplier $\gamma_{U_t}$; the noise $\sigma\xi_t$ seeds it.
# 2. *Self-stabilisation* ($\bar X$, $d > 0$): the floor's curvature contracts with the squared oscillation. This is
#    exact in the DLN: $\theta_2^2-\theta_1^2$, whose magnitude is the sharpness $2|\Delta|$ of the minimum the run is
#    heading to, is multiplied by $1-4\eta^2\Theta^2$ each step, a contraction while $0 < 4\eta^2\Theta^2 < 2$
#    (checked below).
# 3. *Third-order coupling* ($c$): the curvature at the iterate is higher on one side of the valley than on the other,
#    so $X_t$ alternates with the sign of $Y_t$. Over two adjacent steps the linear parts nearly cancel and what is left,
#    $-(d + \eta c^2)Y^2$ to second order, is negative: the curvature's even-time values are pushed below $u$ while odd
#    times are symmetric to first order.
#
# **Statements checked** (companion's forms): (5.4) $P(X_t \le u) \ge \tfrac12$ for all $t \ge 1$, strictly at even
# $t$; (5.5) $P(X_t \le u) > \tfrac12 \Rightarrow$ median$(X_t) < u$; (5.6, our reading of "upper envelope") the valley
# floor $\bar X_t$, the envelope around which $X_t$ oscillates, is non-increasing on every path; (5.12) every even-time
# median is below $u$, and the process restabilises below $2/\eta$.

# %%
paths = theory.simulate_coupled(eta, u, c, d, sigma, steps, n_paths, seed)
med, lo, hi = theory.median_band(paths.X, level)
p_le, p_se = theory.prob_at_most(paths.X, u)
t_all = np.arange(steps + 1)
even, odd = t_all[2::2], t_all[1::2]
z_even = (p_le[even] - 0.5) / np.maximum(p_se[even], 1e-300)
z_odd = (p_le[odd] - 0.5) / np.maximum(p_se[odd], 1e-300)
finite = bool(np.all(np.isfinite(paths.X)))
rec.record("finite", finite)
rec.record("surplus0", eta * u - 2)
rec.record("u", u)
rec.record("two_over_eta", 2 / eta)
rec.record("min_z_even", float(np.min(z_even)) if finite else float("nan"))
rec.record("min_z_odd", float(np.min(z_odd)) if finite else float("nan"))
rec.record("max_even_band_hi_minus_u", float(np.max(hi[even] - u)) if finite else float("nan"))
rec.record("p_le_u_even", [float(v) for v in p_le[even]])
rec.record("median_even", [float(v) for v in med[even]])
rec.record("max_floor_increment", float(np.nanmax(np.diff(paths.Xbar, axis=1))))
rec.record("final_median", float(med[-1]))
rec.record("final_band", [float(lo[-1]), float(hi[-1])])
rec.record("final_median_surplus", float(eta * med[-1] - 2))
display(Markdown(f"{n_paths} paths, {steps} steps; U₀ = {eta * u - 2:.2f}. Even t: min (P(X_t ≤ u) − ½)/SE = "
                 f"{np.min(z_even):.1f}; odd t: {np.min(z_odd):.1f}. Largest upper band edge of an even-time median "
                 f"minus u: {np.max(hi[even] - u):.3g}. Final median {med[-1]:.2f} "
                 f"({level:.0%} band [{lo[-1]:.2f}, {hi[-1]:.2f}]), 2/η = {2 / eta:g}."))

# %% [markdown]
# ## Medians, the point mass and the envelope
#
# At $t = 1$ the curvature is $u + c\sigma\xi_0$, symmetric about $u$, so $P(X_1 \le u) = \tfrac12$ exactly; from
# $t = 2$ on the negative two-step remainder pushes the even-time mass below $u$, and the odd times follow once the
# floor has moved. The bands are computed exactly from the binomial law of resampled order statistics
# (`theory.median_band`).

# %% tags=["hide-input"]
even_col, odd_col = "#1f4e79", "#d9822b"  # even and odd times (not learning rates)
fig, axes = figure(1, 2, height=3.4)
for ax, sl in ((axes[0], slice(None)), (axes[1], slice(0, 13))):
    te, to = even[even < (sl.stop or steps + 1)], odd[odd < (sl.stop or steps + 1)]
    ax.fill_between(te, lo[te], hi[te], color=even_col, alpha=0.25, lw=0)
    ax.plot(te, med[te], ".-", color=even_col, ms=3, lw=0.8, label="median, even t")
    ax.fill_between(to, lo[to], hi[to], color=odd_col, alpha=0.25, lw=0)
    ax.plot(to, med[to], ".-", color=odd_col, ms=3, lw=0.8, label="median, odd t")
    ax.axhline(u, color="k", lw=1, label="start u")
    ax.axhline(2 / eta, color="k", ls=":", lw=1, label="2/η")
    ax.set(xlabel="t", ylabel=r"$X_t = \lambda_{1,t}$")
axes[0].set_title(f"Medians, {level:.0%} bands")
axes[0].legend(loc="upper right")
axes[1].set(title="First 12 steps", ylim=(float(lo[12]) - 0.01, u + 0.01))
plt.show()
nb_ = rec.numbers
display(Markdown(
    f"**Figure 1.** The median of the curvature $X_t$ over {n_paths} simulated paths at even (blue) and odd (orange) "
    f"times, with {level:.0%} bootstrap bands, the start $u$ = {u:g} (solid) and $2/\\eta$ = {2 / eta:g} (dotted); "
    "right: the first 12 steps. Look for the even-time medians falling below $u$ from $t = 2$ on (the upper band edge "
    f"of an even-time median is at most {nb_['max_even_band_hi_minus_u']:+.3g} from $u$) and the process settling "
    f"below $2/\\eta$: the final median is {nb_['final_median']:.2f}, surplus $U$ = {nb_['final_median_surplus']:+.3f}."))

# %% tags=["hide-input"]
fig, ax = figure(1, 1, height=2.8)
ax.plot(even, p_le[even] - 0.5, ".", ms=3, color=even_col, label="even t")
ax.plot(odd, p_le[odd] - 0.5, ".", ms=3, color=odd_col, label="odd t")
ax.fill_between(t_all[1:], -3 * p_se[1:], 3 * p_se[1:], color="0.8", lw=0, label="±3 SE")
ax.axhline(0, color="k", lw=0.8)
ax.set(xscale="log", xlabel="t", ylabel=r"$P(X_t \leq u) - 1/2$", title="Point-mass contraction")
ax.legend(loc="upper left")
plt.show()
display(Markdown(
    "**Figure 2.** $P(X_t \\le u) - \\tfrac12$ at even and odd times with ±3 standard errors (grey). Look for the even "
    f"times staying above the band: the smallest even-time margin is {nb_['min_z_even']:.1f} standard errors, the odd "
    f"times' {nb_['min_z_odd']:.1f}."))

# %% [markdown]
# ## Sample paths

# %% tags=["hide-input"]
path_cols = ["#332288", "#117733", "#cc6677", "#aa4499"]  # four sample paths (not learning rates)
fig, axes = figure(1, 2, height=3.3)
for i, col in zip(range(4), path_cols):
    axes[0].plot(paths.Y[i], color=col, lw=0.6)
    axes[1].plot(paths.X[i], color=col, lw=0.4, alpha=0.6)
    axes[1].plot(paths.Xbar[i], color=col, lw=1.6)
axes[0].set(xlabel="t", ylabel="$Y_t$", title="Oscillation along $v_1$")
axes[1].axhline(2 / eta, color="k", ls=":", lw=1)
axes[1].set(xlabel="t", ylabel="curvature", title=r"$X_t$ (thin) and floor $\bar X_t$ (thick)")
sec = axes[1].secondary_yaxis("right", functions=(lambda x: eta * x - 2, lambda v: (v + 2) / eta))
sec.set_ylabel(r"surplus $U_t = \eta X_t - 2$")
plt.show()
display(Markdown(
    "**Figure 3.** Four sample paths. Left: the oscillation $Y_t$ along $v_1$. Right: the curvature $X_t$ (thin) "
    "around the valley floor $\\bar X_t$ (thick), with $2/\\eta$ dotted (right axis: the surplus $U_t$). Look for the "
    "oscillation growing while $U_t > 0$, the floor falling while the oscillation is large, and the oscillation "
    f"shrinking back to the noise level once $U_t < 0$, at a flatter curvature; the floor never rises on any path (largest step "
    f"{nb_['max_floor_increment']:+.1e})."))

# %% [markdown]
# ## The larger the surplus, the flatter the end
#
# The same model from starts $u$ on both sides of $2/\eta$. Stable starts ($U_0 < 0$) also flatten a little, because
# the noise alone keeps a small oscillation alive; the instability adds to it, more the larger $U_0$.

# %%
drops = {}
for uu in u_grid:
    pp = theory.simulate_coupled(eta, uu, c, d, sigma, steps, n_paths, seed)
    drops[f"{uu:g}"] = float((uu - theory.median_band(pp.X, level)[0][-1]) / uu)
rec.record("drops", drops)
rec.record("u_grid", [float(v) for v in u_grid])
surplus = [eta * uu - 2 for uu in u_grid]
fig, ax = figure(1, 1, height=2.9)
ax.plot(surplus, [drops[f"{uu:g}"] for uu in u_grid], "o-", color="0.2")
ax.axvline(0, ls=":", color="k")
ax.set(xlabel=r"initial surplus $U_0 = \eta u - 2$", ylabel=r"$(u - m_T)/u$", title="Relative flattening of the median")
plt.show()
d_vals = [drops[f"{uu:g}"] for uu in u_grid]
display(Markdown(
    f"**Figure 4.** The relative drop of the final median, $(u - m_T)/u$, for starts $u$ from {min(u_grid):g} to "
    f"{max(u_grid):g} ($U_0$ from {min(surplus):+.2f} to {max(surplus):+.2f}). Look for the drop growing with the "
    f"surplus: from {d_vals[0]:.3f} at the smallest start to {d_vals[-1]:.3f} at the largest"
    + (", rising at every step of the grid." if all(b > a for a, b in zip(d_vals, d_vals[1:])) else
       ", though not at every step of the grid.")))

# %% [markdown]
# ## The DLN is an exact, deterministic instance of ingredients 1 and 2
#
# For $L = (\theta_1\theta_2)^2$ with $\Delta = \theta_2^2-\theta_1^2$ and $\Theta = \theta_1\theta_2$, one GD step is
# exactly $\Delta' = \Delta(1-4\eta^2\Theta^2)$, $\Theta' = \Theta(1 + 4\eta^2\Theta^2 - 2\eta\sqrt{\Delta^2+4\Theta^2})$
# (`theory.dln_reduced_step`), and $\lambda_1 = (\mathrm{tr} + \sqrt{\mathrm{tr}^2 + 48\Theta^2})/2$ with
# $\mathrm{tr} = 2\sqrt{\Delta^2+4\Theta^2}$. We check this against the full GD run of `instab_lib.experiments.dln`.

# %%
tr = dln.run_gd([-0.1, 10.0], dln_eta, 200)
delta, big = theory.dln_invariants(tr.theta)
d_next, b_next = theory.dln_reduced_step(delta[:-1], big[:-1], dln_eta)
err_step = float(max(np.max(np.abs(d_next - delta[1:]) / np.abs(delta[1:])),
                     np.max(np.abs(b_next - big[1:]) / np.maximum(np.abs(big[1:]), 1e-300))))
err_sharp = float(np.max(np.abs(theory.dln_sharpness_from_invariants(delta, big) - tr.sharpness) / tr.sharpness))
rec.record("dln_reduced_err", err_step)
rec.record("dln_sharpness_err", err_sharp)
rec.record("dln_floor_monotone", bool(np.all(np.diff(np.abs(delta)) <= 1e-12 * np.abs(delta[:-1]))))
display(Markdown(f"max relative error of the reduced step: {err_step:.1e}; of λ₁ from (Δ, Θ): {err_sharp:.1e}; "
                 f"|Δ_t| non-increasing: {bool(np.all(np.diff(np.abs(delta)) <= 1e-12 * np.abs(delta[:-1])))}."))

# %% [markdown]
# ## Measured on a network: $|\gamma_{U_t}|$ against $\lambda_{1,t}$ across seeds
#
# B's appendix figure (**paper's caption**): "Aggregate correlation statistics between $|\gamma_{U_t}|$ and
# $\lambda_{1,t}$. Strong correlations across seeds affirm C3". **Our reconstruction** of what is measured: with
# $\gamma_{U_t} = 1 - \eta\lambda_{1,t}$ *by definition* the correlation would be a tautology, so we measure the
# multiplier instead: $|\hat\gamma_{U_t}| = a_{t+1}/a_t$, the one-step growth of the period-2 oscillation
# $a_t = \|\theta_t - \theta^*_t\|_2$ of a real training run (`theory.measured_gamma_u`; equal to
# $|1-\eta\lambda_{1,t}|$ on a quadratic), and correlate it (Spearman) with the sharpness $\lambda_{1,t}$ over the
# unstable phase, one seed at a time. Runs: the fMNIST MLP 784-32-32-32-10 on the first 1,000 training images,
# full-batch GD at the author's η = 0.1, $\lambda_1$ by Lanczos every epoch: the shared mechanism ensemble
# (`shared_runs.fmnist_mechanism`, the runs of {doc}`phases_of_training`).

# %%
mech = shared_runs.get("fmnist_mechanism", scale)
mlp_runs = mech.run(executor=executor)
mlp_eta = float(mech.base.lr)
corr = [theory.gamma_u_correlation(r.table["osc"].to_numpy(), r.table["sharpness"].to_numpy(), mlp_eta)
        for r in mlp_runs]
rec.record("n_seeds", len(mlp_runs))
rec.record("seeds", sorted({r.config.seed for r in mlp_runs}))
rec.record("data_source", sorted({r.data_source for r in mlp_runs}))
rec.record("gamma_u_spearman", stats.bootstrap([c["spearman"] for c in corr]))
rec.record("gamma_u_pairs", [c["n"] for c in corr])
rec.record("gamma_u_frac_growth", stats.bootstrap([c["frac_growth_when_unstable"] for c in corr]))
display(Markdown(f"Data: **{mlp_runs[0].data_source}**. " + "; ".join(
    f"seed {r.config.seed}: Spearman ρ(|γ̂_U|, λ₁) = {c['spearman']:.2f} over {c['n']} epochs, "
    f"oscillation grew in {c['frac_growth_when_unstable']:.0%} of the epochs with ηλ₁ > 2"
    for r, c in zip(mlp_runs, corr))))

# %% tags=["hide-input"]
fig, ax = figure(1, 1, height=3.6)
seed_cols = plt.cm.cividis(np.linspace(0.0, 0.85, len(mlp_runs)))  # seeds (not learning rates)
for r, col in zip(mlp_runs, seed_cols):
    lam = r.table["sharpness"].to_numpy()
    g = theory.measured_gamma_u(r.table["osc"].to_numpy())
    start = int(np.flatnonzero(mlp_eta * lam[:-1] >= 2)[0]) if np.any(mlp_eta * lam[:-1] >= 2) else len(g)
    ax.scatter(lam[:-1][start:], g[start:], s=8, color=col, alpha=0.6, label=f"seed {r.config.seed}")
lam_grid = np.linspace(1.5 / mlp_eta, np.nanmax([np.nanmax(r.table["sharpness"]) for r in mlp_runs]), 200)
ax.plot(lam_grid, np.abs(theory.gamma_u(mlp_eta, lam_grid)), "k--", lw=1, label=r"quadratic: $|1-\eta\lambda_1|$")
ax.axvline(2 / mlp_eta, color="0.5", ls=":", lw=1)
ax.axhline(1, color="0.5", lw=0.6)
ax.set(yscale="log", xlabel=r"$\lambda_{1,t}$", ylabel=r"$|\hat\gamma_{U_t}| = a_{t+1}/a_t$",
       title="Measured instability multiplier against sharpness")
ax.legend(loc="upper left", ncol=2, markerscale=2)
plt.show()
rho = rec.numbers["gamma_u_spearman"]
strength = ("weak" if rho["est"] < 0.3 else "moderate" if rho["est"] < 0.5 else "fairly strong" if rho["est"] < 0.7
            else "strong")
display(Markdown(
    f"**Figure 5.** Each epoch of the unstable phase of {len(mlp_runs)} seeds (η = {mlp_eta:g}): the measured one-step "
    "growth of the period-2 oscillation against the sharpness, with the quadratic model's $|1-\\eta\\lambda_1|$ "
    "(dashed). Look at the spread: the points scatter widely around the dashed curve, and the rank correlation per "
    f"seed is {strength}, Spearman ρ = {rho['est']:.2f} [{rho['lo']:.2f}, {rho['hi']:.2f}] (median over seeds)."))

# %%
g = rec.numbers["gamma_u_frac_growth"]
display(Markdown(
    f"Over the epochs with $\\eta\\lambda_1 > 2$ the oscillation grows in {g['est']:.0%} of them (median over "
    f"{rec.numbers['n_seeds']} seeds, 90% interval [{g['lo']:.0%}, {g['hi']:.0%}]): at the edge of stability an epoch "
    "beyond the threshold does not make the oscillation grow much more often than it shrinks, so the real dynamics are "
    "far noisier than the model's deterministic growth. B's caption speaks of *strong* correlations across seeds; with "
    f"our measured multiplier the correlation is {strength} (ρ = {rho['est']:.2f})"
    + (". " if strength == "strong" else
       ": this page does not find the strong correlation the caption describes (whether B's $\\gamma_{U_t}$ is defined "
       "so that it would is not known). ")))

# %% [markdown]
# ## What this simulation can and cannot say about B §5

# %% tags=["hide-input"]
display(Markdown(
    "- **Can**: that the *mechanism as we reconstructed it* (a coupled instability/curvature recursion with the "
    "conditions above) drives even-time medians below the start (Thm 5.12's reading), contracts a point mass (Thm 5.4's "
    "reading) and re-stabilises flatter; and that in the real fMNIST runs the measured multiplier "
    "$|\\hat\\gamma_{U_t}|$ rises with $\\lambda_{1,t}$ (the appendix's correlation figure, condition C3), "
    f"{ {'weak': 'but only weakly', 'moderate': 'moderately', 'fairly strong': 'fairly strongly'}.get(strength, 'strongly') }: "
    f"Spearman ρ = {rho['est']:.2f} per "
    "seed (median).\n"
    "- **Cannot**: the theorems' exact statements and constants (B's §5 was not read); whether real networks satisfy "
    "the other standing conditions (the model's envelope and mass conditions hold **by construction** here: they are "
    "identities of the simulation, not findings); anything about SGD or adaptive optimisers."))

# %% [markdown]
# ## Claims checked on these numbers

# %%
rec.report()
