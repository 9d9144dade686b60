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
* ``emoji`` — characters that need an emoji font to be read;

and, for the layout (:meth:`PageReport.layout_problems`), at the window width :data:`WINDOW_WIDTH`:

* ``small_figures`` — figures shown below :data:`MIN_FIGURE_SCALE` of their natural width (the
  figure was made wider than the column, so its text is shrunk);
* ``wide_tables`` — tables wider than the column outside a horizontal scroller;
* ``reprs`` — Python reprs in a cell's output (``np.float64(``, ``{'est':``, ``array(``);
* ``caption_problems`` — a figure of a cell's output not followed by its caption "Figure n.",
  or captions not numbered 1, 2, … in order.

The page's own text (``text``) lets callers check what a page must say, and ``footer`` (the
fields of the closed provenance box, by ``data-field``) what it says about its run:
:func:`footer_problems` holds it against the page's recorded numbers.
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
from typing import Any, Iterator, Mapping

__all__ = ["find_chromium", "serve", "Browser", "PageReport", "CHROMIUM_FLAGS", "BrowserError", "WINDOW_WIDTH",
           "MIN_FIGURE_SCALE", "footer_problems"]

#: The window width pages are checked at (the book's column is then about 740 px wide).
WINDOW_WIDTH = 1280
#: A figure shown below this fraction of its natural width is too small to read.
MIN_FIGURE_SCALE = 0.9

#: Headless flags: no GPU, no sandbox (root in CI), nothing in the background, and no name
#: resolution at all, so a request for another host fails on the machine instead of leaving it.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--window-size=1280,1000"]

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
    small_figures: list[str] = field(default_factory=list)
    wide_tables: list[str] = field(default_factory=list)
    reprs: list[str] = field(default_factory=list)
    caption_problems: list[str] = field(default_factory=list)
    footer: dict[str, str] = field(default_factory=dict)
    height: float = 0.0

    def layout_problems(self) -> list[str]:
        """One line per figure, table or output that does not fit a reader at this width."""
        out = [f"figure shown too small: {s}" for s in self.small_figures]
        out += [f"table wider than the column outside a scroller: {s}" for s in self.wide_tables]
        out += [f"Python repr in an output: {s!r}" for s in self.reprs]
        out += [f"caption: {s}" for s in self.caption_problems]
        return out

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
  // layout: figures against their natural width, tables against the column, reprs in outputs
  const article = document.querySelector("article") || root;
  const cs = getComputedStyle(article);
  const colRight = article.getBoundingClientRect().right - parseFloat(cs.paddingRight || 0);
  const colWidth = article.getBoundingClientRect().width - parseFloat(cs.paddingLeft || 0) - parseFloat(cs.paddingRight || 0);
  const isFigure = i => i.closest(".cell_output, .figure-scroll, figure");
  const figures = [...root.querySelectorAll("img")].filter(i => isFigure(i) && i.offsetParent !== null && i.naturalWidth > 0)
      .map(i => ({src: i.getAttribute("src"), shown: i.getBoundingClientRect().width, natural: i.naturalWidth}));
  const scroller = el => { for (let e = el; e && e !== article; e = e.parentElement) {
      const o = getComputedStyle(e).overflowX; if (o === "auto" || o === "scroll") { return e; } } return null; };
  const tables = [...root.querySelectorAll("table")].filter(t => t.offsetParent !== null).map(t => {
      const r = t.getBoundingClientRect(), sc = scroller(t);
      const box = sc ? sc.getBoundingClientRect() : r;
      return {what: (t.className || "table") + ": " + (t.innerText || "").trim().slice(0, 60).replace(/\s+/g, " "),
              width: r.width, fits: box.right <= colRight + 2 && box.width <= colWidth + 2};
  });
  const outputs = [...root.querySelectorAll(".cell_output")].map(e => e.innerText);
  // figures and the text right after each (a caption "Figure n." in the next paragraph)
  const seq = [];
  for (const el of root.querySelectorAll("img, p")) {
    if (el.tagName === "IMG") { if (isFigure(el)) { seq.push({fig: el.getAttribute("src")}); } }
    else if (!skip(el) && el.innerText.trim()) { seq.push({text: el.innerText.trim().slice(0, 80)}); }
  }
  const footer = {};
  for (const li of document.querySelectorAll("details.provenance [data-field]")) {
    footer[li.dataset.field] = li.textContent.replace(/\s+/g, " ").trim();
  }
  return JSON.stringify({
    height: document.documentElement.scrollHeight,
    figures: figures, tables: tables, outputs: outputs, sequence: seq, footer: footer, column: colWidth,
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
_REPR = re.compile(r"np\.(?:float|int|bool_|str_)\w*\(|\{'est':|\barray\(|<[\w.]+ object at 0x")
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
            self.call("Emulation.setDeviceMetricsOverride", {"width": WINDOW_WIDTH, "height": 1000,
                                                             "deviceScaleFactor": 1, "mobile": False}, session=session)
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
        # a viewport as tall as the page: the layout stays that of a WINDOW_WIDTH-pixel-wide window
        self.call("Emulation.setDeviceMetricsOverride", {"width": WINDOW_WIDTH, "height": int(min(size["height"], 16000)),
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
    small = [f"{f['src']} at {f['shown']:.0f} of {f['natural']} px ({f['shown'] / f['natural']:.0%})"
             for f in facts["figures"] if f["shown"] < MIN_FIGURE_SCALE * f["natural"]]
    wide = [f"{t['what']} ({t['width']:.0f} px in a {facts['column']:.0f} px column)" for t in facts["tables"]
            if not t["fits"]]
    reprs = [s for text in facts["outputs"] for s in _snippets(_REPR, text)]
    return PageReport(url=url, title=facts["title"], text=facts["text"], console_errors=_console_errors(events),
                      external_requests=external, n_images=len(facts["images"]),
                      broken_images=[i["src"] for i in facts["images"] if not i["ok"]], n_math=facts["math"],
                      raw_tex=raw_tex[:10], pipe_tables=pipes[:5], emoji=_snippets(_EMOJI, checked),
                      small_figures=small, wide_tables=wide, reprs=reprs[:10],
                      caption_problems=_caption_problems(facts["sequence"]), footer=facts["footer"],
                      height=float(facts["height"]))


_CAPTION = re.compile(r"^Figure ([PC]?)(\d+)\b")


def _caption_problems(sequence: list[dict[str, str]]) -> list[str]:
    """Every figure must be followed by its caption ("Figure n." — "Figure Pn" for the archived
    figures at the paper's scale, "Figure Cn" for those of the cpu preset), numbered 1, 2, … in page order."""
    out, expected = [], {"": 1, "P": 1, "C": 1}
    for i, item in enumerate(sequence):
        if "fig" not in item:
            continue
        nxt = sequence[i + 1].get("text", "") if i + 1 < len(sequence) else ""
        m = _CAPTION.match(nxt)
        if m is None:
            out.append(f"{item['fig']} is not followed by a caption 'Figure n.' (next: {nxt[:40]!r})")
            continue
        prefix, n = m.group(1), int(m.group(2))
        if n != expected[prefix]:
            out.append(f"{item['fig']}: caption 'Figure {prefix}{n}' where 'Figure {prefix}{expected[prefix]}' was due")
        expected[prefix] = n + 1
    return out


def _listed_seeds(line: str) -> list[int]:
    head = line.split(":", 1)[-1].split("(")[0].split(";")[0]
    return sorted(int(x) for x in re.findall(r"-?\d+", head)) if re.search(r"\d", head) and "=" not in head else []


def footer_problems(footer: Mapping[str, str], numbers: Mapping[str, Any]) -> list[str]:
    """Where a page's provenance box contradicts the numbers the page recorded: the seeds it lists
    against the recorded ``seeds`` (or their count against ``n_seeds``; "none" where seeds were
    used), the data copy against the recorded ``data_source``. Empty: they agree."""
    from .provenance import NOT_RECORDED, recorded_data_source, recorded_seeds

    if not footer:
        return ["no provenance box (details.provenance with data-field lines)"]
    out = []
    seeds_line, data_line = footer.get("seeds", ""), footer.get("data", "")
    listed, recorded = _listed_seeds(seeds_line), recorded_seeds(numbers)
    n_seeds = numbers.get("n_seeds")
    if recorded and listed != recorded:
        out.append(f"the box lists seeds {listed or seeds_line!r}; the page recorded {recorded}")
    if isinstance(n_seeds, int) and n_seeds > 0:
        if re.search(r":\s*none\b", seeds_line):
            out.append(f"the box says no seeds; the page recorded n_seeds = {n_seeds}")
        elif listed and len(listed) != n_seeds:
            out.append(f"the box lists {len(listed)} seeds; the page recorded n_seeds = {n_seeds}")
    copies = recorded_data_source(numbers)
    for c in copies:
        if c not in data_line:
            out.append(f"the page recorded the data copy {c!r}; the box says {data_line!r}")
    if copies and NOT_RECORDED in data_line:
        out.append("the box says the data copy was not recorded; the page recorded it")
    if not copies and "copy used:" in data_line and NOT_RECORDED not in data_line:
        out.append(f"the box names a data copy the page did not record: {data_line!r}")
    return out
