#!/usr/bin/env python3
"""CPU time of a whole coord run's process tree: coord, its supervisor host, every leaf
supervisor and every leaf (#23); method and figures in docs/performance.md ("The leaf started
without a fork").

`/usr/bin/time` counts only the children coord waits for, and coord does not wait for its
supervisor host (it exits with coord), so the host, the supervisors it forks and the leaves they
start are left out. Here each run's coord is started by a child subreaper: the host, orphaned
when coord exits, is reparented to it and reaped by it, and since every process of the tree is
reaped by its parent, the subreaper's children's rusage then holds the CPU time and minor page
faults of them all. Each run is measured in a fresh process, so its rusage is that run's alone.

One round runs the workload of benches/parallel_efficiency.sh (200 `command` leaves of
`sh -c "sleep 0.1; echo '{}'"`, --max-parallel 20) once per coord binary given, alternating so
all see the same load, then `xargs -P 20` running the same leaf 200 times (what the leaves
themselves cost, with no coord). Prints per round the wall time, CPU ms per leaf (user +
system) and minor faults per leaf of each, then the medians.

Usage: benches/leaf_tree_cpu.py ROUNDS COORD [COORD...]
"""

import ctypes
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

LEAVES = 200
PR_SET_CHILD_SUBREAPER = 36

WORKFLOW = """harness = "command"
command = ["sh", "-c", "sleep 0.1; echo '{}'"]
prompt = "x"
schema = { type = "object" }
"""

SCRIPT = """let handles = [];
for i in 0..200 { handles.push(spawn_session("sleepy", #{ inputs: #{ i: i } })); }
let failed = await_sessions(handles).filter(|r| r.status != "ok").len();
if failed > 0 { throw `${failed} leaves failed`; }
"""

MEASURE = r"""
import ctypes, os, resource, subprocess, sys, time
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
start = time.monotonic()
coord = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
code = coord.wait()
wall = time.monotonic() - start
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(code, wall, usage.ru_utime + usage.ru_stime, usage.ru_minflt)
"""


XARGS = ["sh", "-c", "seq 200 | xargs -P 20 -I{} sh -c \"sleep 0.1; echo '{}'\""]


def one_run(coord, work):
    if coord == "xargs":
        command = [sys.executable, "-c", MEASURE] + XARGS
    else:
        command = [sys.executable, "-c", MEASURE, coord, "-q", "run", f"{work}/leaves.rhai",
                   "--max-parallel", "20", "--runs-dir", f"{work}/runs"]
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=work).stdout.split()
    code, wall, cpu, faults = int(out[0]), float(out[1]), float(out[2]), int(out[3])
    if code != 0:
        sys.exit(f"{coord} failed with exit code {code}")
    return wall, cpu * 1000 / LEAVES, faults / LEAVES


def main():
    if len(sys.argv) < 3:
        sys.exit(f"usage: {sys.argv[0]} ROUNDS COORD [COORD...]")
    rounds, coords = int(sys.argv[1]), sys.argv[2:] + ["xargs"]
    with tempfile.TemporaryDirectory() as work:
        os.mkdir(f"{work}/workflows")
        with open(f"{work}/workflows/sleepy.toml", "w") as f:
            f.write(WORKFLOW)
        with open(f"{work}/leaves.rhai", "w") as f:
            f.write(SCRIPT)
        print(f"machine: {os.cpu_count()} cores, load {' '.join(open('/proc/loadavg').read().split()[:3])}")
        results = {coord: [] for coord in coords}
        for r in range(1, rounds + 1):
            line = f"round {r}:"
            for i, coord in enumerate(coords, 1):
                wall, cpu, faults = one_run(coord, work)
                results[coord].append((wall, cpu, faults))
                name = "xargs" if coord == "xargs" else f"coord#{i}"
                line += f"  {name} {wall:.3f} s {cpu:.2f} CPU ms/leaf {faults:.0f} faults/leaf"
            print(line, flush=True)
        for i, coord in enumerate(coords, 1):
            walls, cpus, faults = zip(*results[coord])
            name = "xargs -P 20" if coord == "xargs" else f"coord#{i} ({coord})"
            print(f"{name}: median {statistics.median(walls):.3f} s, "
                  f"{statistics.median(cpus):.2f} CPU ms/leaf, {statistics.median(faults):.0f} minor faults/leaf")
        print(f"load after: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
