#!/usr/bin/env bash
# What parked runs cost an idle `coord daemon`, and how soon it wakes one; method and figures in
# docs/performance.md ("Parked runs").
#
# 1. Looking: a daemon whose run store lists N parked runs (none due: their deadlines are a day
#    away) reads the wait index once a second. Each round runs a daemon for SECONDS with N
#    entries, then one with none, and reads each daemon's CPU time (user + system, from
#    /proc/PID/stat) just before stopping it; the difference over the looks it made is the cost
#    of one look at N entries. Rounds alternate, so both see the same machine load.
# 2. Waking: a run parked at `sleep("2s")` (`--park-after 0s`) with a daemon running: the time
#    from its sleep's deadline (journaled) to its `run_finished` (journaled), per round.
#
# Usage: benches/parked_runs.sh [ROUNDS]       (default 5)
#        COORD=/path/to/coord N=1000 SECONDS_UP=20 benches/parked_runs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
N=${N:-1000}
SECONDS_UP=${SECONDS_UP:-20}
if [ -z "${COORD:-}" ]; then
    cargo build --release --quiet
    COORD=$PWD/target/release/coord
fi
ticks=$(getconf CLK_TCK)

work=$(mktemp -d)
daemon_pid=
cleanup() {
    if [ -n "$daemon_pid" ]; then kill -TERM "$daemon_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# A project with N parked entries in its wait index (each with a run folder, so none is pruned).
make_project() {
    local dir=$1 count=$2
    mkdir -p "$dir/.coord/runs/.waits"
    touch "$dir/coord.toml"
    local until=$(( ($(date +%s) + 86400) * 1000 ))
    for i in $(seq 1 "$count"); do
        local id
        id=$(printf 'r%06d' "$i")
        mkdir -p "$dir/.coord/runs/$id"
        printf '{"run_id":"%s","until_ms":%s,"parked":true}' "$id" "$until" >"$dir/.coord/runs/.waits/$id.json"
    done
}

# CPU seconds a daemon used in SECONDS_UP with COUNT parked entries.
daemon_cpu() {
    local dir=$1
    (cd "$dir" && exec "$COORD" daemon >/dev/null 2>&1) &
    daemon_pid=$!
    sleep "$SECONDS_UP"
    local stat
    stat=$(cut -d' ' -f14,15 "/proc/$daemon_pid/stat")
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" 2>/dev/null || true
    daemon_pid=
    set -- $stat
    echo "scale=6; ($1 + $2) / $ticks" | bc
}

make_project "$work/parked" "$N"
make_project "$work/empty" 0
echo "looking: $N parked entries, ${SECONDS_UP}s per daemon, $ROUNDS rounds (load: $(cut -d' ' -f1-3 /proc/loadavg))"
echo "round  cpu_with_s  cpu_without_s  ms_per_look"
for round in $(seq 1 "$ROUNDS"); do
    with=$(daemon_cpu "$work/parked")
    without=$(daemon_cpu "$work/empty")
    per_look=$(echo "scale=3; ($with - $without) * 1000 / $SECONDS_UP" | bc)
    echo "$round      $with    $without       $per_look"
done

echo "waking: a run parked at sleep(\"2s\") (load: $(cut -d' ' -f1-3 /proc/loadavg))"
wake=$work/wake
mkdir -p "$wake"
touch "$wake/coord.toml"
printf 'sleep("2s");\n"woke"\n' >"$wake/nap.rhai"
(cd "$wake" && exec "$COORD" daemon >/dev/null 2>&1) &
daemon_pid=$!
sleep 1
echo "round  deadline_to_finish_ms"
for round in $(seq 1 "$ROUNDS"); do
    id=$(cd "$wake" && "$COORD" run nap.rhai --park-after 0s --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["run_id"])')
    journal=$wake/.coord/runs/$id/journal.jsonl
    while ! grep -q '"run_finished".*"succeeded"\|"status":"succeeded"' "$journal" 2>/dev/null; do sleep 0.05; done
    python3 - "$journal" "$round" <<'PY'
import json, sys, datetime
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
until = next(l for l in lines if l.get("fn") == "sleep")["result"]["until_ms"]
done = [l for l in lines if l["type"] == "run_finished"][-1]["at"]
at = datetime.datetime.fromisoformat(done.replace("Z", "+00:00")).timestamp() * 1000
print(f"{sys.argv[2]}      {at - until:.0f}")
PY
done
