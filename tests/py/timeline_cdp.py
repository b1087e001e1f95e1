#!/usr/bin/env python3
"""Independent peer for the timeline tests: loads a page in real headless Chromium, driven over the
DevTools protocol on a pipe (--remote-debugging-pipe: fd 3 carries commands in, fd 4 replies out, each
message JSON followed by a NUL byte), and prints ONE JSON object:

  console_errors  console.error/assert calls       exceptions  uncaught exceptions
  log_errors      browser log entries of level error (CSP violations, failed loads, ...)
  requests        every network request except the page itself
  eval            {name: value} of the expressions given, evaluated after the load event and the
                  screenshot (promises awaited)
  load_ms         navigation start to load event, milliseconds

usage: timeline_cdp.py CHROMIUM PAGE.html SCREENSHOT.png EXPRESSIONS.json [CHROMIUM FLAGS...]
Only the standard library is used.
"""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self, chromium, flags, profile):
        cmd_r, self.cmd_w = os.pipe()  # we write commands, Chromium reads fd 3
        self.out_r, out_w = os.pipe()  # Chromium writes replies on fd 4, we read

        def fds():
            # Copy both ends away first: the pipe fds may themselves be 3 or 4.
            a, b = os.dup(cmd_r), os.dup(out_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [chromium, *flags, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, close_fds=False)
        os.close(cmd_r)
        os.close(out_w)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def send(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        return self.wait(lambda m: m.get("id") == self.next_id, 60, method)

    def read(self, deadline):
        while b"\0" not in self.buf:
            if time.time() > deadline:
                return None
            chunk = os.read(self.out_r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe (did it crash?)")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def wait(self, pred, timeout, what):
        deadline = time.time() + timeout
        while True:
            m = self.read(deadline)
            if m is None:
                raise RuntimeError(f"timed out waiting for {what}")
            if "method" in m:
                self.events.append(m)
            if pred(m):
                if "error" in m:
                    raise RuntimeError(f"{what} failed: {m['error']}")
                return m

    def close(self):
        try:
            os.write(self.cmd_w, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.proc.wait(timeout=20)
        except Exception:
            self.proc.kill()


def main():
    chromium, page, shot, exprs_path, *flags = sys.argv[1:]
    exprs = json.load(open(exprs_path))
    url = "file://" + os.path.abspath(page)
    with tempfile.TemporaryDirectory() as profile:
        b = Browser(chromium, flags, profile)
        try:
            target = b.send("Target.createTarget", {"url": "about:blank"})["result"]["targetId"]
            sid = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["result"]["sessionId"]
            for domain in ("Runtime", "Log", "Network", "Page"):
                b.send(domain + ".enable", session=sid)
            b.send("Emulation.setDeviceMetricsOverride",
                   {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=sid)
            t0 = time.time()
            b.send("Page.navigate", {"url": url}, session=sid)
            b.wait(lambda m: m.get("method") == "Page.loadEventFired", 120, "the load event")
            load_ms = (time.time() - t0) * 1000
            time.sleep(0.5)  # let late console messages or requests arrive
            png = b.send("Page.captureScreenshot", {"format": "png"}, session=sid)["result"]["data"]
            with open(shot, "wb") as f:
                f.write(base64.b64decode(png))
            values = {}
            for name, expr in exprs.items():
                r = b.send("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True}, session=sid)["result"]
                values[name] = r.get("result", {}).get("value")
                if "exceptionDetails" in r:
                    values[name] = {"exception": r["exceptionDetails"].get("text")}
            time.sleep(0.2)
            # Drain what is already buffered.
            while b"\0" in b.buf:
                m = b.read(time.time())
                if m and "method" in m:
                    b.events.append(m)
        finally:
            b.close()

    def params(name):
        return [e.get("params", {}) for e in b.events if e.get("method") == name]

    report = {
        "console_errors": [
            " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            for p in params("Runtime.consoleAPICalled") if p.get("type") in ("error", "assert")],
        "exceptions": [p.get("exceptionDetails", {}).get("exception", {}).get("description")
                       or p.get("exceptionDetails", {}).get("text") for p in params("Runtime.exceptionThrown")],
        "log_errors": [p["entry"].get("text") for p in params("Log.entryAdded") if p["entry"].get("level") == "error"],
        "requests": [p["request"]["url"] for p in params("Network.requestWillBeSent") if p["request"]["url"] != url],
        "eval": values,
        "load_ms": round(load_ms, 1),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
