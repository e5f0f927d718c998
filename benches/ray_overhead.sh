#!/usr/bin/env bash
# Remote leaves on Ray: what coord adds per leaf, and how busy it keeps the slots. Method and
# figures in docs/performance.md ("Remote leaves on Ray").
#
#  1. Per-leaf overhead. N pairs, one leaf at a time: a `command` leaf that answers at once (in a
#     clone of the project, as a remote command leaf runs) through `coord run` (its journaled
#     `duration_ms`: submission, watching, log and result), then Ray's own time for the very
#     same job: its entrypoint (`coord leaf-exec --spec-json ...`, read back from the job coord
#     made) resubmitted straight to the Jobs API and polled every 10 ms until it SUCCEEDED.
#     Alternated, so both see the same load. The median difference is coord's own overhead.
#  2. Queue of 100. 100 leaves of 1 s at 3 slots (`coord_leaf: 3`), --max-parallel 6. Ideal given
#     the engine's per-job cost c (measured in 1: Ray's time for a leaf that answers at once):
#     ceil(100 / 3) * (1 s + c). Efficiency = ideal / actual wall time.
#  3. The same 100 jobs (their entrypoints) straight to Ray by a client that does nothing else:
#     WINDOW of them submitted at a time (default 6, coord's --max-parallel here; 0 = all at
#     once), each end seen by polling every RAY_POLL seconds (default 0.01) and the next
#     submitted at once. The engine's
#     own wall time for the queue at that concurrency, the ideal a client can reach;
#     coord's efficiency against it = its wall time / coord's.
#
# Runs itself inside a loopback-only network namespace (Ray probes cloud metadata addresses),
# with the cluster of tests/ray.rs (head 127.0.0.2 with no CPUs, worker 127.0.0.3 with
# coord_leaf: 3, every port pinned), stopped by PID at the end.
#
# Usage: COORD_RAY_VENV=/tmp/coord-ray-venv-2.60.0 benches/ray_overhead.sh [N]   (default N=20)
#        COORD=/path/to/coord ...   (skips the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
Q=${QUEUE:-100}
: "${COORD_RAY_VENV:?set COORD_RAY_VENV to a virtualenv with ray[default] (.ci/run makes one)}"
if [ -z "${COORD:-}" ]; then
    cargo build --release --quiet
    COORD=$PWD/target/release/coord
fi
if [ "$(tail -n +3 /proc/self/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')" != "lo " ]; then
    exec unshare --net sh -c "ip link set lo up && COORD='$COORD' COORD_RAY_VENV='$COORD_RAY_VENV' QUEUE=$Q exec bash '$0' $N"
fi

work=$(mktemp -d)
pids=()
stop_ray() {
    # By PID: every process in the process groups of the two `ray start --block` we started.
    for pgid in "${pids[@]}"; do kill -TERM -- "-$pgid" 2>/dev/null || true; done
    sleep 4
    for pgid in "${pids[@]}"; do kill -KILL -- "-$pgid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap stop_ray EXIT

export HOME=$work RAY_USAGE_STATS_ENABLED=0 RAY_USAGE_STATS_REPORT_URL=http://127.0.0.1:9/
echo 'provider: {type: local}' >"$work/ray_bootstrap_config.yaml"
API=http://127.0.0.2:48265
common=(--block --disable-usage-stats --object-store-memory 80000000 --num-cpus 0)
setsid "$COORD_RAY_VENV/bin/ray" start "${common[@]}" --head --node-ip-address 127.0.0.2 --port 46380 \
    --include-dashboard true --dashboard-host 127.0.0.2 --dashboard-port 48265 --node-manager-port 46381 \
    --object-manager-port 46382 --min-worker-port 46400 --max-worker-port 46420 \
    --dashboard-agent-listen-port 46383 --dashboard-agent-grpc-port 46384 --runtime-env-agent-port 46385 \
    --metrics-export-port 46386 --ray-client-server-port 46387 --temp-dir "$work/rt" >"$work/head.log" 2>&1 &
pids+=($!)
until curl -sf "$API/api/version" >/dev/null; do sleep 0.25; done
setsid "$COORD_RAY_VENV/bin/ray" start "${common[@]}" --address 127.0.0.2:46380 --node-ip-address 127.0.0.3 \
    --resources '{"coord_leaf": 3}' --node-manager-port 46481 --object-manager-port 46482 \
    --min-worker-port 46500 --max-worker-port 46520 --dashboard-agent-listen-port 46483 \
    --dashboard-agent-grpc-port 46484 --runtime-env-agent-port 46485 --metrics-export-port 46486 \
    >"$work/worker.log" 2>&1 &
pids+=($!)

ray_time() { # submission_id entrypoint -> seconds from submission to SUCCEEDED (polled every 10 ms)
    python3 - "$API" "$1" "$2" <<'PY'
import json, sys, time, urllib.request
api, sid, entry = sys.argv[1:]
body = json.dumps({"entrypoint": entry, "submission_id": sid, "entrypoint_resources": {"coord_leaf": 1}}).encode()
start = time.monotonic()
urllib.request.urlopen(urllib.request.Request(api + "/api/jobs/", body, {"content-type": "application/json"}))
while True:
    status = json.load(urllib.request.urlopen(api + "/api/jobs/" + sid))["status"]
    if status in ("SUCCEEDED", "FAILED", "STOPPED"):
        break
    time.sleep(0.01)
assert status == "SUCCEEDED", status
print(f"{time.monotonic() - start:.4f}")
PY
}
ray_time warmup true >/dev/null

p=$work/project
mkdir -p "$p/workflows"
cat >"$p/coord.toml" <<TOML
[executor]
kind = "ray"
address = "$API"
coord = "$COORD"
poll = "${POLL:-50ms}"
TOML
cat >"$p/workflows/instant.toml" <<'TOML'
harness = "command"
command = ["sh", "-c", "cat >/dev/null; echo '{}'"]
timeout = "10m"
prompt = "x"
schema = { type = "object" }
TOML
cat >"$p/workflows/second.toml" <<'TOML'
harness = "command"
command = ["sh", "-c", "cat >/dev/null; sleep 1; echo '{}'"]
timeout = "10m"
prompt = "x"
schema = { type = "object" }
TOML
cat >"$p/one_by_one.rhai" <<'RHAI'
let n = input("n").parse_int();
for i in 0..n { await_sessions([spawn_session("instant", #{ inputs: #{ i: i } })]); }
RHAI
cat >"$p/queue.rhai" <<'RHAI'
let n = input("n").parse_int();
let handles = [];
for i in 0..n { handles.push(spawn_session("second", #{ inputs: #{ i: i } })); }
await_sessions(handles);
RHAI
git -C "$p" init -q && git -C "$p" add . && git -C "$p" -c user.name=b -c user.email=b@b commit -qm bench

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# 1. Alternately: one leaf through coord (its journaled duration_ms), then the very job coord
#    made resubmitted straight to Ray, so both see the same load.
pairs=$work/pairs
for i in $(seq 1 "$N"); do
    (cd "$p" && "$COORD" run one_by_one.rhai --input n=1 --json >"$work/one.json" 2>/dev/null)
    run_dir=$p/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_dir"])' "$work/one.json")
    run_id=$(basename "$run_dir")
    coord_ms=$(python3 -c 'import json,sys; print([json.loads(l)["result"]["duration_ms"] for l in open(sys.argv[1]) if "\"type\":\"session\"" in l][0])' "$run_dir/journal.jsonl")
    entry=$(curl -sf "$API/api/jobs/coord-$run_id-s1-a1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["entrypoint"])')
    ray_s=$(ray_time "bench-raw-$i" "$entry")
    echo "$coord_ms $ray_s" >>"$pairs"
done
read -r coord_ms ray_ms overhead_ms <<<"$(python3 - "$pairs" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
coord = [float(c) for c, _ in rows]
ray = [float(r) * 1000 for _, r in rows]
print(statistics.median(coord), statistics.median(ray), statistics.median(c - r for c, r in zip(coord, ray)))
PY
)"
printf 'per leaf (median of %s pairs): coord %.0f ms, Ray alone %.0f ms, coord overhead %.0f ms (median of differences; ratio of medians %.3f)\n' \
    "$N" "$coord_ms" "$ray_ms" "$overhead_ms" "$(echo "$coord_ms / $ray_ms" | bc -l)"

# 2. Q leaves of 1 s at 3 slots (QUEUE=0 skips 2 and 3).
[ "$Q" -gt 0 ] || exit 0
start=$(date +%s.%N)
(cd "$p" && "$COORD" run queue.rhai --input "n=$Q" --max-parallel 6 --json >"$work/queue.json")
wall=$(echo "$(date +%s.%N) - $start" | bc -l)
waves=$(( (Q + 2) / 3 ))
ideal=$(echo "$waves * (1 + $ray_ms / 1000)" | bc -l)
printf 'queue of %s x 1 s at 3 slots: %.1f s, ideal %.1f s (c = %.0f ms), efficiency %.3f\n' \
    "$Q" "$wall" "$ideal" "$ray_ms" "$(echo "$ideal / $wall" | bc -l)"

# 3. The same Q jobs straight to Ray, WINDOW at a time: what the engine alone achieves.
queue_run=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_id"])' "$work/queue.json")
ray_wall=$(python3 - "$API" "$queue_run" "${WINDOW:-6}" "${RAY_POLL:-0.01}" <<'PY'
import json, sys, time, urllib.request
api, run, window, poll = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
jobs = [j for j in json.load(urllib.request.urlopen(api + "/api/jobs/")) if j["submission_id"].startswith(f"coord-{run}-")]
window = window or len(jobs)
def submit(i):
    body = json.dumps({"entrypoint": jobs[i]["entrypoint"], "submission_id": f"bench-q-{i}", "entrypoint_resources": {"coord_leaf": 1}}).encode()
    urllib.request.urlopen(urllib.request.Request(api + "/api/jobs/", body, {"content-type": "application/json"}))
def done(i):
    status = json.load(urllib.request.urlopen(api + f"/api/jobs/bench-q-{i}"))["status"]
    return status in ("SUCCEEDED", "FAILED", "STOPPED")
start = time.monotonic()
running, next_job = [], 0
while running or next_job < len(jobs):
    while len(running) < window and next_job < len(jobs):
        submit(next_job)
        running.append(next_job)
        next_job += 1
    running = [i for i in running if not done(i)]
    time.sleep(poll)
print(f"{time.monotonic() - start:.2f}")
PY
)
printf 'the same %s jobs on Ray alone, %s at a time, polled every %s s: %.1f s; coord / Ray alone: %.3f; efficiency against the engine: %.3f\n' \
    "$Q" "${WINDOW:-6}" "${RAY_POLL:-0.01}" "$ray_wall" "$(echo "$wall / $ray_wall" | bc -l)" "$(echo "$ray_wall / $wall" | bc -l)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
