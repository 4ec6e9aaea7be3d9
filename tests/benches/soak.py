#!/usr/bin/env python3
"""Soak: ingest at half the measured maximum for a long time while verify queries run
concurrently; report per-minute server memory (RSS), verify latency percentiles, ledger growth
and, at the end, the load generator's sent / receipted / missing counts.

    python3 tests/benches/soak.py --bin-dir target/release --minutes 30 > soak.jsonl

Uses the real binaries: `rxledger serve` on a fresh SQLite directory with its embedded broker,
and `firmware-sim load` for the scanners. Standard library only.
"""
import argparse, http.client, json, random, sys, threading, time

from loadsetup import Served

p = argparse.ArgumentParser()
p.add_argument("--bin-dir", default="target/release")
p.add_argument("--minutes", type=float, default=30)
p.add_argument("--devices", type=int, default=8)
p.add_argument("--probe-seconds", type=float, default=20)
p.add_argument("--probe-rate", type=float, default=4000, help="offered rate of the probe: above the maximum")
p.add_argument("--verify-rate", type=float, default=20, help="verify queries per second")
a = p.parse_args()

served = Served(a.bin_dir, a.devices, "rxledger-soak-", ["--rate-limit", "100000"])
server, host, port = served.server, served.host, served.port

def load(rate, seconds):
    stdout, code, stderr = served.load(rate, seconds, "--json")
    # A non-zero exit with a report means some envelopes went unreceipted: that is data.
    if "{" not in stdout:
        sys.exit(f"firmware-sim load failed ({code}): {stderr.strip()}")
    return json.loads(stdout[stdout.index("{"):])

def rss_kib():
    with open(f"/proc/{server.pid}/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS")).split()[1])

probe = load(a.probe_rate, a.probe_seconds)
done = probe["accepted"] + probe["duplicate"] + probe["rejected"]
max_rate = done / probe["elapsed_s"]
rate = max_rate / 2
print(json.dumps({"probe": {"envelopes_per_s": round(max_rate, 1), "missing": probe["missing"]},
                  "soak_rate": round(rate, 1), "minutes": a.minutes}), flush=True)

result = {}
def run_load():
    result["report"] = load(rate, a.minutes * 60)
t = threading.Thread(target=run_load)
t.start()

gtin = "00614141000012"
conn = http.client.HTTPConnection(host, int(port), timeout=10)
q = "query($c: String!) { verify(code: $c) { verdict } }"
start = time.time()
minute = 0
while t.is_alive():
    lat, errors, t0 = [], 0, time.time()
    while time.time() - t0 < 60 and t.is_alive():
        code = f"https://x/01/{gtin}/21/{random.randrange(36**6):X}"
        body = json.dumps({"query": q, "variables": {"c": code}})
        s = time.perf_counter()
        try:
            conn.request("POST", "/graphql", body, {"Content-Type": "application/json"})
            r = conn.getresponse(); r.read()
            if r.status != 200: errors += 1
        except Exception:
            errors += 1
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
        lat.append((time.perf_counter() - s) * 1000)
        time.sleep(max(0, 1 / a.verify_rate - (time.perf_counter() - s)))
    minute += 1
    conn.request("POST", "/graphql", json.dumps({"query": "{ checkpoint { size } }"}),
                 {"Content-Type": "application/json"})
    size = json.loads(conn.getresponse().read())["data"]["checkpoint"]["size"]
    lat.sort()
    pct = lambda x: round(lat[min(len(lat) - 1, int(len(lat) * x))], 2) if lat else None
    print(json.dumps({"minute": minute, "rss_mib": round(rss_kib() / 1024, 1), "log_size": size,
                      "verify_n": len(lat), "verify_errors": errors, "verify_p50_ms": pct(0.5),
                      "verify_p99_ms": pct(0.99)}), flush=True)
t.join()
rep = result["report"]
print(json.dumps({"sent": rep["sent"], "accepted": rep["accepted"], "duplicate": rep["duplicate"],
                  "rejected": rep["rejected"], "missing": rep["missing"],
                  "elapsed_s": round(rep["elapsed_s"], 1)}), flush=True)
served.stop()
