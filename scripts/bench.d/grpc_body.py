#!/usr/bin/env python3
"""Writes the h2load body for `Execute`: one length-prefixed gRPC message
(a 0 byte = not compressed, a 4-byte big-endian length, the protobuf bytes)
of `ExecuteRequest { user_fragments: ["ping from loadgen"], model_name: "echo" }`
- the same request loadgen sends.

    grpc_body.py OUT [TEXT] [MODEL]
"""
import struct
import sys


def field(number, text):
    """A length-delimited protobuf field (wire type 2) holding UTF-8 text."""
    data = text.encode()
    assert len(data) < 128, "one-byte varint lengths only"
    return bytes([number << 3 | 2, len(data)]) + data


def main():
    out = sys.argv[1]
    text = sys.argv[2] if len(sys.argv) > 2 else "ping from loadgen"
    model = sys.argv[3] if len(sys.argv) > 3 else "echo"
    message = field(2, text) + field(3, model)  # user_fragments = 2, model_name = 3
    with open(out, "wb") as f:
        f.write(b"\0" + struct.pack(">I", len(message)) + message)


if __name__ == "__main__":
    main()
