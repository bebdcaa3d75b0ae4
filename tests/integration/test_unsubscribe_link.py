"""An email's unsubscribe link as a mailbox provider follows it: from the raw bytes the SMTP
server received, through the real deliverer, back to the worker with a one-click POST."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.factories import event_doc
from tests.integration.harness import (
    DelivererHarness,
    WorkerHarness,
    delete_deployment,
    keyed,
    produce,
    read_topic,
)
from tests.integration.smtp_server import RecordingHandler, smtp_server
from tests.unit.delivery.test_message_bytes import assert_wire_clean, header_lines, physical_lines, unfolded

pytestmark = pytest.mark.integration

MAILTO = "unsubscribe@shop.example.com"


class RawHandler(RecordingHandler):
    """Keeps the bytes of each message exactly as the DATA command carried them."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.raw.append(envelope.original_content or b"")
        return await super().handle_DATA(server, session, envelope)


async def test_the_delivered_link_unsubscribes_on_a_one_click_post_and_not_on_a_get(tmp_path: Path) -> None:
    worker = WorkerHarness(tmp_path, {"TIDEMAIL_QUIET_HOURS": "", "TIDEMAIL_UNSUBSCRIBE_MAILTO": MAILTO})
    handler = RawHandler()
    now = int(time.time() * 1000)
    signups = []
    # A few users, as an experiment's holdout may leave one without a welcome email.
    for n in range(3):
        doc = event_doc("signup", f"reader{n}", event_id=f"signup-{n}", ts=now)
        doc["context"] = {"email": f"reader{n}@example.com", "first_name": "Zoë"}
        signups.append(keyed(doc))
    try:
        async with smtp_server(handler) as port:
            deliverer = DelivererHarness(worker, port)
            try:
                await worker.start()
                await deliverer.start()
                await produce(worker.settings.kafka_bootstrap, worker.settings.events_topic, signups)
                deadline = time.monotonic() + 60
                while not handler.raw:
                    assert time.monotonic() < deadline, f"no email arrived; log:\n{deliverer.log_tail()}"
                    await asyncio.sleep(0.2)
            finally:
                await deliverer.stop()
        raw = handler.raw[0]
        assert_wire_clean(raw)
        fields = dict(unfolded(header_lines(raw)))
        user = fields["To"].split("@")[0]
        match = re.fullmatch(rf"<mailto:{re.escape(MAILTO)}>, <(http://[^<>\s]+)>", fields["List-Unsubscribe"])
        assert match is not None, fields["List-Unsubscribe"]
        url = match.group(1)
        assert url.startswith(f"{worker.url}/unsubscribe?token=")
        # Folded between the URIs only, each as is: no encoded-words.
        assert physical_lines(raw, "List-Unsubscribe") == [
            f"List-Unsubscribe: <mailto:{MAILTO}>,".encode(),
            f" <{url}>".encode(),
        ]
        assert fields["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

        # A link scanner's GET, with no token of the API, as a mail client has none.
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200
            assert '<form method="post"' in await response.text()
        # What Gmail and Yahoo send for the one-click button (RFC 8058 3.2).
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                url,
                data=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ) as response,
        ):
            assert response.status == 200
        profile = await worker.wait_for(lambda p: p["unsubscribed_lists"] == ["marketing"], f"/users/{user}", 30)
        assert profile["counts"]["unsubscribe"] == 1
        # The GET published nothing: the one unsubscribe event is the POST's.
        assert await unsubscribe_events(worker) == [user]
    finally:
        worker.stop()
        await delete_deployment(worker.settings)


async def unsubscribe_events(worker: WorkerHarness) -> list[Any]:
    records = await read_topic(worker.settings.kafka_bootstrap, worker.settings.events_topic)
    docs = [orjson.loads(r.value) for r in records]
    return [doc["user_id"] for doc in docs if doc["type"] == "unsubscribe"]
