# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The descent lemma and the classical stability threshold
#
# **Claim.** On a convex, $l$-smooth loss, gradient descent obeys A's Lemma 1,
# $L(\theta_{t+1}) \le L(\theta_t) - \eta\,(1-\tfrac{\eta l}{2})\,\|\nabla L(\theta_t)\|_2^2$, so for $\eta < 2/l$ the loss
# decreases at every step. On the talk's quadratic with eigenvalues $\lambda_1 = 20$ and $\lambda_2 = 1$ ($l = 20$), GD
# with $\eta > 2/\lambda_1 = 0.1$ instead oscillates along the sharp eigenvector with amplitude growing exactly as
# $|1-\eta\lambda_1|^t$, and the loss rises, while the flat direction still converges.
#
# ```{admonition} Where this comes from
# :class: note
# - **Paper's statement** (A Lemma 1, read from the overview page, seeds/000): "For a convex, $l$-smooth function
#   $L(\theta)$, $L(\theta_{t+1}) \le L(\theta_t) - \eta(1-\frac{\eta l}{2})\|\nabla L(\theta_t)\|^2_2$".
# - **Talk** (S. Roberts, seeds/003, after Cohen et al. 2021 Fig 2): "Gradient descent on a quadratic with
#   eigenvalues $a_1 = 20$ and $a_2 = 1$"; the stability condition $\eta < 2/\lambda_{\max}$.
# - **Our reconstruction**: the starting point, the learning rates, the exact-slack formula and the growth-rate fit
#   (`instab_lib.experiments.toys`). No author's code is involved and no data set is used. CI scale = paper scale.
# ```

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from instab_lib.book import claims
from instab_lib.experiments import toys
from IPython.display import Markdown, display

from instab_lib.experiments.plotting import apply_style, eta_legend, eta_style, figure

apply_style()

# %% tags=["parameters"]
eigenvalues = [20.0, 1.0]  # the talk's quadratic: sharp λ₁ = 20, flat λ₂ = 1
w0 = [1.0, 1.0]  # start (coordinates in the eigenbasis = the axes)
etas_stable = [0.02, 0.05, 0.08, 0.095, 0.0999]  # η < 2/l = 0.1
etas_unstable = [0.102, 0.105, 0.11, 0.12]  # 2/λ₁ < η < 2/λ₂: unstable along v₁ only
steps = 60  # GD steps per run

# %%
rec = claims.Recorder("descent_lemma")

# %% [markdown]
# ## Why the bound holds, exactly
#
# For $L(w) = \tfrac12 w^\top H w$ and $g = Hw$, one GD step gives
# $L(w-\eta g) = L(w) - \eta\|g\|^2 + \tfrac{\eta^2}{2}\,g^\top H g$. Since $g^\top H g \le l\|g\|^2$,
#
# $$L(w_{t+1}) = L(w_t) - \eta\Big(1-\frac{\eta l}{2}\Big)\|g\|^2 - \underbrace{\frac{\eta^2}{2}\big(l\|g\|^2 - g^\top H g\big)}_{\text{slack}\;\ge\;0}.$$
#
# The bound therefore holds for *every* $\eta$; it guarantees descent only when its coefficient
# $\eta(1-\eta l/2)$ is positive, i.e. $\eta < 2/l$. In the eigenbasis each coordinate is multiplied by $1-\eta\lambda_i$
# per step, so for $\eta > 2/\lambda_1$ the sharp coordinate grows as $|1-\eta\lambda_1|^t$ with alternating sign.

# %%
q = toys.quadratic(eigenvalues)
l = q.smoothness
lam1 = float(max(eigenvalues))
runs = {}
for eta in list(etas_stable) + list(etas_unstable):
    w = toys.quadratic_gd(q, w0, eta, steps)
    closed = toys.quadratic_gd_closed_form(q, w0, eta, steps)
    loss = q.loss(w)
    g = q.grad(w)
    bound = toys.descent_lemma_bound(loss[:-1], np.sum(g[:-1] ** 2, axis=1), eta, l)
    runs[eta] = {"w": w, "closed": closed, "loss": loss, "bound": bound, "gap": bound - loss[1:],
                 "slack": toys.descent_lemma_slack_exact(q, w[:-1], eta)}

rows, bound_min_gap, slack_err, closed_err, monotone, rate_meas, rate_formula, loss_ratio = [], {}, [], [], {}, {}, {}, {}
for eta, r in runs.items():
    key = f"{eta:g}"
    scale = np.maximum(np.abs(r["loss"][1:]), 1e-300)
    bound_min_gap[key] = float(np.min(r["gap"] / scale))  # relative: ≥ 0 means the bound holds
    slack_err.append(float(np.max(np.abs(r["gap"] - r["slack"]) / np.maximum(np.abs(r["bound"]), 1e-300))))
    closed_err.append(float(np.max(np.abs(r["w"] - r["closed"]) / np.maximum(np.abs(r["closed"]), 1e-300))))
    monotone[key] = bool(np.all(np.diff(r["loss"]) < 0))
    sharp = q.coords(r["w"])[:, int(np.argmax(eigenvalues))]
    rate_formula[key] = abs(1 - eta * lam1)
    rate_meas[key] = toys.geometric_rate(sharp) if eta in etas_unstable else float("nan")  # stable: can hit 0
    loss_ratio[key] = float(r["loss"][-1] / r["loss"][0])
    rows.append({"η": eta, "η·l/2": eta * l / 2, "bound holds (min relative gap)": bound_min_gap[key],
                 "loss decreases every step": monotone[key], "L_T/L_0": loss_ratio[key],
                 "measured |w₁| growth/step": rate_meas[key], "|1 − ηλ₁|": rate_formula[key]})
stable_keys = [f"{e:g}" for e in etas_stable]
unstable_keys = [f"{e:g}" for e in etas_unstable]
rec.record("two_over_l", 2 / l)
rec.record("seeds", [])  # closed form and deterministic: no random numbers
rec.record("stable_keys", stable_keys)
rec.record("unstable_keys", unstable_keys)
rec.record("etas", {f"{e:g}": float(e) for e in runs})
rec.record("bound_min_rel_gap", bound_min_gap)
rec.record("slack_formula_max_rel_err", max(slack_err))
rec.record("closed_form_max_rel_err", max(closed_err))
rec.record("loss_monotone", monotone)
rec.record("loss_ratio", loss_ratio)
rec.record("rate_measured", rate_meas)
rec.record("rate_formula", rate_formula)
pd.DataFrame(rows).set_index("η")

# %% [markdown]
# ## The figures
#
# Each learning rate keeps its colour and marker on every page of the book (`plotting.eta_style`); here the stable ones
# ($\eta < 2/l$) are cool colours, the unstable ones warm.

# %% tags=["hide-input"]
fig, axes = figure(1, 2, height=3.6)
show = [etas_stable[1], etas_stable[-1], etas_unstable[0], etas_unstable[-1]]
for eta in show:
    w = runs[eta]["w"][:16]
    st = eta_style(eta)
    axes[0].plot(w[:, 1], w[:, 0], marker=st.marker, ms=4, lw=0.9, color=st.color)
axes[0].set_yscale("symlog", linthresh=1.0)
axes[0].set(xlabel="flat coordinate w₂ (λ = 1)", ylabel="sharp coordinate w₁ (symlog)", title="First 15 steps")
for eta in list(etas_stable) + list(etas_unstable):
    st = eta_style(eta)
    axes[1].plot(runs[eta]["loss"], color=st.color, lw=1.2, marker=st.marker, ms=4, markevery=6)
axes[1].set(yscale="log", xlabel="step", ylabel="L", title="Loss")
eta_legend(fig, list(etas_stable) + list(etas_unstable), loc="outside lower center", ncol=5)
plt.show()
n = rec.numbers
display(Markdown(
    f"**Figure 1.** GD on the talk's quadratic (eigenvalues {', '.join(f'{v:g}' for v in eigenvalues)}; $2/l$ = "
    f"{2 / l:g}). Left: the first 15 steps in the plane of the two eigenvectors (sharp axis on a symmetric-log scale) "
    "for two stable and two unstable learning rates: below $2/l$ GD slides into the minimum, above $2/\\lambda_1$ it "
    "zig-zags outward along the sharp axis while still converging along the flat one. Right: the loss of every run "
    "(log scale). Look for the split at $2/l$: the loss falls at every step for "
    + ", ".join(f"{k}" for k in stable_keys if n["loss_monotone"][k])
    + " and ends at "
    + ", ".join(f"{n['loss_ratio'][k]:.1e}" for k in stable_keys)
    + " of its start; for η = " + ", ".join(unstable_keys) + " it ends "
    + ", ".join(f"{n['loss_ratio'][k]:.3g}" for k in unstable_keys)
    + f" times its start after {steps} steps."))

# %% tags=["hide-input"]
fig, ax = figure(1, 1, height=3.0)
t = np.arange(steps + 1)
for eta in etas_unstable:
    st = eta_style(eta)
    ax.plot(t, np.abs(q.coords(runs[eta]["w"])[:, 0]), color=st.color, lw=1.5, marker=st.marker, ms=4, markevery=6)
    ax.plot(t, abs(1 - eta * lam1) ** t * abs(q.coords(np.asarray(w0))[0]), "--", color="k", lw=0.7)
ax.set(yscale="log", xlabel="step", ylabel="|w₁|", title=r"Sharp coordinate against $|1-\eta\lambda_1|^t$ (dashed)")
eta_legend(ax, etas_unstable, loc="upper left", ncol=2)
plt.show()
display(Markdown(
    "**Figure 2.** The sharp coordinate $|w_{1,t}|$ of the unstable runs against the prediction "
    "$|1-\\eta\\lambda_1|^t|w_{1,0}|$ (dashed). Look for each line lying on its dashed line: the growth rate per step "
    "measured by a fit is "
    + ", ".join(f"{n['rate_measured'][k]:.5f}" for k in unstable_keys)
    + " against " + ", ".join(f"{n['rate_formula'][k]:.5f}" for k in unstable_keys)
    + " from the formula (η = " + ", ".join(unstable_keys) + ")."))

# %% [markdown]
# ## Claims checked on these numbers

# %%
rec.report()
