#!/usr/bin/env bash
# Fuzzes the wire path (frames, messages, spec validation) with libFuzzer for SECONDS
# (default 60): builds berth-fuzz in release with -sanitize=fuzzer,address and runs it on a
# copy of Fuzz/corpus. Exits non-zero on a crash, leaving the crashing input in
# .build/fuzz-artifacts/ (printed). See docs/fuzzing.md.
#   deploy/fuzz.sh [SECONDS] [extra libFuzzer flags...]   e.g. deploy/fuzz.sh 3600 -jobs=8 -workers=8
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/opt/swift/usr/bin"
seconds="${1:-60}"
shift || true
case "$seconds" in ''|*[!0-9]*) echo "usage: deploy/fuzz.sh [SECONDS] [libFuzzer flags...]" >&2; exit 2 ;; esac

# A scratch path of its own: these flags would otherwise invalidate the normal release build.
# -D BERTH_FUZZ leaves out berth-fuzz's fallback main (libFuzzer has one); -enable-testing lets
# BerthFuzzCore reach BerthRuntime's internal spec validation (@testable import).
scratch=.build/fuzz
sanitizers="${BERTH_FUZZ_SANITIZERS:-fuzzer,address}"
echo "== building berth-fuzz (release, -sanitize=$sanitizers)"
swift build -c release --scratch-path "$scratch" --product berth-fuzz \
    -Xswiftc "-sanitize=$sanitizers" -Xswiftc -DBERTH_FUZZ -Xswiftc -enable-testing \
    2>&1 | { grep -vE '^\[[0-9]+/[0-9]+\]' || true; } || { echo "build failed" >&2; exit 1; }
binary="$scratch/release/berth-fuzz"

# libFuzzer adds what it finds to the first corpus directory: work on a copy, so the
# committed seeds stay small (merge new inputs back by hand, see docs/fuzzing.md).
corpus="${BERTH_FUZZ_CORPUS:-.build/fuzz-corpus}"
artifacts=.build/fuzz-artifacts
mkdir -p "$corpus" "$artifacts"
cp -n Fuzz/corpus/* "$corpus"/ 2>/dev/null || true

# A Swift trap then ends in a plain signal libFuzzer reports; the Swift runtime's own
# backtracer, reading the process's memory, would trip AddressSanitizer first.
export SWIFT_BACKTRACE=enable=no
echo "== fuzzing for ${seconds}s (corpus $corpus, crashes to $artifacts/)"
status=0
"$binary" "$corpus" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 "$@" || status=$?
if [ "$status" -ne 0 ]; then
    echo "== berth-fuzz found a problem (exit $status); inputs in $artifacts/:" >&2
    ls -l "$artifacts" >&2
    echo "reproduce: $binary $artifacts/<file>; keep it: copy it to Fuzz/regressions/ (docs/fuzzing.md)" >&2
    exit 1
fi
echo "== no crash in ${seconds}s"
