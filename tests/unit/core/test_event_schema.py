"""The published event schema (streams/schemas/event.schema.json) against the worker's own
validation: the documented examples (README and docs/contracts.md) and the generator's
traffic pass both, and on a corpus
of valid and mutated events (Hypothesis) the two accept and refuse the same events.

What JSON Schema cannot say is left out of the comparison, on purpose:
- the message key must equal `user_id` (the key is not part of the JSON): `key=None` here;
- the message's size in bytes (`TIDEMAIL_MAX_EVENT_BYTES`): the limit here is far above any event;
- a whole number written with a fraction (`2.0`) is an integer to JSON Schema but not to
  the worker, so the corpus writes no integral floats;
- the worker checks the instant of a string timestamp and the schema the year as written,
  so string timestamps stay a day away from 2000 and 2100;
- the worker reads some ISO 8601 forms beyond RFC 3339; the schema asks for RFC 3339.
The last three are pinned by `test_where_the_schema_and_the_worker_differ_by_design`.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from app.tools.generator import EventGenerator
from streams.core.errors import InvalidEvent
from streams.core.events import (
    BOUNCE_KINDS,
    CONTEXT_FIELDS,
    EVENT_TYPES,
    MAX_ID_LENGTH,
    MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
    parse_event,
)
from streams.core.schemas import SCHEMA_NAMES, schema
from streams.core.tracking import translate_request
from tests.documented import ROOT, fenced_json
from tests.factories import BASE_TS

# Where events are documented: (file, the heading of the section holding the examples).
DOCUMENTED_EVENTS = ((ROOT / "README.md", "### Events"), (ROOT / "docs/contracts.md", "## Event contract"))
VALIDATOR = Draft202012Validator(schema("event"))
NO_SIZE_LIMIT = 1 << 30
DAY_MS = 86_400_000


def worker_error(doc: Any) -> str | None:
    """Why the worker refuses the event, or None when it accepts it (keyless, as explained above)."""
    try:
        parse_event(orjson.dumps(doc), None, NO_SIZE_LIMIT)
    except InvalidEvent as e:
        return str(e)
    return None


def schema_errors(doc: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(doc)]


def assert_agree(doc: Any) -> None:
    worker, schema_says = worker_error(doc), schema_errors(doc)
    assert (worker is None) == (not schema_says), f"{doc!r}\nworker: {worker}\nschema: {schema_says}"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_the_schemas_are_valid_draft_2020_12_schemas(name: str) -> None:
    doc = schema(name)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(doc)


# ---- the documented examples and the generator's traffic ----------------------------------


@pytest.mark.parametrize(("path", "heading"), DOCUMENTED_EVENTS, ids=lambda p: getattr(p, "name", p))
def test_every_documented_example_is_valid_for_the_schema_and_the_worker(path: Path, heading: str) -> None:
    events = fenced_json(path, heading)
    assert events, f"no example events under {heading!r} in {path.name}"
    for doc in events:
        assert schema_errors(doc) == [], doc
        assert worker_error(doc) is None, doc


def test_the_contract_doc_shows_an_event_of_every_type() -> None:
    path, heading = DOCUMENTED_EVENTS[1]
    assert {doc["type"] for doc in fenced_json(path, heading)} == set(EVENT_TYPES)


def test_the_readme_tours_kcat_and_curl_events_are_valid_for_the_schema_and_the_worker() -> None:
    """The tour's events are in shell commands rather than JSON blocks: a kcat line
    (`key|json`, timestamped by the shell) and curl bodies through `tidemail ingest`."""
    readme = DOCUMENTED_EVENTS[0][0].read_text()
    lines = re.findall(r"^([\w-]+)\|(\{.*\})$", readme, re.MULTILINE)
    bodies = re.findall(r"curl -u \S+: \S+/v1/(\w+) .*?-d '(\{.*?\})'", readme, re.DOTALL)
    assert lines and bodies
    events = [(key, value.replace("$(date +%s000)", str(BASE_TS))) for key, value in lines]
    for route, body in bodies:
        translation = translate_request(route, body.encode(), BASE_TS)
        assert translation.refused == [], body
        events += [(a.user_id, a.value.decode()) for a in translation.accepted]
    for key, value in events:
        assert schema_errors(json.loads(value)) == [], value
        assert parse_event(value.encode(), key.encode(), NO_SIZE_LIMIT).user_id == key


def test_the_generators_events_are_valid_and_its_broken_messages_are_refused_by_both() -> None:
    messages = itertools.islice(EventGenerator(300, seed=18, broken_share=0.01).messages(lambda: BASE_TS), 4000)
    judged = {"valid": 0, "broken": 0}
    for key, raw in messages:
        if key == b"u-broken":
            with pytest.raises(InvalidEvent):
                parse_event(raw, None, NO_SIZE_LIMIT)
            if raw.startswith(b'{"'):  # the one that is not JSON at all has no schema to fail
                assert schema_errors(orjson.loads(raw)), raw
            judged["broken"] += 1
        else:
            assert schema_errors(orjson.loads(raw)) == [], raw
            assert parse_event(raw, key, NO_SIZE_LIMIT).user_id == key.decode()
            judged["valid"] += 1
    assert judged["valid"] > 3500 and judged["broken"] > 10


# ---- a property-based corpus: valid events of every type, then mutated --------------------

text = st.text(min_size=1, max_size=12)
optional_text = st.none() | text
identifiers = st.text(min_size=1, max_size=MAX_ID_LENGTH)
# No integral floats (see the module docstring); no ints beyond 64 bits (JSON encoders refuse them).
whole = st.integers(min_value=-(2**63), max_value=2**63 - 1)
fractional = st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
amounts = st.integers(min_value=0, max_value=10**9) | st.floats(min_value=0, max_value=1e9).filter(
    lambda f: not f.is_integer()
)
json_values = st.recursive(
    st.none() | st.booleans() | whole | fractional | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=5,
)
items = st.fixed_dictionaries(
    {"sku": text, "name": text, "category": text, "price": amounts}, optional={"quantity": st.integers(1, 1000)}
)
traits = st.dictionaries(
    st.text(max_size=8), st.none() | st.booleans() | whole | fractional | st.text(max_size=8), min_size=1, max_size=4
)


@st.composite
def rfc3339(draw: st.DrawFn) -> str:
    """An RFC 3339 date-time a day or more inside 2000..2100, in the forms the contract allows."""
    offset = timedelta(minutes=draw(st.integers(-(24 * 60 - 1), 24 * 60 - 1)))
    zone = draw(st.just(UTC) | st.just(timezone(offset)))
    instant = draw(st.datetimes(datetime(2000, 1, 2), datetime(2099, 12, 30), timezones=st.just(zone)))
    fraction = draw(st.sampled_from(["", ".5", ".123", ".123456", ".123456789"]))
    written = instant.strftime("%Y-%m-%d") + draw(st.sampled_from("Tt")) + instant.strftime("%H:%M:%S") + fraction
    if zone is UTC:
        return written + "Z"
    sign, minutes = ("-", -offset) if offset < timedelta(0) else ("+", offset)
    hours, rest = divmod(int(minutes.total_seconds()) // 60, 60)
    return f"{written}{sign}{hours:02d}:{rest:02d}"


timestamps = st.integers(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS) | rfc3339()


page = st.fixed_dictionaries({"url": text}, optional={"category": optional_text, "sku": optional_text})
PROPERTIES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "signup": st.fixed_dictionaries({}, optional={"source": optional_text}),
    "profile_update": st.fixed_dictionaries({"traits": traits}),
    "page_view": page,
    "click": page,
    "cart_add": st.fixed_dictionaries({"cart_id": text, "item": items}),
    "cart_remove": st.fixed_dictionaries({"cart_id": text, "sku": text}),
    "purchase": st.fixed_dictionaries(
        {
            "order_id": text,
            "items": st.lists(items, min_size=1, max_size=3),
            "total": amounts,
            "currency": st.from_regex(r"\A[A-Z]{3}\Z"),
        },
        optional={"cart_id": text},
    ),
    "email_open": st.fixed_dictionaries({"job_id": text}),
    "email_click": st.fixed_dictionaries({"job_id": text, "url": text}),
    "unsubscribe": st.fixed_dictionaries({}, optional={"list": optional_text}),
    "email_bounce": st.fixed_dictionaries(
        {"job_id": text, "bounce": st.sampled_from(BOUNCE_KINDS)}, optional={"reason": optional_text}
    ),
    "subscribe": st.fixed_dictionaries(
        {}, optional={"list": optional_text, "source": optional_text, "consented_at": st.none() | timestamps}
    ),
    "erase": st.fixed_dictionaries({}, optional={"source": optional_text}),
}
contexts = st.none() | st.fixed_dictionaries(
    {}, optional={**{name: st.none() | st.text(max_size=10) for name in CONTEXT_FIELDS}, "plan": json_values}
)


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    event_type = draw(st.sampled_from(EVENT_TYPES))
    doc: dict[str, Any] = {
        "event_id": draw(identifiers),
        "user_id": draw(identifiers),
        "type": event_type,
        "timestamp": draw(timestamps),
    }
    properties = draw(PROPERTIES[event_type])
    # Types that require no properties may leave the object out.
    keep_properties: bool = bool(properties) or draw(st.booleans())
    if keep_properties:
        doc["properties"] = properties
    if draw(st.booleans()):
        doc["context"] = draw(contexts)
    return doc


def test_the_corpus_builds_every_event_type() -> None:
    assert set(PROPERTIES) == set(EVENT_TYPES)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place inside a JSON document: object keys and list indexes, at any depth."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def value_at(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def parent_of(doc: Any, path: tuple[Any, ...]) -> Any:
    return value_at(doc, path[:-1])


# Values aimed at the rules a random replacement rarely hits.
TARGETED: dict[str, list[Any]] = {
    "type": ["teleport", "Signup", "page-view", "", None, 3],
    "timestamp": [
        "yesterday",
        "2026-11-28T08:00:00",  # no offset
        "2026-13-01T08:00:00Z",
        "2026-02-29T08:00:00Z",  # not a leap year
        "2026-11-31T08:00:00Z",
        "2026-11-28T24:00:00Z",
        "2026-11-28T08:00:60Z",
        "2026-11-28T08:00:00+24:00",
        "2026-11-28T08:00:00z",
        "1999-06-01T00:00:00Z",
        "2101-06-01T00:00:00Z",
        "2026-11-28T08:00:00Z\n",
        1_795_852_800,  # seconds, not milliseconds
        MIN_TIMESTAMP_MS - 1,
        MAX_TIMESTAMP_MS + 1,
        1_795_852_800_000.5,
        True,
        -1,
    ],
    "event_id": ["", "x" * (MAX_ID_LENGTH + 1), 42, None],
    "user_id": ["", "x" * (MAX_ID_LENGTH + 1), ["u1"]],
    "currency": ["eur", "EU", "EURO", "ÉUR", "ΑΒΓ", "EUR\n", "E1R", ""],
    "bounce": ["medium", "HARD", "", None],
    "consented_at": ["yesterday", "2026-11-28T08:00:00", 1_795_852_800, True, "", {}],
    "quantity": [0, -1, None, "2", True, 1.5],
    "price": [-0.01, "9.99", None, False],
    "total": [-1, "10", None],
    "items": [[], {}, None],
    "traits": [{}, {"a": {"nested": 1}}, {"a": [1]}, []],
    "context": [[], "ana@example.com", 7],
    "properties": [None, [], "x"],
}


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with one thing changed: a field dropped, replaced, added, or set to a
    value aimed at one rule; the result may or may not still be valid."""
    doc = draw(valid_events())
    places = list(paths(doc))
    targeted = [p for p in places if isinstance(p[-1], str) and p[-1] in TARGETED]
    kind = draw(st.sampled_from(["drop", "replace", "add", "targeted", "empty"]))
    if kind == "drop":
        path = draw(st.sampled_from(places))
        del parent_of(doc, path)[path[-1]]
    elif kind == "replace":
        path = draw(st.sampled_from(places))
        parent_of(doc, path)[path[-1]] = draw(json_values)
    elif kind == "add":
        objects = [doc, *(value for p in places if isinstance(value := value_at(doc, p), dict))]
        draw(st.sampled_from(objects))[draw(st.text(max_size=8))] = draw(json_values)
    elif kind == "targeted" and targeted:
        path = draw(st.sampled_from(targeted))
        parent_of(doc, path)[path[-1]] = draw(st.sampled_from(TARGETED[path[-1]]))
    else:  # an empty string somewhere (also when no field here has targeted values)
        strings = [p for p in places if isinstance(value_at(doc, p), str)]
        if strings:
            path = draw(st.sampled_from(strings))
            parent_of(doc, path)[path[-1]] = ""
    return doc


@settings(max_examples=400, deadline=None)
@given(valid_events())
def test_valid_events_of_every_type_pass_the_schema_and_the_worker(doc: dict[str, Any]) -> None:
    assert schema_errors(doc) == [], doc
    assert worker_error(doc) is None, doc


@settings(max_examples=2000, deadline=None)
@given(mutated_events())
def test_the_schema_and_the_worker_agree_on_mutated_events(doc: dict[str, Any]) -> None:
    assert_agree(doc)


@pytest.mark.parametrize(
    ("field", "bad"), [(field, bad) for field, values in TARGETED.items() for bad in values], ids=repr
)
def test_every_targeted_mutation_is_refused_by_both(field: str, bad: Any) -> None:
    doc: dict[str, Any] = {
        "event_id": "e1",
        "user_id": "u1",
        "type": "purchase",
        "timestamp": BASE_TS,
        "properties": {
            "order_id": "o1",
            "items": [{"sku": "S", "name": "N", "category": "C", "price": 1, "quantity": 1}],
            "total": 1,
            "currency": "EUR",
        },
        "context": {},
    }
    if field == "traits":
        doc["type"], doc["properties"] = "profile_update", {"traits": bad}
    elif field == "bounce":
        doc["type"], doc["properties"] = "email_bounce", {"job_id": "j1", "bounce": bad}
    elif field == "consented_at":
        doc["type"], doc["properties"] = "subscribe", {"consented_at": bad}
    elif field in doc:
        doc[field] = bad
    elif field in ("quantity", "price"):
        doc["properties"]["items"][0][field] = bad
    else:
        doc["properties"][field] = bad
    assert worker_error(doc) is not None, doc
    assert schema_errors(doc), doc


@pytest.mark.parametrize(
    ("timestamp", "worker_accepts"),
    [
        # Stricter schema: other ISO 8601 forms the worker reads; send RFC 3339.
        ("2026-11-28 08:00:00Z", True),
        ("2026-11-28T08:00Z", True),
        ("20261128T080000Z", True),
        ("2026-11-28T08:00:00+0100", True),
        # The instant's bounds versus the year as written.
        ("2100-01-01T00:00:00Z", True),
        ("2000-01-01T00:30:00+01:00", False),
        ("2099-12-31T23:30:00-01:00", False),
        # An integral float is a JSON Schema integer.
        (1_795_852_800_000.0, False),
    ],
)
def test_where_the_schema_and_the_worker_differ_by_design(timestamp: Any, worker_accepts: bool) -> None:
    doc = {"event_id": "e1", "user_id": "u1", "type": "signup", "timestamp": timestamp}
    assert (worker_error(doc) is None) == worker_accepts
    assert (schema_errors(doc) == []) != worker_accepts
