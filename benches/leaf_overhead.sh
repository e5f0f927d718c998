#!/usr/bin/env bash
# Leaf harness benchmarks; method and figures in docs/performance.md ("Leaf harnesses").
#
#  1. Parallel efficiency: 200 `command` leaves that each sleep 100 ms, at --max-parallel 20.
#     Ideal wall time: 200 / 20 * 100 ms = 1.0 s. Target: within 1.1x of it.
#  2. Per-leaf overhead: N instant leaves (`cat`, which echoes its request back as its output)
#     at --max-parallel 1 and 8; (wall time - wall time of a run with no leaves) / N is what the
#     runtime spends per leaf: spawn, pipes, parse, schema validation, journal. Target: < 2 ms.
#
# Usage: benches/leaf_overhead.sh [RUNS]   (default 5; each figure is the median of RUNS)
#        COORD=/path/to/coord benches/leaf_overhead.sh   (skips the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
N=${N:-500}
if [ -z "${COORD:-}" ]; then
    cargo build --profile dist --quiet
    COORD=$PWD/target/dist/coord
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/workflows"
cat >"$work/workflows/sleepy.toml" <<'TOML'
harness = "command"
command = ["sh", "-c", "sleep 0.1; echo '{}'"]
prompt = "x"
schema = { type = "object" }
TOML
cat >"$work/workflows/instant.toml" <<'TOML'
harness = "command"
command = ["cat"]
prompt = "x"
schema = { type = "object" }
TOML
cat >"$work/leaves.rhai" <<'RHAI'
let n = input("n").parse_int();
let handles = [];
for i in 0..n {
    handles.push(spawn_session(input("workflow"), #{ inputs: #{ i: i } }));
}
let failed = await_sessions(handles).filter(|r| r.status != "ok").len();
if failed > 0 {
    throw `${failed} leaves failed`;
}
n
RHAI

# seconds WORKFLOW N PARALLEL: wall time of one run.
seconds() {
    local start end
    start=$EPOCHREALTIME
    "$COORD" -q run "$work/leaves.rhai" --input "workflow=$1" --input "n=$2" --max-parallel "$3" \
        --runs-dir "$work/runs" >/dev/null
    end=$EPOCHREALTIME
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.4f\n", b - a }'
}

# median WORKFLOW N PARALLEL: the median of RUNS runs.
median() {
    for _ in $(seq "$RUNS"); do seconds "$@"; done | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

echo "coord: $COORD"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
empty=$(median instant 0 1)
echo "empty run (startup, script, journal):        ${empty} s"

sleepy=$(median sleepy 200 20)
awk -v t="$sleepy" -v e="$empty" 'BEGIN {
    printf "200 x 100 ms leaves, --max-parallel 20:      %.3f s = %.3fx the ideal 1.0 s (%.3fx without startup)\n", t, t / 1.0, (t - e) / 1.0 }'

for p in 1 8; do
    t=$(median instant "$N" "$p")
    awk -v t="$t" -v e="$empty" -v n="$N" -v p="$p" 'BEGIN {
        printf "%d instant leaves, --max-parallel %d:          %.3f s = %.3f ms per leaf\n", n, p, t, (t - e) * 1000 / n }'
done
