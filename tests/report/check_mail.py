#!/usr/bin/env python3
"""Checks a captured report email against the metrics API (driven by tests/report.rs).

usage: check_mail.py MESSAGE_JSON HTTP_ADDR FROM TO EXPECTED_RCPTS
EXPECTED_RCPTS is a comma-separated list. Fails with a message on the first difference;
prints a JSON summary.
"""

import base64
import csv
import email
import email.policy
import io
import json
import re
import sys
import urllib.request

msg_path, http_addr, t_from, t_to, rcpts = sys.argv[1:6]
expected_rcpts = sorted(rcpts.split(","))


def fail(m):
    print(f"FAIL: {m}", file=sys.stderr)
    sys.exit(1)


with open(msg_path) as f:
    captured = json.load(f)
if sorted(captured["rcpt_tos"]) != expected_rcpts:
    fail(f"envelope recipients {captured['rcpt_tos']} != {expected_rcpts}")
msg = email.message_from_bytes(base64.b64decode(captured["data"]), policy=email.policy.default)
to_header = sorted(a.addr_spec for a in msg["To"].addresses)
if to_header != expected_rcpts:
    fail(f"To: {to_header}")
subject = str(msg["Subject"])

# Structure: mixed[ related[ alternative[text, html], png... ], csv ].
if msg.get_content_type() != "multipart/mixed":
    fail(f"top level is {msg.get_content_type()}")
text = html = None
images = {}
csv_part = None
for part in msg.walk():
    ct = part.get_content_type()
    if ct == "text/plain" and part.get_filename() is None:
        text = part.get_content()
    elif ct == "text/html":
        html = part.get_content()
    elif ct == "image/png":
        cid = part["Content-ID"].strip("<>")
        data = part.get_payload(decode=True)
        if not data.startswith(b"\x89PNG"):
            fail(f"inline image {cid} is not a PNG")
        if "inline" not in str(part.get("Content-Disposition", "")):
            fail(f"image {cid} is not inline")
        images[cid] = len(data)
    elif ct == "text/csv":
        csv_part = part
if text is None or html is None:
    fail("missing the text or the HTML part")
if len(images) < 2:
    fail(f"expected at least two inline charts, got {images}")
for cid in images:
    if f"cid:{cid}" not in html:
        fail(f"the HTML does not show image {cid}")
for bad in ("<script", "<svg", "http://", "https://"):
    if bad in html.lower():
        fail(f"the HTML contains {bad}")
if csv_part is None or not csv_part.get_filename().endswith(".csv"):
    fail("no CSV attachment")
rows = list(csv.DictReader(io.StringIO(csv_part.get_payload(decode=True).decode())))


def api(name, extra=""):
    url = f"http://{http_addr}/api/v1/metrics/{name}?from={t_from}&to={t_to}&interval=day{extra}"
    with urllib.request.urlopen(url, timeout=120) as r:
        return json.loads(r.read())


def headline(r):
    num = den = 0.0
    for s in r["series"]:
        for p in s["points"]:
            if r["unit"] == "seconds" and p["value"] is not None:
                num += p["value"] * p["count"]
                den += p["count"]
            elif r["metric"] == "sla":
                num += p["achieved"]
                den += p["achieved"] + p["breached"]
            elif r["metric"] in ("csat",):
                num += p["satisfied"]
                den += p["count"]
            elif r["metric"] == "service_level":
                num += p["within_target"]
                den += p["count"]
    if den == 0:
        return None
    return 100 * num / den if r["unit"] == "percent" else num / den


def show(v, unit):
    if v is None:
        return "no data"
    if unit == "seconds":
        if v >= 3600:
            return f"{v / 3600:.1f} h"
        if v >= 60:
            return f"{v / 60:.1f} min"
        return f"{v:.0f} s"
    if unit == "percent":
        return f"{v:.1f}%"
    return f"{v:.0f}"


lines = dict(l.split(": ", 1) for l in text.splitlines() if ": " in l and not l.startswith(("SLA report", "Relat")))
checked = {}
for label, name in [("TME", "wait"), ("TMA", "handle"), ("Service level", "service_level"),
                    ("SLA achieved", "sla"), ("CSAT", "csat")]:
    r = api(name)
    want = show(headline(r), r["unit"])
    got = lines.get(label, "").split(" (")[0]
    if got != want:
        fail(f"{label}: the email says {got!r}, /api/v1/metrics/{name} gives {want!r}")
    checked[label] = got
sla = api("sla")
breaches = sum(p["breached"] + p["active_breached"] for s in sla["series"] for p in s["points"])
if lines.get("SLA breaches", "").split(" (")[0] != str(breaches):
    fail(f"breaches: {lines.get('SLA breaches')} != {breaches}")
if len(rows) != breaches:
    fail(f"the CSV has {len(rows)} rows, the API counts {breaches} breaches")
if rows and "conversation_id" not in rows[0]:
    fail(f"CSV columns: {list(rows[0])}")
if checked["SLA achieved"] not in subject:
    fail(f"the subject {subject!r} lacks the SLA figure {checked['SLA achieved']}")
# Per-team rows: the team's TME equals the API grouped by team.
by_team = api("wait", "&group_by=team")
for s in by_team["series"]:
    team = s["group"] or "(no team)"
    want = show(headline({"series": [s], "unit": "seconds", "metric": "wait"}), "seconds")
    row = next((l for l in text.splitlines() if l.startswith(team + " | ")), None)
    if row is None or row.split(" | ")[1] != want:
        fail(f"team {team}: {row!r}, expected TME {want}")
print(json.dumps({"subject": subject, "images": images, "csv_rows": len(rows), "headlines": checked}))
