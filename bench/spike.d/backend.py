"""A shop backend with a fixed capacity, for bench/spike: at most CAPACITY
requests are worked on at once, each for WORK_MS; the rest queue inside it,
as a real application server's thread pool does. HTTP/1.1 with keep-alive.

Usage: backend.py PORT CAPACITY WORK_MS [JWKS_FILE]
(GET /jwks.json answers the file at once, outside the capacity: the
gateways' token keys.)
"""
import asyncio
import sys

PORT, CAPACITY, WORK_MS = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
JWKS = open(sys.argv[4], "rb").read() if len(sys.argv) > 4 else b"{}"
KEYS = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(JWKS)).encode() + b"\r\n\r\n" + JWKS)
BODY = b'{"shop":"ok"}'
ANSWER = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
          + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


async def serve(reader, writer, workers):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            if head.startswith(b"GET /jwks.json "):
                writer.write(KEYS)
                await writer.drain()
                continue
            async with workers:
                await asyncio.sleep(WORK_MS / 1000)
            writer.write(ANSWER)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main():
    workers = asyncio.Semaphore(CAPACITY)
    server = await asyncio.start_server(lambda r, w: serve(r, w, workers), "127.0.0.1", PORT, backlog=1024)
    async with server:
        await server.serve_forever()


asyncio.run(main())
