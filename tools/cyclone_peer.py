#!/usr/bin/env python3
"""A third-party ROS 2 participant for the interoperability test (tests/tests/cyclone.rs).

Eclipse Cyclone DDS (PyPI `cyclonedds==11.0.1`, the middleware of a stock ROS 2 Jazzy system)
with std_msgs/Float64MultiArray declared as ROS 2 declares it on the wire: `@final` structs named
`std_msgs::msg::dds_::Float64MultiArray_`, topics `rt/<ros topic>`. It publishes observations
(best effort, as ROS 2's sensor-data profile) labelled `obs;stamp=<n>` and reads the commands
(reliable) a policy node answers with; a command answering observation n is labelled
`action;stamp=<n>`.

Observations go one at a time: the next is published once the previous one is answered, or after
--answer-timeout-s under a new stamp (a lost observation is never answered; one that was merely
late is answered under its own stamp, so every answer stays attributable).

Input: a JSON file holding a list of observations (lists of numbers). Output (--out): JSON with
`answers`: [{"stamp", "obs", "action"}], the first command answering each stamp, in the order
they arrived; `repeated_commands` (later commands with an answered stamp: the node repeats its
last command between observations); `unstamped_commands` (commands that answer no observation,
e.g. the node's safe action before the first one); `non_finite_commands`; `commands_total`. Exit status 0 when every observation was answered.

Discovery: loopback only unless CYCLONEDDS_URI is set (tools/cyclone_loopback.py).
"""

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass

import cyclone_loopback  # noqa: E402,F401  (sets CYCLONEDDS_URI before cyclonedds loads)

from cyclonedds.core import Qos, Policy  # noqa: E402
from cyclonedds.domain import DomainParticipant  # noqa: E402
from cyclonedds.idl import IdlStruct  # noqa: E402
from cyclonedds.idl.annotations import final  # noqa: E402
from cyclonedds.idl.types import float64, sequence, uint32  # noqa: E402
from cyclonedds.pub import DataWriter  # noqa: E402
from cyclonedds.sub import DataReader  # noqa: E402
from cyclonedds.topic import Topic  # noqa: E402
from cyclonedds.util import duration  # noqa: E402


@final
@dataclass
class MultiArrayDimension(IdlStruct, typename="std_msgs::msg::dds_::MultiArrayDimension_"):
    label: str
    size: uint32
    stride: uint32


@final
@dataclass
class MultiArrayLayout(IdlStruct, typename="std_msgs::msg::dds_::MultiArrayLayout_"):
    dim: sequence[MultiArrayDimension]
    data_offset: uint32


@final
@dataclass
class Float64MultiArray(IdlStruct, typename="std_msgs::msg::dds_::Float64MultiArray_"):
    layout: MultiArrayLayout
    data: sequence[float64]


STAMP_TAG = ";stamp="


def stamp_of(message):
    """The stamp in the first dimension's label, or None."""
    if not message.layout.dim:
        return None
    _, sep, text = message.layout.dim[0].label.rpartition(STAMP_TAG)
    return int(text) if sep and text.isdigit() else None


def vector(label, values):
    n = len(values)
    return Float64MultiArray(
        layout=MultiArrayLayout(dim=[MultiArrayDimension(label=label, size=n, stride=n)], data_offset=0),
        data=[float(v) for v in values],
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--observations", required=True, help="JSON list of observations")
    parser.add_argument("--out", required=True, help="where to write the answers (JSON)")
    parser.add_argument("--domain", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "0") or 0))
    parser.add_argument("--obs-topic", default="rt/sdac/observation")
    parser.add_argument("--cmd-topic", default="rt/sdac/command")
    parser.add_argument("--answer-timeout-s", type=float, default=0.5)
    parser.add_argument("--timeout-s", type=float, default=60.0, help="give up after this long")
    args = parser.parse_args()

    with open(args.observations) as f:
        observations = json.load(f)

    participant = DomainParticipant(args.domain)
    obs_topic = Topic(participant, args.obs_topic, Float64MultiArray)
    cmd_topic = Topic(participant, args.cmd_topic, Float64MultiArray)
    writer = DataWriter(
        participant,
        obs_topic,
        qos=Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(5), Policy.Durability.Volatile),
    )
    reader = DataReader(
        participant,
        cmd_topic,
        qos=Qos(
            Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100)),
            Policy.History.KeepLast(1000),
            Policy.Durability.Volatile,
        ),
    )

    sent = {}  # stamp -> index of the observation it carried
    answers, unstamped, repeated, non_finite, total = [], 0, 0, 0, 0
    answered = set()
    next_stamp = 1
    index = 0
    pending = None  # (stamp, published at)
    give_up_at = time.monotonic() + args.timeout_s
    while index < len(observations) and time.monotonic() < give_up_at:
        now = time.monotonic()
        if pending is None or now - pending[1] > args.answer_timeout_s:
            stamp = next_stamp
            next_stamp += 1
            sent[stamp] = index
            writer.write(vector(f"obs{STAMP_TAG}{stamp}", observations[index]))
            pending = (stamp, now)
        for message in reader.take(N=1000):
            if not isinstance(message, Float64MultiArray):
                continue  # a writer left: Cyclone hands over an InvalidSample
            total += 1
            if not all(math.isfinite(v) for v in message.data):
                non_finite += 1
            stamp = stamp_of(message)
            if stamp is None or stamp not in sent:
                unstamped += 1
                continue
            if stamp in answered:
                repeated += 1  # the node repeats its last command (with its stamp) between observations
                continue
            answered.add(stamp)
            answers.append({"stamp": stamp, "obs": observations[sent[stamp]], "action": list(message.data)})
            if sent[stamp] == index:
                index += 1
                pending = None
        time.sleep(0.001)

    result = {
        "answers": answers,
        "observations": len(observations),
        "answered": index,
        "unstamped_commands": unstamped,
        "repeated_commands": repeated,
        "non_finite_commands": non_finite,
        "commands_total": total,
    }
    with open(args.out, "w") as f:
        json.dump(result, f)
    print(f"cyclone peer: {index}/{len(observations)} observations answered, {total} commands, "
          f"{unstamped} unstamped, {repeated} repeated, {non_finite} non-finite")
    return 0 if index == len(observations) else 1


if __name__ == "__main__":
    sys.exit(main())
