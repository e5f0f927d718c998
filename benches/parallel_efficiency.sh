#!/usr/bin/env bash
# Parallel efficiency of coord's scheduler and leaf starts (#23); method and figures in
# docs/performance.md ("Parallel efficiency after the redesign", "The supervisor host").
#
# One round runs, one after the other so all see the same machine load: `coord run` of a
# script spawning 200 `command` leaves (`sh -c "sleep 0.1; echo '{}'"`) at --max-parallel 20,
# once per coord binary given, then `xargs -P 20` running the same leaf 200 times. The ideal
# is 200 / 20 x 100 ms = 1.0 s; efficiency is 1.0 s / wall time. Prints each round's wall
# times and efficiencies, then the medians.
#
# Usage: benches/parallel_efficiency.sh ROUNDS COORD [COORD...]
#        (e.g. the binary before a change and after it, to compare them in one sitting)
set -euo pipefail
ROUNDS=$1
shift
[ $# -ge 1 ] || { echo "usage: $0 ROUNDS COORD [COORD...]" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/workflows"
cat >"$work/workflows/sleepy.toml" <<'TOML'
harness = "command"
command = ["sh", "-c", "sleep 0.1; echo '{}'"]
prompt = "x"
schema = { type = "object" }
TOML
cat >"$work/leaves.rhai" <<'RHAI'
let handles = [];
for i in 0..200 { handles.push(spawn_session("sleepy", #{ inputs: #{ i: i } })); }
let failed = await_sessions(handles).filter(|r| r.status != "ok").len();
if failed > 0 { throw `${failed} leaves failed`; }
RHAI

wall() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
    line="round $r:"
    i=0
    for coord in "$@"; do
        i=$((i + 1))
        s=$EPOCHREALTIME
        "$coord" -q run "$work/leaves.rhai" --max-parallel 20 --runs-dir "$work/runs" >/dev/null
        e=$EPOCHREALTIME
        w=$(wall "$s" "$e")
        echo "$w" >>"$work/coord-$i"
        line="$line coord#$i $w s"
    done
    s=$EPOCHREALTIME
    seq 200 | xargs -P 20 -I{} sh -c "sleep 0.1; echo '{}'" >/dev/null
    e=$EPOCHREALTIME
    w=$(wall "$s" "$e")
    echo "$w" >>"$work/xargs"
    echo "$line  xargs $w s"
done
i=0
for coord in "$@"; do
    i=$((i + 1))
    m=$(median <"$work/coord-$i")
    echo "coord#$i ($coord): median $m s, efficiency $(awk -v m="$m" 'BEGIN { printf "%.3f", 1.0 / m }')"
done
m=$(median <"$work/xargs")
echo "xargs -P 20: median $m s, efficiency $(awk -v m="$m" 'BEGIN { printf "%.3f", 1.0 / m }')"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
