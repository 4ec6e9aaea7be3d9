#!/usr/bin/env bash
# Bounded coverage-guided fuzzing of the parsers, for CI: `bash fuzz/run.sh [SECONDS] [TARGET...]`
# runs each target (default: all) for SECONDS (default 20) and exits non-zero if any target
# crashes (a panic, a failed property, a timeout or running out of memory).
#
# Stable Rust only: cargo-fuzz passes -Z flags, which RUSTC_BOOTSTRAP=1 allows. Builds go to
# ${CARGO_TARGET_DIR:-/var/cache/rxledger-ci/target}/fuzz, never into the clone, and so do the
# corpus the fuzzer grows (fuzz/corpus/ is read as seeds and never written) and any crash
# input. See fuzz/README.md.
set -euo pipefail

secs="${1:-20}"
shift || true
case "$secs" in '' | *[!0-9]*)
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(scan digital_link epc_urn envelope_epcis xml_document)
fi

export RUSTC_BOOTSTRAP=1
target_dir="${CARGO_TARGET_DIR:-/var/cache/rxledger-ci/target}/fuzz"
work="$target_dir/fuzz-work"
mkdir -p "$work"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# ASan finds nothing in safe Rust that a panic would not, and halves the speed: no sanitizer.
# Debug assertions and overflow checks stay on (cargo-fuzz's default for fuzz builds).
build_flags=(--fuzz-dir fuzz --target-dir "$target_dir" --sanitizer none --debug-assertions)

start=$(date +%s)
echo "fuzz: building ${targets[*]}" >&2
for t in "${targets[@]}"; do
    cargo fuzz build "${build_flags[@]}" "$t"
done
echo "fuzz: built in $(($(date +%s) - start)) s" >&2

failed=()
summary=()
for t in "${targets[@]}"; do
    corpus="$work/corpus/$t"
    artifacts="$work/artifacts/$t"
    log="$work/$t.log"
    mkdir -p "$corpus" "$artifacts"
    echo "fuzz: $t for ${secs}s (seeds fuzz/corpus/$t, corpus $corpus)" >&2
    # The first corpus directory is the one libFuzzer adds new inputs to: the work copy.
    # libFuzzer logs every new coverage point; the full log stays in $log, CI shows the
    # start and end of the run, and the whole tail on a crash.
    status=0
    cargo fuzz run "${build_flags[@]}" "$t" "$corpus" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log" >&2
    else
        grep -E '^(INFO: seed corpus|#[0-9]+[[:space:]]+(INITED|DONE)|Done [0-9]+ runs|stat::)' "$log" >&2 || true
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
    rate=$(sed -n 's/.* exec\/s: \([0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        summary+=("$(printf '%-15s CRASH  (exit %s) input saved under %s' "$t" "$status" "$artifacts")")
    else
        summary+=("$(printf '%-15s ok     %s runs in %s s, last exec/s %s' "$t" "${runs:-?}" "${took:-?}" "${rate:-?}")")
    fi
done

echo "fuzz: summary (${secs}s per target, $(($(date +%s) - start)) s in all)"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz: crashes in ${failed[*]}; reproduce with:"
    echo "  RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz --sanitizer none TARGET INPUT_FILE"
    exit 1
fi
echo "fuzz: ${#targets[@]} passed, 0 failed"
