"""One reusable SMTP connection for the deliverer, with the phase each failure happened in."""

from __future__ import annotations

import aiosmtplib

from streams.core.errors import TidemailError
from streams.delivery.config import SmtpConfig

QUIT_TIMEOUT_S = 2.0


class SmtpAttemptError(TidemailError):
    """An attempt failed during `phase` (connect, mail, rcpt or data); `error` says how."""

    def __init__(self, phase: str, error: BaseException) -> None:
        super().__init__(f"{phase}: {error!r}")
        self.phase = phase
        self.error = error


class SmtpSession:
    """A connection kept open across messages (a handshake per email would cost more than
    the email), reopened when it is lost."""

    def __init__(self, config: SmtpConfig, local_hostname: str) -> None:
        self._config = config
        self._local_hostname = local_hostname
        self._client: aiosmtplib.SMTP | None = None

    async def send(self, envelope_from: str, to: str, message: bytes) -> aiosmtplib.SMTPResponse:
        """Send one message; return the server's reply to its DATA, or raise `SmtpAttemptError`."""
        phase = "connect"
        try:
            reused = self._client is not None and self._client.is_connected
            client = await self._connected()
            phase = "mail"
            try:
                await client.mail(envelope_from)
            except aiosmtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                # The server closed an idle connection: open a new one; nothing was sent yet.
                phase = "connect"
                client = await self._connected()
                phase = "mail"
                await client.mail(envelope_from)
            phase = "rcpt"
            await client.rcpt(to)
            phase = "data"
            return await client.data(message)
        except Exception as e:
            await self._reset(e)
            raise SmtpAttemptError(phase, e) from e

    async def close(self) -> None:
        if self._client is not None and self._client.is_connected:
            try:
                # Briefly: a slow server must not hold up shutdown.
                await self._client.quit(timeout=QUIT_TIMEOUT_S)
            except (aiosmtplib.SMTPException, OSError):
                self._client.close()
        self._client = None

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        c = self._config
        client = aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            username=c.username or None,
            password=c.password or None,
            use_tls=c.tls == "tls",
            start_tls=c.tls == "starttls",
            timeout=c.timeout_s,
            local_hostname=self._local_hostname,
        )
        self._client = None
        await client.connect()
        self._client = client
        return client

    async def _reset(self, error: Exception) -> None:
        """Leave the connection ready for the next message: RSET after a refusal, else drop it."""
        client = self._client
        if client is None or not client.is_connected:
            return
        if isinstance(error, aiosmtplib.SMTPResponseException):
            try:
                await client.rset()
                return
            except (aiosmtplib.SMTPException, OSError):
                pass
        client.close()
        self._client = None
