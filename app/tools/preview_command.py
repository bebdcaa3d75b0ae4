"""`tidemail preview TEMPLATE`: an email as a running worker would render it now."""

from __future__ import annotations

import asyncio

import click
import orjson
from aiohttp import ClientConnectionError, ClientSession

from app.settings import Settings
from app.tools.common import api_headers


@click.command()
@click.argument("template")
@click.option("--user-id", default=None, help="Render for this user's current state (default: an unknown user).")
@click.option("--format", "output", type=click.Choice(["html", "json", "text"]), default="html", show_default=True)
@click.option("--worker-url", default=None, help="A running worker's API (default: this machine's, from settings).")
def preview(template: str, user_id: str | None, output: str, worker_url: str | None) -> None:
    """Print an email as a running worker would render it now for a user."""
    settings = Settings.from_env()
    base = worker_url or f"http://127.0.0.1:{settings.web_port}"
    params = {"format": "json", **({"user_id": user_id} if user_id else {})}

    async def fetch() -> tuple[int, bytes]:
        async with (
            ClientSession(headers=api_headers(settings)) as http,
            http.get(f"{base}/templates/{template}/preview", params=params) as response,
        ):
            return response.status, await response.read()

    try:
        status, body = asyncio.run(fetch())
    except ClientConnectionError as e:
        raise click.ClickException(
            f"no worker answers at {base} ({e}): start one (`tidemail worker`, or `make demo`) or pass --worker-url"
        ) from e
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise click.ClickException(f"{base} answered HTTP {status} without JSON: is it a Tidemail worker?") from e
    if status != 200:
        raise click.ClickException(doc.get("error", f"HTTP {status}"))
    if output == "json":
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(doc["html"] if output == "html" else f"Subject: {doc['subject']}\n\n{doc['text']}")
