"""Signed, expiring unsubscribe tokens: HMAC-SHA256 over user, list and expiry."""

from __future__ import annotations

import base64
import hashlib
import hmac


def sign_token(user_id: str, list_name: str, expires_ms: int, secret: bytes) -> str:
    """A URL-safe token that proves this link was made by us for this user and list."""
    payload = f"{user_id}\x1f{list_name}\x1f{expires_ms}".encode()
    mac = hmac.new(secret, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def verify_token(token: str, secret: bytes, now_ms: int) -> tuple[str, str] | None:
    """(user_id, list) when the token is ours, intact and unexpired; otherwise None."""
    try:
        payload_part, mac_part = token.split(".", 1)
        payload = _unb64(payload_part)
        mac = _unb64(mac_part)
        user_id, list_name, expires = payload.decode().split("\x1f")
        expires_ms = int(expires)
    except ValueError:
        return None
    expected = hmac.new(secret, payload, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected) or expires_ms < now_ms:
        return None
    return user_id, list_name


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as e:
        raise ValueError("not base64") from e
