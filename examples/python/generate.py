#!/usr/bin/env python3
"""Generates Python stubs for the fleetwall.v1 API from ../../proto with grpcio-tools.

    python3 generate.py            # writes ./gen (gitignored)

The generated packages are fleetwall.v1.*_pb2(_grpc) and google.rpc.*_pb2.
"""
import pathlib
import sys

from grpc_tools import protoc
import grpc_tools

HERE = pathlib.Path(__file__).resolve().parent
PROTO = HERE.parent.parent / "proto"
OUT = HERE / "gen"


def main() -> int:
    OUT.mkdir(exist_ok=True)
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.glob("fleetwall/v1/*.proto"))
    files += sorted(str(p.relative_to(PROTO)) for p in PROTO.glob("google/rpc/*.proto"))
    # grpc_tools ships the well-known types (google/protobuf/*.proto).
    wkt = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTO}", f"-I{wkt}", f"--python_out={OUT}", f"--grpc_python_out={OUT}", *files]
    rc = protoc.main(args)
    if rc != 0:
        print(f"protoc failed with {rc}", file=sys.stderr)
        return rc
    print(f"generated {len(files)} protos into {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
