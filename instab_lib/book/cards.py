r"""A notebook's card (``notebooks/<id>.yaml``) and its source: what the claims and the runner both read.

* :func:`notebook_ids`, :func:`notebooks_dir`, :func:`load_card` (validated: every claim's
  shape, :func:`validate_claim`), :func:`read_notebook`, :func:`declared_parameters` (the
  cell tagged ``parameters``);
* the card's claims: :data:`KINDS`, :func:`claim_form`, :func:`validate_claim` (their
  evaluation, outcome and verdict are :mod:`instab_lib.book.verdicts`);
* the card's parameter specs: :func:`check_parameter`, :func:`check_parameters`,
  :func:`check_constraints`, which ``instab run`` and the papermill runner
  (:mod:`instab_lib.book.notebooks`) call before a kernel starts.

A parameter spec (one entry of a card's ``parameters:``)::

    epochs: {type: int, min: 20}
    limit_etas: {type: list, items: float, min: 0, exclusive_min: true, min_len: 2}
    executor: {type: str, nullable: true}
    slq_order: {type: int, min: 5, doc: "Lanczos steps per SLQ probe"}

``type`` is one of ``int``, ``float`` (an int is accepted), ``bool``, ``str``, ``list``
(with ``items``: the element type) or ``dict``; ``min``/``max`` bound numbers (elements
of a list), ``exclusive_min`` makes ``min`` strict, ``choices`` lists allowed values,
``min_len``/``max_len`` bound a list's length, ``unique`` forbids repeated elements and
``nullable`` admits ``None``. ``doc`` says what the parameter is; a value its spec refuses is
reported with it (``batch_sizes[1] must be ≤ 1000, got 2000 (a batch size above 1,000 exceeds
the training subset)``).

A parameter named ``device`` (:data:`DEVICE_PARAMETER`) is where a notebook runs: besides its
spec, ``cuda`` or ``cuda:<i>`` is refused on a machine where ``torch.cuda.is_available()`` is
False (or that has no GPU ``i``), so a run asked for on a GPU fails in one line before a kernel
starts instead of in the notebook's first training cell; ``cpu`` and ``auto`` (a GPU when there
is one) are always accepted.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from ..experiments import repo_root
from ..validation import _is_number

__all__ = ["NotebookError", "notebooks_dir", "notebook_ids", "load_card", "read_notebook", "declared_parameters",
           "KINDS", "SOURCED_KINDS", "HEADED_KINDS", "claim_form", "validate_claim", "PARAMETER_TYPES",
           "DEVICE_PARAMETER", "check_parameter", "check_parameters", "check_constraints"]


class NotebookError(RuntimeError):
    """A user-facing failure with a one-line reason (unknown notebook, bad preset, failed cell)."""


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def notebook_ids() -> list[str]:
    """Every notebook with both a ``.py`` source and a ``.yaml`` card, sorted."""
    d = notebooks_dir()
    return sorted(p.stem for p in d.glob("*.yaml") if (d / f"{p.stem}.py").exists())


def _check_id(notebook_id: str) -> None:
    known = notebook_ids()
    if notebook_id not in known:
        raise NotebookError(f"unknown notebook {notebook_id!r}; known: {', '.join(known)}")


def load_card(notebook_id: str) -> dict[str, Any]:
    """The notebook's card (``notebooks/<id>.yaml``) as a dict."""
    _check_id(notebook_id)
    card = yaml.safe_load((notebooks_dir() / f"{notebook_id}.yaml").read_text()) or {}
    card.setdefault("presets", {}).setdefault("default", {})
    card.setdefault("claims", [])
    for claim in card["claims"]:
        if None in claim:  # an unquoted `null:` key is YAML's null; cards quote it, but accept both
            claim["null"] = claim.pop(None)
        try:
            validate_claim(claim)
        except (ValueError, SyntaxError) as exc:
            raise NotebookError(f"{notebook_id}.yaml: {exc}") from None
    return card


def read_notebook(notebook_id: str):
    """The notebook as an ``nbformat`` node, read from its percent-format source."""
    import jupytext

    _check_id(notebook_id)
    nb = jupytext.read(notebooks_dir() / f"{notebook_id}.py")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.setdefault("language_info", {"name": "python"})
    return nb


def declared_parameters(notebook_id: str) -> dict[str, Any]:
    """Names and default values of the cell tagged ``parameters`` (plain literal assignments)."""
    nb = read_notebook(notebook_id)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise NotebookError(f"{notebook_id}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    params: dict[str, Any] = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            params[node.targets[0].id] = ast.literal_eval(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            params[node.target.id] = ast.literal_eval(node.value)
        else:
            raise NotebookError(f"{notebook_id}: the parameters cell may only hold literal assignments")
    return params


# --------------------------------------------------------------------------- the card's claims
#: The kinds of claim (issue 19): a statement of the papers, our reading of one, beyond the papers, an
#: illustration true by construction, an identity of the code, a precondition of the experiment, a finding
#: about third-party code.
KINDS = ("paper", "reading", "beyond", "illustration", "identity", "precondition", "finding")
#: Kinds that get a verdict and must say where they come from (``source``).
SOURCED_KINDS = frozenset({"paper", "reading", "beyond", "finding"})
#: Kinds that name the heading of the paper statement they test or read (``paper``).
HEADED_KINDS = frozenset({"paper", "reading"})


def claim_form(claim: Mapping[str, Any]) -> str:
    """``"interval"`` (``above``/``below``) or ``"expression"`` (``check``); raises on a claim
    that declares neither or both."""
    has_side = ("above" in claim) + ("below" in claim)
    if has_side > 1 or (has_side and "check" in claim):
        raise ValueError(f"claim {claim.get('id')!r}: give one of above, below or check")
    if has_side:
        return "interval"
    if "check" not in claim:
        raise ValueError(f"claim {claim.get('id')!r}: needs above, below or check")
    return "expression"


def validate_claim(claim: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` with a one-line reason for a malformed card claim."""
    cid = claim.get("id")
    for key in ("id", "text", "kind", "value", "null"):
        if key not in claim:
            raise ValueError(f"claim {cid!r} lacks {key!r}")
    if "status" in claim:
        raise ValueError(f"claim {cid!r}: 'status' is gone; the kind decides how a claim is shown and scored")
    _validate_kind(claim)
    form = claim_form(claim)
    if "contradicts" in claim and (form != "expression" or claim["kind"] not in SOURCED_KINDS):
        raise ValueError(f"claim {cid!r}: contradicts is for scored claims of the expression form (check:); the "
                         "interval form is contradicted when its interval excludes the null on the other side")
    exprs = [claim["value"]] + ([claim["check"]] if form == "expression" else []) \
        + [claim[k] for k in ("margin", "contradicts") if k in claim]
    for e in exprs:
        compile(str(e), f"<claim {cid}>", "eval")
    if form == "interval":
        t = claim.get("above", claim.get("below"))
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            raise ValueError(f"claim {cid!r}: the threshold of above/below must be a number, got {t!r}")


def _validate_kind(claim: Mapping[str, Any]) -> None:
    """The kind, its source and heading, and ``test_if`` with its ``test_reason``."""
    cid, kind = claim.get("id"), claim["kind"]
    if kind not in KINDS:
        raise ValueError(f"claim {cid!r}: kind {kind!r} not one of {', '.join(KINDS)}")
    source = claim.get("source")
    if kind in SOURCED_KINDS and not (isinstance(source, str) and source.strip()):
        raise ValueError(f"claim {cid!r}: a {kind} claim needs a non-empty source (where the statement comes from)")
    if kind in HEADED_KINDS and not claim.get("paper"):
        raise ValueError(f"claim {cid!r}: a {kind} claim names its heading in book/paper_claims.yml (paper: <key>)")
    if ("test_if" in claim) != ("test_reason" in claim):
        raise ValueError(f"claim {cid!r}: test_if and test_reason come together")
    if "test_if" in claim:
        reason = claim["test_reason"]
        if not (isinstance(reason, str) and reason.strip()):
            raise ValueError(f"claim {cid!r}: test_reason must say in words why the setting cannot test the claim")
        compile(str(claim["test_if"]), f"<claim {cid} test_if>", "eval")


# --------------------------------------------------------------------------- card parameters
PARAMETER_TYPES = ("int", "float", "bool", "str", "list", "dict")
_SPEC_KEYS = {"type", "items", "min", "max", "exclusive_min", "choices", "min_len", "max_len", "unique",
              "nullable", "doc"}


def _check_scalar(name: str, v: Any, kind: str, spec: Mapping[str, Any]) -> None:
    if kind == "int":
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    elif kind == "float":
        if not _is_number(v) or not math.isfinite(float(v)):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    elif kind == "bool":
        if not isinstance(v, (bool, np.bool_)):
            raise ValueError(f"{name} must be true or false, got {v!r}")
    elif kind == "str":
        if not isinstance(v, str):
            raise ValueError(f"{name} must be a string, got {v!r}")
    elif kind == "dict":
        if not isinstance(v, Mapping):
            raise ValueError(f"{name} must be a mapping, got {v!r}")
    else:
        raise ValueError(f"unknown parameter type {kind!r} for {name} (known: {', '.join(PARAMETER_TYPES)})")
    if kind in ("int", "float"):
        if "min" in spec:
            lo = spec["min"]
            if (v <= lo) if spec.get("exclusive_min") else (v < lo):
                raise ValueError(f"{name} must be {'>' if spec.get('exclusive_min') else '≥'} {lo}, got {v!r}")
        if "max" in spec and v > spec["max"]:
            raise ValueError(f"{name} must be ≤ {spec['max']}, got {v!r}")
    if "choices" in spec and v not in spec["choices"]:
        raise ValueError(f"{name} must be one of {spec['choices']}, got {v!r}")


def check_parameter(name: str, value: Any, spec: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` (one line) unless ``value`` satisfies the card's ``spec`` (and, for
    :data:`DEVICE_PARAMETER`, names a device this machine has); the spec's ``doc`` follows the
    reason."""
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise ValueError(f"parameter {name}: unknown spec key(s) {sorted(unknown)}")
    try:
        _check_value(name, value, spec)
        if name == DEVICE_PARAMETER:
            _check_device(name, value, spec)
    except ValueError as exc:
        doc = spec.get("doc")
        raise ValueError(f"{exc} ({doc})" if doc else str(exc)) from None


#: The parameter that says where a notebook runs: ``cuda[:i]`` needs a GPU on this machine.
DEVICE_PARAMETER = "device"
_CUDA = re.compile(r"cuda(?::(\d+))?")


def _check_device(name: str, value: Any, spec: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` (one line) when ``value`` asks for a GPU that this machine lacks;
    ``torch`` is imported only then."""
    m = _CUDA.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        return  # cpu, auto: the spec decides
    import torch

    if not torch.cuda.is_available():
        others = [str(c) for c in spec.get("choices", ("cpu", "auto")) if not _CUDA.fullmatch(str(c))]
        use = " or ".join(f"{c} (a GPU when there is one)" if c == "auto" else c for c in others)
        raise ValueError(f"{name} {value!r} asked for, but CUDA is not available here (torch.cuda.is_available() "
                         f"is False){'; use ' + use if use else ''}")
    index, count = int(m.group(1) or 0), torch.cuda.device_count()
    if index >= count:
        raise ValueError(f"{name} {value!r} asked for, but this machine has {count} CUDA device(s)")


def _check_value(name: str, value: Any, spec: Mapping[str, Any]) -> None:
    if value is None:
        if spec.get("nullable"):
            return
        raise ValueError(f"{name} must not be None")
    kind = spec.get("type")
    if kind == "list":
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list, got {value!r}")
        if len(value) < spec.get("min_len", 0):
            raise ValueError(f"{name} must hold at least {spec['min_len']} value(s), got {list(value)!r}")
        if "max_len" in spec and len(value) > spec["max_len"]:
            raise ValueError(f"{name} must hold at most {spec['max_len']} value(s), got {list(value)!r}")
        if spec.get("unique") and len(set(map(repr, value))) != len(value):
            raise ValueError(f"{name} must not repeat a value, got {list(value)!r}")
        item = spec.get("items")
        if item:
            sub = {k: spec[k] for k in ("min", "max", "exclusive_min", "choices") if k in spec}
            for i, v in enumerate(value):
                _check_scalar(f"{name}[{i}]", v, item, sub)
        return
    _check_scalar(name, value, kind, spec)


def check_parameters(specs: Mapping[str, Mapping[str, Any]], values: Mapping[str, Any], where: str = "") -> None:
    """Check every parameter of ``values`` that has a spec; raise ``ValueError`` with
    ``"<where>: <reason>"`` on the first bad one."""
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            continue
        try:
            check_parameter(name, value, spec)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}" if where else str(exc)) from None


_SAFE = {"len": len, "min": min, "max": max, "abs": abs, "all": all, "any": any, "sorted": sorted, "set": set,
         "sum": sum, "int": int, "float": float, "isinstance": isinstance, "list": list, "tuple": tuple}


def check_constraints(constraints: Sequence[Mapping[str, str]], values: Mapping[str, Any], where: str = "") -> None:
    """Cross-parameter conditions of a card (``constraints:``, each ``{check: <expression over
    the parameters>, message: <reason>}``): raise ``ValueError("<where>: <message> (<values>)")``
    for the first that is false."""
    for c in constraints:
        expr = c["check"]
        names = {k: values[k] for k in values}
        try:
            ok = bool(eval(compile(expr, "<constraint>", "eval"), {"__builtins__": _SAFE}, names))  # noqa: S307
        except Exception as exc:  # noqa: BLE001 - a condition that cannot be evaluated is not met
            ok, why = False, f"{type(exc).__name__}: {exc}"
        else:
            why = ""
        if not ok:
            used = {k: v for k, v in values.items() if k in expr}
            detail = ", ".join(f"{k}={v!r}" for k, v in used.items())
            msg = f"{c.get('message', expr)} ({detail}{'; ' + why if why else ''})"
            raise ValueError(f"{where}: {msg}" if where else msg)
