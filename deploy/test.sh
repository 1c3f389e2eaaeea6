#!/usr/bin/env bash
# README command 2: install what the tests need, check the generated wire code is
# current, build, and run the whole test suite (unit tests and root integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"
[ "$(id -u)" = 0 ] || { echo "run as root: the integration tests create namespaces and mounts" >&2; exit 1; }

deploy/install-deps.sh
proto/generate.sh --check
echo "== building"
swift build --build-tests -Xswiftc -warnings-as-errors 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]'
echo "== testing"
swift test --skip-build --disable-xctest
echo "== fuzzing the wire decoding and request validation (60 s; docs/fuzzing.md)"
deploy/fuzz.sh 60
