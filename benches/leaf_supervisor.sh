#!/usr/bin/env bash
# What the leaf supervisor costs per leaf; method and figures in docs/performance.md ("The leaf
# supervisor").
#
# The same binary, with and without the supervisor (COORD_LEAF_SUPERVISOR=off starts leaves
# directly, as before it existed), in alternating rounds so both see the same machine load:
# each round times one `coord run` of N instant leaves (`cat`, which echoes its request back
# as its output) with the supervisor, then one without, at --max-parallel 1 and 8. Per round:
# the wall time per leaf of each, the difference and the ratio, and the CPU time (user + system,
# coord and every process it waited for, supervisors and leaves included) per leaf, which a
# busy machine inflates less. The medians over the rounds are reported.
#
# Usage: benches/leaf_supervisor.sh [ROUNDS]   (default 9)
#        COORD=/path/to/coord N=200 benches/leaf_supervisor.sh   (skips the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-9}
N=${N:-200}
if [ -z "${COORD:-}" ]; then
    cargo build --release --quiet
    COORD=$PWD/target/release/coord
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/workflows"
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
    handles.push(spawn_session("instant", #{ inputs: #{ i: i } }));
}
let failed = await_sessions(handles).filter(|r| r.status != "ok").len();
if failed > 0 {
    throw `${failed} leaves failed`;
}
n
RHAI

# seconds SUPERVISOR PARALLEL: "wall cpu" seconds of one run of N leaves.
seconds() {
    COORD_LEAF_SUPERVISOR=$1 /usr/bin/time -f "%e %U %S" -o "$work/time" \
        "$COORD" -q run "$work/leaves.rhai" --input "n=$N" --max-parallel "$2" --runs-dir "$work/runs" >/dev/null
    awk '{ printf "%.4f %.4f\n", $1, $2 + $3 }' "$work/time"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "coord: $COORD"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for p in 1 8; do
    rows=$work/rows-$p
    : >"$rows"
    for _ in $(seq "$ROUNDS"); do
        read -r on on_cpu <<<"$(seconds on "$p")"
        read -r off off_cpu <<<"$(seconds off "$p")"
        awk -v on="$on" -v off="$off" -v onc="$on_cpu" -v offc="$off_cpu" -v n="$N" 'BEGIN {
            printf "%.4f %.4f %.4f %.4f %.4f %.4f %.4f\n", on * 1000 / n, off * 1000 / n, (on - off) * 1000 / n, on / off,
                onc * 1000 / n, offc * 1000 / n, (onc - offc) * 1000 / n }' >>"$rows"
    done
    column() { cut -d' ' -f"$1" "$rows" | median; }
    spread=$(cut -d' ' -f4 "$rows" | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }')
    echo "$N instant leaves, --max-parallel $p, $ROUNDS rounds (medians):"
    echo "  wall ms/leaf: with $(column 1), without $(column 2), difference $(column 3), ratio $(column 4) (rounds $spread)"
    echo "  CPU ms/leaf:  with $(column 5), without $(column 6), difference $(column 7)"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
