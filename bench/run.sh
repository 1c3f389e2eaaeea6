#!/usr/bin/env bash
# Berth's benchmark, side by side with runc, crun and the kernel's floor (issue 10,
# bench/README.md). As root, from a clone:
#
#   bench/run.sh            → bench/results/<date>-<host>.md, .png, .json and latest.*
#
# Environment: BERTH_BENCH_SCRATCH (SwiftPM --scratch-path, default .build),
# BERTH_BENCH_RUNS (repetitions per command, default 60), BERTH_BENCH_SKIP_BUILD=1,
# BERTH_BENCH_WAIT_IDLE (seconds to wait for a quiet machine, default 180).
# Everything it makes (agents, containers, cgroups, mounts, links, temp dirs) is removed
# when it ends, pass or fail. It uses loopback only.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
scratch=${BERTH_BENCH_SCRATCH:-$repo/.build}
runs=${BERTH_BENCH_RUNS:-60}
py=/usr/bin/python3          # Debian's, which has python3-matplotlib (not a pyenv one)
[ "$(id -u)" = 0 ] || { echo "$0: run as root (agents make namespaces, mounts and cgroups)" >&2; exit 1; }

say() { printf '\n== %s  (%s)\n' "$*" "$(date +%T)" >&2; }

# ---- dependencies (apt only for what is missing) ----------------------------------
need=()
for pkg in runc crun hyperfine python3-matplotlib busybox-static openssl util-linux gcc libssl-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    say "apt-get install ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >&2
fi

# ---- build ---------------------------------------------------------------------------
if [ "${BERTH_BENCH_SKIP_BUILD:-0}" != 1 ]; then
    say "swift build -c release"
    (cd "$repo" && swift build -c release --scratch-path "$scratch" >&2)
fi
bin=$(cd "$repo" && swift build -c release --scratch-path "$scratch" --show-bin-path)
for b in berthd berth berth-monitor berth-bench; do [ -x "$bin/$b" ] || { echo "$0: $bin/$b missing" >&2; exit 1; }; done

# ---- the work dir and the cleanup that runs whatever happens --------------------------
work=$(mktemp -d /tmp/berth-bench.XXXXXX)
out=$work/out
mkdir -p "$out"
cp /proc/loadavg "$out/loadavg-start"
agent_pids=()
cleanup() {
    local rc=$?
    set +e
    say "cleanup"
    # Containers outlive their agent by design: remove them through the agent first.
    for sock in "$work"/agents/*/berth.sock; do
        [ -S "$sock" ] && timeout 60 "$bin/berth-bench" rm-all "unix://$sock" >/dev/null 2>&1
    done
    for pid in "${agent_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${agent_pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    done
    # Any monitor (and so container) left of ours: by pid, found by our work dir in its
    # command line or its log path.
    for pid in $(pgrep -f "$work"); do kill -KILL "$pid" 2>/dev/null; done
    # And the containers' own processes, should an agent have gone before removing them:
    # every process in one of our cgroups (--cgroup-parent berth-bench-*).
    for p in /proc/[0-9]*; do
        grep -q ':/berth-bench-' "$p/cgroup" 2>/dev/null && kill -KILL "${p#/proc/}" 2>/dev/null
    done
    sleep 0.5
    for id in berthbench-runc berthbench-crun; do runc delete -f "$id" >/dev/null 2>&1; crun delete -f "$id" >/dev/null 2>&1; done
    # Mounts under the work dir, deepest first.
    awk -v w="$work" '$5 ~ "^"w {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
    # Cgroups of our agents (--cgroup-parent berth-bench-*), in every hierarchy.
    for d in /sys/fs/cgroup/berth-bench-* /sys/fs/cgroup/*/berth-bench-* /sys/fs/cgroup/*/berthbench-*; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    # Links and nftables tables of our network prefixes (bb…): none are expected with
    # --default-network none, this is the safety net.
    for l in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^bb[0-9a-z]{2,4}' ); do ip link del "$l" 2>/dev/null; done
    for t in $(nft list tables 2>/dev/null | awk '$2=="ip" && $3 ~ /^bb/ {print $3}'); do nft delete table ip "$t"; done
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- fixtures: the busybox image, an OCI bundle of the same rootfs, certificates --------
say "fixtures"
"$repo/deploy/make-test-image.sh" "$work/busybox.tar" >/dev/null
rootfs=$work/bundle/rootfs
mkdir -p "$rootfs"
tar -xf "$work/busybox.tar" -C "$rootfs"
(cd "$work/bundle" && runc spec)
# /bin/true, no terminal; linux.resources.devices empty: crun's device filter needs
# CAP_SYS_RESOURCE, which root lacks here (and runc is given the same config).
"$py" - "$work/bundle/config.json" <<'EOF'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["args"] = ["/bin/true"]; c["process"]["terminal"] = False
c["linux"]["resources"] = {"devices": []}
json.dump(c, open(p, "w"), indent=1)
EOF
certs=$work/certs
"$repo/deploy/make-certs.sh" "$certs" ca >/dev/null
"$repo/deploy/make-certs.sh" "$certs" agent agent 127.0.0.1 >/dev/null
"$repo/deploy/make-certs.sh" "$certs" client client >/dev/null
cc -O2 -Wall -o "$work/pingpong" "$repo/bench/pingpong.c" -lssl -lcrypto

# crun 1.8 refuses the hybrid cgroup layout ("cgroups in hybrid mode not supported"):
# on such a host it runs in a private mount namespace where /sys/fs/cgroup is cgroup2.
# The wrapper's own cost (unshare + sh + mount) is measured alone and subtracted.
crun_wrap=$work/crun-wrap.sh
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
    printf '#!/bin/sh\nexec "$@"\n' > "$crun_wrap"
else
    cat > "$crun_wrap" <<'EOF'
#!/bin/sh
exec unshare --mount --propagation private sh -c 'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"' wrap "$@"
EOF
fi
chmod +x "$crun_wrap"

# ---- a quiet machine ---------------------------------------------------------------------
# Other work on a 2-CPU machine moves every number: wait (up to BERTH_BENCH_WAIT_IDLE
# seconds, default 180) until the CPUs are at least 90 % idle over 3 s, and record it.
idle_pct() {
    local a b
    read -ra a < <(head -1 /proc/stat); sleep 3; read -ra b < <(head -1 /proc/stat)
    local t=0 i; for i in 1 2 3 4 5 6 7 8; do t=$((t + b[i] - a[i])); done
    echo $(( 100 * (b[4] - a[4] + b[5] - a[5]) / (t > 0 ? t : 1) ))
}
waited=0
while :; do
    idle=$(idle_pct)
    [ "$idle" -ge 90 ] || [ "$waited" -ge "${BERTH_BENCH_WAIT_IDLE:-180}" ] && break
    say "machine busy (${idle}% idle): waiting"
    waited=$((waited + 3))
done
echo "{\"idle_pct\":$idle,\"waited_s\":$waited}" > "$out/idle.json"

# ---- agents ------------------------------------------------------------------------------
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# launch_agent NAME PREFIX [berthd args…]: its own dirs, socket, cgroup parent and network
# prefix, --default-network none. await_agent NAME: until it answers.
launch_agent() {
    local name=$1 prefix=$2; shift 2
    local d=$work/agents/$name
    mkdir -p "$d"
    # A session of its own: a Ctrl-C on the terminal reaches this script (whose cleanup
    # removes the containers through the agent, then stops it), not the agent directly.
    setsid "$bin/berthd" --socket "$d/berth.sock" --state-dir "$d/state" --run-dir "$d/run" --node-name "$name" \
        --network-prefix "$prefix" --default-network none --cgroup-parent "berth-bench-$prefix" \
        --subnet-pool 10.233.0.0/16 --default-subnet "10.234.$((RANDOM % 250)).0/24" \
        "$@" </dev/null >"$d/berthd.log" 2>&1 &
    agent_pids+=($!)
    echo $! > "$d/pid"
}
await_agent() {
    local d=$work/agents/$1
    for _ in $(seq 300); do
        "$bin/berth" -H "unix://$d/berth.sock" info >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "$0: agent $1 did not start:" >&2; cat "$d/berthd.log" >&2; return 1
}
# cpu_ms PID… → CPU time (user + system, ms) used so far by the processes, threads that
# have exited included (fields 14 and 15 of /proc/PID/stat, in clock ticks).
cpu_ms() { local hz; hz=$(getconf CLK_TCK); for p in "$@"; do cat "/proc/$p/stat"; done | awk -v hz="$hz" '{sub(/^.*\) /, ""); t += $12 + $13} END {printf "%d\n", t * 1000 / hz}'; }
# rss_pss PID… → "RSS_KiB PSS_KiB" summed over the processes (smaps_rollup).
rss_pss() { for p in "$@"; do cat "/proc/$p/smaps_rollup"; done | awk '/^Rss:/{r+=$2} /^Pss:/{p+=$2} END{print r+0, p+0}'; }

tcp_port=$(free_port); tls_port=$(free_port)
say "agents: main (unix + tcp :$tcp_port), tls (:$tls_port)"
launch_agent main bb0 --listen "tcp://127.0.0.1:$tcp_port"
launch_agent tls bbt --listen "tcp://127.0.0.1:$tls_port" --tls-cert "$certs/agent.pem" --tls-key "$certs/agent-key.pem" --tls-ca "$certs/ca.pem"
await_agent main; await_agent tls
main=unix://$work/agents/main/berth.sock
main_pid=$(cat "$work/agents/main/pid")
"$bin/berth" -H "$main" image import busybox "$work/busybox.tar" >/dev/null

# ---- 7a: agent idle memory (started, image imported, one Info answered) -------------------
sleep 1
read -r rss pss < <(rss_pss "$main_pid")
echo "{\"rss_kib\":$rss,\"pss_kib\":$pss}" > "$out/mem-idle.json"

# ---- 3: request round trip, against the raw C ping-pong of the same socket kind ---------
say "3: Info round trip vs C ping-pong (unix, tcp, tls)"
# The floor is measured before and after Berth's runs (2 × 2500 round trips), so that
# a burst of other work on the machine weighs on both sides alike.
for kind in unix tcp tls; do "$work/pingpong" "$kind" 2500 "$certs" > "$out/pingpong-$kind-a.json"; done
c0=$(cpu_ms "$main_pid")
"$bin/berth-bench" info "$main" 5000 > "$out/info-unix.json"
echo "{\"agent_cpu_ms\":$(( $(cpu_ms "$main_pid") - c0 ))}" > "$out/info-unix-cpu.json"
"$bin/berth-bench" info "tcp://127.0.0.1:$tcp_port" 5000 > "$out/info-tcp.json"
"$bin/berth-bench" info "tcp://127.0.0.1:$tls_port" 5000 "$certs" > "$out/info-tls.json"
for kind in unix tcp tls; do "$work/pingpong" "$kind" 2500 "$certs" > "$out/pingpong-$kind-b.json"; done

# ---- 1: run-to-exit of /bin/true, whole processes, with hyperfine --------------------------
say "1: run-to-exit: berth run --rm vs runc vs crun vs unshare+chroot ($runs runs each)"
hyperfine -N --warmup 3 --runs "$runs" --export-json "$out/run-to-exit.json" --style basic \
    -n "berth run --rm" "$bin/berth -H $main run --rm busybox /bin/true" \
    -n "runc run" "runc run --bundle $work/bundle berthbench-runc" \
    -n "crun run (wrapped)" "$crun_wrap crun --cgroup-manager=cgroupfs run --bundle $work/bundle berthbench-crun" \
    -n "crun wrapper alone" "$crun_wrap /bin/true" \
    -n "floor: unshare+chroot" "unshare --pid --fork --net --ipc --uts --mount chroot $rootfs /bin/true" >&2

# ---- 2: the same through BerthClient in one process; detached create+start ---------------
say "2: BerthClient run-to-exit and create+start"
"$bin/berth-bench" run "$main" "$runs" > "$out/lib-run.json"
"$bin/berth-bench" create-start "$main" "$runs" > "$out/lib-create-start.json"

# ---- 4: pods ------------------------------------------------------------------------------
say "4: pod + 2 containers up, pod rm -f"
"$bin/berth-bench" pods "$main" 20 > "$out/pods.json"

# ---- 7b: per-container overhead, over 100 sleepers -----------------------------------------
say "5/7: 100 concurrent sleepers; per-container memory"
"$bin/berth-bench" rm-all "$main" >/dev/null
sleep 1
read -r base_rss base_pss < <(rss_pss "$main_pid")
"$bin/berth-bench" scale "$main" 100 > "$out/scale-100.json"
sleep 2
read -r rss100 pss100 < <(rss_pss "$main_pid")
mons=$("$bin/berth-bench" monitors "$main" | tr '\n' ' ')
nmon=$(wc -w <<<"$mons")
echo "monitors of the 100: $nmon; berth ps lines: $("$bin/berth" -H "$main" ps | wc -l)" >&2
read -r mon_rss mon_pss < <(rss_pss $mons)
cat > "$out/mem-per-container.json" <<EOF
{"containers":$nmon,"monitor_rss_kib":$mon_rss,"monitor_pss_kib":$mon_pss,
 "agent_before_rss_kib":$base_rss,"agent_before_pss_kib":$base_pss,"agent_after_rss_kib":$rss100,"agent_after_pss_kib":$pss100}
EOF
"$bin/berth-bench" rm-all "$main" >/dev/null

# ---- 5: 500 at once; ps with 500 running; agent RSS with 500 --------------------------------
say "5: 500 concurrent sleepers; ps with 500 running"
"$bin/berth-bench" scale "$main" 500 > "$out/scale-500.json"
sleep 1
read -r rss500 pss500 < <(rss_pss "$main_pid")
echo "{\"rss_kib\":$rss500,\"pss_kib\":$pss500}" > "$out/mem-500.json"
hyperfine -N --warmup 2 --runs "$runs" --export-json "$out/ps-500.json" --style basic \
    -n "berth ps (500 running)" "$bin/berth -H $main ps" >&2
"$bin/berth-bench" ps "$main" 30 > "$out/lib-ps-500.json"
"$bin/berth-bench" rm-all "$main" >/dev/null

# ---- 6: fan-out ps --all to 1, 4 and 16 local agents ----------------------------------------
say "6: fan-out ps --all: 1, 4, 16 local agents"
for i in $(seq 16); do launch_agent "f$i" "bf$i"; done
for i in $(seq 16); do await_agent "f$i"; done
for n in 1 4 16; do
    "$py" - "$work" "$n" > "$work/hosts-$n.json" <<'EOF'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
print(json.dumps({"nodes": [{"name": f"f{i}", "endpoint": f"unix://{work}/agents/f{i}/berth.sock"} for i in range(1, n + 1)]}))
EOF
done
# Each agent runs one sleeper, so every answer has a row.
"$bin/berth" --hosts "$work/hosts-16.json" --all image import busybox "$work/busybox.tar" >/dev/null
"$bin/berth" --hosts "$work/hosts-16.json" --all run -d busybox sleep 100000 >/dev/null
# One hyperfine per size, so that the agents' CPU time per call can be told apart.
fan_pids=$(for i in $(seq 16); do cat "$work/agents/f$i/pid"; done)
for n in 1 4 16; do
    c0=$(cpu_ms $fan_pids)
    hyperfine -N --warmup 3 --runs "$runs" --export-json "$out/fanout-$n.json" --style basic \
        -n "ps --all, $n agent$([ "$n" = 1 ] || echo s)" "$bin/berth --hosts $work/hosts-$n.json --all ps" >&2
    echo "{\"agents_cpu_ms\":$(( $(cpu_ms $fan_pids) - c0 )),\"calls\":$((runs + 3))}" > "$out/fanout-$n-cpu.json"
done

# ---- report ----------------------------------------------------------------------------------
say "report"
stamp=$(date -u +%Y-%m-%d)-$(hostname -s)
mkdir -p "$repo/bench/results"
BENCH_BIN=$bin "$py" "$repo/bench/report.py" "$out" "$repo/bench/results/$stamp"
cp "$repo/bench/results/$stamp.md" "$repo/bench/results/latest.md"
cp "$repo/bench/results/$stamp.png" "$repo/bench/results/latest.png"
cp "$repo/bench/results/$stamp.json" "$repo/bench/results/latest.json"
say "done: bench/results/$stamp.md"
