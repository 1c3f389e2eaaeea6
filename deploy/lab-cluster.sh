#!/usr/bin/env bash
# A lab cluster of Berth agents on one machine (docs/deploy.md):
#
#   deploy/lab-cluster.sh up N [--dir DIR]   N "hosts" (network namespaces) joined by a lab
#                                            bridge, one berthd each with mutual TLS; prints
#                                            the hosts file's path as its last line
#   deploy/lab-cluster.sh down [--dir DIR]   removes every container through its agent, stops
#                                            the agents, removes everything up made
#
# DIR defaults to $XDG_RUNTIME_DIR/berth-lab, or /tmp/berth-lab. Binaries: $BERTH_BIN, or
# this repository's debug or release build, or the installed berthd's. Run as root.
#
# The lab, for host i of N (1 <= N <= 50):
#   root namespace    bridge berthlab0, 10.240.0.1/24; veth berthlabv<i> on it
#   berth-lab-<i>     lab0 = 10.240.0.(10+i)/24 (the veth's other end), lo up
#   its berthd        runs inside berth-lab-<i> (nsenter --net), state under DIR/lab<i>,
#                     --node-name lab<i>, --listen tcp://10.240.0.(10+i):7443 with TLS,
#                     --default-subnet 10.241.<i>.0/24, --subnet-pool 10.(100+i).0.0/16,
#                     --network-prefix lab<i>, --cgroup-parent berth-lab<i>, and a --route
#                     to both subnets of every other host via that host's lab0 address
#   certificates      DIR/certs: ca.pem, lab<i>.pem (SAN: its IP), client.pem (OU=admin)
#
# Only one lab is up at a time on a machine (the names above are fixed): `up` while one
# is up fails and says where it lives; `down` where there is none does nothing. The
# script uses ip(8) for the lab's own wiring; the agents set up their routes and rules
# themselves, through netlink (they never run ip or nft).
set -euo pipefail
umask 022

prog=$0
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bridge=berthlab0
pointer=/run/berth-lab.dir
port=7443

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 64; }
die() { echo "$prog: $*" >&2; exit 1; }
say() { echo "lab: $*"; }

[ $# -ge 1 ] || usage
cmd=$1
shift
count=""
dir=""
if [ "$cmd" = up ]; then
    [ $# -ge 1 ] || usage
    count=$1
    shift
    case $count in ''|*[!0-9]*) echo "$prog: N must be a number from 1 to 50, not \"$count\"" >&2; exit 64 ;; esac
    { [ "$count" -ge 1 ] && [ "$count" -le 50 ]; } || { echo "$prog: N must be from 1 to 50, not $count" >&2; exit 64; }
fi
while [ $# -gt 0 ]; do
    case $1 in
    --dir) [ $# -ge 2 ] || usage; dir=$2; shift 2 ;;
    --dir=*) dir=${1#--dir=}; shift ;;
    -h|--help) usage ;;
    *) echo "$prog: unknown argument \"$1\"" >&2; usage ;;
    esac
done
case $cmd in up|down) ;; -h|--help|help) usage ;; *) echo "$prog: unknown command \"$cmd\"" >&2; usage ;; esac
[ -n "$dir" ] || dir=${XDG_RUNTIME_DIR:-/tmp}/berth-lab
dir=$(realpath -m -- "$dir")
case $dir in /|/tmp|/run|/var|/home|/root|/usr|/etc) die "refusing --dir $dir: give a directory of its own" ;; esac
# It goes into the hosts file (JSON) and into the agents' command lines as it is.
case $dir in *[!A-Za-z0-9._/-]*) die "--dir $dir: use only letters, digits, ., _, - and /" ;; esac
[ "$(id -u)" -eq 0 ] || die "must run as root (it creates network namespaces, and the agents run as root)"
for tool in ip nsenter realpath; do command -v $tool >/dev/null || die "$tool is required (deploy/install-deps.sh)"; done

bins() {
    # $BERTH_BIN; else this repository's debug build, or its release build (what
    # deploy/quickstart.sh makes), or the installed berthd's directory.
    if [ -n "${BERTH_BIN:-}" ]; then
        bin=$BERTH_BIN
    else
        bin=""
        for candidate in "$(cd "$repo" && swift build --show-bin-path 2>/dev/null)" \
                         "$(cd "$repo" && swift build -c release --static-swift-stdlib --show-bin-path 2>/dev/null)" \
                         "$(dirname "$(command -v berthd 2>/dev/null || echo /nonexistent/berthd)")"; do
            if [ -n "$candidate" ] && [ -x "$candidate/berthd" ]; then bin=$candidate; break; fi
        done
        [ -n "$bin" ] || die "cannot find the binaries: set BERTH_BIN, run swift build in $repo, or deploy/quickstart.sh"
    fi
    for b in berthd berth berth-monitor; do
        [ -x "$bin/$b" ] || die "$bin/$b is missing: run swift build in $repo (or set BERTH_BIN)"
    done
}

ns() { echo "berth-lab-$1"; }
# Whether process $1 runs (a zombie does not: an agent this script started and that died
# stays one until the script exits).
alive() {
    local state
    state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null || true)
    [ -n "$state" ] && [ "$state" != Z ]
}
labip() { echo "10.240.0.$((10 + $1))"; }
# The CLI against host i, with the lab's TLS files.
cli() {
    local i=$1
    shift
    "$bin/berth" -H "tcp://$(labip "$i"):$port" --tls-ca "$dir/certs/ca.pem" --tls-cert "$dir/certs/client.pem" \
        --tls-key "$dir/certs/client-key.pem" "$@"
}

# ---------------------------------------------------------------------------------------
# down: safe on a half-made lab (a failed up calls it), and a no-op where there is none.

down() {
    if [ ! -f "$dir/lab.env" ]; then
        if [ -f "$pointer" ] && [ "$(cat "$pointer")" != "$dir" ]; then
            say "no lab in $dir (the lab that is up lives in $(cat "$pointer"))"
        fi
        return 0
    fi
    local n
    n=$(sed -n 's/^count=//p' "$dir/lab.env")
    case $n in ''|*[!0-9]*) die "$dir/lab.env is damaged (no count=)" ;; esac
    bin=$(sed -n 's/^bin=//p' "$dir/lab.env")
    local i pid ids
    # 1. Containers, pods and user networks, through each agent that still answers.
    for i in $(seq 1 "$n"); do
        pid=$(cat "$dir/lab$i/berthd.pid" 2>/dev/null || true)
        [ -n "$pid" ] && alive "$pid" || continue
        [ -x "$bin/berth" ] || continue
        ids=$(cli "$i" ps -a -q 2>/dev/null || true)
        [ -z "$ids" ] || cli "$i" rm -f $ids >/dev/null 2>&1 || echo "lab: lab$i: rm -f failed" >&2
        ids=$(cli "$i" pod ls -q 2>/dev/null || true)
        [ -z "$ids" ] || cli "$i" pod rm -f $ids >/dev/null 2>&1 || echo "lab: lab$i: pod rm -f failed" >&2
        ids=$(cli "$i" network ls -q 2>/dev/null | grep -vx bridge || true)
        [ -z "$ids" ] || cli "$i" network rm $ids >/dev/null 2>&1 || echo "lab: lab$i: network rm failed" >&2
    done
    # 2. The agents: SIGTERM, then wait (SIGKILL after 20 s).
    for i in $(seq 1 "$n"); do
        pid=$(cat "$dir/lab$i/berthd.pid" 2>/dev/null || true)
        [ -n "$pid" ] && alive "$pid" || continue
        # Only a berthd of this lab: a stale pid file must not kill someone else.
        grep -qF -- "$dir/lab$i/" "/proc/$pid/cmdline" 2>/dev/null || continue
        kill -TERM "$pid"
    done
    for i in $(seq 1 "$n"); do
        pid=$(cat "$dir/lab$i/berthd.pid" 2>/dev/null || true)
        [ -n "$pid" ] || continue
        mine() { alive "$pid" && grep -qF -- "$dir/lab$i/" "/proc/$pid/cmdline" 2>/dev/null; }
        for _ in $(seq 1 200); do
            mine || break
            sleep 0.1
        done
        if mine; then
            echo "lab: lab$i: berthd $pid ignored SIGTERM for 20 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$dir/lab$i/berthd.pid"
    done
    # 3. Whatever an agent could not remove (it was dead or failed): every process in a
    #    lab cgroup (containers), then the monitors (their CONFIG lies under DIR).
    local cg procs p
    for i in $(seq 1 "$n"); do
        for cg in /sys/fs/cgroup/berth-lab$i /sys/fs/cgroup/*/berth-lab$i; do
            [ -d "$cg" ] || continue
            procs=$(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null || true)
            [ -z "$procs" ] || kill -KILL $procs 2>/dev/null || true
        done
    done
    for p in /proc/[0-9]*; do
        grep -qF -- "$dir/lab" "$p/cmdline" 2>/dev/null && kill -KILL "${p#/proc/}" 2>/dev/null || true
    done
    sleep 0.2
    # 4. Mounts under DIR (overlays, pinned namespaces), deepest first.
    local m
    while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    # 5. The hosts (their namespaces take the agents' bridges, veths, routes and nftables
    #    tables along), the lab bridge, the cgroups.
    for i in $(seq 1 "$n"); do
        ip netns del "$(ns "$i")" 2>/dev/null || true
        ip link del "berthlabv$i" 2>/dev/null || true
    done
    ip link del "$bridge" 2>/dev/null || true
    for i in $(seq 1 "$n"); do
        for cg in /sys/fs/cgroup/berth-lab$i /sys/fs/cgroup/*/berth-lab$i; do
            [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
        done
    done
    # 6. The directory (never across a mount that survived the unmounts).
    rm -rf --one-file-system -- "$dir"
    if [ -f "$pointer" ] && [ "$(cat "$pointer")" = "$dir" ]; then rm -f "$pointer"; fi
    say "down: $dir removed"
}

# ---------------------------------------------------------------------------------------
# up

up() {
    local n=$count i j
    if [ -f "$pointer" ] || ip link show "$bridge" >/dev/null 2>&1 || ip netns list 2>/dev/null | grep '^berth-lab-' >/dev/null; then
        die "a Berth lab is already up (dir: $(cat "$pointer" 2>/dev/null || echo unknown)): run \`$prog down --dir DIR\` first"
    fi
    [ ! -e "$dir" ] || [ -z "$(ls -A "$dir" 2>/dev/null)" ] || die "$dir exists and is not empty: give another --dir or remove it"
    if [ -n "$(ip -4 route show to match 10.240.0.1 | grep -v '^default')" ]; then
        die "10.240.0.0/24 is already routed on this host: the lab needs it"
    fi
    bins
    command -v openssl >/dev/null || die "openssl is required (deploy/install-deps.sh)"
    mkdir -p "$dir"
    chmod 0755 "$dir"
    echo "$dir" > "$pointer"
    printf 'count=%s\nbin=%s\n' "$n" "$bin" > "$dir/lab.env"
    # From here on, a failure takes down whatever was made.
    trap 'status=$?; if [ $status -ne 0 ]; then echo "$prog: up failed; removing the partial lab" >&2; down >&2 || true; fi' EXIT
    # Ctrl-C or a kill: exit through the EXIT trap, so the partial lab goes too.
    trap 'exit 130' INT TERM HUP

    say "certificates in $dir/certs"
    local mk=$here/make-certs.sh
    bash "$mk" "$dir/certs" ca >/dev/null
    bash "$mk" "$dir/certs" client client admin >/dev/null
    for i in $(seq 1 "$n"); do bash "$mk" "$dir/certs" agent "lab$i" "$(labip "$i")" >/dev/null; done

    say "bridge $bridge 10.240.0.1/24 and $n hosts"
    ip link add "$bridge" type bridge
    ip addr add 10.240.0.1/24 dev "$bridge"
    ip link set "$bridge" up
    for i in $(seq 1 "$n"); do
        ip netns add "$(ns "$i")"
        ip link add "berthlabv$i" type veth peer name lab0 netns "$(ns "$i")"
        ip link set "berthlabv$i" master "$bridge" up
        ip -n "$(ns "$i")" addr add "$(labip "$i")/24" dev lab0
        ip -n "$(ns "$i")" link set lab0 up
        ip -n "$(ns "$i")" link set lo up
    done

    for i in $(seq 1 "$n"); do
        local d=$dir/lab$i
        mkdir -p "$d"
        local args=(--state-dir "$d/state" --run-dir "$d/run" --socket "$d/berth.sock" --node-name "lab$i"
            --listen "tcp://$(labip "$i"):$port" --tls-cert "$dir/certs/lab$i.pem" --tls-key "$dir/certs/lab$i-key.pem"
            --tls-ca "$dir/certs/ca.pem" --network-prefix "lab$i" --default-subnet "10.241.$i.0/24"
            --subnet-pool "10.$((100 + i)).0.0/16" --cgroup-parent "berth-lab$i")
        for j in $(seq 1 "$n"); do
            [ "$j" -ne "$i" ] || continue
            args+=(--route "10.241.$j.0/24=$(labip "$j")" --route "10.$((100 + j)).0.0/16=$(labip "$j")")
        done
        printf '%q ' "$bin/berthd" "${args[@]}" > "$d/berthd.cmdline"
        # nsenter --net, not `ip netns exec`: that one also makes a mount namespace and
        # remounts /sys, which hides /sys/fs/cgroup from the agent and keeps its mounts
        # (overlays, pinned namespaces) out of the host's sight. Only the network
        # namespace makes the "host". setsid: the agent outlives this script's session.
        setsid nsenter --net="/run/netns/$(ns "$i")" -- "$bin/berthd" "${args[@]}" \
            </dev/null >"$d/berthd.log" 2>&1 &
        echo $! > "$d/berthd.pid"
    done

    say "waiting for the agents"
    for i in $(seq 1 "$n"); do
        local ok=0 pid
        pid=$(cat "$dir/lab$i/berthd.pid")
        for _ in $(seq 1 600); do
            if cli "$i" info >/dev/null 2>&1; then ok=1; break; fi
            alive "$pid" || break
            sleep 0.1
        done
        if [ $ok -ne 1 ]; then
            echo "$prog: lab$i did not answer at tcp://$(labip "$i"):$port; its log:" >&2
            sed 's/^/  /' "$dir/lab$i/berthd.log" >&2 || true
            exit 1
        fi
        say "lab$i at tcp://$(labip "$i"):$port (containers 10.241.$i.0/24)"
    done

    local hosts=$dir/hosts.json
    {
        echo '{'
        echo '  "nodes": ['
        for i in $(seq 1 "$n"); do
            printf '    { "name": "lab%s", "endpoint": "tcp://%s:%s",\n' "$i" "$(labip "$i")" "$port"
            printf '      "tls": { "ca": "%s", "cert": "%s", "key": "%s" },\n' \
                "$dir/certs/ca.pem" "$dir/certs/client.pem" "$dir/certs/client-key.pem"
            printf '      "labels": { "lab": "true" } }%s\n' "$([ "$i" -lt "$n" ] && echo , || true)"
        done
        echo '  ]'
        echo '}'
    } > "$hosts.tmp"
    mv "$hosts.tmp" "$hosts"
    trap - EXIT INT TERM HUP
    say "up: $n agents; down with: $prog down --dir $dir"
    echo "$hosts"
}

case $cmd in
up) up ;;
down) down ;;
esac
