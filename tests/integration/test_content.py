"""The content engine through the real broker: render failures, unsubscribe links, previews."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from tests.factories import event_doc, item
from tests.integration.harness import (
    ROOT,
    WorkerHarness,
    delete_deployment,
    keyed,
    produce,
    read_topic,
    signup,
    welcome_emails,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def fragile_worker(tmp_path: Path) -> AsyncIterator[WorkerHarness]:
    """A worker whose welcome subject fails for one user, as a broken filter would."""
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    subject = templates / "emails/welcome/subject.txt.j2"
    subject.write_text("{{ 1 // (0 if first_name == 'Boom' else 1) }}" + subject.read_text())
    harness = WorkerHarness(tmp_path, {"TIDEMAIL_TEMPLATES_DIR": str(templates)})
    yield harness
    harness.stop()
    await delete_deployment(harness.settings)


async def test_render_failure_is_dead_lettered_and_other_users_still_get_email(fragile_worker: WorkerHarness) -> None:
    worker = fragile_worker
    await worker.start()
    s = worker.settings
    await produce(s.kafka_bootstrap, s.events_topic, [signup("boom", "Boom"), signup("ann", "Ann")])
    await worker.wait_until_caught_up()

    assert [job["user_id"] for job in await welcome_emails(s)] == ["ann"]
    [dead] = await read_topic(s.kafka_bootstrap, s.dead_letter_topic)
    headers = dict(dead.headers)
    assert headers["tidemail.kind"] == b"render_failed" and dead.key == b"boom"
    version = (await worker.get("/templates"))[1]["templates"]
    welcome_version = next(t["version"] for t in version if t["name"] == "welcome")
    assert f"template 'welcome' ({welcome_version}) failed: ZeroDivisionError" in headers["tidemail.reason"].decode()
    _, metrics = await worker.text("/metrics")
    assert 'tidemail_dead_letters_total{kind="render_failed"} 1.0' in metrics
    status, profile = await worker.get("/users/boom")
    assert status == 200 and profile["counts"] == {"signup": 1}


async def test_unsubscribe_link_from_a_job_unsubscribes_through_the_stream(worker: WorkerHarness) -> None:
    await worker.start()
    s = worker.settings
    await produce(s.kafka_bootstrap, s.events_topic, [signup("ann", "Ann")])
    await worker.wait_until_caught_up()
    [job] = await welcome_emails(s)
    token = parse_qs(urlparse(job["unsubscribe_url"]).query)["token"][0]
    assert job["unsubscribe_url"] in job["html"] and job["unsubscribe_url"] in job["text"]

    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for bad in (forged, "nonsense", ""):
        status, page = await worker.text(f"/unsubscribe?token={bad}")
        assert status == 400 and "not valid or has expired" in page

    # A GET (a link scanner, say) only asks.
    status, page = await worker.text(f"/unsubscribe?token={token}")
    assert status == 200 and "Stop getting marketing email" in page and '<form method="post"' in page
    # One-click (RFC 8058) POSTs of the same link: the same event id, applied once.
    for _ in range(2):
        status, page = await worker.text(f"/unsubscribe?token={token}", method="POST")
        assert status == 200 and "no more marketing email" in page
    profile = await worker.wait_for(lambda p: p["unsubscribed_lists"] == ["marketing"], "/users/ann", timeout=30)
    assert profile["counts"]["unsubscribe"] == 1
    _, metrics = await worker.text("/metrics")
    assert 'tidemail_unsubscribe_requests_total{outcome="accepted"} 2.0' in metrics
    assert 'tidemail_unsubscribe_requests_total{outcome="refused"} 3.0' in metrics


async def test_preview_renders_a_real_users_state_and_loads_in_chromium(worker: WorkerHarness, tmp_path: Path) -> None:
    await worker.start_with_trainer()
    s = worker.settings
    await produce(
        s.kafka_bootstrap,
        s.events_topic,
        [
            signup("ann", "Ann", country="GB"),
            *(
                keyed(event_doc("cart_add", "bob", event_id=f"c{n}", item=item(sku=f"OUT-{n}", price=10.0 + n)))
                for n in range(4)
            ),
            keyed(event_doc("page_view", "ann", event_id="v1", category="outdoor", sku="OUT-1")),
            keyed(event_doc("cart_add", "ann", event_id="a1", item=item(sku="OUT-0"))),
        ],
    )
    await worker.wait_until_caught_up()
    # Product blocks take their products from the trainer's item model.
    await worker.wait_for(lambda b: b["recommendations"]["products"] >= 4, "/models", timeout=60)

    status, listing = await worker.get("/templates")
    assert status == 200 and {"welcome", "welcome_picks", "cart_reminder", "winback"} <= {
        t["name"] for t in listing["templates"]
    }
    status, email = await worker.get("/templates/cart_reminder/preview?user_id=ann&format=json")
    assert status == 200, email
    assert email["subject"] == "Ann, you left Item OUT-0 in your cart"
    assert "Popular right now" in email["html"] or "Picked for you" in email["html"]
    assert "Free next-day delivery anywhere in the UK" in email["text"]
    status, anonymous = await worker.get("/templates/welcome/preview?format=json")
    assert status == 200 and anonymous["subject"] == "Welcome to Tidemail Shop!"
    assert (await worker.get("/templates/nope/preview"))[0] == 404
    assert (await worker.get("/templates/welcome/preview?user_id=nobody"))[0] in (404, 421)

    # The browser cannot send the API's bearer token: it loads the preview the worker served.
    status, html = await worker.text("/templates/cart_reminder/preview?user_id=ann")
    assert status == 200
    page = tmp_path / "preview.html"
    page.write_text(html)
    screenshot = tmp_path / "preview.png"
    result = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=640,1600",
            f"--screenshot={screenshot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    shutil.copy(screenshot, ROOT / ".cache" / "preview-cart_reminder.png")

    # The same preview from the command line, with the deployment's settings (and so its API token).
    command = [sys.executable, "-m", "app.cli", "preview", "--worker-url", worker.url]
    cli = subprocess.run(
        [*command, "cart_reminder", "--user-id", "ann", "--format", "text"],
        capture_output=True,
        cwd=ROOT,
        env=worker.env,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr.decode()
    assert cli.stdout.decode().startswith("Subject: Ann, you left Item OUT-0 in your cart\n\nHi Ann,")
    missing = subprocess.run([*command, "nope"], capture_output=True, cwd=ROOT, env=worker.env, timeout=60)
    assert missing.returncode != 0 and "no template 'nope'" in missing.stderr.decode()
