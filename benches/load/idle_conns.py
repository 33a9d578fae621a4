#!/usr/bin/env python3
"""Phase (b): open N TLS connections to gatehouse, send one authenticated
request on each (so each is a real keep-alive client, not a bare handshake),
then hold them all idle until SIGTERM arrives.

Prints "OPEN <n> FAILED <f>" once every connection has been tried; run.sh
reads gatehouse's VmRSS at that point.

usage: idle_conns.py HOST PORT N TOKEN
"""
import asyncio
import signal
import ssl
import sys


async def one(host, port, token, ctx, sem, held):
    async with sem:  # bound the number of handshakes in flight
        reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
        writer.write(
            f"GET /bench/idle HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        held.append(writer)  # keep the connection (and its TLS session) open


async def main():
    host, port, n, token = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the benchmark's self-signed certificate
    ctx.set_alpn_protocols(["http/1.1"])
    sem = asyncio.Semaphore(128)
    held = []
    results = await asyncio.gather(
        *(one(host, port, token, ctx, sem, held) for _ in range(n)), return_exceptions=True
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        print(f"first failure: {failures[0]!r}", file=sys.stderr)
    print(f"OPEN {len(held)} FAILED {len(failures)}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for w in held:
        w.transport.abort()


asyncio.run(main())
