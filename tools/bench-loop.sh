#!/usr/bin/env bash
# Loop benchmark: sdac-node at RATE Hz against sdac-sim-bridge stepping InvertedPendulum-v5 in
# real time at the same rate, over DDS on this host, for SECONDS seconds. Prints a table: the
# bridge's observation-to-command latency (published -> answer received, its monotonic clock),
# its step overruns, the node's deadline misses (from its /diagnostics, read by a Cyclone DDS
# listener) and each process's CPU use. Needs release binaries (`cargo build --release
# --workspace`) and `bash tools/setup-python.sh`.
#
#   bash tools/bench-loop.sh [POLICY] [RATE] [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
policy=${1:-}
rate=${2:-1000}
seconds=${3:-60}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -z "$policy" ]; then
    policy="$work/student-k1.safetensors"
    "$root/target/release/sdac" export --run "$root/tests/fixtures/policies/InvertedPendulum-v5-sdac-seed0" \
        --student 1 --format safetensors --out "$policy"
fi
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-97}

"$root/.cache/venv/bin/python" - "$work/diag.json" "$(( seconds + 20 ))" <<'PY' &
import json, sys, time, os
from dataclasses import dataclass
from cyclonedds.domain import DomainParticipant
from cyclonedds.idl import IdlStruct
from cyclonedds.idl.annotations import final
from cyclonedds.idl.types import int32, uint32, uint8, sequence
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.core import Qos, Policy
@final
@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: int32
    nanosec: uint32
@final
@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time
    frame_id: str
@final
@dataclass
class KeyValue(IdlStruct, typename="diagnostic_msgs::msg::dds_::KeyValue_"):
    key: str
    value: str
@final
@dataclass
class DiagnosticStatus(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticStatus_"):
    level: uint8
    name: str
    message: str
    hardware_id: str
    values: sequence[KeyValue]
@final
@dataclass
class DiagnosticArray(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticArray_"):
    header: Header
    status: sequence[DiagnosticStatus]
p = DomainParticipant(int(os.environ["ROS_DOMAIN_ID"]))
r = DataReader(p, Topic(p, "rt/diagnostics", DiagnosticArray), qos=Qos(Policy.Reliability.Reliable(0), Policy.History.KeepLast(10)))
last = None
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end and not os.path.exists(sys.argv[1] + ".stop"):
    for m in r.take(N=10):
        if isinstance(m, DiagnosticArray) and m.status:
            last = {kv.key: kv.value for kv in m.status[0].values}
    time.sleep(0.05)
json.dump(last, open(sys.argv[1], "w"))
PY
listener=$!

"$root/target/release/sdac-node" --policy "$policy" --rate "$rate" --seed 0 > "$work/node.log" 2>&1 &
node=$!
sleep 1
"$root/target/release/sdac-sim-bridge" --env InvertedPendulum-v5 --rate "$rate" \
    --episodes 1000000 --max-steps $(( seconds * rate )) --seed 0 --report "$work/bridge.json" > "$work/bridge.log" 2>&1 &
bridge=$!
bridge_ticks0=0
node_ticks0=$(awk '{print $14 + $15}' /proc/$node/stat)
start=$(date +%s.%N)
while kill -0 $bridge 2>/dev/null; do
    bridge_ticks=$(awk '{print $14 + $15}' /proc/$bridge/stat 2>/dev/null || echo "$bridge_ticks")
    sleep 0.5
done
wait $bridge
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
sleep 1.5   # one more diagnostics window
node_ticks=$(awk '{print $14 + $15}' /proc/$node/stat)
touch "$work/diag.json.stop"; wait $listener
kill -TERM $node; wait $node || true
hz=$(getconf CLK_TCK)
"$root/.cache/venv/bin/python" - "$work/bridge.json" "$work/diag.json" "$elapsed" \
    "$(( node_ticks - node_ticks0 ))" "$bridge_ticks" "$hz" "$rate" <<'PY'
import json, sys
b = json.load(open(sys.argv[1])); d = json.load(open(sys.argv[2])) or {}
elapsed, node_t, bridge_t, hz, rate = float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
lat = b["command_latency"]
rows = [
    ("rate (Hz)", rate), ("run (s)", f"{elapsed:.1f}"), ("bridge steps", b["steps"]),
    ("episodes finished (returns min/max)", f"{len(b['episodes'])} ({min(e['return'] for e in b['episodes']):.0f}/{max(e['return'] for e in b['episodes']):.0f})"),
    ("obs->command latency p50 (us)", f"{lat['p50_us']:.0f}"), ("obs->command latency p99 (us)", f"{lat['p99_us']:.0f}"),
    ("obs->command latency max (us)", f"{lat['max_us']:.0f}"), ("bridge step overruns", b["step_overruns"]),
    ("bad commands", b["bad_commands"]),
    ("node deadline misses (total)", d.get("deadline_misses_total", "n/a")),
    ("node compute p99 (us)", d.get("compute_p99_us", "n/a")),
    ("node CPU (% of one core)", f"{100 * node_t / hz / elapsed:.0f}"), ("bridge CPU (% of one core)", f"{100 * bridge_t / hz / elapsed:.0f}"),
]
w = max(len(k) for k, _ in rows)
print(f"| {'loop benchmark'.ljust(w)} | value |\n|{'-' * (w + 2)}|-------|")
for k, v in rows:
    print(f"| {k.ljust(w)} | {v} |")
PY
