#!/usr/bin/env bash
# Installs what building, running and testing Berth needs on Debian 12, from Debian's
# packages only. Idempotent: apt-get is skipped when everything is already there.
set -euo pipefail
packages=(
  pkg-config              # finds the C libraries below for SwiftPM
  protobuf-c-compiler     # protoc-c: regenerates/checks Sources/CBerthProto
  libprotobuf-c-dev       # the wire encoding
  libarchive-dev          # reading image tarballs (plain and gzip)
  libssl-dev              # libcrypto: SHA-256 image ids
  libnl-route-3-dev       # rtnetlink: bridges, veth pairs, addresses, routes
  libnftables-dev         # Berth's nftables table (NAT, published ports, isolation)
  libcap-dev              # capability names and numbers (cap_from_name) for --cap-add/--cap-drop
  libseccomp-dev          # compiles seccomp profiles (default and docker JSON) to BPF
  nftables                # tests inspect the table with nft(8)
  openssl                 # deploy/make-certs.sh (lab CA and certificates for mutual TLS)
  busybox-static          # the test image (deploy/make-test-image.sh)
  iproute2                # tests inspect namespaces with ip(8); deploy/lab-cluster.sh wires the lab with it
  util-linux              # nsenter/unshare/mount used by tests; nsenter/setsid start the lab agents
  libcurl4-openssl-dev    # the agent's registry client (HTTPS, redirects, Range resumes)
  python3                 # builds the image tests' OCI layouts and docker-archives
  skopeo                  # the image tests copy their images into a registry
  docker-registry         # the image tests' registry on loopback (started by the tests themselves)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  echo "installed: ${missing[*]}"
fi
# Debian's docker-registry package starts a registry on :5000 as a service; the tests run
# their own, so the packaged one is stopped and kept off (a no-op without systemd).
if command -v systemctl >/dev/null && systemctl is-enabled docker-registry >/dev/null 2>&1; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
if ! command -v swift >/dev/null; then
  if [ -x /opt/swift/usr/bin/swift ]; then
    echo "swift is at /opt/swift/usr/bin: add it to PATH" >&2
  else
    echo "Swift 6 is required: install a toolchain from swift.org and put it on PATH" >&2
  fi
  exit 1
fi
