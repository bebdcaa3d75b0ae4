from __future__ import annotations

from streams.core.unsubscribe import sign_token, verify_token

SECRET = b"test-secret"


def test_valid_token_names_user_and_list() -> None:
    token = sign_token("u1", "marketing", expires_ms=2_000, secret=SECRET)
    assert verify_token(token, SECRET, now_ms=1_000) == ("u1", "marketing")


def test_expired_forged_and_tampered_tokens_are_refused() -> None:
    token = sign_token("u1", "marketing", expires_ms=2_000, secret=SECRET)
    assert verify_token(token, SECRET, now_ms=3_000) is None
    assert verify_token(token, b"other-secret", now_ms=1_000) is None
    forged = sign_token("u2", "marketing", expires_ms=2_000, secret=b"guess")
    assert verify_token(forged, SECRET, now_ms=1_000) is None
    payload, mac = token.split(".")
    assert verify_token(payload[:-2] + "AA." + mac, SECRET, now_ms=1_000) is None
    assert verify_token("garbage", SECRET, now_ms=1_000) is None
    assert verify_token("a.b.c", SECRET, now_ms=1_000) is None
