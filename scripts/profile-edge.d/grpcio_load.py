"""CALLS Execute calls through the edge from grpcio (the real vibectl
client's gRPC stack, which sends metadata such as `authorization` as raw,
non-Huffman HPACK literals), STREAMS at a time on one TLS channel.

    python grpcio_load.py PORT CA_FILE TOKEN_FILE BODY_FILE CALLS STREAMS
BODY_FILE is a gRPC-framed request (5-byte prefix then the message).
Prints the calls that got an answer and those that failed."""
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc

port, ca, token_file, body_file, calls, streams = sys.argv[1:7]
calls, streams = int(calls), int(streams)
with open(ca, "rb") as f:
    creds = grpc.ssl_channel_credentials(f.read())
with open(token_file) as f:
    token = f.read().strip()
with open(body_file, "rb") as f:
    body = f.read()[5:]
channel = grpc.secure_channel(f"127.0.0.1:{port}", creds,
                              options=[("grpc.ssl_target_name_override", "localhost")])
execute = channel.unary_unary("/vibectl.llm_proxy.VibectlLLMProxy/Execute")
meta = (("authorization", f"Bearer {token}"),) if token else ()


def one(_):
    try:
        execute(body, metadata=meta, timeout=30)
        return True
    except grpc.RpcError:
        return False


with ThreadPoolExecutor(max_workers=streams) as pool:
    results = list(pool.map(one, range(calls)))
print(f"requests: {calls} total, {sum(results)} succeeded, {calls - sum(results)} failed")
