"""Idle connections to an edge held at an earlier stage than `idle_conns`'s
(scripts/bench.d/idle_ab.sh --stage): `tcp` (accepted, no TLS byte sent: the
edge waits for the ClientHello), `tls` (handshake done, ALPN h2, no HTTP/2
byte), `h2` (client preface and SETTINGS sent, the server's acknowledged, no
request). Prints the watched edge's VmRSS before and after, per connection.

    idle_stage.py STAGE PORT CA_FILE CONNECTIONS EDGE_PID
"""
import asyncio, ssl, sys, json
stage, port, ca, n, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1])
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
async def one(ctx, sem, held):
    async with sem:
        if stage == "tcp":
            r, w = await asyncio.open_connection("127.0.0.1", port)
        else:
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
            if stage == "h2":
                w.write(PREFACE); await w.drain()
                await r.read(9 + 6 * 8)  # some of the server's SETTINGS
                w.write(ACK); await w.drain()
        held.append((r, w))
async def main():
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["h2"])
    sem = asyncio.Semaphore(32)
    held = []
    before = rss()
    await asyncio.gather(*(one(ctx, sem, held) for _ in range(n)))
    await asyncio.sleep(1.0)
    after = rss()
    print(json.dumps({"stage": stage, "requested": n, "still_open": len(held),
                      "rss_before_kib": before, "rss_kib": after}))
asyncio.run(main())
