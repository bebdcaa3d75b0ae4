"""The message as a mailbox provider reads it: the bytes the deliverer sends, split and
unfolded by hand (RFC 5322), never through Python's email decoder."""

from __future__ import annotations

import base64
import quopri
import re
from email import policy

import orjson
import pytest

from streams.core.errors import InvalidJob
from streams.delivery.config import Sender
from streams.delivery.messages import MAX_LINE_OCTETS, UriListHeader, build_message, parse_job
from tests.unit.delivery.test_messages import SEND_AT_MS, job_doc

# A link as the worker makes it: a token of ~170 characters after a base URL.
LONG_URL = "https://shop.example.com/unsubscribe?token=" + "dTEfbWFya2V0aW5nHzE4MDM2Mjg4MDAwMDA" * 4 + "." + "x" * 43
SENDER = Sender("hello@shop.example.com", "Tidemail Shop")


def sent_bytes(sender: Sender = SENDER, **job: str) -> bytes:
    """The bytes the deliverer hands to SMTP for a job: flattened the way its senders do."""
    message = build_message(parse_job(orjson.dumps(job_doc(**job))), sender, SEND_AT_MS)
    return message.as_bytes(policy=policy.SMTP)


def header_lines(raw: bytes) -> list[bytes]:
    """The top-level header section's physical lines (without their CRLF)."""
    head, separator, _ = raw.partition(b"\r\n\r\n")
    assert separator, "no blank line ends the header section"
    return head.split(b"\r\n")


def unfolded(lines: list[bytes]) -> list[tuple[str, str]]:
    """(name, value) per header: a line starting with a space or tab continues the one
    before, its CRLF removed and its whitespace kept (RFC 5322 2.2.3)."""
    fields: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            fields[-1] += line
        else:
            fields.append(line)
    pairs = []
    for field in fields:
        name, colon, value = field.partition(b":")
        assert colon and re.fullmatch(rb"[!-9;-~]+", name), field
        pairs.append((name.decode("ascii"), value.decode("ascii").strip(" \t")))
    return pairs


def header(raw: bytes, name: str) -> str:
    [value] = [v for n, v in unfolded(header_lines(raw)) if n.lower() == name.lower()]
    return value


def physical_lines(raw: bytes, name: str) -> list[bytes]:
    """The lines one header takes in the raw bytes: its first line and its continuations."""
    lines = header_lines(raw)
    start = next(i for i, line in enumerate(lines) if line.lower().startswith(name.lower().encode() + b":"))
    end = start + 1
    while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
        end += 1
    return lines[start:end]


def assert_wire_clean(raw: bytes) -> None:
    """ASCII, CRLF line endings only (no bare CR or LF), no line over 998 octets."""
    assert raw.isascii()
    assert re.search(rb"(?<!\r)\n", raw) is None, "bare LF"
    assert re.search(rb"\r(?!\n)", raw) is None, "bare CR"
    assert max(len(line) for line in raw.split(b"\r\n")) <= MAX_LINE_OCTETS


def test_list_unsubscribe_is_the_bracketed_url_as_is_never_encoded_words() -> None:
    raw = sent_bytes(unsubscribe_url=LONG_URL)
    assert_wire_clean(raw)
    # One line longer than 78 characters, which RFC 5322 allows up to 998.
    assert physical_lines(raw, "List-Unsubscribe") == [f"List-Unsubscribe: <{LONG_URL}>".encode()]
    assert header(raw, "List-Unsubscribe") == f"<{LONG_URL}>"
    assert b"=?" not in b"".join(physical_lines(raw, "List-Unsubscribe"))
    assert physical_lines(raw, "List-Unsubscribe-Post") == [b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"]


def test_a_mailto_comes_first_and_the_header_folds_only_between_the_uris() -> None:
    sender = Sender("hello@shop.example.com", "Tidemail Shop", "unsubscribe@shop.example.com")
    raw = sent_bytes(sender, unsubscribe_url=LONG_URL)
    assert_wire_clean(raw)
    assert physical_lines(raw, "List-Unsubscribe") == [
        b"List-Unsubscribe: <mailto:unsubscribe@shop.example.com>,",
        f" <{LONG_URL}>".encode(),
    ]
    assert header(raw, "List-Unsubscribe") == f"<mailto:unsubscribe@shop.example.com>, <{LONG_URL}>"
    # Within 78 characters: one line.
    short = sent_bytes(
        Sender("hello@shop.example", "Shop", "u@shop.example"), unsubscribe_url="https://shop.example/u?t=1"
    )
    assert physical_lines(short, "List-Unsubscribe") == [
        b"List-Unsubscribe: <mailto:u@shop.example>, <https://shop.example/u?t=1>"
    ]


def test_identity_headers_read_right_from_the_bytes() -> None:
    raw = sent_bytes(unsubscribe_url=LONG_URL)
    assert header(raw, "From") == "Tidemail Shop <hello@shop.example.com>"
    assert header(raw, "To") == "ann@example.com"
    assert header(raw, "Message-ID") == "<5b1f0c9e-0000-5000-8000-000000000001@shop.example.com>"
    # RFC 5322 3.3: day, date, time and a numeric zone; 2026-11-28T08:00:00Z.
    assert header(raw, "Date") == "Sat, 28 Nov 2026 08:00:00 +0000"
    assert header(raw, "MIME-Version") == "1.0"
    names = [name.lower() for name, _ in unfolded(header_lines(raw))]
    assert len(names) == len(set(names)), "a header appears twice"


def test_a_display_name_beyond_ascii_is_encoded_words_and_the_address_stays_plain() -> None:
    raw = sent_bytes(Sender("hello@shop.example.com", "Boutique Göteborg"))
    value = header(raw, "From")
    assert value.endswith(" <hello@shop.example.com>")
    words = re.fullmatch(r"(.*) <hello@shop\.example\.com>", value)
    assert words is not None
    assert _decode_words(words.group(1)) == "Boutique Göteborg"


def test_the_body_is_text_then_html_alternatives_in_quoted_printable() -> None:
    raw = sent_bytes(text="Hi Änn\nline two\r\nthree", html="<p>Hi Änn</p>\n" + "<p>" + "x" * 3_000 + "</p>")
    assert_wire_clean(raw)
    content_type = header(raw, "Content-Type")
    match = re.fullmatch(r'multipart/alternative;\s*boundary="([^"]+)"', content_type)
    assert match is not None, content_type
    boundary = match.group(1).encode()
    _, _, body = raw.partition(b"\r\n\r\n")
    assert body.count(b"--" + boundary + b"--\r\n") == 1
    sections = body.split(b"--" + boundary)
    assert len(sections) == 4  # preamble, text, html, closing
    parts = []
    for section in sections[1:3]:
        assert section.startswith(b"\r\n")
        part_head, _, part_body = section[2:].partition(b"\r\n\r\n")
        fields = dict((name.lower(), value) for name, value in unfolded(part_head.split(b"\r\n")))
        # The version belongs at the top only.
        assert "mime-version" not in fields
        assert fields["content-transfer-encoding"] == "quoted-printable"
        parts.append((fields["content-type"], quopri.decodestring(part_body).decode("utf-8")))
    (text_type, text), (html_type, html) = parts
    assert (text_type, html_type) == ('text/plain; charset="utf-8"', 'text/html; charset="utf-8"')
    assert text.replace("\r\n", "\n").strip() == "Hi Änn\nline two\nthree"
    assert "<p>" + "x" * 3_000 + "</p>" in html


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("unsubscribe_url", "javascript:alert(1)"),
        ("unsubscribe_url", "https://shop.example.com/u?t=a b"),
        ("unsubscribe_url", "https://shop.example.com/u?t=1>, <https://evil.example"),
        ("unsubscribe_url", "https://shop.example.com/ü"),
        ("unsubscribe_url", "https://shop.example.com/u?t=" + "a" * 900),
        ("job_id", "job 1"),
        ("job_id", "a@b"),
        ("job_id", "a" * 201),
    ],
)
def test_a_job_whose_headers_would_be_malformed_is_refused(field: str, value: str) -> None:
    with pytest.raises(InvalidJob, match=f"^`{field}` must be"):
        parse_job(orjson.dumps(job_doc(**{field: value})))


def test_a_uri_too_long_for_a_line_is_refused_not_broken() -> None:
    header_value = UriListHeader("List-Unsubscribe", f"<https://x.example/{'a' * 990}>")
    with pytest.raises(ValueError, match="too long for one line of 998 octets"):
        header_value.fold(policy=policy.SMTP)


def _decode_words(text: str) -> str:
    """RFC 2047 encoded-words (B or Q, UTF-8) and the plain words between them, by hand."""
    decoded = []
    for word in text.split(" "):
        match = re.fullmatch(r"=\?utf-8\?([qQbB])\?([^?]*)\?=", word)
        if match is None:
            decoded.append(word)
        elif match.group(1) in "qQ":
            decoded.append(quopri.decodestring(match.group(2).replace("_", " ").encode()).decode("utf-8"))
        else:
            decoded.append(base64.b64decode(match.group(2)).decode("utf-8"))
    return " ".join(decoded)
