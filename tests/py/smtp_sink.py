"""A real SMTP server for the end-to-end tests (aiosmtpd on 127.0.0.1).

Usage: python3 smtp_sink.py <dir>
Binds an ephemeral port, prints it on the first line of stdout, and writes
every message it accepts to <dir>/<n>.eml (the raw message, with the
envelope recipients on an `X-Envelope-To:` line first). Runs until killed.
With the environment variable SMTP_FAIL_FIRST=n it answers the first n
messages with a temporary failure (451), as a struggling relay would.
"""
import asyncio
import itertools
import os
import sys

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, folder):
        self.folder = folder
        self.count = itertools.count(1)
        self.fail_left = int(os.environ.get("SMTP_FAIL_FIRST", "0"))

    async def handle_DATA(self, server, session, envelope):
        if self.fail_left > 0:
            self.fail_left -= 1
            return "451 4.3.0 try again later"
        n = next(self.count)
        body = envelope.original_content or envelope.content
        if isinstance(body, str):
            body = body.encode()
        head = ("X-Envelope-To: " + ", ".join(envelope.rcpt_tos) + "\r\n").encode()
        tmp = os.path.join(self.folder, f".{n}.tmp")
        with open(tmp, "wb") as f:
            f.write(head + body)
        os.rename(tmp, os.path.join(self.folder, f"{n}.eml"))
        return "250 OK"


async def serve(folder):
    handler = Sink(folder)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test"), "127.0.0.1", 0
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main():
    folder = sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    try:
        asyncio.run(serve(folder))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
