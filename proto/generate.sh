#!/usr/bin/env bash
# Regenerates the protobuf-c code in Sources/CBerthProto from proto/berth/v1/*.proto.
# `proto/generate.sh --check` exits 1 when the committed code is stale.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/Sources/CBerthProto"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
command -v protoc-c >/dev/null || { echo "protoc-c not found: apt-get install -y protobuf-c-compiler" >&2; exit 1; }
(cd "$root/proto" && protoc-c --c_out="$tmp" berth/v1/*.proto)
mkdir -p "$tmp/include/berth/v1"
for f in "$tmp"/berth/v1/*.pb-c.h; do mv "$f" "$tmp/include/berth/v1/"; done
if [ "${1:-}" = "--check" ]; then
  stale=0
  for f in "$tmp"/berth/v1/*.pb-c.c; do cmp -s "$f" "$out/$(basename "$f")" || { echo "stale: Sources/CBerthProto/$(basename "$f")"; stale=1; }; done
  for f in "$tmp"/include/berth/v1/*.pb-c.h; do cmp -s "$f" "$out/include/berth/v1/$(basename "$f")" || { echo "stale: Sources/CBerthProto/include/berth/v1/$(basename "$f")"; stale=1; }; done
  [ $stale = 0 ] || { echo "generated protobuf-c code is stale: run proto/generate.sh and commit" >&2; exit 1; }
  echo "generated protobuf-c code is current"
  exit 0
fi
mkdir -p "$out/include/berth/v1"
cp "$tmp"/berth/v1/*.pb-c.c "$out/"
cp "$tmp"/include/berth/v1/*.pb-c.h "$out/include/berth/v1/"
echo "regenerated Sources/CBerthProto"
