#!/usr/bin/python3
"""Turns the raw measurements of bench/run.sh into the results table and chart.

    report.py OUT_DIR PREFIX      → PREFIX.md, PREFIX.png, PREFIX.json

OUT_DIR holds one JSON file per measurement (hyperfine's --export-json for whole
processes, berth-bench's and pingpong's own output for the rest). Statistics are the
median and the 90th percentile (nearest rank) of every sample; the budget lines are
those of issue 10, each with its ratio and PASS/MISS.
"""
import json
import math
import os
import platform
import socket
import subprocess
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out, prefix = sys.argv[1], sys.argv[2]


def load(name):
    with open(os.path.join(out, name)) as f:
        return json.load(f)


def pct(values, p):
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def med(values):
    return pct(values, 50)


def hyper(name):
    """hyperfine's results by command name, in ms."""
    return {r["command"]: [t * 1e3 for t in r["times"]] for r in load(name)["results"]}


def first_line(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
    except Exception as e:  # a missing tool is shown, not fatal
        return f"? ({e})"


# ---- the measurements -------------------------------------------------------------------
run = hyper("run-to-exit.json")
wrapper = med(run["crun wrapper alone"])
crun = [t - wrapper for t in run["crun run (wrapped)"]]   # the wrapper's median subtracted
lib_run = load("lib-run.json")["ms"]
lib_cs = load("lib-create-start.json")["ms"]
def pingpong(kind):
    """The two halves (before and after Berth's runs), joined; requests/s the higher."""
    a, b = load(f"pingpong-{kind}-a.json"), load(f"pingpong-{kind}-b.json")
    return {"rtt_us": a["rtt_us"] + b["rtt_us"], "pipelined_rps": max(a["pipelined_rps"], b["pipelined_rps"])}


pp = {k: pingpong(k) for k in ("unix", "tcp", "tls")}
info = {k: load(f"info-{k}.json") for k in ("unix", "tcp", "tls")}
pods = load("pods.json")
s100, s500 = load("scale-100.json"), load("scale-500.json")
ps_cli = hyper("ps-500.json")["berth ps (500 running)"]
ps_lib = load("lib-ps-500.json")
fan = {}
for n in (1, 4, 16):
    fan.update(hyper(f"fanout-{n}.json"))
fan_cpu = {n: load(f"fanout-{n}-cpu.json") for n in (1, 4, 16)}
fan_client = {n: r for n in (1, 4, 16) for r in load(f"fanout-{n}.json")["results"]}
info_cpu = load("info-unix-cpu.json")["agent_cpu_ms"]
idle = load("mem-idle.json")
pc = load("mem-per-container.json")
m500 = load("mem-500.json")

nmon = max(1, pc["containers"])
mon_rss = pc["monitor_rss_kib"] / nmon / 1024
mon_pss = pc["monitor_pss_kib"] / nmon / 1024
grow_rss = (pc["agent_after_rss_kib"] - pc["agent_before_rss_kib"]) / 100 / 1024
grow_pss = (pc["agent_after_pss_kib"] - pc["agent_before_pss_kib"]) / 100 / 1024

rows = []   # (section, what, median, p90, unit, runs)


def row(section, what, samples, unit, scale=1.0):
    rows.append((section, what, med(samples) * scale, pct(samples, 90) * scale, unit, len(samples)))


row("1 run-to-exit (CLI level)", "`berth run --rm busybox /bin/true`", run["berth run --rm"], "ms")
row("1 run-to-exit (CLI level)", "`runc run`", run["runc run"], "ms")
row("1 run-to-exit (CLI level)", "`crun run` (wrapper subtracted)", crun, "ms")
row("1 run-to-exit (CLI level)", "`crun run` in its wrapper, as measured", run["crun run (wrapped)"], "ms")
row("1 run-to-exit (CLI level)", "crun's wrapper alone (unshare -m + sh + mount cgroup2)", run["crun wrapper alone"], "ms")
row("1 run-to-exit (CLI level)", "floor: `unshare -pfnimu chroot ROOTFS /bin/true`", run["floor: unshare+chroot"], "ms")
row("2 through BerthClient", "run --rm to exit, in one process", lib_run, "ms")
row("2 through BerthClient", f"detached create + start (removal retried {load('lib-create-start.json').get('rm_retries', 0)}× after Wait: see the analysis)", lib_cs, "ms")
for k in ("unix", "tcp", "tls"):
    label = {"unix": "Unix socket", "tcp": "TCP loopback", "tls": "TCP loopback + mTLS"}[k]
    row("3 round trip", f"Info over {label}", info[k]["us"], "µs")
    rows.append(("3 round trip", f"  p99 of Info over {label} (in the median column)", pct(info[k]["us"], 99), pct(info[k]["us"], 99), "µs", len(info[k]["us"])))
    row("3 round trip", f"raw C ping-pong, {label}", pp[k]["rtt_us"], "µs")
for k in ("unix", "tcp", "tls"):
    rows.append(("3 throughput", f"Info/s, one {k} connection, 64 in flight", info[k]["rps"], info[k]["rps"], "req/s", 1))
    rows.append(("3 throughput", f"raw C ping-pong/s, {k}, 64 in flight", pp[k]["pipelined_rps"], pp[k]["pipelined_rps"], "req/s", 1))
row("4 pods", "pod create + 2 containers created and started (running)", pods["up_ms"], "ms")
row("4 pods", "`pod rm -f` of it", pods["rm_ms"], "ms")
for s in (s100, s500):
    rows.append(("5 scale", f"{s['n']} sleepers created + started at once: wall", s["wall_ms"], s["wall_ms"], "ms", 1))
    rows.append(("5 scale", f"{s['n']} sleepers: failures (running after: {s['running']})", s["failures"], s["failures"], "", 1))
row("5 scale", "`berth ps` with 500 running (whole CLI)", ps_cli, "ms")
row("5 scale", f"ListContainers with 500 running (BerthClient, {ps_lib['listed']} listed)", ps_lib["ms"], "ms")
rows.append(("5 scale", "agent RSS with 500 running", m500["rss_kib"] / 1024, m500["rss_kib"] / 1024, "MiB", 1))
for k in ("1 agent", "4 agents", "16 agents"):
    row("6 fan-out (local agents on Unix sockets)", f"`berth --all ps`, {k}", fan[f"ps --all, {k}"], "ms")
for n, k in ((1, "1 agent"), (4, "4 agents"), (16, "16 agents")):
    c = fan_cpu[n]
    r = fan_client[n]
    client = (r["user"] + r["system"]) * 1e3
    agents = c["agents_cpu_ms"] / c["calls"]
    rows.append(("6 fan-out (local agents on Unix sockets)", f"  CPU per `--all ps`, {k}: the CLI (mean user+sys)", client, client, "ms", len(r["times"])))
    rows.append(("6 fan-out (local agents on Unix sockets)", f"  CPU per `--all ps`, {k}: the agents, together", agents, agents, "ms", c["calls"]))
total_info = 5200 + 2 * info["unix"]["rps"]
rows.append(("3 throughput", "agent CPU per Info (Unix, over the whole info run)", info_cpu * 1e3 / total_info,
             info_cpu * 1e3 / total_info, "µs", int(total_info)))
rows.append(("7 memory", "agent idle RSS", idle["rss_kib"] / 1024, idle["rss_kib"] / 1024, "MiB", 1))
rows.append(("7 memory", "agent idle PSS", idle["pss_kib"] / 1024, idle["pss_kib"] / 1024, "MiB", 1))
rows.append(("7 memory", f"berth-monitor RSS, mean of {nmon}", mon_rss, mon_rss, "MiB", nmon))
rows.append(("7 memory", f"berth-monitor PSS, mean of {nmon}", mon_pss, mon_pss, "MiB", nmon))
rows.append(("7 memory", "agent RSS growth per container (100 sleepers)", grow_rss, grow_rss, "MiB", 100))
rows.append(("7 memory", "agent PSS growth per container (100 sleepers)", grow_pss, grow_pss, "MiB", 100))

# ---- the budget ----------------------------------------------------------------------------
budget = []   # (line, measured, limit, ratio, ok)


def le(line, value, limit, unit):
    budget.append((line, f"{value:.3g} {unit}", f"≤ {limit:.3g} {unit}", value / limit if limit else float("inf"), value <= limit))


cli, crun_m, floor = med(run["berth run --rm"]), med(crun), med(run["floor: unshare+chroot"])
le("run-to-exit through the CLI ≤ crun's", cli, crun_m, "ms")
le("run-to-exit through BerthClient ≤ 2× the unshare floor", med(lib_run), 2 * floor, "ms")
for k in ("unix", "tcp", "tls"):
    le(f"Info p50 over {k} ≤ 3× raw C ping-pong", med(info[k]["us"]), 3 * med(pp[k]["rtt_us"]), "µs")
budget.append(("≥ 20 000 Info/s on one Unix connection", f"{info['unix']['rps']:.0f} req/s", "≥ 20000 req/s",
               20000 / info["unix"]["rps"], info["unix"]["rps"] >= 20000))
budget.append(("500 concurrent containers, 0 failures", f"{s500['failures']} failures", "0", 0.0 if s500["failures"] == 0 else float("inf"), s500["failures"] == 0))
le("`ps` with 500 running ≤ 50 ms", med(ps_cli), 50, "ms")
le("pod with 2 containers up ≤ 40 ms", med(pods["up_ms"]), 40, "ms")
le("pod removed ≤ 40 ms", med(pods["rm_ms"]), 40, "ms")
le("agent idle RSS ≤ 15 MiB", idle["rss_kib"] / 1024, 15, "MiB")
le("per-container RSS (monitor + agent growth) ≤ 1 MiB", mon_rss + max(0.0, grow_rss), 1, "MiB")
le("per-container PSS (monitor + agent growth) ≤ 0.3 MiB", mon_pss + max(0.0, grow_pss), 0.3, "MiB")
le("fan-out to 16 agents ≤ 1.5× one", med(fan["ps --all, 16 agents"]), 1.5 * med(fan["ps --all, 1 agent"]), "ms")

# ---- the machine -----------------------------------------------------------------------------
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
bindir = os.environ.get("BENCH_BIN", "")
machine = [
    ("host", socket.gethostname()),
    ("CPU", f"{cpu}, {os.cpu_count()} CPUs"),
    ("memory", f"{mem / 1024 / 1024:.1f} GiB"),
    ("kernel", platform.release()),
    ("distribution", "Debian " + open("/etc/debian_version").read().strip() if os.path.exists("/etc/debian_version") else "?"),
    ("cgroup layout", subprocess.run(["stat", "-fc", "%T", "/sys/fs/cgroup"], capture_output=True, text=True).stdout.strip()
     + (" + cgroup2 at /sys/fs/cgroup/unified (hybrid)" if os.path.isdir("/sys/fs/cgroup/unified") else "")),
    ("berth", first_line([os.path.join(bindir, "berth"), "version"]) if bindir else "?"),
    ("runc", first_line(["runc", "--version"])),
    ("crun", first_line(["crun", "--version"])),
    ("hyperfine", first_line(["hyperfine", "--version"])),
    ("swift", first_line(["swift", "--version"])),
    ("load average at report time", open("/proc/loadavg").read().split(" ")[:3].__str__()),
]
if os.path.exists(os.path.join(out, "idle.json")):
    cpu_idle = load("idle.json")
    machine.insert(-1, ("CPU idle over 3 s before measuring", f"{cpu_idle['idle_pct']} % (after waiting {cpu_idle['waited_s']} s for ≥ 90 %)"))
if os.path.exists(os.path.join(out, "loadavg-start")):
    machine.insert(-1, ("load average at start", open(os.path.join(out, "loadavg-start")).read().split(" ")[:3].__str__()))

# ---- markdown ---------------------------------------------------------------------------------
md = ["# Berth benchmark results", "",
      "Made by `bench/run.sh` (bench/README.md explains how to read it). Medians and p90 over the runs shown;",
      "crun's numbers have its wrapper's median subtracted (bench/README.md, \"The crun wrapper\").", "",
      "## Machine", "", "| | |", "|---|---|"]
md += [f"| {k} | {v} |" for k, v in machine]
md += ["", "## Budget (issue 10)", "", "| target | measured | budget | ratio | |", "|---|---:|---:|---:|---|"]
for line, value, limit, ratio, ok in budget:
    md.append(f"| {line} | {value} | {limit} | {ratio:.2f} | {'PASS' if ok else '**MISS**'} |")
md += ["", "## Measurements", "", "| | what | median | p90 | unit | runs |", "|---|---|---:|---:|---|---:|"]


def fmt(v):
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3g}"


for section, what, m, p, unit, runs in rows:
    same = m == p   # one number (a count, a mean, a p99): no p90 column
    md.append(f"| {section} | {what} | {fmt(m)} | {'' if same else fmt(p)} | {unit} | {runs} |")
md += ["", f"![latency distributions]({os.path.basename(prefix)}.png)", ""]
with open(prefix + ".md", "w") as f:
    f.write("\n".join(md))

with open(prefix + ".json", "w") as f:
    json.dump({"machine": dict(machine), "rows": rows,
               "budget": [{"target": b[0], "measured": b[1], "budget": b[2], "ratio": b[3], "pass": b[4]} for b in budget]},
              f, indent=1, ensure_ascii=False)

# ---- chart --------------------------------------------------------------------------------------
fig, ax = plt.subplots(2, 3, figsize=(17, 9))


def box(a, data, labels, title, unit, log=False):
    a.boxplot(data, labels=labels, showfliers=True, flierprops={"markersize": 2}, whis=(5, 95))
    a.set_title(title)
    a.set_ylabel(unit)
    if log:
        a.set_yscale("log")
    a.tick_params(axis="x", labelrotation=25, labelsize=8)
    a.grid(axis="y", alpha=0.3)


box(ax[0][0], [run["berth run --rm"], run["runc run"], crun, run["floor: unshare+chroot"], lib_run, lib_cs],
    ["berth run --rm\n(CLI)", "runc run", "crun run\n(wrapper subtr.)", "unshare+chroot\nfloor", "BerthClient\nrun", "BerthClient\ncreate+start"],
    "1-2 run-to-exit of /bin/true", "ms")
box(ax[0][1], [pp["unix"]["rtt_us"], info["unix"]["us"], pp["tcp"]["rtt_us"], info["tcp"]["us"], pp["tls"]["rtt_us"], info["tls"]["us"]],
    ["C unix", "Info unix", "C tcp", "Info tcp", "C tls", "Info tls"], "3 round trip", "µs (log)", log=True)
kinds = ["unix", "tcp", "tls"]
x = range(len(kinds))
ax[0][2].bar([i - 0.2 for i in x], [pp[k]["pipelined_rps"] for k in kinds], 0.4, label="raw C")
ax[0][2].bar([i + 0.2 for i in x], [info[k]["rps"] for k in kinds], 0.4, label="Info (BerthClient)")
ax[0][2].axhline(20000, color="red", linestyle="--", linewidth=1, label="budget (unix)")
ax[0][2].set_yscale("log")
ax[0][2].set_xticks(list(x), kinds)
ax[0][2].set_title("3 requests/s, one connection, 64 in flight")
ax[0][2].legend(fontsize=8)
box(ax[1][0], [pods["up_ms"], pods["rm_ms"]], ["pod + 2 up", "pod rm -f"], "4 pods", "ms")
ax[1][0].axhline(40, color="red", linestyle="--", linewidth=1)
box(ax[1][1], [ps_cli, ps_lib["ms"]], ["berth ps (CLI)", "ListContainers\n(BerthClient)"], "5 ps with 500 running", "ms")
ax[1][1].axhline(50, color="red", linestyle="--", linewidth=1)
box(ax[1][2], [fan["ps --all, 1 agent"], fan["ps --all, 4 agents"], fan["ps --all, 16 agents"]],
    ["1 agent", "4 agents", "16 agents"], "6 berth --all ps (local agents)", "ms")
fig.suptitle(f"Berth bench, {socket.gethostname()}, kernel {platform.release()} (boxes: quartiles, whiskers: p5-p95)")
fig.tight_layout()
fig.savefig(prefix + ".png", dpi=90)
print(prefix + ".md")
