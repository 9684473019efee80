"""A plant's WAN uplink on loopback: a TCP proxy that adds a fixed delay and nothing else.

    python bench/latency_link.py --port 0 --upstream 8333 --rtt-ms 20

Every byte is held for ``rtt_ms / 2`` in each direction (a delay line: a request and its
answer cost one round trip more than on loopback), with no bandwidth cap and no loss, so
what it changes is latency alone. It copies bytes in an asyncio loop in its own process
(bulk reads of up to 256 KiB): the bench's client and the service do not share its CPU or
GIL, and at tens of MB/s it uses a few per cent of a core. Used by ``bench/sync.py`` where
``tc netem`` (root, a network namespace) is not available; both the plain sequential
``put_object`` loop and the sync service go through the same link.

It prints ``listening <port>`` once it accepts connections.
"""
from __future__ import annotations

import argparse
import asyncio
import sys

HOST = "127.0.0.1"
CHUNK = 256 * 1024


async def _delay_line(src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay_s: float) -> None:
    """Copy ``src`` to ``dst``, each chunk sent ``delay_s`` after it arrived (order kept)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        try:
            while data := await src.read(CHUNK):
                queue.put_nowait((loop.time() + delay_s, data))
        except (ConnectionError, OSError):
            pass
        queue.put_nowait((loop.time() + delay_s, b""))

    reader = asyncio.create_task(read())
    try:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if dst.can_write_eof():
                    dst.write_eof()
                break
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        reader.cancel()


async def _serve(port: int, upstream: int, delay_s: float) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(HOST, upstream)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_delay_line(client_r, up_w, delay_s), _delay_line(up_r, client_w, delay_s))
        for w in (client_w, up_w):
            w.close()

    server = await asyncio.start_server(handle, HOST, port, reuse_address=True)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--upstream", type=int, required=True)
    ap.add_argument("--rtt-ms", type=float, default=20.0)
    args = ap.parse_args()
    try:
        asyncio.run(_serve(args.port, args.upstream, args.rtt_ms / 2000.0))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
