"""A real SMTP server (aiosmtpd) inside the test's event loop that records what it receives
and can refuse chosen addresses."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.integration.harness import free_port


class RecordingHandler:
    """Counts messages per `X-Tidemail-Job-Id`. Addresses in `greylist` get 451 on their
    first RCPT; addresses in `unknown` always get 550. `data_delay_s` slows each message."""

    def __init__(self, greylist: Iterable[str] = (), unknown: Iterable[str] = (), data_delay_s: float = 0.0) -> None:
        self.greylist = set(greylist)
        self.unknown = set(unknown)
        self.data_delay_s = data_delay_s
        self.messages: list[EmailMessage] = []
        self.per_job: Counter[str] = Counter()
        self.rcpt_replies: Counter[tuple[str, int]] = Counter()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.unknown:
            self.rcpt_replies[(address, 550)] += 1
            return f"550 5.1.1 <{address}>: no such user"
        if address in self.greylist:
            self.greylist.discard(address)
            self.rcpt_replies[(address, 451)] += 1
            return "451 4.7.1 greylisted, try again later"
        self.rcpt_replies[(address, 250)] += 1
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_delay_s:
            await asyncio.sleep(self.data_delay_s)
        message = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.per_job[str(message["X-Tidemail-Job-Id"])] += 1
        return "250 2.0.0 queued"


@asynccontextmanager
async def smtp_server(handler: RecordingHandler) -> AsyncIterator[int]:
    """Serve `handler` on a free local port; yields the port."""
    port = free_port()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="test-smtp"), "127.0.0.1", port)
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()
