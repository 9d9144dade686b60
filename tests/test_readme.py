"""The README's library example runs as printed and says what it claims: a history with one row per
measurement and finite sharpness, threshold and ratio."""

from __future__ import annotations

import contextlib
import io
import re

from instab_lib.experiments import repo_root


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_readme_library_example_runs() -> None:
    blocks = _python_blocks((repo_root() / "README.md").read_text())
    assert len(blocks) == 1, "the README holds one Python example (the Monitor in a training loop)"
    namespace: dict[str, object] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    history = namespace["mon"].history  # type: ignore[attr-defined]
    assert list(history["step"]) == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    assert history["sharpness"].notna().all() and (history["sharpness"] > 0).all()
    assert (history["threshold"] - 2 / 0.5).abs().max() < 1e-12  # SGD at η = 0.5: 2/η
    # same-parity rotation: steps 0 and 5 have no earlier measurement of their parity, the rest do
    assert history["rotation"].iloc[:2].isna().all() and history["rotation"].iloc[2:].between(0, 1).all()
    assert list(history["rotation_lag"].iloc[2:]) == [10] * 7
    assert "sharpness" in out.getvalue()
