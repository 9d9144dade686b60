# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The normalisation step in the author's public Lanczos solver
#
# **Claim.** In the public Lanczos routine of the first author's research code, one line divides the new
# residual by the norm it had *before* re-orthogonalisation, and only then takes $\beta$ as its norm. Every
# off-diagonal of the tridiagonal matrix is then at most 1, while the Lanczos vectors stay right. On a known
# spectrum and on the fMNIST MLP this returns eigenvalues that are too low, by an amount that does not shrink as
# the order grows; with that one step written the textbook way the same recurrence converges as usual.
#
# ```{admonition} Where this comes from
# :class: note
# - **Author's code** (`lawrencewang94/jax_eigs`, commit `8db90d3`, 2025-05-28, read for this page): `spectral.py`,
#   `lanczos_alg` (full re-orthogonalisation, start vector from `jax.random.normal`), called through
#   `callbacks.spectrumCB(n_eigs=20, n_evecs=10, ...)` as the notebook `notebooks/fmnist-sgd-EOS.ipynb` calls it
#   (order 20; the sharpness is the first of the Ritz values sorted downwards). The normalisation line is
#   present since the file's first commit (`1b1c356`, 2025-02-05). That notebook's stored output for full-batch GD
#   at η = 0.1 (1,000 images, 400 epochs) prints `sharp: 11.279600143432617`. The code is GPL-3; none of it is
#   copied here.
# - **Our reconstruction**: the NumPy transcription of both steps (`instab_lib.experiments.author_lanczos`, written for this
#   page and tested against `numpy.linalg.eigvalsh`), the diagonal example, the MLP runs (trained with
#   `instab_lib.experiments.train`, Hessian-vector products by `instab_lib.curvature`, the reference eigenvalues by
#   `instab_lib.curvature.lanczos` in float64), and every number below. JAX is not in the book's environment: the
#   author's own function was run on the same weights by `benchmarks/bench_author_solver.py` (results in
#   `benchmarks/RESULTS.md`), which also checks that the transcription reproduces it.
# - **Data**: Fashion-MNIST, the copy named below; first 1,000 training images.
#
# This is a measurement of public research code at one commit, which we are grateful to be able to read. It is
# not a statement about the papers: whether their figures used this routine is not known.
# ```

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display
from torch import nn

from instab_lib.book import claims
from instab_lib.curvature import HessianOperator, lanczos
from instab_lib.experiments import theory
from instab_lib.experiments import author_lanczos as al
from instab_lib.experiments import data as data_mod
from instab_lib.experiments import train as train_mod
from instab_lib.experiments.models import build_model
from instab_lib.experiments.plotting import apply_style, figure, progress

apply_style()

# %% tags=["parameters"]
diag_seed = 0  # the known spectrum and its start vector (instab_lib.experiments.author_lanczos.diagonal_example)
outliers = [20.0, 15.0, 10.0]  # eigenvalues standing out of the bulk
n_bulk = 197  # further eigenvalues, uniform in [-half_width, half_width]
half_width = 0.5
max_order = 60  # Lanczos steps; every order up to this is read from the leading block of T
author_order = 20  # the order spectrumCB(n_eigs=20) uses
n_starts_diag = 100  # further random start vectors on the diagonal example
seeds = [0, 1, 2, 3, 4]  # MLP initialisations (the benchmark's five)
n_train = 1000  # first training images
lr = 0.1  # full-batch GD
epochs = 200
ref_tol = 1e-6  # reference: instab_lib.curvature.lanczos(k=10) in float64
n_starts_mlp = 3  # further start vectors per seed at author_order
threads = 1

# %%
torch.set_num_threads(threads)
rec = claims.Recorder("author_lanczos")
orders = list(range(1, max_order + 1))

# %% [markdown]
# ## The recurrence, and the one line that differs
#
# Lanczos builds an orthonormal basis $v_1, v_2, \dots$ of the Krylov space of a symmetric $H$ (here the Hessian)
# and the tridiagonal matrix $T_k = V_k^\top H V_k$, whose eigenvalues (Ritz values) approximate the extreme
# eigenvalues of $H$. With full re-orthogonalisation, one step reads
#
# $$
# \begin{aligned}
# w &= H v_i - \beta_{i-1} v_{i-1}, \qquad \alpha_i = w^\top v_i, \qquad w \leftarrow w - \alpha_i v_i,
#   \qquad \rho_i = \lVert w\rVert,\\
# w &\leftarrow w - V_i V_i^\top w \quad\text{(re-orthogonalise against all previous vectors)},\\
# \text{textbook:}\quad \beta_i &= \lVert w\rVert, \qquad
# \text{author's code:}\quad \betã_i = \frac{\lVert w\rVert}{\rho_i}, \qquad v_{i+1} = w / \lVert w\rVert .
# \end{aligned}
# $$
#
# In the author's `lanczos_alg` the re-orthogonalised residual is divided by `unorthog_norm`, its norm before
# re-orthogonalisation, and $\beta$ is the norm of what remains. Re-orthogonalisation is a projection, which never
# lengthens a vector, so $\tilde\beta_i \le 1$ for every $i$. The new vector $v_{i+1}$ is a unit vector in the same
# direction either way, so the basis $V_k$ and the diagonal $\alpha$ are right; only the off-diagonal of $T$ changes.
# In exact arithmetic the residual before re-orthogonalisation still holds the part
# $(\beta_{i-1} - \tilde\beta_{i-1})\,v_{i-1}$ that the wrong $\tilde\beta_{i-1}$ failed to remove, so
#
# $$
# \tilde\beta_1 = 1, \qquad
# \tilde\beta_i = \frac{\beta_i}{\sqrt{\beta_i^2 + (\beta_{i-1} - \tilde\beta_{i-1})^2}} ,
# $$
#
# and the matrix whose eigenvalues are returned, $\tilde T_k$, is not $V_k^\top H V_k$. By Gershgorin's theorem every
# eigenvalue of $\tilde T_k$ lies within $2\max_i\tilde\beta_i \le 2$ of some $\alpha_i = v_i^\top H v_i$, the
# Rayleigh quotient of one Lanczos vector. So the returned top eigenvalue is at most $\max_i \alpha_i + 2$, however
# large the order, whereas the textbook Ritz value is the maximum of the Rayleigh quotient over the whole Krylov
# space, which tends to $\lambda_{\max}$.
#
# (A side remark on the same routine, as we read it: the test that would trigger a second re-orthogonalisation
# compares the norm of the residual that was *not* re-orthogonalised with itself, so it always sees a ratio of 1
# and the second pass does not run. One pass kept the basis orthonormal to about $10^{-5}$ in float32 on the MLP — the
# benchmark measures it — so this does not change the results below.)
#
# The transcription on this page (`instab_lib.experiments.author_lanczos.lanczos_tridiagonal`) implements both steps with the
# same start vector, the same re-orthogonalisation and the same subtraction of $\beta_{i-1}v_{i-1}$ (each with its own
# $\beta$); they differ in the one line only.

# %% [markdown]
# ## A known spectrum
#
# $H = \mathrm{diag}(20, 15, 10, \text{197 values uniform in } [-0.5, 0.5])$, start vector standard normal, both drawn
# from one fixed seed. Both recurrences run for all orders up to the maximum (the order-$m$ result is the leading
# $m \times m$ block of $T$, since each step only looks back).

# %% tags=["show-input"]
eig, v0 = al.diagonal_example(diag_seed, outliers=tuple(outliers), n_bulk=n_bulk, half_width=half_width)
mv_diag = lambda v: eig * v  # noqa: E731  (H = diag(eig))
diag_runs = {step: al.lanczos_tridiagonal(mv_diag, v0, max_order, step) for step in al.STEPS}  # "textbook", "author"

# %%
true_top = np.sort(eig)[::-1]
n_top = len(outliers)
diag_ritz = {step: np.array([np.pad(al.ritz_values(r, m)[:n_top], (0, max(0, n_top - m)), constant_values=np.nan)
                             for m in orders]) for step, r in diag_runs.items()}
t_run, a_run = diag_runs["textbook"], diag_runs["author"]
beta_pred = [1.0]
for i in range(1, len(t_run.beta)):
    beta_pred.append(t_run.beta[i] / np.hypot(t_run.beta[i], t_run.beta[i - 1] - beta_pred[-1]))
dense = np.linalg.eigvalsh(np.diag(eig))[::-1][:n_top]

rng = np.random.default_rng([diag_seed, 1])
start_top1 = np.array([al.ritz_values(al.lanczos_tridiagonal(mv_diag, rng.standard_normal(eig.size), author_order,
                                                             "author"))[0] for _ in range(n_starts_diag)])

ia = author_order - 1
rec.record("diag_true_top", true_top[:n_top])
rec.record("diag_eigvalsh_top", dense)
rec.record("diag_textbook_at_order", diag_ritz["textbook"][ia])
rec.record("diag_author_at_order", diag_ritz["author"][ia])
rec.record("diag_author_at_max_order", diag_ritz["author"][-1])
rec.record("diag_author_top1_spread_orders", float(np.ptp(diag_ritz["author"][ia:, 0])))
rec.record("diag_max_beta", {s: float(r.beta.max()) for s, r in diag_runs.items()})
rec.record("diag_same_basis", float(np.abs(np.abs(np.sum(t_run.V * a_run.V, axis=1)) - 1).max()))
rec.record("diag_same_alpha", float(np.abs(t_run.alpha - a_run.alpha).max()))
rec.record("diag_beta_formula_err", float(np.abs(np.array(beta_pred) - a_run.beta).max()))
rec.record("diag_gershgorin_gap", float(a_run.alpha.max() + 2 * a_run.beta.max() - diag_ritz["author"][-1][0]))
rec.record("diag_starts_top1", start_top1)
rec.record("author_order", author_order)
pd.DataFrame({"true": true_top[:n_top], "numpy.linalg.eigvalsh": dense,
              f"textbook, order {author_order}": diag_ritz["textbook"][ia],
              f"author's step, order {author_order}": diag_ritz["author"][ia],
              f"author's step, order {max_order}": diag_ritz["author"][-1]},
             index=pd.Index([f"λ{i + 1}" for i in range(n_top)], name="")).round(4)

# %% tags=["hide-input"]
fig, axes = figure(1, 2, height=3.4)
cols = ["#3b0f70", "#b5367a", "#fb8861"]  # the top three eigenvalues (not learning rates)
for j in range(n_top):
    axes[0].plot(orders, diag_ritz["textbook"][:, j], color=cols[j], lw=1.2)
    axes[0].plot(orders, diag_ritz["author"][:, j], color=cols[j], lw=1.8, ls="--")
    axes[0].axhline(true_top[j], color=cols[j], lw=0.6, ls=":")
axes[0].plot([], [], color="0.3", lw=1.2, label="textbook")
axes[0].plot([], [], color="0.3", lw=1.8, ls="--", label="author's step")
axes[0].axvline(author_order, color="0.5", lw=0.6)
axes[0].set(xlabel="order (Hessian-vector products)", ylabel="Ritz value", title="Top three Ritz values", ylim=(0, 22))
axes[0].legend(loc="lower right")
k = np.arange(1, max_order)
axes[1].semilogy(k, t_run.beta, color="tab:blue", lw=1.2, label="textbook $\\beta_i$")
axes[1].semilogy(k, a_run.beta, color="tab:red", lw=1.2, label="author's step $\\tilde\\beta_i$")
axes[1].semilogy(k, beta_pred, "o", color="tab:red", ms=2.5, label="closed form")
axes[1].axhline(1.0, color="k", lw=0.6, ls=":")
axes[1].set(xlabel="i", ylabel="off-diagonal of T", title="Off-diagonals")
axes[1].legend(loc="upper right")
plt.show()
dn = rec.numbers
display(Markdown(
    f"**Figure 1.** The known spectrum (eigenvalues {', '.join(f'{v:g}' for v in outliers)} and {n_bulk} in "
    f"[−{half_width:g}, {half_width:g}]). Left: the top three Ritz values against the order, textbook step (solid) and "
    "author's step (dashed), with the true values dotted. Look for the dashed lines settling below the dotted ones and "
    f"staying there: at order {author_order} the author's step gives "
    f"{', '.join(f'{v:.2f}' for v in dn['diag_author_at_order'])}, at order {max_order} "
    f"{', '.join(f'{v:.2f}' for v in dn['diag_author_at_max_order'])}, where the textbook step has "
    f"{', '.join(f'{v:.2f}' for v in dn['diag_textbook_at_order'])} by order {author_order}. Right: the off-diagonals, "
    f"$\\beta_i$ (textbook) and $\\tilde\\beta_i$ (author's step, at most {dn['diag_max_beta']['author']:.2f}); the "
    f"dots are the closed form above (largest difference {dn['diag_beta_formula_err']:.1e})."))

# %% [markdown]
# ## The fMNIST MLP at the benchmark's weights
#
# The MLP 784-32-32-32-10 (ReLU, PyTorch's default initialisation, 27,562 parameters) is trained on the first 1,000
# training images (standardised as everywhere in the companion) by full-batch GD at η = 0.1 for 200 epochs, once per
# seed — the weights the benchmark copies into the author's flax model. On each, in float64: the reference top-10
# eigenvalues by `instab_lib.curvature.lanczos` (relative residual ≤ 10⁻⁶), and both transcribed recurrences from one
# seeded start vector to order 60, each order read from the leading block. The author's step is also run from a few
# further start vectors at order 20.

# %%
ds = data_mod.load_dataset("fashion-mnist", n_train=n_train, n_test=0)
X, y = ds.X_train.double(), ds.y_train
ce = nn.CrossEntropyLoss()
rows, per_seed = [], {}
for seed in progress(seeds, desc="seeds"):
    cfg = train_mod.TrainConfig(n_train=n_train, n_test=0, lr=lr, epochs=epochs, target_train_acc=None,
                                eval_every=0, seed=seed, snapshot_epochs=(epochs,))
    run = train_mod.train(cfg, progress=False, num_threads=threads)
    model = build_model("mlp", seed=seed).double()
    torch.nn.utils.vector_to_parameters(run.snapshot(epochs)["theta"].double(), model.parameters())
    op = HessianOperator(model, ce, (X, y))
    ref = lanczos(op, k=10, tol=ref_tol, seed=seed)
    lam = ref.eigenvalues.numpy()
    mv = lambda v: op.matvec(torch.from_numpy(v)).numpy()  # noqa: E731
    start = np.random.default_rng(seed).standard_normal(op.dim)
    runs = {step: al.lanczos_tridiagonal(mv, start, max_order, step) for step in al.STEPS}
    ritz = {step: {m: al.ritz_values(r, m) for m in range(10, max_order + 1)} for step, r in runs.items()}
    # the author's step's top Ritz vector (what spectrumCB returns as the top eigenvector) against the true one
    Ta = al.tridiagonal(runs["author"].alpha[:author_order], runs["author"].beta[: author_order - 1])
    x = np.linalg.eigh(Ta)[1][:, -1] @ runs["author"].V[:author_order]
    cos_author = abs(float(x @ ref.eigenvectors[:, 0].numpy())) / np.linalg.norm(x)
    extra = [al.ritz_values(al.lanczos_tridiagonal(mv, np.random.default_rng([seed, j + 1]).standard_normal(op.dim),
                                                   author_order, "author"))[0] for j in range(n_starts_mlp)]
    err = lambda th: np.abs(th[:10] - lam) / np.abs(lam)  # noqa: E731
    per_seed[seed] = {
        "lam": lam, "ref_resid": float(ref.residuals.max() / np.abs(lam).max()), "ref_hvps": int(ref.n_matvec),
        "author_top10": ritz["author"][author_order][:10], "textbook_top10": ritz["textbook"][author_order][:10],
        "author_err_by_order": {m: err(ritz["author"][m]) for m in ritz["author"]},
        "textbook_err_by_order": {m: err(ritz["textbook"][m]) for m in ritz["textbook"]},
        "ratio": float(ritz["author"][author_order][0] / lam[0]),
        "ratio_starts": [float(ritz["author"][author_order][0] / lam[0])] + [float(e / lam[0]) for e in extra],
        "max_beta": float(runs["author"].beta.max()), "max_alpha": float(runs["author"].alpha.max()),
        "same_basis": float(np.abs(np.abs(np.sum(runs["author"].V * runs["textbook"].V, axis=1)) - 1).max()),
        "cos_author": cos_author, "train_loss": float(run.final()["train_loss"]),
    }
    rows.append({"seed": seed, "train loss": per_seed[seed]["train_loss"], "true λ₁": lam[0],
                 f"author's step λ₁ (order {author_order})": ritz["author"][author_order][0],
                 "ratio": per_seed[seed]["ratio"],
                 f"top-10 max rel. error (order {author_order})": err(ritz["author"][author_order]).max(),
                 f"textbook λ₁ rel. error (order {author_order})": err(ritz["textbook"][author_order])[0],
                 "|cos(top Ritz vector, v₁)|, author's step": cos_author,
                 "max αᵢ + 2": per_seed[seed]["max_alpha"] + 2, "HVPs of the reference": ref.n_matvec})
rec.record("data_source", ds.source)
display(Markdown(f"Data: {ds.source}. Reference: `lanczos(k=10, tol={ref_tol:g})` in float64, largest relative "
                 f"residual {max(p['ref_resid'] for p in per_seed.values()):.1e}."))
pd.DataFrame(rows).set_index("seed").round(4)

# %%
ratios = np.array([per_seed[s]["ratio"] for s in seeds])
med, lo, hi = (float(v[0]) for v in theory.median_band(ratios, level=0.8))
all_starts = np.array([r for s in seeds for r in per_seed[s]["ratio_starts"]])
sweep = range(10, max_order + 1, 10)
rec.record("seeds", list(seeds))
rec.record("two_over_eta", 2 / lr)
rec.record("mlp_true_top1", [float(per_seed[s]["lam"][0]) for s in seeds])
rec.record("mlp_author_top1", [float(per_seed[s]["author_top10"][0]) for s in seeds])
rec.record("mlp_ratio", ratios)
rec.record("mlp_ratio_median", med)
rec.record("mlp_ratio_band80", [lo, hi])  # bootstrap 10 % and 90 % quantiles of the median
rec.record("mlp_ratio_all_starts", all_starts)
rec.record("mlp_author_top10_maxerr", [float(per_seed[s]["author_err_by_order"][author_order].max()) for s in seeds])
rec.record("mlp_author_top1_err_by_order",
           {str(m): [float(per_seed[s]["author_err_by_order"][m][0]) for s in seeds] for m in sweep})
rec.record("mlp_textbook_top1_err_by_order",
           {str(m): [float(per_seed[s]["textbook_err_by_order"][m][0]) for s in seeds] for m in sweep})
rec.record("mlp_textbook_top10_err_by_order",
           {str(m): [float(per_seed[s]["textbook_err_by_order"][m].max()) for s in seeds] for m in sweep})
rec.record("mlp_max_beta", max(per_seed[s]["max_beta"] for s in seeds))
rec.record("mlp_same_basis", max(per_seed[s]["same_basis"] for s in seeds))
rec.record("mlp_ref_resid", max(per_seed[s]["ref_resid"] for s in seeds))
rec.record("mlp_cos_author", [per_seed[s]["cos_author"] for s in seeds])
display(Markdown(
    f"Ratio of the author's step (order {author_order}) to the true λ₁ over {len(seeds)} seeds: median **{med:.3f}**, "
    f"bootstrap 80 % band of the median [{lo:.3f}, {hi:.3f}] (so {hi:.3f} is a 90 % upper bound; "
    f"`theory.median_band`), range {ratios.min():.3f}–{ratios.max():.3f}; over all {len(all_starts)} (seed, start) "
    f"pairs {all_starts.min():.3f}–{all_starts.max():.3f}."))

# %% tags=["hide-input"]
fig, axes = figure(1, 2, height=3.4)
colors = plt.cm.viridis(np.linspace(0.1, 0.85, len(seeds)))  # seeds (not learning rates)
j = np.arange(1, 11)
for s, c in zip(seeds, colors):
    p = per_seed[s]
    axes[0].plot(j, p["author_top10"] / p["lam"], "o-", color=c, ms=3, lw=1, label=f"seed {s}")
    ms = sorted(p["author_err_by_order"])
    axes[1].semilogy(ms, [max(p["textbook_err_by_order"][m][0], 1e-17) for m in ms], color=c, lw=1)
    axes[1].semilogy(ms, [p["author_err_by_order"][m][0] for m in ms], color=c, lw=1.6, ls="--")
axes[0].axhline(1.0, color="k", lw=0.6, ls=":")
top_ratio = max(float(np.max(per_seed[s]["author_top10"] / per_seed[s]["lam"])) for s in seeds)
axes[0].set(xlabel="eigenvalue index j", ylabel="θ̃_j / λ_j", ylim=(0, max(1.1, 1.05 * top_ratio)),
            title=f"Author's step, order {author_order}")
axes[0].legend(loc="lower right", ncol=2)
axes[1].plot([], [], color="0.3", lw=1, label="textbook")
axes[1].plot([], [], color="0.3", lw=1.6, ls="--", label="author's step")
axes[1].set(xlabel="order", ylabel="|θ₁ − λ₁| / λ₁", title="Error of the top eigenvalue")
axes[1].legend(loc="center right")
plt.show()
display(Markdown(
    f"**Figure 2.** The fMNIST MLP after {epochs} epochs of full-batch GD at η = {lr:g}, {len(seeds)} seeds. Left: the "
    f"top ten eigenvalues of the author's step at order {author_order} divided by the true ones. Look for the largest "
    f"falling short (top one at {ratios.min():.2f}–{ratios.max():.2f} of the truth) while the lower ones of the ten "
    f"come out too high: a spectrum squeezed towards the middle (largest relative error of the ten "
    f"{max(rec.numbers['mlp_author_top10_maxerr']):.0%}). Right: the relative error of the top eigenvalue against the "
    f"order (one colour per seed): the textbook step (solid) falls to rounding level, the author's step (dashed) stays "
    "where it is."))

# %% tags=["hide-input"]
fig, axes = figure(1, 2, height=3.2)
axes[0].hist(start_top1, bins=20, color="tab:red", alpha=0.7)
axes[0].axvline(true_top[0], color="k", lw=1, ls=":", label=f"λ₁ = {true_top[0]:g}")
axes[0].set(xlabel=f"top Ritz value, order {author_order}", ylabel="start vectors", title="Known spectrum")
axes[0].legend(loc="upper left")
for i, s in enumerate(seeds):
    r = per_seed[s]["ratio_starts"]
    axes[1].plot(np.full(len(r), i), r, "o", color=colors[i], ms=5, alpha=0.8)
axes[1].axhspan(lo, hi, color="tab:red", alpha=0.15, label="80 % band of the median")
axes[1].axhline(med, color="tab:red", lw=1, label=f"median {med:.2f}")
axes[1].axhline(1.0, color="k", lw=0.6, ls=":")
axes[1].set(xticks=range(len(seeds)), xticklabels=[str(s) for s in seeds], xlabel="seed", ylim=(0, 1.1),
            ylabel="θ̃₁ / λ₁", title="fMNIST MLP")
axes[1].legend(loc="lower right")
plt.show()
display(Markdown(
    f"**Figure 3.** The author's step at order {author_order} from other start vectors. Left: {n_starts_diag} random "
    f"start vectors on the known spectrum: the top value ranges from {start_top1.min():.2f} to {start_top1.max():.2f}, "
    f"always below λ₁ = {true_top[0]:g}. Right: on the MLP, every (seed, start vector) pair (the first of each seed is "
    f"its own start): ratios {all_starts.min():.2f}–{all_starts.max():.2f}, median over seeds {med:.2f} with its "
    "80 % band. Look for the shortfall moving with the start vector but never vanishing."))

# %% [markdown]
# The author's own function, run by `benchmarks/bench_author_solver.py` in a separate JAX environment on these same
# weights (the two losses agree to 6·10⁻⁸), gives the same picture from its own start vectors: see the table in
# `benchmarks/RESULTS.md` ("Author's solver"). There the transcription, started from the author's start vector with
# the author's Hessian-vector product, reproduces the author's tridiagonal matrix to float32 rounding, and with the
# normalisation line deleted the author's function converges like the reference.
#
# ## What this may mean when reading sharpness values produced by that code

# %%
true_med = float(np.median(rec.numbers["mlp_true_top1"]))
auth_med = float(np.median(rec.numbers["mlp_author_top1"]))
display(Markdown(f"""
- At this commit, a sharpness printed by `spectrumCB` or `lanczos_alg` is the top eigenvalue of $\\tilde T$, not a
  Ritz value of the Hessian. It is at most the largest Rayleigh quotient of one Lanczos vector plus 2, and on this MLP
  it came out {1 - ratios.max():.0%}–{1 - ratios.min():.0%} low (median ratio {med:.2f} over {len(seeds)} seeds; the
  shortfall varies with the start vector). It does not improve with a larger order, so increasing `n_eigs` would not
  reveal the problem by a lack of convergence.
- Full-batch GD at η = {lr:g} is expected to sit at the edge of stability, with λ₁ at or above 2/η = {2 / lr:g}: here the
  true median λ₁ after {epochs} epochs is {true_med:.1f}, while the author's step gives {auth_med:.1f}. The author's
  stored notebook output, `sharp: 11.28` for full-batch GD at η = 0.1, well below 2/η = 20, is consistent with an
  underestimate of this kind. It is not a proof of one: that run differs from ours (400 epochs, its own data loading
  and initialisation), and we have not re-run it.
- The ratio is not a constant, so it cannot be divided out, and comparisons between runs (sharper or flatter) made with
  this routine may not keep their order when the differences are a few tens of percent. Further down the top ten the
  values are off by more, some too high (up to {max(rec.numbers['mlp_author_top10_maxerr']):.0%} relative error
  here), which matters for quantities built from several eigenvalues.
- The eigenvectors that `spectrumCB` returns are the Ritz vectors of $\\tilde T$ in the (correct) Lanczos basis; on this
  MLP the top one has |cosine| {min(rec.numbers['mlp_cos_author']):.2f}–{max(rec.numbers['mlp_cos_author']):.2f} with
  the true top eigenvector. Eigenvector similarities and rotations measured with it would need re-checking before being
  read as the Hessian's.
- Whether the figures of the papers used this routine is not known. The fix, if it is wanted, is to take β as the norm of
  the re-orthogonalised residual without dividing by the earlier norm.
"""))

# %% [markdown]
# ## Claims checked on these numbers

# %%
rec.report()
