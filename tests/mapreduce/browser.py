"""Headless Chromium for the report tests: found, or installed from the system's package manager,
and driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``), so that no Python
package is needed and the page's own requests are told apart from Chromium's background ones."""
from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_SECONDS = 1200


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def install_chromium() -> tuple[str | None, str]:
    """Return (path, "") or (None, why not). Installs Debian's ``chromium`` only as root with
    apt-get; waits for another apt user's lock rather than failing on it."""
    path = find_chromium()
    if path:
        return path, ""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None, "Chromium is not installed and installing it needs root"
    if not shutil.which("apt-get"):
        return None, "Chromium is not installed and there is no apt-get to install it with"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    install = ["apt-get", *lock, "install", "-y", "-q", "--no-install-recommends", "chromium"]
    last = ""
    for commands in ([install], [["apt-get", *lock, "update", "-q"], install]):
        for argv in commands:
            code, out = run_limited(argv, INSTALL_SECONDS, env=env)
            if code != 0:
                tail = (out.strip().splitlines() or [""])[-1]
                last = f"`{' '.join(argv)}` failed ({code}): {tail}"
                break
        path = find_chromium()
        if path:
            return path, ""
    return None, f"Chromium could not be installed: {last}"


def run_limited(argv: list[str], seconds: float, **kwargs) -> tuple[int, str]:
    """Run ``argv`` in its own process group and kill the whole group (Chromium forks helpers)
    if it takes longer than ``seconds``; returns (exit code, stdout and stderr together)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True, **kwargs)
    try:
        out, _ = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return -9, f"timed out after {seconds:.0f} s\n{out}"
    return proc.returncode, out


def _above(fd: int, lowest: int) -> int:
    """A close-on-exec copy of ``fd`` numbered ``lowest`` or more."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)


class Browser:
    """One headless Chromium; :meth:`open` loads a page in a fresh tab and returns what it did.

    Every call is bounded by ``seconds`` in all; on any failure the whole process group is killed.
    Host names resolve to nothing, so a page that does try the network gets no further than the
    request, which is still recorded."""

    def __init__(self, chromium: str, profile: str, seconds: float = 120) -> None:
        self.deadline = time.monotonic() + seconds
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
                "--host-resolver-rules=MAP * ~NOTFOUND", "--remote-debugging-pipe",
                "about:blank"]
        # Chromium reads commands on fd 3 and answers on fd 4; bash puts the pipes there (no
        # preexec_fn, unsafe in a process with threads; dash takes no fd numbers above 9)
        r, w = (_above(fd, 10) for fd in (to_chrome_r, from_chrome_w))  # never 3 or 4 itself
        shell = [shutil.which("bash") or "/bin/bash", "-c",
                 f'exec "$@" 3<&{r} 4>&{w} {r}<&- {w}>&-', "bash"]
        self.proc = subprocess.Popen(shell + argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     pass_fds=(r, w), start_new_session=True)
        for fd in (to_chrome_r, from_chrome_w, r, w):
            os.close(fd)
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_chrome, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self._messages.put(None)
                return
            buffer += chunk
            *whole, buffer = buffer.split(b"\0")
            for raw in whole:
                self._messages.put(json.loads(raw))

    def _next(self) -> dict[str, Any]:
        left = self.deadline - time.monotonic()
        try:
            message = self._messages.get(timeout=max(left, 0.01))
        except queue.Empty:
            raise TimeoutError("Chromium did not answer in time") from None
        if message is None:
            raise RuntimeError(f"Chromium exited (code {self.proc.poll()})")
        return message

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._next()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> None:
        if any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
            return
        while True:
            event = self._next()
            self.events.append(event)
            if event.get("method") == method and event.get("sessionId") == session:
                return

    def open(self, url: str, width: int = 1400, height: int = 1800,
             screenshot: bool = False) -> dict[str, Any]:
        """Load ``url`` in a new tab: the DOM as the browser built it (``html``), the tab's
        ``session`` for :meth:`evaluate`, every URL the page requested (``requests``, the page
        itself included) and, if asked for, a full-page PNG (``png``)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target,
                                                      "flatten": True})["sessionId"]
        for method in ("Network.enable", "Page.enable"):
            self.call(method, session=session)
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                         "deviceScaleFactor": 1,
                                                         "mobile": False}, session)
        self.call("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired", session)
        found: dict[str, Any] = {"html": self.evaluate(
            "document.documentElement.outerHTML", session), "session": session}
        if screenshot:
            shot = self.call("Page.captureScreenshot", {"format": "png",
                                                        "captureBeyondViewport": True}, session)
            found["png"] = base64.b64decode(shot["data"])
        found["requests"] = [e["params"]["request"]["url"] for e in self.events
                             if e.get("method") == "Network.requestWillBeSent"
                             and e.get("sessionId") == session]
        return found

    def evaluate(self, expression: str, session: str) -> Any:
        reply = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                          session)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.proc.poll() is None and time.monotonic() < self.deadline:
                self.call("Browser.close")
                self.proc.wait(timeout=10)
        except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self._reader.join(timeout=10)
            os.close(self._to_chrome)
            os.close(self._from_chrome)
