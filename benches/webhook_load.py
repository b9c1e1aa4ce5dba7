#!/usr/bin/env python3
"""Load for `supportlake serve`: concurrent clients posting agent-log batches to
/ingest/events over loopback, each request timed until its (durable) 200.

usage: webhook_load.py ADDR TOKEN SECONDS CLIENTS EVENTS_PER_REQUEST
prints one JSON line: events/s, requests/s, p50/p99 latency in ms, errors.
"""
import http.client
import json
import sys
import threading
import time

addr, token, seconds, clients, per = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
host, port = addr.rsplit(":", 1)
lat = []
errors = [0]
lock = threading.Lock()
stop_at = time.perf_counter() + seconds


def client(n):
    conn = http.client.HTTPConnection(host, int(port))
    k = 0
    mine = []
    while time.perf_counter() < stop_at:
        lines = "".join(
            json.dumps({"id": f"load-{n}-{k}-{i}", "ts": "2026-11-02T12:00:00Z",
                        "type": "message.received", "conversation_id": f"c-{n}-{k}",
                        "customer": "+55 11 98765-4321", "message_id": f"m-{n}-{k}-{i}"}) + "\n"
            for i in range(per))
        k += 1
        t = time.perf_counter()
        conn.request("POST", "/ingest/events", body=lines,
                     headers={"Authorization": f"Bearer {token}"})
        r = conn.getresponse()
        r.read()
        dt = time.perf_counter() - t
        if r.status == 200:
            mine.append(dt)
        else:
            with lock:
                errors[0] += 1
    with lock:
        lat.extend(mine)


threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
start = time.perf_counter()
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.perf_counter() - start
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")
print(json.dumps({"events_per_s": len(lat) * per / elapsed, "requests_per_s": len(lat) / elapsed,
                  "p50_ms": q(0.5), "p99_ms": q(0.99), "requests": len(lat), "errors": errors[0]}))
