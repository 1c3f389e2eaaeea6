#!/usr/bin/env bash
# README command 1: set up Berth on a fresh Debian 12 machine (as root), build it,
# start a local berthd, import the busybox test image and run a container in it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"
[ "$(id -u)" = 0 ] || { echo "run as root: berthd creates namespaces and mounts" >&2; exit 1; }

deploy/install-deps.sh
echo "== building (release)"
swift build -c release --static-swift-stdlib 2>&1 | tail -1
bin=$(swift build -c release --static-swift-stdlib --show-bin-path)
install -m 0755 "$bin/berthd" "$bin/berth" "$bin/berth-monitor" /usr/local/bin/
echo "installed berthd, berth-monitor and berth in /usr/local/bin"

deploy/make-test-image.sh ./busybox.tar >/dev/null
echo "built ./busybox.tar (busybox test image)"

# An agent from an earlier build is replaced; its containers keep running and the new one adopts them.
if pgrep -x berthd >/dev/null; then pkill -TERM -x berthd; for _ in $(seq 50); do pgrep -x berthd >/dev/null || break; sleep 0.1; done; fi
if ! berth version >/dev/null 2>&1; then
  echo "== starting berthd (log: /var/log/berthd.log)"
  setsid berthd >>/var/log/berthd.log 2>&1 < /dev/null &
  for _ in $(seq 50); do berth version >/dev/null 2>&1 && break; sleep 0.1; done
fi
berth version

echo "== berth image import busybox ./busybox.tar"
berth image import busybox ./busybox.tar
echo "== berth run --rm --hostname box busybox sh -c 'hostname; echo \$\$; ip -4 -o addr show eth0; exit 3'"
set +e
berth run --rm --hostname box busybox sh -c 'hostname; echo $$; ip -4 -o addr show eth0; exit 3'
code=$?
set -e
echo "(exit code $code)"
echo "== berth ps -a"
berth ps -a
echo "== berth info"
berth info
echo "berthd keeps running; stop it with: pkill -TERM berthd"
