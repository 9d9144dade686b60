"""A Sphinx extension for the companion's HTML: each script of a page is included once.

With Sphinx 7.4, sphinx-thebe's and sphinx-togglebutton's inline configuration scripts are
added twice to every page; the second ``const THEBE_JS_URL = …`` is a SyntaxError in the
browser's console. This keeps the first copy of every script (same file, same body).
"""

from __future__ import annotations

from typing import Any


def _key(script: Any) -> tuple[str, str]:
    attrs = getattr(script, "attributes", {}) or {}
    return str(getattr(script, "filename", script) or ""), str(attrs.get("body", ""))


def _dedupe_scripts(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in scripts:
        if _key(script) not in seen:
            seen.add(_key(script))
            unique.append(script)
    context["script_files"] = unique


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
