#!/usr/bin/env python3
"""A real SMTP server for the end-to-end tests (aiosmtpd).

    python3 tests/support/smtp_server.py PORT DIRECTORY [DELAY_SECONDS]

Listens on 127.0.0.1:PORT and stores every accepted message as its own file in DIRECTORY
(`<arrival ns>-<random>.eml`, written beside the target and renamed, so a reader never sees half
a message). Any recipient whose address starts with `refuse` is refused at RCPT with
`550 5.1.1 mailbox unavailable`. With DELAY_SECONDS, each message is stored and answered that
long after its data arrived (a slow server; other sessions carry on meanwhile). Prints
`READY <port>` to stdout once it accepts connections, and runs until killed. On SIGTERM it stops
like a server taken down for maintenance: it accepts no more connections, answers messages whose
data arrives from then on with `421` (not stored), lets the messages it is storing finish and be
answered, and exits; so a message is never stored without its sender hearing so.
"""

import asyncio
import os
import signal
import sys
import time
import uuid

from aiosmtpd.smtp import SMTP


class StoreHandler:
    def __init__(self, directory, delay):
        self.directory = directory
        self.delay = delay
        self.closing = False
        self.storing = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().startswith("refuse"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.closing:
            return "421 4.3.2 shutting down"
        self.storing += 1
        try:
            return await self.store(envelope)
        finally:
            self.storing -= 1

    async def store(self, envelope):
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex}"
        partial = os.path.join(self.directory, name + ".partial")
        with open(partial, "wb") as file:
            file.write(content)
        os.replace(partial, os.path.join(self.directory, name + ".eml"))
        return "250 2.0.0 OK: stored"


async def main(port, directory, delay):
    os.makedirs(directory, exist_ok=True)
    handler = StoreHandler(directory, delay)
    loop = asyncio.get_running_loop()
    # hostname given: SMTP() would otherwise resolve the machine's FQDN, slow without DNS.
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="localhost", enable_SMTPUTF8=True),
        host="127.0.0.1",
        port=port,
        reuse_address=True,
    )
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    print(f"READY {port}", flush=True)
    await stopping.wait()
    handler.closing = True
    server.close()
    while handler.storing > 0:
        await asyncio.sleep(0.01)
    # Let the last replies reach their senders before the process (and its sockets) ends.
    await asyncio.sleep(0.2)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: smtp_server.py PORT DIRECTORY [DELAY_SECONDS]")
    delay = float(sys.argv[3]) if len(sys.argv) == 4 else 0.0
    try:
        asyncio.run(main(int(sys.argv[1]), sys.argv[2], delay))
    except KeyboardInterrupt:
        pass
