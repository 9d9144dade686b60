# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Eigenvectors rotate during instabilities (A Fig 2)
#
# **Claim.** During an instability the sharpest Hessian eigenvectors rotate away from where they were, smoothly
# and monotonically; stable training (a reduced learning rate) stops and partly reverts the rotation.
#
# ```{admonition} Where this comes from
# :class: note
# - **Paper's caption** (A Fig 2): "During instabilities, the sharpest eigenvectors of the Hessian rotate away
#   smoothly and monotonically (Top), while stable training reverts these rotations (Bottom). We track the
#   similarity of the sharpest Hessian eigenvectors across epochs through three instabilities. Left: $L(\theta)$ and
#   $S(\theta)$. Top: similarities of the $k$-th eigenvectors (colored) and of subspaces formed by the top 3
#   eigenvectors (black) during instabilities. Bottom: similarity of subspaces formed by the top 3 eigenvectors to
#   the baseline (black) across various timings (colored) when $\eta$ reduction begins."
# - **Author's code** (`lawrencewang94/jax_eigs`, REFERENCE §2.4): the similarities: absolute cosine of the $k$-th
#   eigenvectors, and `dk_cos` for subspaces (principal angles, normalised Grassmann distance $d$, similarity
#   $\cos(d\pi/2)$; `instab_lib.rotation`); the fMNIST setting (REFERENCE §4.2).
# - **Our reconstruction**: "an instability" is a loss spike (`landscape.find_spikes`, as in `phases_of_training`);
#   the reference of the top row is each spike's last epoch before it starts; "the baseline" of the bottom row is
#   read as the run that keeps the large η, and the similarity plotted is that of the top-3 subspace to the
#   subspace just before the first spike (the reference epoch); the reduced learning rate and the timings are ours.
#   Data: the copy named below.
# ```

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from instab_lib import claims, landscape, rotation
from instab_lib.plotting import apply_style
from instab_lib.sweep import sweep

apply_style()

# %% tags=["parameters"]
limit_etas = [0.0125, 0.025, 0.05, 0.1]  # grid that brackets the stability limit (shared by the fMNIST pages)
limit_epochs = 300
limit_eval_every = 5
eta_factor = 3.0  # η = eta_factor × measured limit (1 significant digit), as in phases_of_training
epochs = 400  # the shared main run
small_factor = 0.3  # reduced η = small_factor × limit (1 significant digit): stable for the rest of training
n_spikes = 3  # instabilities in the top row (the caption's three)
after = 12  # epochs shown after each spike resolves
reduce_after = 30  # epochs each reduced run trains after its reduction
spike_rel = 0.02  # loss-spike definition, as in phases_of_training
spike_window = 10
min_spike_length = 3

# %%
rec = claims.Recorder("eigenvector_rotation")

# %%
shared = landscape.shared_run(limit_etas, eta_factor, epochs, limit_epochs=limit_epochs,
                              limit_eval_every=limit_eval_every)
limit, eta, run = shared.limit, shared.eta, shared.run
eta_small = shared.lr(small_factor)
shared.record(rec)
rec.record("eta_small", eta_small)
spikes = landscape.resolved_spikes(run.table, rel=spike_rel, window=spike_window,
                                   min_length=min_spike_length)[:n_spikes]
display(Markdown(
    f"{shared.describe()} Reduced η = {eta_small:g} ({eta_small / limit.estimate:.2f} × the limit). "
    f"Spikes used: {[(s.start, s.end) for s in spikes]}."))

# %% [markdown]
# ## Top row: similarity to the eigenvectors just before each instability
#
# For each spike, the reference is the top-3 eigenbasis at the epoch before the spike; we follow
# $|\cos(v_k(t), v_k(t_0))|$ for $k = 1, 2, 3$ and the top-3 subspace similarity until `after` epochs past its end.
# Eigenvectors come from the run's snapshots (top-3 Lanczos/LOBPCG pairs every epoch, relative residual ≤ 1e-3).
#
# At the edge of stability the parameters alternate between the two sides of a valley (period 2), and so does the
# Hessian: consecutive epochs look at two different points. We therefore read the rotation on epochs of the **same
# parity** as the reference ($t - t_0$ even, bold in the figure) and show the odd ones faintly (our choice; B's own
# analysis also works with even times).

# %%
def basis(t):
    return run.snapshot(int(t))["eigenvectors"].double()


top_rows, mono = [], []
for i, s in enumerate(spikes):
    R = basis(s.last_stable)
    for t in range(s.last_stable, min(s.resolved + after, epochs) + 1):
        V = basis(t)
        row = {"spike": i + 1, "epoch": t, "even": (t - s.last_stable) % 2 == 0,
               "subspace": rotation.subspace_similarity(R, V)}
        for k in range(3):
            row[f"cos_{k + 1}"] = rotation.abs_cosine(R[:, k], V[:, k])
        top_rows.append(row)
top = pd.DataFrame(top_rows)
per_spike = []
for i, s in enumerate(spikes):
    d = top[top.spike == i + 1].set_index("epoch")
    ev = d[d.even]
    inside = ev.loc[s.last_stable:s.end, "subspace"].to_numpy()
    # monotone: the largest rise of the same-parity subspace similarity inside the spike
    per_spike.append({"spike": i + 1, "epochs": f"{s.start}–{s.end}",
                      "min cos v₁": float(d.loc[s.last_stable:s.resolved, "cos_1"].min()),
                      "min cos v₂": float(d.loc[s.last_stable:s.resolved, "cos_2"].min()),
                      "min cos v₃": float(d.loc[s.last_stable:s.resolved, "cos_3"].min()),
                      "subspace at end of spike (same parity)": float(ev.loc[s.last_stable:s.end + 1, "subspace"].iloc[-1]),
                      "largest rise inside": float(np.max(np.diff(inside))) if len(inside) > 1 else 0.0,
                      "subspace after": float(d["subspace"].iloc[-1])})
per_spike = pd.DataFrame(per_spike).set_index("spike")
rec.record("n_spikes_found", len(spikes))
rec.record("min_cos_k", [float(per_spike[f"min cos v{c}"].max()) for c in "₁₂₃"])
rec.record("subspace_end_of_spike", [float(x) for x in per_spike["subspace at end of spike (same parity)"]])
rec.record("largest_rise_inside", [float(x) for x in per_spike["largest rise inside"]])
per_spike.round(3)

# %% [markdown]
# The same, epoch by epoch, for a stretch of the **stable** phase of equal length just before the edge of stability
# (a control: progressive sharpening also changes the eigenvectors, but slowly).

# %%
first_unstable = landscape.find_episodes(run.table)[0].start if landscape.find_episodes(run.table) else epochs
L = max(s.resolved - s.last_stable for s in spikes) if spikes else 5
t1 = max(first_unstable - 2, L)
ctrl = rotation.subspace_similarity(basis(t1 - L), basis(t1))
rec.record("stable_control_subspace", ctrl)
display(Markdown(f"Top-3 subspace similarity over the {L} stable epochs {t1 - L}–{t1}: **{ctrl:.3f}**."))

# %% [markdown]
# ## Bottom row: reducing η at several timings
#
# Runs identical to the main run up to a reduction epoch $t_r$, then at η = `eta_small` (stable) for `reduce_after`
# epochs; the reference is the top-3 subspace at the epoch before the first spike (the same in every run, since the
# runs coincide up to $t_r$). Black: the baseline that keeps η. Timings: the start, peak and end of the first spike
# and the end of the last spike shown.

# %%
t_ref = spikes[0].last_stable
timings = sorted({spikes[0].start, spikes[0].peak, spikes[0].resolved, spikes[-1].resolved})
total = max(timings) + reduce_after
base_red = landscape.mechanism_config(lr=eta, epochs=total, eval_every=1, k_top=3, reference_epoch=t_ref)
reduced = dict(zip(timings, sweep(base_red, {"lr_schedule": [{"kind": "step", "epochs": [t], "values": [eta_small]}
                                                              for t in timings]}, max_workers=2, threads_per_worker=1)))
R = basis(t_ref)
baseline = pd.Series({t: rotation.subspace_similarity(R, basis(t)) for t in range(t_ref, total + 1)})
rows = []
for t, r in reduced.items():
    d = r.table.set_index("epoch")["subspace_ref"]
    end = min(t + reduce_after, total)
    rows.append({"reduce at": t, "similarity at reduction": float(d.loc[t]),
                 "max similarity after": float(d.loc[t:end].max()),
                 f"similarity {reduce_after} epochs later": float(d.loc[end]),
                 "baseline then": float(baseline.loc[end]),
                 "max ηS/2 after": float((r.table.set_index("epoch").loc[t + 1:, "sharpness"] * eta_small / 2).max())})
red = pd.DataFrame(rows).set_index("reduce at")
rec.record("timings", timings)
rec.record("reduced_gain", [float(x) for x in red[f"similarity {reduce_after} epochs later"] - red["similarity at reduction"]])
rec.record("reduced_minus_baseline", [float(x) for x in red[f"similarity {reduce_after} epochs later"] - red["baseline then"]])
rec.record("reduced_stable", bool((red["max ηS/2 after"] < 1).all()))
rec.record("reduced_max_gain", [float(x) for x in red["max similarity after"] - red["similarity at reduction"]])
rec.record("early_reduced_final", [float(red.loc[t, f"similarity {reduce_after} epochs later"]) for t in timings
                                   if t <= spikes[0].resolved])
red.round(3)

# %% [markdown]
# Reductions inside the first instability bring the subspace back to (almost) where it was before it. A reduction
# after several instabilities recovers only part of the rotation, and the similarity drifts down again later in the
# stable phase (the last row): the rotations accumulated over several instabilities are not undone.

# %% [markdown]
# ## The figure
#
# Left: loss and sharpness of the main run with $2/\eta$ (dashed); the spikes used are shaded. Top right: one panel
# per spike, the similarity of the $k$-th eigenvectors (colours) and of the top-3 subspace (black) to the basis
# just before the spike (bold: same parity as the reference; faint: every epoch). Bottom right: top-3 subspace similarity to the basis before the first spike, for the
# baseline (black, η kept) and for η reduced at the marked epochs (colours).

# %% tags=["hide-input"]
fig = plt.figure(figsize=(14, 7.5))
gs = fig.add_gridspec(2, 1 + len(spikes), width_ratios=[1.4] + [1] * len(spikes))
axl = fig.add_subplot(gs[0, 0])
axs = fig.add_subplot(gs[1, 0], sharex=axl)
e = run.table["epoch"]
axl.plot(e, run.table["train_loss"], color="k")
axl.set(yscale="log", ylabel="training loss", title="L(θ) and S(θ)")
axs.plot(e, run.table["sharpness"], color="tab:blue")
axs.axhline(2 / eta, ls="--", color="tab:blue", lw=1)
axs.set(xlabel="epoch", ylabel="sharpness S", xlim=(0, min(epochs, spikes[-1].resolved + 40)))
for s in spikes:
    for a in (axl, axs):
        a.axvspan(s.start - 0.5, s.end + 0.5, color="tab:red", alpha=0.15, lw=0)
cols = ["tab:blue", "tab:orange", "tab:green"]
for i, s in enumerate(spikes):
    ax = fig.add_subplot(gs[0, 1 + i])
    d = top[top.spike == i + 1]
    ev = d[d.even]
    for k in range(3):
        ax.plot(d.epoch, d[f"cos_{k + 1}"], color=cols[k], lw=0.6, alpha=0.3)
        ax.plot(ev.epoch, ev[f"cos_{k + 1}"], color=cols[k], marker="o", ms=3, lw=1.5, label=f"$v_{k + 1}$")
    ax.plot(d.epoch, d.subspace, color="k", lw=0.6, alpha=0.3)
    ax.plot(ev.epoch, ev.subspace, color="k", lw=2.2, marker="o", ms=3, label="top-3 subspace")
    ax.axvspan(s.start - 0.5, s.end + 0.5, color="tab:red", alpha=0.15, lw=0)
    ax.set(ylim=(0, 1.02), title=f"instability {i + 1} (epochs {s.start}–{s.end})", xlabel="epoch")
    if i == 0:
        ax.set_ylabel("similarity to the epoch before the spike")
        fig.legend(*ax.get_legend_handles_labels(), loc="upper center", ncol=4, fontsize=9,
                   bbox_to_anchor=(0.62, 1.0))
axb = fig.add_subplot(gs[1, 1:])
axb.plot(baseline.index, baseline.values, color="k", lw=2, label=f"baseline (η = {eta:g} kept)")
rc = plt.cm.plasma(np.linspace(0.1, 0.85, len(reduced)))
for c, (t, r) in zip(rc, reduced.items()):
    d = r.table.set_index("epoch")["subspace_ref"].loc[t:]
    axb.plot(d.index, d.values, color=c, lw=1.5, label=f"η → {eta_small:g} at epoch {t}")
    axb.axvline(t, color=c, ls=":", lw=1)
axb.set(ylim=(0, 1.02), xlabel="epoch", ylabel=f"top-3 subspace similarity to epoch {t_ref}",
        title="Stable training after an η reduction")
axb.legend(fontsize=8, ncol=2)
fig.tight_layout(rect=(0, 0, 1, 0.95))
plt.show()

# %% [markdown]
# ## Claims checked on these numbers

# %%
rec.report()
