#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; TARGET defaults to every target (walk vtd smmuv3 inspect
# scenario). All targets are built in one `cargo fuzz build` (no sanitizer: the fuzzed crates
# forbid unsafe code; overflow checks and debug assertions on), then each runs in turn on one
# core, its full log in fuzz/artifacts/TARGET/log.
#
# FUZZ_PROFILE=release (the default) builds optimised code, for long runs; FUZZ_PROFILE=dev
# builds unoptimised code faster (one-shot, no incremental state) and runs it a few times slower, for
# short runs (what .ci/run does). FUZZ_TIMEOUT (seconds, default 10) is the longest one input
# may take.
#
# A crash, a panic, an input that takes longer than FUZZ_TIMEOUT, or running out of memory stops
# the script with a non-zero status and leaves the input in fuzz/artifacts/TARGET/. Installs
# cargo-fuzz (`cargo install cargo-fuzz`) and the nightly toolchain where they are missing.
#
# Corpora grow in fuzz/corpus/TARGET (not committed); examples/*.toml seed the scenario parser.
# Replay a crash: `cargo +nightly fuzz run -s none TARGET fuzz/artifacts/TARGET/crash-...`.
set -euo pipefail
cd "$(dirname "$0")"

secs=${1:-60}
shift || true
timeout=${FUZZ_TIMEOUT:-10}
all=(walk vtd smmuv3 inspect scenario)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all[@]}"); fi

if ! rustup run nightly rustc --version > /dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version > /dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

start=$(date +%s)
profile=${FUZZ_PROFILE:-release}
case "$profile" in
    release) build=(); dir=release ;;
    dev) build=(--dev); dir=debug ;;
    *) echo "FUZZ_PROFILE is release or dev, not $profile" >&2; exit 2 ;;
esac
echo "== cargo fuzz build ($profile, all targets)"
cargo +nightly fuzz build -s none "${build[@]}"
built=$(date +%s)
bin=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/$dir
echo "   built in $((built - start)) s"

for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    dirs=("corpus/$t")
    # The scenario parser starts from the project's example scenarios.
    if [ "$t" = scenario ]; then dirs+=(../examples); fi
    echo "== $t: ${secs} s"
    status=0
    # Scratch files (the inspect target's images) stay under the artifacts.
    mkdir -p "artifacts/$t/tmp"
    TMPDIR="$PWD/artifacts/$t/tmp" "$bin/$t" -max_total_time="$secs" -timeout="$timeout" -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" "${dirs[@]}" \
        > "artifacts/$t/log" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        tail -n 60 "artifacts/$t/log" >&2
        echo "fuzz target $t failed (status $status): the input is in fuzz/artifacts/$t/" >&2
        exit "$status"
    fi
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|INFO: seed corpus|#[0-9]+\s+DONE)" \
        "artifacts/$t/log" | sed 's/^/   /' || true
done
echo "== fuzzing done in $(($(date +%s) - start)) s"
