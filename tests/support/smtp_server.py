#!/usr/bin/env python3
"""A real SMTP server for the end-to-end tests (aiosmtpd).

    python3 tests/support/smtp_server.py PORT DIRECTORY

Listens on 127.0.0.1:PORT and stores every accepted message as its own file in DIRECTORY
(`<arrival ns>-<random>.eml`, written beside the target and renamed, so a reader never sees half
a message). Any recipient whose address starts with `refuse` is refused at RCPT with
`550 5.1.1 mailbox unavailable`. Prints `READY <port>` to stdout once it accepts connections, and
runs until killed.
"""

import asyncio
import os
import sys
import time
import uuid

from aiosmtpd.smtp import SMTP


class StoreHandler:
    def __init__(self, directory):
        self.directory = directory

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().startswith("refuse"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex}"
        partial = os.path.join(self.directory, name + ".partial")
        with open(partial, "wb") as file:
            file.write(content)
        os.replace(partial, os.path.join(self.directory, name + ".eml"))
        return "250 2.0.0 OK: stored"


async def main(port, directory):
    os.makedirs(directory, exist_ok=True)
    handler = StoreHandler(directory)
    loop = asyncio.get_running_loop()
    # hostname given: SMTP() would otherwise resolve the machine's FQDN, slow without DNS.
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="localhost", enable_SMTPUTF8=True),
        host="127.0.0.1",
        port=port,
        reuse_address=True,
    )
    print(f"READY {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: smtp_server.py PORT DIRECTORY")
    try:
        asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
    except KeyboardInterrupt:
        pass
