"""`tidemail smtp-sink`: a local SMTP server that keeps every message it receives as an
.eml file and logs one line per message; the demo delivers to it."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from email.parser import BytesParser
from email.policy import default
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)


class SinkHandler:
    """Accepts every message; stores it as `<ns since epoch>-<job id>.eml` in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        headers = BytesParser(policy=default).parsebytes(content, headersonly=True)
        name = headers.get("X-Tidemail-Job-Id") or uuid.uuid4().hex
        (self.directory / f"{time.time_ns()}-{name}.eml").write_bytes(content)
        log.info("to %s: %s", ", ".join(envelope.rcpt_tos), headers.get("Subject", "(no subject)"))
        return "250 Message accepted for delivery"


async def serve(host: str, port: int, directory: Path) -> asyncio.Server:
    """Start listening; the caller owns the returned server."""
    directory.mkdir(parents=True, exist_ok=True)
    handler = SinkHandler(directory)
    loop = asyncio.get_running_loop()
    # A fixed hostname: aiosmtpd would otherwise resolve this machine's FQDN per connection.
    return await loop.create_server(lambda: SMTP(handler, hostname="tidemail-sink"), host, port)
