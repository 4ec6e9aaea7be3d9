"""What soak.py and halfload.py share: a fresh `rxledger serve` on its defaults (SQLite, the
embedded broker; a device window for fast devices) and load devices enrolled for `firmware-sim load`. Standard library only."""
import http.client, json, os, re, subprocess, tempfile, threading


class Served:
    """`rxledger serve` in a fresh directory, with `devices` load devices enrolled in it."""

    def __init__(self, bin_dir, devices, prefix, server_args=()):
        self.rx = os.path.join(bin_dir, "rxledger")
        self.sim = os.path.join(bin_dir, "firmware-sim")
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.server = subprocess.Popen(
            [self.rx, "serve", "--data-dir", self.dir, "--http-listen", "127.0.0.1:0",
             "--mqtt-listen", "127.0.0.1:0", *server_args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            # The load devices are few and fast, like packaging lines: each may keep 4,096
            # envelopes awaiting receipts (`--device-window`; the default, 16, suits many).
            env={"RXLEDGER_DEVICE_WINDOW": "4096", **os.environ, "RXLEDGER_LOG": "warn"})
        admin = self.http = self.mqtt = None
        for line in self.server.stdout:
            if m := re.search(r"first admin API key.*: (\S+)", line): admin = m.group(1)
            if m := re.match(r"mqtt:\s+(\S+)", line): self.mqtt = m.group(1)
            if m := re.match(r"listening on http://(\S+)", line):
                self.http = m.group(1)
                break
        threading.Thread(target=lambda: [None for _ in self.server.stdout], daemon=True).start()
        self.host, self.port = self.http.rsplit(":", 1)
        # The devices log in to the broker with credentials derived from the log's verifier key.
        self.log_key = self.graphql("{ ledgerPublicKey { verifierKey } }")["ledgerPublicKey"]["verifierKey"]
        self.devices = devices
        self.keys = os.path.join(self.dir, "load.keys")
        subprocess.run([self.sim, "load-setup", "--devices", str(devices), "--out", self.keys,
                        "--server", f"http://{self.http}", "--admin-key", admin], check=True,
                       stdout=subprocess.DEVNULL)

    def graphql(self, query):
        c = http.client.HTTPConnection(self.host, int(self.port), timeout=10)
        c.request("POST", "/graphql", json.dumps({"query": query}),
                  {"Content-Type": "application/json"})
        return json.loads(c.getresponse().read())["data"]

    def load(self, rate, seconds, *extra):
        """`firmware-sim load` at `rate` envelopes/s for `seconds`: its stdout and exit code."""
        out = subprocess.run([self.sim, "load", "--mqtt", self.mqtt, "--devices", str(self.devices),
                              "--rate", str(rate), "--duration", str(seconds), "--keys-file",
                              self.keys, "--log-key", self.log_key, *extra],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
        return out.stdout, out.returncode, out.stderr

    def stop(self):
        self.server.terminate()
        self.server.wait()
