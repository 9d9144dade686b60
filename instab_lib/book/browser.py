"""Open built pages in headless Chromium and report what a reader would see wrong.

:class:`Browser` drives one headless Chromium over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: JSON messages on file descriptors 3 and 4, no port, no extra
package). :func:`serve` serves a folder on ``127.0.0.1`` (as the forge's static pages would),
and :meth:`Browser.check` opens one page, waits for MathJax and the images, and returns a
:class:`PageReport` with

* ``console_errors`` — console errors, uncaught exceptions and failed loads;
* ``external_requests`` — every request for anything but the local server (name resolution
  is switched off, so none of them leaves the machine);
* ``broken_images`` — images that did not load;
* ``raw_tex`` — TeX left untypeset in prose or in cell outputs (``$S_0$``, ``\\lambda``);
* ``pipe_tables`` — Markdown tables left as pipe text (``|---|``);
* ``emoji`` — characters that need an emoji font to be read.

The page's own text (``text``) lets callers check what a page must say (the provenance box).
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

__all__ = ["find_chromium", "serve", "Browser", "PageReport", "CHROMIUM_FLAGS", "BrowserError"]

#: Headless flags: no GPU, no sandbox (root in CI), nothing in the background, and no name
#: resolution at all, so a request for another host fails on the machine instead of leaving it.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--window-size=1400,1000"]

_LOCAL_SCHEMES = ("data:", "blob:", "about:", "chrome:", "devtools:", "chrome-extension:")


class BrowserError(RuntimeError):
    """Chromium did not start, answer or load a page in time."""


def find_chromium() -> str | None:
    """``$INSTAB_CHROMIUM``, else the first of chromium, chromium-browser, google-chrome on PATH."""
    env = os.environ.get("INSTAB_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    return None


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on ``http://127.0.0.1:<free port>/`` in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class PageReport:
    """What :meth:`Browser.check` found on one page."""

    url: str
    title: str = ""
    text: str = ""
    console_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    n_images: int = 0
    n_math: int = 0
    raw_tex: list[str] = field(default_factory=list)
    pipe_tables: list[str] = field(default_factory=list)
    emoji: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """One line per problem a reader would see (empty: the page is fine)."""
        out = [f"console: {e}" for e in self.console_errors]
        out += [f"request leaves the machine: {u}" for u in self.external_requests]
        out += [f"image did not load: {s}" for s in self.broken_images]
        out += [f"raw TeX: {s!r}" for s in self.raw_tex]
        out += [f"Markdown table as pipe text: {s!r}" for s in self.pipe_tables]
        out += [f"needs an emoji font: {s!r}" for s in self.emoji]
        return out


# The probe runs in the page once it has loaded: it waits for MathJax and every image, then
# collects the reader-visible text. Code cells' *input* and inline code literals are skipped
# (code may hold dollars and backslashes); outputs, prose and tables are checked.
_PROBE = r"""
(async () => {
  for (const img of document.images) { img.loading = "eager"; }
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  await Promise.all([...document.images].map(i => i.complete ? null :
      new Promise(r => { i.addEventListener("load", r); i.addEventListener("error", r); setTimeout(r, 10000); })));
  const skip = el => el.closest("script, style, noscript, mjx-container, .cell_input, code.literal, "
                                + ".MathJax, .mathjax_preview, textarea, kbd")
                     || (el.closest(".highlight") && !el.closest(".cell_output"));
  const root = document.querySelector("main") || document.body;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const chunks = [];
  let node;
  while ((node = walker.nextNode())) {
    const el = node.parentElement;
    if (el && !skip(el) && node.nodeValue.trim()) { chunks.push(node.nodeValue); }
  }
  // block elements' text with their line breaks (a pipe table typed into a paragraph or printed)
  const blocks = [...root.querySelectorAll("p, li, td, pre, div.output")].filter(e => !skip(e))
                   .map(e => e.innerText);
  return JSON.stringify({
    title: document.title,
    text: root.innerText,
    checked: chunks.join("\n"),
    blocks: blocks,
    images: [...document.images].map(i => ({src: i.getAttribute("src"), ok: i.complete && i.naturalWidth > 0})),
    math: document.querySelectorAll("mjx-container").length,
  });
})()
"""

_TEX = [re.compile(r"\$(?:[^$\n]{0,200}[\\_^{}][^$\n]{0,200}|[A-Za-z])\$"),  # $S_0$, $\eta$, $x$
        re.compile(r"\\\(.{0,200}?\\\)|\\\[.{0,200}?\\\]"),  # \( … \), \[ … \]
        re.compile(r"\\(?:frac|tfrac|dfrac|lambda|eta|theta|gamma|beta|alpha|nabla|partial|mathrm|mathbf|"
                   r"mathcal|operatorname|sqrt|sum|cdot|top|left|right|begin|end|le|ge|approx|text)\b")]
_PIPE_ROW = re.compile(r"\|\s*:?-{3,}:?\s*\|")
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2705\u274C\u274E\u2753-\u2755\u2757\u2795-\u2797\u27B0\u27BF"
                    "\u2B50\u2B55\u26D4\u26AA\u26AB\u2B1B\u2B1C]")


def _snippets(pattern: re.Pattern[str], text: str, limit: int = 5) -> list[str]:
    out = []
    for m in pattern.finditer(text):
        out.append(text[max(0, m.start() - 30): m.end() + 30].replace("\n", " "))
        if len(out) >= limit:
            break
    return out


def _above_4(fd: int) -> int:
    """``fd`` moved to a number above 4, so that putting the pipes on 3 and 4 cannot clobber them."""
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class Browser:
    """One headless Chromium, driven over ``--remote-debugging-pipe``. Use as a context manager."""

    def __init__(self, exe: str, profile: Path, timeout: float = 60.0) -> None:
        self.exe, self.profile, self.timeout = exe, Path(profile), timeout
        self._next_id = 0
        self._buf = b""
        self._events: list[dict[str, Any]] = []
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "Browser":
        self.profile.mkdir(parents=True, exist_ok=True)
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        to_chrome_r, from_chrome_w = _above_4(to_chrome_r), _above_4(from_chrome_w)
        # Chromium reads commands on fd 3 and writes answers on fd 4: bash puts the pipes there
        redirect = f'exec "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-'
        log = open(self.profile / "chromium.log", "wb")  # noqa: SIM115 - closed in __exit__
        self._log = log
        self._proc = subprocess.Popen(
            ["bash", "-c", redirect, "bash", self.exe, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
             "--remote-debugging-pipe", "about:blank"],
            pass_fds=(to_chrome_r, from_chrome_w), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.call("Target.setDiscoverTargets", {"discover": False})  # answers once the browser is up
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (BrowserError, OSError):
            pass
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()

    # ------------------------------------------------------------------ protocol
    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"Chromium did not answer in time (log: {self.profile / 'chromium.log'})")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium exited (log: {self.profile / 'chromium.log'})")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        """Send one command and wait for its answer (events that arrive meanwhile are kept)."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def _wait_event(self, method: str, session: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e["method"] == method and e.get("sessionId") == session for e in self._events):
            msg = self._read(deadline)
            if "method" in msg:
                self._events.append(msg)

    # ------------------------------------------------------------------ pages
    def check(self, url: str, local_prefix: str | None = None, screenshot: Path | None = None) -> PageReport:
        """Open ``url`` in a fresh tab, wait for it, and report (see the module docstring).
        Requests not starting with ``local_prefix`` (default: the URL's scheme and host) count
        as leaving the machine. ``screenshot``: also save a full-page PNG there."""
        local = local_prefix or re.match(r"^[a-z]+://[^/]*", url).group(0)  # type: ignore[union-attr]
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable", session=session)
            self.call("Page.navigate", {"url": url}, session=session)
            self._wait_event("Page.loadEventFired", session, self.timeout)
            probe = self.call("Runtime.evaluate", {"expression": _PROBE, "awaitPromise": True, "returnByValue": True},
                              session=session)
            if "exceptionDetails" in probe:
                raise BrowserError(f"{url}: the page probe failed: {probe['exceptionDetails'].get('text')}")
            facts = json.loads(probe["result"]["value"])
            if screenshot is not None:
                self._screenshot(session, screenshot)
            events = [e for e in self._events if e.get("sessionId") == session]
        finally:
            self.call("Target.closeTarget", {"targetId": target})
            self._events = [e for e in self._events if e.get("sessionId") != session]
        return _report(url, local, facts, events)

    def _screenshot(self, session: str, path: Path) -> None:
        import base64

        size = self.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        # a viewport as tall as the page: the layout stays that of a 1400-pixel-wide window
        self.call("Emulation.setDeviceMetricsOverride", {"width": 1400, "height": int(min(size["height"], 16000)),
                                                         "deviceScaleFactor": 1, "mobile": False}, session=session)
        shot = self.call("Page.captureScreenshot", {"format": "png"}, session=session)
        self.call("Emulation.clearDeviceMetricsOverride", session=session)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


def _console_errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        p = e.get("params", {})
        if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif e["method"] == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append(str(d.get("exception", {}).get("description") or d.get("text")))
        elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            if str(entry.get("url", "")).endswith("/favicon.ico"):
                continue  # the browser's own request for a site icon, not the page's
            out.append(f"{entry.get('text')} {entry.get('url', '')}".strip())
    return out


def _report(url: str, local: str, facts: dict[str, Any], events: list[dict[str, Any]]) -> PageReport:
    requests = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    external = sorted({u for u in requests if not u.startswith(local) and not u.startswith(_LOCAL_SCHEMES)})
    checked, blocks = facts["checked"], facts["blocks"]
    raw_tex = [s for pattern in _TEX for s in _snippets(pattern, checked)]
    pipes = [b[:160] for b in blocks if _PIPE_ROW.search(b)]
    return PageReport(url=url, title=facts["title"], text=facts["text"], console_errors=_console_errors(events),
                      external_requests=external, n_images=len(facts["images"]),
                      broken_images=[i["src"] for i in facts["images"] if not i["ok"]], n_math=facts["math"],
                      raw_tex=raw_tex[:10], pipe_tables=pipes[:5], emoji=_snippets(_EMOJI, checked))
