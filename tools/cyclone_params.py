#!/usr/bin/env python3
"""A third-party ROS 2 parameter client for the interoperability test (tests/tests/cyclone.rs).

Eclipse Cyclone DDS (PyPI `cyclonedds`) calls a node's rcl_interfaces parameter services the way
`ros2 param` does over rmw_fastrtps (the default middleware of ROS 2 Jazzy): request and reply
topics `rq/<node>/<service>Request` and `rr/<node>/<service>Reply`, types
`rcl_interfaces::srv::dds_::<Service>_Request_` / `_Response_`, no header in the payload (the
request/reply correlation travels as a DDS inline QoS, which this client does not need: it makes
one call at a time). It calls list_parameters, get_parameters on every name listed, and
set_parameters with `--set name=<float>`, and writes the results as JSON (--out):
`{"names": [...], "values": {name: value}, "set": {"successful": bool, "reason": str}}`.
Each request is repeated every 0.5 s until a reply arrives (a request sent before the endpoints
matched is lost), for at most --timeout-s. Exit status 0 when every call was answered.
"""

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass

import cyclone_loopback  # noqa: E402,F401  (sets CYCLONEDDS_URI before cyclonedds loads)

from cyclonedds.core import Qos, Policy  # noqa: E402
from cyclonedds.domain import DomainParticipant  # noqa: E402
from cyclonedds.idl import IdlStruct  # noqa: E402
from cyclonedds.idl.annotations import final  # noqa: E402
from cyclonedds.idl.types import float64, int64, sequence, uint8, uint64  # noqa: E402
from cyclonedds.pub import DataWriter  # noqa: E402
from cyclonedds.sub import DataReader  # noqa: E402
from cyclonedds.topic import Topic  # noqa: E402
from cyclonedds.util import duration  # noqa: E402


@final
@dataclass
class ParameterValue(IdlStruct, typename="rcl_interfaces::msg::dds_::ParameterValue_"):
    type: uint8
    bool_value: bool
    integer_value: int64
    double_value: float64
    string_value: str
    byte_array_value: sequence[uint8]
    bool_array_value: sequence[bool]
    integer_array_value: sequence[int64]
    double_array_value: sequence[float64]
    string_array_value: sequence[str]


@final
@dataclass
class Parameter(IdlStruct, typename="rcl_interfaces::msg::dds_::Parameter_"):
    name: str
    value: ParameterValue


@final
@dataclass
class ListParametersResult(IdlStruct, typename="rcl_interfaces::msg::dds_::ListParametersResult_"):
    names: sequence[str]
    prefixes: sequence[str]


@final
@dataclass
class SetParametersResult(IdlStruct, typename="rcl_interfaces::msg::dds_::SetParametersResult_"):
    successful: bool
    reason: str


@final
@dataclass
class ListParametersRequest(IdlStruct, typename="rcl_interfaces::srv::dds_::ListParameters_Request_"):
    prefixes: sequence[str]
    depth: uint64


@final
@dataclass
class ListParametersResponse(IdlStruct, typename="rcl_interfaces::srv::dds_::ListParameters_Response_"):
    result: ListParametersResult


@final
@dataclass
class GetParametersRequest(IdlStruct, typename="rcl_interfaces::srv::dds_::GetParameters_Request_"):
    names: sequence[str]


@final
@dataclass
class GetParametersResponse(IdlStruct, typename="rcl_interfaces::srv::dds_::GetParameters_Response_"):
    values: sequence[ParameterValue]


@final
@dataclass
class SetParametersRequest(IdlStruct, typename="rcl_interfaces::srv::dds_::SetParameters_Request_"):
    parameters: sequence[Parameter]


@final
@dataclass
class SetParametersResponse(IdlStruct, typename="rcl_interfaces::srv::dds_::SetParameters_Response_"):
    results: sequence[SetParametersResult]


# rcl_interfaces/msg/ParameterType
NOT_SET, BOOL, INTEGER, DOUBLE, STRING = 0, 1, 2, 3, 4


def plain(value):
    """A ParameterValue as a JSON value (scalars only; other types as a tagged string)."""
    return {
        NOT_SET: None,
        BOOL: value.bool_value,
        INTEGER: value.integer_value,
        DOUBLE: value.double_value,
        STRING: value.string_value,
    }.get(value.type, f"<type {value.type}>")


def double_value(x):
    return ParameterValue(type=DOUBLE, bool_value=False, integer_value=0, double_value=x, string_value="",
                          byte_array_value=[], bool_array_value=[], integer_array_value=[],
                          double_array_value=[], string_array_value=[])


class ServiceClient:
    def __init__(self, participant, node, service, request_type, response_type):
        reliable = Qos(
            Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100)),
            Policy.History.KeepLast(10),
            Policy.Durability.Volatile,
        )
        request_topic = Topic(participant, f"rq{node}/{service}Request", request_type)
        reply_topic = Topic(participant, f"rr{node}/{service}Reply", response_type)
        self.writer = DataWriter(participant, request_topic, qos=reliable)
        self.reader = DataReader(participant, reply_topic, qos=reliable)
        self.response_type = response_type

    def call(self, request, give_up_at):
        sent_at = 0.0
        while time.monotonic() < give_up_at:
            if time.monotonic() - sent_at > 0.5:
                self.writer.write(request)
                sent_at = time.monotonic()
            for reply in self.reader.take(N=10):
                if isinstance(reply, self.response_type):
                    return reply
            time.sleep(0.01)
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--node", required=True, help="the node's fully qualified name, e.g. /robot/pendulum")
    parser.add_argument("--out", required=True, help="where to write the results (JSON)")
    parser.add_argument("--domain", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "0") or 0))
    parser.add_argument("--set", default=None, help="name=<float>: a set_parameters call to make")
    parser.add_argument("--timeout-s", type=float, default=30.0)
    args = parser.parse_args()

    participant = DomainParticipant(args.domain)
    give_up_at = time.monotonic() + args.timeout_s
    result = {}

    lister = ServiceClient(participant, args.node, "list_parameters", ListParametersRequest, ListParametersResponse)
    listed = lister.call(ListParametersRequest(prefixes=[], depth=0), give_up_at)
    if listed is None:
        print("cyclone params: no reply from list_parameters", file=sys.stderr)
        return 1
    names = list(listed.result.names)
    result["names"] = names

    getter = ServiceClient(participant, args.node, "get_parameters", GetParametersRequest, GetParametersResponse)
    got = getter.call(GetParametersRequest(names=names), give_up_at)
    if got is None or len(got.values) != len(names):
        print(f"cyclone params: get_parameters answered {got}", file=sys.stderr)
        return 1
    result["values"] = {name: plain(value) for name, value in zip(names, got.values)}

    if args.set is not None:
        name, _, text = args.set.partition("=")
        setter = ServiceClient(participant, args.node, "set_parameters", SetParametersRequest, SetParametersResponse)
        answer = setter.call(SetParametersRequest(parameters=[Parameter(name=name, value=double_value(float(text)))]),
                             give_up_at)
        if answer is None or len(answer.results) != 1:
            print(f"cyclone params: set_parameters answered {answer}", file=sys.stderr)
            return 1
        result["set"] = {"successful": answer.results[0].successful, "reason": answer.results[0].reason}

    with open(args.out, "w") as f:
        json.dump(result, f)
    print(f"cyclone params: {json.dumps(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
