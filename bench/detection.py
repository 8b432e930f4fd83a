"""Detection benchmark (bench/detection.sh runs it): how soon a change made in Proxmox is a
drift in /detail and a Telegram message, with the exporter's defaults and a daily schedule.

A simulated Proxmox (tests/pvesim) holds 100 guests, each in an environment of its own (50
VMs, 50 containers), applied with the real terraform through the test provider. The
exporter runs with [proxmox] at its defaults (reads every 10 s, digests every 30 s,
max_concurrent_scans 1); Prometheus scrapes and evaluates every 15 s with the shipped
rules; Alertmanager runs the shipped configuration (group_wait 10 s) and sends to a fake
Telegram Bot API (it records sendMessage as the real one is documented to take it).

50 guests (25 VMs, 25 containers) get one memory edit each, by root@pam through the API,
at random times over EDIT_WINDOW seconds (seeded). For each: the seconds until /detail
says drift, and until the Telegram message. Then the terraform runs used (plans; the
unmanaged check's state pulls are the same with or without signals and are shown apart)
next to the plans a fixed schedule needs for the same p95: a change waits up to one
interval, so p95 = 0.95 * interval.

usage: python3 bench/detection.py EXPORTER PVESIM PROVIDER_DIR
"""

import http.server
import json
import os
import random
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

EDIT_WINDOW = int(os.environ.get("EDIT_WINDOW", "600"))
GUESTS = 100
EDITS = 50
SEED = 21

EXPORTER_TOKEN = "tfdrift@pve!ci=bench-exporter"
TERRAFORM_TOKEN = "terraform@pve!apply=bench-terraform"
ROOT_TOKEN = "root@pam!admin=bench-root"

exporter_bin, pvesim_bin, provider_dir = sys.argv[1:4]
repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
work = tempfile.mkdtemp(prefix="tfdrift-detection-")
children = []


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def spawn(args, **kw):
    p = subprocess.Popen(args, **kw)
    children.append(p)
    return p


def stop_all():
    for p in children:
        p.terminate()
    for p in children:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    shutil.rmtree(work, ignore_errors=True)


# --- the simulator -------------------------------------------------------------------
sim = spawn(
    [pvesim_bin, "--listen", "127.0.0.1:0", "--ca-out", f"{work}/ca.pem"]
    + sum((["--token", t] for t in (EXPORTER_TOKEN, TERRAFORM_TOKEN, ROOT_TOKEN)), []),
    stdout=subprocess.PIPE,
    text=True,
)
url = sim.stdout.readline().split()[1]
tls = ssl.create_default_context(cafile=f"{work}/ca.pem")


def api(method, path, body, token=ROOT_TOKEN):
    req = urllib.request.Request(
        f"{url}/api2/json{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"PVEAPIToken={token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, context=tls, timeout=10) as r:
        return r.status


# --- the workspaces ----------------------------------------------------------------
rc = f"{work}/terraform.rc"
with open(rc, "w") as f:
    f.write(
        'provider_installation {\n  dev_overrides { "example.local/test/pvesim" = "%s" }\n  direct {}\n}\n'
        % provider_dir
    )
provider = """terraform {
  required_providers {
    pvesim = { source = "example.local/test/pvesim" }
  }
}
provider "pvesim" {
  api_url = "%s"
  token   = "%s"
  ca_file = "%s"
}
""" % (url, TERRAFORM_TOKEN, f"{work}/ca.pem")
guests = []
for i in range(GUESTS):
    kind = "vm" if i % 2 == 0 else "lxc"
    vmid = 1000 + i
    name = f"g{vmid}"
    ws = f"{work}/{name}"
    os.makedirs(ws)
    with open(f"{ws}/main.tf", "w") as f:
        f.write(
            provider
            + f'resource "pvesim_{kind}" "{name}" {{\n  vmid = {vmid}\n  node = "pve1"\n  name = "{name}"\n  memory = 512\n  cores = 1\n}}\n'
        )
    guests.append((name, "qemu" if kind == "vm" else "lxc", vmid))


def apply(ws):
    subprocess.run(
        ["terraform", f"-chdir={ws}", "apply", "-auto-approve", "-input=false", "-no-color"],
        env={**os.environ, "TF_CLI_CONFIG_FILE": rc},
        check=True,
        capture_output=True,
    )


t = time.time()
with ThreadPoolExecutor(4) as pool:
    list(pool.map(apply, [f"{work}/{g[0]}" for g in guests]))
print(f"applied {GUESTS} environments in {time.time() - t:.0f} s", file=sys.stderr)

# --- fake Telegram -------------------------------------------------------------------
telegram = []


class Telegram(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if "/sendMessage" in self.path:
            telegram.append((time.time(), json.loads(body).get("text", "")))
        answer = b'{"ok":true,"result":{"message_id":1,"date":0,"chat":{"id":-1,"type":"group"},"text":""}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *a):
        pass


tg_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Telegram)
threading.Thread(target=tg_server.serve_forever, daemon=True).start()

# --- exporter, Prometheus, Alertmanager -----------------------------------------------
with open(f"{work}/pve-token", "w") as f:
    f.write(EXPORTER_TOKEN.split("=", 1)[1])
port = free_port()
with open(f"{work}/config.toml", "w") as f:
    f.write(
        '[storage]\npath = "state"\n[defaults]\ninit = "never"\nrun_on_start = false\n'
        f'env = {{ TF_CLI_CONFIG_FILE = "{rc}" }}\n'
        f'[proxmox]\napi_url = "{url}"\ntoken_id = "tfdrift@pve!ci"\ntoken_secret_file = "pve-token"\n'
        f'ca_file = "{work}/ca.pem"\nterraform_token_ids = ["terraform@pve!apply"]\n'
    )
    for name, _, _ in guests:
        f.write(f'[environments.{name}]\ndir = "{name}"\n')
exporter = spawn(
    [exporter_bin, "--config", f"{work}/config.toml", "--web.listen-address", f"127.0.0.1:{port}"],
    stderr=open(f"{work}/exporter.log", "w"),
)

am_port, prom_port = free_port(), free_port()
shipped = open(f"{repo}/examples/alertmanager.yml").read()
with open(f"{work}/alertmanager.yml", "w") as f:
    f.write(
        shipped.replace("api_url: https://api.telegram.org", f"api_url: http://127.0.0.1:{tg_server.server_port}")
        .replace('"123456:REPLACE-WITH-YOUR-BOT-TOKEN"', '"42:bench"')
    )
shutil.copy(f"{repo}/examples/tfdrift.tmpl", f"{work}/tfdrift.tmpl")
spawn(
    ["prometheus-alertmanager", f"--config.file={work}/alertmanager.yml", f"--storage.path={work}/am",
     f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
with open(f"{work}/prometheus.yml", "w") as f:
    f.write(
        "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n"
        f"rule_files:\n  - {repo}/alert-rules/tfdrift.rules.yml\n"
        f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"127.0.0.1:{am_port}\"]\n"
        f"scrape_configs:\n  - job_name: tfdrift\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
    )
spawn(
    ["prometheus", f"--config.file={work}/prometheus.yml", f"--storage.tsdb.path={work}/prom",
     f"--web.listen-address=127.0.0.1:{prom_port}"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)


def get(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


def metric_sum(text, name):
    return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(name + "{") or l.startswith(name + " "))


try:
    deadline = time.time() + 300
    while True:
        try:
            managed = json.loads(get("/unmanaged")).get("managed", {})
            if len(managed) == GUESTS:
                break
        except Exception:
            pass
        assert time.time() < deadline, "no unmanaged-guest check"
        time.sleep(1)
    time.sleep(45)  # every guest's digest read once, Prometheus up
    pulls_before = GUESTS

    rng = random.Random(SEED)
    vms = [g for g in guests if g[1] == "qemu"]
    cts = [g for g in guests if g[1] == "lxc"]
    chosen = rng.sample(vms, EDITS // 2) + rng.sample(cts, EDITS // 2)
    plan = sorted((rng.uniform(0, EDIT_WINDOW), g) for g in chosen)
    edited = {}
    detail = {}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                envs = json.loads(get("/detail"))["environments"]
            except Exception:
                time.sleep(0.5)
                continue
            now = time.time()
            for name in list(edited):
                r = envs.get(name)
                if name not in detail and r and r.get("status") == "drift":
                    detail[name] = now
            time.sleep(0.5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    start = time.time()
    for at, (name, kind, vmid) in plan:
        time.sleep(max(0, start + at - time.time()))
        api("PUT", f"/nodes/pve1/{kind}/{vmid}/config", {"memory": 768})
        edited[name] = time.time()
    deadline = time.time() + 180
    while time.time() < deadline and (len(detail) < EDITS or len({n for n in edited if any(f"[{n}]" in t for _, t in telegram)}) < EDITS):
        time.sleep(1)
    stop.set()
    watcher.join()
    window = time.time() - start
    m = get("/metrics")
    plans = metric_sum(m, "tfdrift_scans_total")
    def by_label(name, label):
        out = {}
        for l in m.splitlines():
            if l.startswith(name + "{"):
                key = l.split(f'{label}="')[1].split('"')[0]
                out[key] = out.get(key, 0) + int(float(l.split()[-1]))
        return out

    by_trigger = by_label("tfdrift_scan_triggers_total", "trigger")
    signals = by_label("tfdrift_change_signals_total", "source")
    checks = open(f"{work}/exporter.log").read().count("unmanaged-guest check finished")

    def pct(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

    rows = []
    all_detail = [detail[n] - edited[n] for n in edited if n in detail]
    for kind in ("qemu", "lxc"):
        names = [g[0] for _, g in plan if g[1] == kind]
        d = [detail[n] - edited[n] for n in names if n in detail]
        tg = []
        for n in names:
            sent = [ts for ts, text in telegram if f"[{n}]" in text and "DRIFT" in text]
            if sent:
                tg.append(min(sent) - edited[n])
        rows.append((kind, len(names), len(d), d, len(tg), tg))
    print(f"\n{EDITS} edits over {EDIT_WINDOW} s, {GUESTS} environments of one guest each, defaults, daily schedule")
    print(f"{'kind':6} {'edits':>5} {'/detail p50':>11} {'p95':>6} {'max':>6} {'Telegram p50':>12} {'p95':>6} {'max':>6}")
    for kind, n, nd, d, nt, tg in rows:
        f = lambda xs, p: f"{pct(xs, p):.1f}" if xs else "-"
        print(f"{kind:6} {n:5} {f(d, 50):>11} {f(d, 95):>6} {f(d, 100):>6} {f(tg, 50):>12} {f(tg, 95):>6} {f(tg, 100):>6}"
              + ("" if nd == n and nt == n else f"   (found {nd}/{n} in /detail, {nt}/{n} on Telegram)"))
    # A schedule of interval I finds a change after up to I (uniform), plus the scan: its
    # p95 to /detail is 0.95 I (the chain to Telegram adds the same to both).
    p95 = pct(all_detail, 95)
    interval = p95 / 0.95
    schedule = GUESTS * window / interval
    print(f"\nterraform plans: {plans:.0f} (by trigger: {by_trigger}); signals read: {signals}")
    print(f"state pulls of the unmanaged check: {checks} checks x {GUESTS} environments (the same without signals)")
    print(f"a fixed schedule with the same p95 to /detail ({p95:.1f} s, all edits) needs an interval of {interval:.1f} s:"
          f" {schedule:.0f} plans in these {window:.0f} s, {schedule / max(plans, 1):.0f}x more;"
          f" per day {GUESTS * 86400 / interval:.0f} plans against {GUESTS} (the daily schedule) plus one per edit")
finally:
    stop_all()
