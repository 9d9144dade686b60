# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Rotations in the two-parameter DLN (A Fig 1, B Fig 3)
#
# **Claim.** In the two-parameter diagonal linear network $L(\theta) = z(\theta_1\theta_2)$,
# $z(\Theta) = \Theta^2$, gradient descent below the stability limit $\eta_\mathrm{eos}$ converges
# to the sharp minimum next to its initialisation, while GD above it makes the top Hessian
# eigenvector rotate ($\gamma_\beta < 1$) and ends at a flatter minimum.
#
# ```{admonition} Where this comes from
# :class: note
# - **Paper's caption** (A Fig 1): four trajectories from $(-0.1, 10)$ with $z = \Theta^2$ and
#   $\eta \in \{0.001, 0.0095, 0.011, 0.013\}$; stability limit at initialisation $\eta_\mathrm{eos} = 0.01$;
#   left the regimes of $\gamma_\beta$, middle the loss landscape, right the map of eigenvector orientations
#   with y-axis magnitudes amplified. B Fig 3's caption: "Optimization trajectories in a 2-parameter DLN with varying
#   η … Stable regimes (orange/red/green) show convergence to sharper axis; unstable regimes (blue) show divergence."
#   The B Fig 3 section below tests that caption on its own.
# - **Author's code** (the first author's repository `lawrencewang94/jax_eigs`): the formula for $\gamma_\beta$, the variable
#   $\beta$, the regime plot's axes ($x = \eta z'$, asymptote at $1/r$, $\eta_\mathrm{eos}$ at $2/r$), the run colours,
#   the ×77 amplification of the flat-direction component.
# - **Author's code for B Fig 3** (`jax_eigs` 8db90d3, `notebooks/shape_of_loss_v1_rmsv3.ipynb`, the only cell with
#   this layout and four colours r/orange/green/blue): η ∈ {0.001, 0.009, 0.011, 0.2}, 1,000 iterations of an
#   RMSProp-style step $\theta \leftarrow \theta - \frac{20\,\eta}{\sqrt{r+10^{-8}}}\,g$, $r \leftarrow 0.9\,r + 0.1\,g^2$
#   ({doc}`../notes/reference` §4.0; `instab_lib.experiments.dln.run_author_rms`). Whether the published panel used it is not known.
# - **Our reconstruction**: the derivation of the regime boundary $x^* = 2/(r + 1/r)$, the 3-D rendering, the extra
#   panels (sharpness, $\beta_t$, consecutive cosines), and every number below, computed exactly in float64 by
#   `instab_lib.experiments.dln`. No data set is used: the model is closed-form.
# ```

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from instab_lib.book import claims
from instab_lib.experiments import dln
from instab_lib.experiments.plotting import DLN_RUN_COLORS, apply_style, eta_color

apply_style()

# %% tags=["parameters"]
theta0 = [-0.1, 10.0]  # initialisation (θ₁, θ₂): θ₁ the sharp direction, θ₂ the flat one
etas = [0.001, 0.0095, 0.011, 0.013]  # A Fig 1's four learning rates
b3_etas = [0.001, 0.009, 0.011, 0.2]  # B Fig 3: the η of the author's cell (red, orange, green, blue there)
b3_steps = 1000  # iterations of that cell
steps = 5000  # GD steps per run (CI scale = paper scale: seconds in float64)
cosine_window = 400  # steps over which consecutive eigenvector cosines are compared (REFERENCE §8.1)
amplify = 77.0  # amplification of the flat-direction (θ₂) component in the orientation map (author's code)

# %%
rec = claims.Recorder("dln_rotations")

# %% [markdown]
# ## The stability limit at initialisation
#
# The Hessian of $L = \theta_1^2\theta_2^2$ is
# $H = \begin{pmatrix} 2\theta_2^2 & 4\theta_1\theta_2 \\ 4\theta_1\theta_2 & 2\theta_1^2 \end{pmatrix}$, so at
# $(-0.1, 10)$ the sharpness is $S_0 \approx 2\theta_2^2 = 200$ and the classical threshold is $2/S_0$. The caption's
# $\eta_\mathrm{eos} = 0.01$ is the line $x = \eta z' = 2/r$ of the regime plot ($r = |\theta_2/\theta_1|$), i.e.
# $\eta = 1/\theta_2^2$.

# %%
theta0 = np.asarray(theta0, dtype=np.float64)
spec0 = dln.spectrum(theta0)
S0 = spec0.sharpness
r0 = abs(theta0[1] / theta0[0])
eta_eos = 1.0 / theta0[1] ** 2
rec.record("S0", S0)
rec.record("two_over_S0", 2 / S0)
rec.record("eta_eos", eta_eos)
rec.record("lambda_min0", spec0.lambda_min)
display(Markdown(f"S₀ = {S0:.3f}, λ_min = {spec0.lambda_min:.4f}, **2/S₀ = {2 / S0:.6f}**, "
                 f"η_eos = 1/θ₂² = {eta_eos:.4f}, r = |θ₂/θ₁| = {r0:g}"))

# %% [markdown]
# ## The regimes of $\gamma_\beta$
#
# With $\beta = |\theta_2^2-\theta_1^2|/|4\theta_1\theta_2|$ (the top eigenvector's orientation: large $\beta$ is
# axis-aligned, $\beta \to 0$ is balanced), one GD step multiplies $\beta$ by
# $\gamma_\beta = |1-\eta^2 z'^2| / |1+\eta^2 z'^2 - k\eta z'|$, $k = \theta_1/\theta_2 + \theta_2/\theta_1$.
# With $x = \eta|z'|$ and $K = r + 1/r$ this is $\gamma_\beta(x) = |1-x^2|/|1-Kx+x^2|$. Between the asymptote
# $x = 1/r$ and $x = r$ the denominator is negative, so $\gamma_\beta < 1 \iff x > 2/K \approx 2/r$: the eigenvector
# rotates exactly beyond the $\eta_\mathrm{eos}$ line (derivation in `dln.rotation_threshold`). We check the boundary on
# a fine grid of the formula itself.

# %%
x_grid = np.linspace(1e-5, 0.04, 40001)
g_grid = dln.gamma_beta_regimes(x_grid, r0)
x_star_measured = float(x_grid[np.argmax(g_grid < 1)])
rec.record("regime_threshold_measured", x_star_measured)
rec.record("regime_threshold_formula", dln.rotation_threshold(r0))
rec.record("eos_line", 2 / r0)

# %% [markdown]
# ## Four GD trajectories

# %%
runs = {f"{eta:g}": dln.run_gd(theta0, eta, steps) for eta in etas}
stable_runs = [k for k, tr in runs.items() if tr.eta < 2 / S0]
unstable_runs = [k for k, tr in runs.items() if tr.eta >= 2 / S0]


def active(tr):
    """Steps before the iterate reaches the minimum to machine precision (β is then undefined)."""
    return np.abs(tr.theta[:, 0] * tr.theta[:, 1]) > 1e-8


rows, min_cos, s_ratio, n_rot, formula_err = [], {}, {}, {}, []
for key, tr in runs.items():
    cos = dln.consecutive_abs_cosines(tr.top[: cosine_window + 1])
    act = active(tr)[:-1]
    gb = dln.gamma_beta(tr.theta[:-1][act], tr.eta)
    b = dln.beta(tr.theta)
    measured = b[1:][act] / b[:-1][act]
    formula_err.append(float(np.max(np.abs(gb - measured) / measured)))
    min_cos[key] = float(cos.min())
    s_ratio[key] = tr.final_sharpness / S0
    n_rot[key] = int(np.sum(gb < 1))
    rows.append({"η": tr.eta, "η·S₀/2": tr.eta * S0 / 2, "status": tr.status, "final θ₂": tr.theta[-1, 1],
                 "final S": tr.final_sharpness, "S_final/S₀": s_ratio[key], "2/η": 2 / tr.eta,
                 f"min |cos(v₁(t), v₁(t+1))|, t<{cosine_window}": min_cos[key], "steps with γ_β<1": n_rot[key],
                 "min β": float(np.min(b[np.isfinite(b)]))})
rec.record("stable_runs", stable_runs)
rec.record("unstable_runs", unstable_runs)
rec.record("S_final_over_S0", s_ratio)
rec.record("min_consecutive_cos", min_cos)
rec.record("n_rotating_steps", n_rot)
rec.record("gamma_formula_max_rel_err", max(formula_err))
pd.DataFrame(rows).set_index("η").round(6)

# %% [markdown]
# ## The figure
#
# Left: $\gamma_\beta$ against $x = \eta z'$ for $r = 100$ (the initialisation); the dotted line is the asymptote
# $1/r$, the solid line $\eta_\mathrm{eos}$ at $2/r$, the grey band the unstable regime where $\gamma_\beta < 1$. The
# dots are each run's first step. Middle: the loss landscape with the first 120 steps of each run. Right: the
# orientation of the top eigenvector $v_1$ along each trajectory, its $\theta_2$ component amplified ×77 (then
# renormalised) so that the rotation is visible; stable runs keep $v_1$ on the sharp axis.

# %% tags=["hide-input"]
fig = plt.figure(figsize=(15, 4.6))
ax1 = fig.add_subplot(1, 3, 1)
ax1.plot(x_grid, g_grid, color="k", lw=1.2)
ax1.axvline(1 / r0, ls=":", color="k", lw=1, label="asymptote $1/r$")
ax1.axvline(2 / r0, ls="-", color="k", lw=1, label=r"$\eta_\mathrm{eos}$: $2/r$")
ax1.axvspan(x_star_measured, x_grid[-1], color="0.85", zorder=0)
ax1.axhline(1, ls="--", color="0.5", lw=0.8)
ax1.text(0.001, 4.5, "stable")
ax1.text(0.029, 4.5, "unstable")
for (key, tr), c in zip(runs.items(), DLN_RUN_COLORS):
    x0 = tr.eta * abs(dln.get_link("square").dz(theta0[0] * theta0[1]))
    ax1.scatter([x0], [dln.gamma_beta(theta0, tr.eta)], color=c, zorder=5, label=f"η = {key}")
ax1.set(xlim=(0, 0.04), ylim=(0, 5), xlabel=r"$\eta z'$", ylabel=r"$\gamma_\beta$", title=r"Regimes of $\gamma_\beta$")
ax1.legend(fontsize=7, loc="center right")

ax2 = fig.add_subplot(1, 3, 2, projection="3d")
t1 = np.linspace(-2.5, 2.5, 80)
t2 = np.linspace(6.0, 10.5, 80)
T1, T2 = np.meshgrid(t1, t2)
ax2.plot_surface(T1, T2, (T1 * T2) ** 2, cmap="Greys", alpha=0.35, linewidth=0)
for (key, tr), c in zip(runs.items(), DLN_RUN_COLORS):
    th = tr.theta[:120]
    ax2.plot(th[:, 0], th[:, 1], tr.loss[:120], color=c, lw=2, alpha=0.8)
ax2.set(xlabel="Sharp dir θ₁", ylabel="Flat dir θ₂", zlabel="L", title="Loss landscape")
ax2.view_init(elev=28, azim=-60)

ax3 = fig.add_subplot(1, 3, 3)
for (key, tr), c in zip(runs.items(), DLN_RUN_COLORS):
    n = min(len(tr.theta), 120)
    v = tr.top[:n].copy()
    v[:, 1] *= amplify
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ax3.quiver(tr.theta[:n, 0], tr.theta[:n, 1], v[:, 0], v[:, 1], color=c, angles="xy", pivot="mid",
               headwidth=1, headlength=0, headaxislength=0, width=0.004, scale=12, alpha=0.8)
ax3.set(xlabel="Sharp dir θ₁", ylabel="Flat dir θ₂",
        title=f"Orientation of $v_1$ (θ₂-component ×{amplify:g})")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Along the runs: sharpness, orientation and rotation
#
# Left: sharpness $S_t$ with each run's $2/\eta$ (dashed): the unstable runs start above $2/\eta$ and end below it,
# at a flatter minimum. Middle: $\beta_t$ falls (rotation toward balance) only for the unstable runs. Right:
# consecutive $|\cos(v_1(t), v_1(t+1))|$ over the first steps.

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
for (key, tr), c in zip(runs.items(), DLN_RUN_COLORS):
    t = np.arange(len(tr.sharpness))
    axes[0].plot(t + 1, tr.sharpness, color=c, label=f"η = {key}")
    axes[0].axhline(2 / tr.eta, color=c, ls="--", lw=0.8)
    act = active(tr)
    axes[1].plot(t[act] + 1, dln.beta(tr.theta[act]), color=c)
    axes[2].plot(np.arange(1, min(cosine_window, len(tr.top) - 1) + 1),
                 dln.consecutive_abs_cosines(tr.top[: cosine_window + 1]), color=c)
axes[0].set(xscale="log", ylim=(0, 260), xlabel="step", ylabel="S = λ_max", title="Sharpness and 2/η (dashed)")
axes[0].legend(fontsize=8)
axes[1].set(xscale="log", yscale="log", xlabel="step", ylabel="β", title="Orientation β_t")
axes[2].set(xscale="log", xlabel="step", ylabel="|cos|", title="Consecutive cosine of v₁")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## B Fig 3: the caption's regimes with the author's step
#
# The caption says the stable runs converge to the sharper axis and the unstable (blue) one diverges. We run the
# author's B Fig 3 cell as it is written (the RMSProp-style step, η ∈ {0.001, 0.009, 0.011, 0.2}, 1,000 iterations)
# and, beside it, plain GD at the same η. "Converges to the sharper axis": the run ends on the axis $\theta_1 = 0$
# of the sharp minimum next to the start ($|\theta_1/\theta_2| < 0.01$) and near it, not at the flat origin
# (sharpness kept at least half: $S_\mathrm{final} \ge S_0/2$); "diverges": the loss exceeds $10^{12}$ or becomes
# non-finite. Both thresholds are in the card.

# %%
b3 = {}
for eta_ in b3_etas:
    for step_name, run_fn in (("author's RMS step", dln.run_author_rms), ("plain GD", dln.run_gd)):
        tr = run_fn(theta0, eta_, b3_steps)
        end = tr.theta[-1]
        b3[step_name, eta_] = {
            "diverged": tr.diverged, "diverged step": tr.diverged_step,
            "final θ": [float(v) for v in end],
            "on the θ₁ = 0 axis": bool(abs(end[0]) < 0.01 * abs(end[1])) if not tr.diverged else False,
            "S_final/S₀": float(tr.final_sharpness / S0) if not tr.diverged else float("nan"),
            "max ‖θ‖/‖θ₀‖": float(np.max(np.linalg.norm(tr.theta, axis=1)) / np.linalg.norm(theta0)),
            "max loss": float("inf") if tr.diverged else float(np.max(tr.loss)),
            "trajectory": tr}
b3_stable = [e for e in b3_etas if e < 2 / S0]
b3_unstable = max(b3_etas)
for step_name, key in (("author's RMS step", "author"), ("plain GD", "gd")):
    rec.record(f"b_fig3_{key}_stable_S_ratio", [b3[step_name, e]["S_final/S₀"] for e in b3_stable])
    rec.record(f"b_fig3_{key}_stable_on_sharp_axis", [b3[step_name, e]["on the θ₁ = 0 axis"] for e in b3_stable])
    rec.record(f"b_fig3_{key}_unstable_diverged", bool(b3[step_name, b3_unstable]["diverged"]))
    rec.record(f"b_fig3_{key}_unstable_max_loss", b3[step_name, b3_unstable]["max loss"])
    rec.record(f"b_fig3_{key}_unstable_max_norm", b3[step_name, b3_unstable]["max ‖θ‖/‖θ₀‖"])
rec.record("b_fig3_unstable_diverged", rec.numbers["b_fig3_author_unstable_diverged"])
rec.record("b_fig3_stable_etas", b3_stable)
pd.DataFrame([{"step": k[0], "η": k[1], **{c: v for c, v in d.items() if c != "trajectory"}}
              for k, d in b3.items()]).set_index(["step", "η"]).round(4)

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
for ax, step_name in zip(axes, ("author's RMS step", "plain GD")):
    for eta_ in b3_etas:
        tr = b3[step_name, eta_]["trajectory"]
        ax.plot(tr.theta[:, 0], tr.theta[:, 1], color=eta_color(eta_), lw=1.6, marker=".", ms=2,
                label=f"η = {eta_:g}" + (" (diverged)" if tr.diverged else ""))
        ax.scatter(tr.theta[-1, 0], tr.theta[-1, 1], color=eta_color(eta_), edgecolor="k", s=40, zorder=4)
    ax.scatter([theta0[0]], [theta0[1]], marker="*", s=120, color="k", zorder=5, label="start (−0.1, 10)")
    ax.axvline(0, color="0.6", lw=0.8)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set(xlabel="θ₁ (sharp direction)", ylabel="θ₂ (flat direction)", title=f"B Fig 3's η, {step_name}")
    ax.legend(fontsize=8)
axes[1].set(xlim=(-0.5, 0.5))
fig.tight_layout()
plt.show()

# %% [markdown]
# **Figure 3** (B Fig 3's trajectories). Left: the author's RMSProp-style step; right: plain GD at the same learning
# rates (colours by η as on every page; the author's figure uses red/orange/green/blue in this order). The axes
# $\theta_1 = 0$ and $\theta_2 = 0$ are the two valleys of minima.

# %%
n = rec.numbers
display(Markdown(
    "With the author's step: the stable runs end "
    + ", ".join(f"η = {e:g} at θ = ({b3['author' + chr(39) + 's RMS step', e]['final θ'][0]:.3g}, "
                f"{b3['author' + chr(39) + 's RMS step', e]['final θ'][1]:.3g})" for e in b3_stable)
    + f" (S/S₀ = {', '.join(f'{v:.3g}' for v in n['b_fig3_author_stable_S_ratio'])}), and η = {b3_unstable:g} "
    + ("diverges" if n["b_fig3_author_unstable_diverged"] else
       f"does **not** diverge (its iterate wanders to {n['b_fig3_author_unstable_max_norm']:.2f}× the start's norm)")
    + ". With plain GD: " + ", ".join(f"η = {e:g}: S/S₀ = {v:.3f}" for e, v in zip(b3_stable, n["b_fig3_gd_stable_S_ratio"]))
    + f"; η = {b3_unstable:g} " + (f"diverges at step {b3['plain GD', b3_unstable]['diverged step']}"
                                   if n["b_fig3_gd_unstable_diverged"] else "does not diverge") + "."))

# %% [markdown]
# ## Claims checked on these numbers
#
# The table below is the check CI runs (`instab verify dln_rotations`) on the numbers recorded above; the thresholds
# live in `notebooks/dln_rotations.yaml`.

# %%
rec.report()
