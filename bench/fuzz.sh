#!/usr/bin/env bash
# Builds the fuzz targets in fuzz/ and runs each in turn for SECONDS (default 300), one at a
# time: coverage-guided by libFuzzer through cargo-fuzz, on the stable toolchain (no
# sanitizer). Not part of CI; CI replays the seed corpus through the same harnesses instead
# (ketch::fuzzing's seeds_replay test).
#
#   bench/fuzz.sh [SECONDS] [TARGET...]     targets: layer image_json reference http_request create_json dockerfile
#
# The layer target unpacks hostile tars into temp directories, as root: it checks that
# nothing lands outside them. New corpus entries go to fuzz/corpus/TARGET (not committed);
# crashes to fuzz/artifacts/TARGET; logs to fuzz/logs/TARGET.log. A crash is minimised with
#   cargo fuzz tmin --sanitizer none -O TARGET fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$HOME/.cargo/bin:$PATH
secs=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(layer image_json reference http_request create_json dockerfile)
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
cargo fuzz build --sanitizer none -O
mkdir -p fuzz/logs
status=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    echo "== $t for ${secs}s"
    if ! cargo fuzz run --sanitizer none -O "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 >"fuzz/logs/$t.log" 2>&1; then
        echo "   $t FOUND SOMETHING: see fuzz/logs/$t.log and fuzz/artifacts/$t/"
        status=1
    fi
    grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' \
        "fuzz/logs/$t.log" | sed 's/^/   /' || true
    grep -E '^#[0-9]+' "fuzz/logs/$t.log" | tail -1 | sed 's/^/   /' || true
done
exit $status
