"""The "Findings" box of the intro and the line that points to it from every page that discusses
sharpness values.

The finding: the author's public Lanczos (``lawrencewang94/jax_eigs`` ``spectral.py``, transcribed
in :mod:`instab_lib.experiments.author_lanczos`) returns λ₁ too low, with a top Ritz vector far from
the true top eigenvector. Its magnitudes are read from the numbers the ``author_lanczos`` page
recorded (:func:`lanczos_magnitudes`), never typed.
"""

from __future__ import annotations

import html
from typing import Any, Mapping

__all__ = ["SHARPNESS_PAGES", "FINDING_PAGE", "lanczos_magnitudes", "magnitudes_text", "findings_box_html",
           "crosslink_html"]

#: The page the finding comes from.
FINDING_PAGE = "author_lanczos"
#: The pages that discuss sharpness values measured on networks (λ₁ by Lanczos or the tracker, the
#: stability limit read off it, spectra, the preconditioned sharpness): each gets a line under its
#: verdict pointing to the Findings box. The DLN and descent-lemma pages (closed forms) and the
#: finding's own page are not among them.
SHARPNESS_PAGES = ("phases_of_training", "eigenvector_rotation", "instability_slices", "curvature_moments",
                   "progressive_flattening", "spectral_density", "effective_parameters", "goldilocks",
                   "rotation_predicts_generalization", "sgd_flattening", "cifar_generalization", "flatness_theory",
                   "depth_and_rotation", "clipped_ada")


def lanczos_magnitudes(numbers: Mapping[str, Any] | None) -> dict[str, float] | None:
    """From the ``author_lanczos`` page's numbers: how far below the true λ₁ the author's step lands
    (``low_min``, ``low_max``: 1 − author/true over the seeds), the |cosine| of its top Ritz vector
    with the true top eigenvector (``cos_min``, ``cos_max``) and the number of seeds. None when the
    numbers are missing."""
    try:
        ratios = [float(r) for r in numbers["mlp_ratio"]]  # type: ignore[index]
        cos = [float(c) for c in numbers["mlp_cos_author"]]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    if not ratios or not cos:
        return None
    return {"low_min": 1 - max(ratios), "low_max": 1 - min(ratios), "cos_min": min(cos), "cos_max": max(cos),
            "n_seeds": float(len(ratios))}


def magnitudes_text(m: Mapping[str, float] | None) -> str:
    """"λ₁ 13–38 % low, with a top Ritz vector of |cos| 0.34–0.88 to the true one (5 seeds)"."""
    if m is None:
        return "λ₁ too low (the author_lanczos page's numbers are missing from this build)"
    return (f"λ₁ {100 * m['low_min']:.0f}–{100 * m['low_max']:.0f} % low, with a top Ritz vector of |cos| "
            f"{m['cos_min']:.2f}–{m['cos_max']:.2f} to the true one ({m['n_seeds']:.0f} seeds of the fMNIST MLP)")


def findings_box_html(m: Mapping[str, float] | None) -> str:
    """The intro's Findings box (an admonition with the anchor ``findings``)."""
    page = f"notebooks/{FINDING_PAGE}.html"
    return (
        '<div class="admonition important findings" id="findings"><p class="admonition-title">Findings</p>'
        f"<p><strong>The author's public Lanczos underestimates the sharpness.</strong> Called as the author's "
        f"notebooks call it, the Lanczos routine of <code>lawrencewang94/jax_eigs</code> (<code>spectral.py</code>, "
        f"commit 8db90d3) returns {html.escape(magnitudes_text(m))}: its off-diagonal β is normalised by the norm "
        "before re-orthogonalisation, so every β ≤ 1, and a larger order does not help. Whether the papers' figures "
        "used this routine is not known; a sharpness near 2/η read with it would sit below the edge of stability, and "
        "eigenvector similarities measured with it need re-checking. The sharpness on this book's pages is computed "
        "with the companion's own eigensolvers (<code>instab_lib.curvature</code>), tested against dense Hessians. "
        f'<a href="{page}">The measurement</a>.</p></div>')


def crosslink_html(m: Mapping[str, float] | None, prefix: str = "../") -> str:
    """The line a page that discusses sharpness values gets under its verdict."""
    short = "too low" if m is None else f"{100 * m['low_min']:.0f}–{100 * m['low_max']:.0f} % low"
    return (f'<p class="sharpness-note">Sharpness values on this page come from the companion\'s eigensolvers, tested '
            f"against dense Hessians. The author's public Lanczos returns λ₁ {short} (see the <a href=\"{prefix}intro.html#findings\">Findings</a> "
            f'and <a href="{prefix}notebooks/{FINDING_PAGE}.html">the measurement</a>).</p>')
