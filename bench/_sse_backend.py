"""A streaming backend for bench.gateway: answers every request with server-sent events at
once (headers and the first event in one write), then two more events 2 ms apart, on
kept-alive connections. Plain asyncio streams, so it adds next to nothing.

    python -m bench._sse_backend     # prints the port, serves until stdin closes
"""

from __future__ import annotations

import asyncio
import sys

FIRST = b'data: {"choices":[{"index":0,"delta":{"content":"Hello"}}]}\n\n'
NEXT = b'data: {"choices":[{"index":0,"delta":{"content":" there"}}]}\n\n'
DONE = b"data: [DONE]\n\n"
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            writer.write(HEAD + chunk(FIRST))
            await writer.drain()
            for data in (NEXT, NEXT):
                await asyncio.sleep(0.002)
                writer.write(chunk(data))
            writer.write(chunk(DONE) + b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # The parent holds our stdin: when it goes away (even killed), so do we.
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
