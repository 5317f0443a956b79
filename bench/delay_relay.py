"""A TCP relay that delays every byte by a fixed time in each direction: a long-haul link's latency,
for a kernel without the netem qdisc. Rate is left to the kernel (tbf on the veth pair).

    python bench/delay_relay.py LISTEN_HOST:PORT TARGET_HOST:PORT DELAY_MS

What is read at time t is written at t + delay; each direction holds at most QUEUE chunks in flight
(a bounded bandwidth-delay product), so a slow reader pushes back on the sender as TCP would.
"""

from __future__ import annotations

import asyncio
import sys
import time

CHUNK = 64 * 1024
QUEUE = 256  # chunks in flight per direction: 16 MiB, well above 200 Mbit/s x 20 ms


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    q: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE)

    async def send() -> None:
        while True:
            due, data = await q.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.write_eof() if writer.can_write_eof() else None
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.ensure_future(send())
    try:
        while True:
            data = await reader.read(CHUNK)
            await q.put((time.monotonic() + delay, data))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()
    finally:
        if not sender.done():
            sender.cancel()


async def main(listen: str, target: str, delay_ms: float) -> None:
    lhost, lport = listen.rsplit(":", 1)
    thost, tport = target.rsplit(":", 1)
    delay = delay_ms / 1000

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection(thost, int(tport))
        except OSError:
            cw.close()
            return
        try:
            await asyncio.gather(_pipe(cr, uw, delay), _pipe(ur, cw, delay))
        finally:
            uw.close()
            cw.close()

    server = await asyncio.start_server(handle, lhost, int(lport))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
