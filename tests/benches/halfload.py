#!/usr/bin/env python3
"""Latency at a fraction of the maximum ingest rate (issue 25 item 3), from `firmware-sim load`
in processes of its own.

    python3 tests/benches/halfload.py --bin-dir "$CARGO_TARGET_DIR/release" > halfload.jsonl

Starts `rxledger serve` on a fresh SQLite directory with its embedded broker (the defaults),
takes the maximum rate from `--max-rate` (what `ingest_bench` reached in the same session: its
clients sign nothing during the run) or else probes it with an offered load above it (which
reads low: the load processes sign on the same cores), then runs the load at each fraction of
that maximum (default 0.5, then 0.25) and prints one JSON line per run with firmware-sim's
publish→receipt percentiles. With `--metrics ADDR` the server also serves `/metrics` there, and
each line adds the node's share over that run, from its histograms: each envelope's time in
the node (`node_p50_ms`, `node_p99_ms`) and each batch's append (`append_p99_ms`), estimated
within their buckets as Prometheus's `histogram_quantile` does. Every run is on the same server, one after the other, so the
ratios between them are same-run figures. Standard library only.
"""
import argparse, json, re, sys, urllib.request

from loadsetup import Served

p = argparse.ArgumentParser()
p.add_argument("--bin-dir", default="target/release")
p.add_argument("--devices", type=int, default=8)
p.add_argument("--procs", type=int, default=2, help="firmware-sim processes")
p.add_argument("--max-rate", type=float, help="the maximum, from `ingest_bench` in the same session (skips the probe)")
p.add_argument("--probe-seconds", type=float, default=20)
p.add_argument("--probe-rate", type=float, default=20000, help="offered rate of the probe: above the maximum")
p.add_argument("--seconds", type=float, default=60, help="length of each run")
p.add_argument("--fractions", default="0.5,0.25")
p.add_argument("--server-args", default="", help="extra `rxledger serve` arguments")
p.add_argument("--metrics", help="serve /metrics at this address (e.g. 127.0.0.1:9464) and report the node's share")
a = p.parse_args()

extra = a.server_args.split() + (["--metrics-listen", a.metrics] if a.metrics else [])
served = Served(a.bin_dir, a.devices, "rxledger-halfload-", extra)

def buckets(name):
    """The cumulative buckets of histogram `name` (no labels) as {le: count}."""
    text = urllib.request.urlopen(f"http://{a.metrics}/metrics", timeout=10).read().decode()
    out = {}
    for m in re.finditer(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', text, re.M):
        out[float(m.group(1))] = float(m.group(2))
    return out

def quantile(q, before, after):
    """`histogram_quantile` over the observations between two scrapes, in ms."""
    edges = sorted(after)
    counts = [after[e] - before.get(e, 0) for e in edges]
    total = counts[-1]
    if total == 0:
        return None
    rank, lo, below = q * total, 0.0, 0.0
    for edge, n in zip(edges, counts):
        if n >= rank:
            if edge == float("inf"):
                return round(lo * 1000, 1)
            return round((lo + (edge - lo) * (rank - below) / max(n - below, 1e-9)) * 1000, 1)
        lo, below = edge, n
    return None

SUMMARY = re.compile(r"sent (\d+).*?accepted (\d+).*?missing (\d+).*?throughput (\d+) receipts/s"
                     r".*?p50 ([\d.]+) ms\s+p99 ([\d.]+) ms\s+max ([\d.]+) ms", re.S)

def load(rate, seconds):
    if a.metrics:
        before = (buckets("rxledger_ingest_receipt_seconds"), buckets("rxledger_ingest_append_seconds"))
    stdout, code, stderr = served.load(rate, seconds, "--procs", str(a.procs))
    m = SUMMARY.search(stdout)
    if not m:
        sys.exit(f"firmware-sim load failed ({code}): {stdout}{stderr}")
    sent, accepted, missing, rate_done, p50, p99, mx = m.groups()
    r = {"offered_per_s": round(rate), "sent": int(sent), "accepted": int(accepted),
         "missing": int(missing), "receipts_per_s": int(rate_done), "p50_ms": float(p50),
         "p99_ms": float(p99), "max_ms": float(mx)}
    if a.metrics:
        receipt, append = buckets("rxledger_ingest_receipt_seconds"), buckets("rxledger_ingest_append_seconds")
        r["node_p50_ms"] = quantile(0.5, before[0], receipt)
        r["node_p99_ms"] = quantile(0.99, before[0], receipt)
        r["append_p50_ms"] = quantile(0.5, before[1], append)
        r["append_p99_ms"] = quantile(0.99, before[1], append)
    return r

if a.max_rate:
    max_rate = a.max_rate
else:
    probe = load(a.probe_rate, a.probe_seconds)
    print(json.dumps({"probe": probe}), flush=True)
    max_rate = probe["receipts_per_s"]
for f in (float(x) for x in a.fractions.split(",")):
    r = load(max_rate * f, a.seconds)
    r["fraction"] = f
    print(json.dumps(r), flush=True)
served.stop()
