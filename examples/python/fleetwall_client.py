#!/usr/bin/env python3
"""A small fleetwall client in Python, on stubs generated from proto/ (run generate.py first).

    python3 fleetwall_client.py --target localhost:50051 create 203.0.113.0/24 --comment "abuse"
    python3 fleetwall_client.py list [--covers 203.0.113.9]
    python3 fleetwall_client.py delete 42
    python3 fleetwall_client.py watch --count 3 --interval 1
    python3 fleetwall_client.py demo      # create, list, watch, delete; one JSON object per line

    # A control plane with TLS and API tokens (any non-loopback bind, or --tls):
    python3 fleetwall_client.py --target cp.example.com:50051 --ca-cert ca.crt --token fwt_... list
    FLEETWALL_CA_CERT=ca.crt FLEETWALL_TOKEN=fwt_... python3 fleetwall_client.py demo

Every command prints JSON lines (proto3 JSON mapping). Errors print the gRPC status, the
google.rpc.ErrorInfo reason from the status details, and exit with code 1.
"""
import argparse
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "gen"))

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from google.protobuf.duration_pb2 import Duration  # noqa: E402

from fleetwall.v1 import (  # noqa: E402
    counter_service_pb2,
    counter_service_pb2_grpc,
    inspect_service_pb2,
    inspect_service_pb2_grpc,
    rule_pb2,
    rule_service_pb2,
    rule_service_pb2_grpc,
)
from google.rpc import error_details_pb2, status_pb2  # noqa: E402


def emit(kind, proto=None, **extra):
    """Prints one JSON line: {"kind": ..., "data": <proto3 JSON of proto>, **extra}."""
    obj = {"kind": kind, **extra}
    if proto is not None:
        obj["data"] = json_format.MessageToDict(proto)
    print(json.dumps(obj), flush=True)


def error_info(err: grpc.RpcError):
    """Returns the google.rpc.ErrorInfo carried in the grpc-status-details-bin trailer, if any."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    return info
    return None


def create(rules, args):
    rule = rule_pb2.Rule(
        cidr=args.cidr,
        action=rule_pb2.ACTION_ALLOW if args.allow else rule_pb2.ACTION_DENY,
        direction=rule_pb2.DIRECTION_EGRESS if args.egress else rule_pb2.DIRECTION_INGRESS,
        mode=rule_pb2.MODE_MONITOR if args.monitor else rule_pb2.MODE_ENFORCE,
        comment=args.comment or "",
    )
    req = rule_service_pb2.CreateRuleRequest(rule=rule)
    if args.ttl:
        req.ttl.CopyFrom(Duration(seconds=args.ttl))
    resp = rules.CreateRule(req, timeout=10)
    emit("created", resp)
    return resp.rule.id


def list_rules(rules, args):
    token = ""
    while True:
        resp = rules.ListRules(
            rule_service_pb2.ListRulesRequest(page_size=100, page_token=token, covers_address=args.covers or ""),
            timeout=10,
        )
        for rule in resp.rules:
            emit("rule", rule)
        token = resp.next_page_token
        if not token:
            emit("listed", total=resp.total_size, revision=resp.revision)
            return resp.total_size


def delete(rules, args):
    resp = rules.DeleteRule(rule_service_pb2.DeleteRuleRequest(id=int(args.id)), timeout=10)
    emit("deleted", resp, id=str(args.id))


def watch(counters, args):
    req = counter_service_pb2.WatchCountersRequest(
        query=counter_service_pb2.CounterQuery(top_rules=10),
        interval=Duration(seconds=int(args.interval), nanos=int((args.interval % 1) * 1e9)),
    )
    stream = counters.WatchCounters(req, timeout=max(30, args.count * args.interval * 5))
    for i, resp in enumerate(stream):
        emit("counters", resp.snapshot)
        if i + 1 >= args.count:
            stream.cancel()
            return


def events(inspect, args):
    """Sampled drop events (InspectService.WatchEvents): one JSON line each, filtered like `fleetwall events`."""
    f = inspect_service_pb2.EventFilter(
        node_names=args.node or [],
        rule_ids=[int(r) for r in args.rule or []],
        source_cidrs=args.source or [],
        protocols=args.proto or [],
        ports=[int(p) for p in args.port or []],
    )
    req = inspect_service_pb2.WatchEventsRequest(follow=args.follow, limit=args.count)
    if any([f.node_names, f.rule_ids, f.source_cidrs, f.protocols, f.ports]):
        req.allow.append(f)
    if args.since:
        req.since.FromSeconds(int(time.time()) - args.since)
    stream = inspect.WatchEvents(req, timeout=args.timeout)
    try:
        for resp in stream:
            for e in resp.events:
                emit("event", e)
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise


def demo(rules, counters, args):
    created = rules.CreateRule(
        rule_service_pb2.CreateRuleRequest(
            rule=rule_pb2.Rule(cidr=args.cidr, action=rule_pb2.ACTION_DENY, comment="python demo"),
            ttl=Duration(seconds=3600),
        ),
        timeout=10,
    )
    emit("created", created)
    args.covers = args.cidr.split("/")[0]
    list_rules(rules, args)
    args.count, args.interval = 2, 0.2
    watch(counters, args)
    args.id = created.rule.id
    delete(rules, args)
    # Bad input comes back as a status with an ErrorInfo reason.
    try:
        rules.CreateRule(rule_service_pb2.CreateRuleRequest(rule=rule_pb2.Rule(cidr="10.1.2.3/8", action=rule_pb2.ACTION_DENY)), timeout=10)
    except grpc.RpcError as err:
        info = error_info(err)
        emit("rejected", code=err.code().name, message=err.details(), reason=info.reason if info else None)


def open_channel(args) -> grpc.Channel:
    """Plaintext (a loopback control plane without TLS), or TLS trusting --ca-cert with the API token
    sent as `authorization: Bearer <token>` on every call (gRPC's access-token call credentials)."""
    if not args.ca_cert:
        if args.token:
            raise SystemExit("--token needs TLS: give the control plane's CA with --ca-cert (FLEETWALL_CA_CERT)")
        return grpc.insecure_channel(args.target)
    with open(args.ca_cert, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    if args.token:
        creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(args.token))
    return grpc.secure_channel(args.target, creds)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="localhost:50051", help="control plane gRPC address")
    p.add_argument("--ca-cert", default=os.environ.get("FLEETWALL_CA_CERT"), help="CA bundle (PEM) to trust; turns TLS on")
    p.add_argument("--token", default=os.environ.get("FLEETWALL_TOKEN"), help="API token (fwt_...)")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("cidr")
    c.add_argument("--allow", action="store_true")
    c.add_argument("--egress", action="store_true")
    c.add_argument("--monitor", action="store_true")
    c.add_argument("--ttl", type=int, help="seconds")
    c.add_argument("--comment")
    l = sub.add_parser("list")
    l.add_argument("--covers", help="only rules covering this address")
    d = sub.add_parser("delete")
    d.add_argument("id")
    w = sub.add_parser("watch")
    w.add_argument("--count", type=int, default=3)
    w.add_argument("--interval", type=float, default=1.0)
    e = sub.add_parser("events")
    e.add_argument("--follow", action="store_true", help="keep streaming new events")
    e.add_argument("--since", type=int, help="start with the last N seconds of history")
    e.add_argument("--count", type=int, default=0, help="stop after N events (0: no limit)")
    e.add_argument("--timeout", type=float, default=30.0, help="seconds before the stream is closed")
    e.add_argument("--node", action="append")
    e.add_argument("--rule", action="append")
    e.add_argument("--source", action="append", help="CIDR")
    e.add_argument("--proto", action="append", help="tcp, udp, icmp, icmpv6 or a number")
    e.add_argument("--port", action="append")
    m = sub.add_parser("demo")
    m.add_argument("cidr", nargs="?", default="198.51.100.0/24")
    args = p.parse_args()

    with open_channel(args) as channel:
        rules = rule_service_pb2_grpc.RuleServiceStub(channel)
        counters = counter_service_pb2_grpc.CounterServiceStub(channel)
        inspect = inspect_service_pb2_grpc.InspectServiceStub(channel)
        try:
            if args.cmd == "create":
                create(rules, args)
            elif args.cmd == "list":
                list_rules(rules, args)
            elif args.cmd == "delete":
                delete(rules, args)
            elif args.cmd == "watch":
                watch(counters, args)
            elif args.cmd == "events":
                events(inspect, args)
            elif args.cmd == "demo":
                demo(rules, counters, args)
        except grpc.RpcError as err:
            info = error_info(err)
            emit("error", code=err.code().name, message=err.details(), reason=info.reason if info else None)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
