#!/usr/bin/env python3
"""Latency at a fraction of the maximum ingest rate (issue 25 item 3), from `firmware-sim load`
in processes of its own.

    python3 tests/benches/halfload.py --bin-dir "$CARGO_TARGET_DIR/release" > halfload.jsonl

Starts `rxledger serve` on a fresh SQLite directory with its embedded broker (the defaults),
takes the maximum rate from `--max-rate` (what `ingest_bench` reached in the same session: its
clients sign nothing during the run) or else probes it with an offered load above it (which
reads low: the load processes sign on the same cores), then runs the load at each fraction of
that maximum (default 0.5, then 0.25) and prints one JSON line per run with firmware-sim's
publish→receipt percentiles. Every run is on the same server, one after the other, so the
ratios between them are same-run figures. Standard library only.
"""
import argparse, json, re, sys

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
a = p.parse_args()

served = Served(a.bin_dir, a.devices, "rxledger-halfload-", a.server_args.split())

SUMMARY = re.compile(r"sent (\d+).*?accepted (\d+).*?missing (\d+).*?throughput (\d+) receipts/s"
                     r".*?p50 ([\d.]+) ms\s+p99 ([\d.]+) ms\s+max ([\d.]+) ms", re.S)

def load(rate, seconds):
    stdout, code, stderr = served.load(rate, seconds, "--procs", str(a.procs))
    m = SUMMARY.search(stdout)
    if not m:
        sys.exit(f"firmware-sim load failed ({code}): {stdout}{stderr}")
    sent, accepted, missing, rate_done, p50, p99, mx = m.groups()
    return {"offered_per_s": round(rate), "sent": int(sent), "accepted": int(accepted),
            "missing": int(missing), "receipts_per_s": int(rate_done), "p50_ms": float(p50),
            "p99_ms": float(p99), "max_ms": float(mx)}

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
