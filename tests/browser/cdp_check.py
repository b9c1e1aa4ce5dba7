#!/usr/bin/env python3
"""Load pages in headless Chromium over the DevTools protocol and report what happened.

usage: cdp_check.py CHROMIUM SCREENSHOT_DIR URL...
prints one JSON object: {url: {"console": [...], "exceptions": [...], "log": [...],
"external": [...], "failed": [...], "screenshot": path, "status": http status}}

Console messages, uncaught exceptions, browser log entries (e.g. failed loads), requests to
any origin other than the page's own, and failed requests are all collected; the caller
decides what is acceptable. Needs `python3 -m pip install websocket-client`.
"""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import websocket


def main():
    chrome, shots, urls = sys.argv[1], sys.argv[2], sys.argv[3:]
    profile = tempfile.mkdtemp(prefix="cdp-profile-")
    proc = subprocess.Popen(
        [chrome, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", "--remote-debugging-port=0",
         "--remote-allow-origins=*",
         f"--user-data-dir={profile}", "--window-size=1280,2200", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        for _ in range(300):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            time.sleep(0.1)
        port = open(port_file).read().split()[0]
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
        page = next(t for t in targets if t["type"] == "page")
        ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60,
                                         suppress_origin=True)
        ids = iter(range(1, 1 << 30))
        events = []

        def call(method, **params):
            i = next(ids)
            ws.send(json.dumps({"id": i, "method": method, "params": params}))
            while True:
                m = json.loads(ws.recv())
                if m.get("id") == i:
                    if "error" in m:
                        raise RuntimeError(f"{method}: {m['error']}")
                    return m.get("result", {})
                events.append(m)

        for domain in ("Page", "Runtime", "Log", "Network"):
            call(f"{domain}.enable")
        call("Emulation.setDeviceMetricsOverride", width=1280, height=2200,
             deviceScaleFactor=1, mobile=False)
        report = {}
        for url in urls:
            events.clear()
            own = urllib.parse.urlsplit(url).netloc
            call("Page.navigate", url=url)
            # Wait for the load event, then a moment for anything late.
            deadline = time.time() + 60
            loaded = False
            while time.time() < deadline and not loaded:
                m = json.loads(ws.recv())
                events.append(m)
                loaded = m.get("method") == "Page.loadEventFired"
            settle = time.time() + 0.5
            ws.settimeout(0.2)
            while time.time() < settle:
                try:
                    events.append(json.loads(ws.recv()))
                except websocket.WebSocketTimeoutException:
                    pass
            ws.settimeout(60)
            r = {"console": [], "exceptions": [], "log": [], "external": [], "failed": [],
                 "status": None, "loaded": loaded}
            for m in events:
                method, p = m.get("method"), m.get("params", {})
                if method == "Runtime.consoleAPICalled":
                    r["console"].append(" ".join(str(a.get("value", a.get("description", "")))
                                                 for a in p.get("args", [])))
                elif method == "Runtime.exceptionThrown":
                    r["exceptions"].append(p.get("exceptionDetails", {}).get("text", ""))
                elif method == "Log.entryAdded":
                    e = p.get("entry", {})
                    r["log"].append(f"{e.get('level')}: {e.get('text')}")
                elif method == "Network.requestWillBeSent":
                    u = p.get("request", {}).get("url", "")
                    if not u.startswith("data:") and urllib.parse.urlsplit(u).netloc != own:
                        r["external"].append(u)
                elif method == "Network.loadingFailed":
                    r["failed"].append(p.get("errorText", ""))
                elif method == "Network.responseReceived" and p.get("type") == "Document":
                    r["status"] = p.get("response", {}).get("status")
            shot = call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            name = urllib.parse.urlsplit(url).path.strip("/").replace("/", "-") or "index"
            path = os.path.join(shots, f"{name}.png")
            with open(path, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            r["screenshot"] = path
            report[url] = r
        ws.close()
        print(json.dumps(report))
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
