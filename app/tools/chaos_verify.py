"""The chaos run's verifier: what the deployment made durable and sent, against one pass of
the pure core over the same events.

It shares no code path with the worker's shell: it reads every topic with a consumer of its
own (no group, from the beginning), replays the events topic through `BatchProcessor` in a
single batch (no restarts, no checkpoints, no dedupe by output id), and compares every
user's state in the changelog, the id of every job and segment change (each exactly once in
its topic), and the emails the SMTP sink holds: each due job exactly once, none for a job
whose user was erased before it could be sent, none for a user unsubscribed before the
job's trigger. The model is the verifier of Kafka Streams' EOS system tests
(`EosTestDriver.verify`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from app.faust_app import build_processor
from app.settings import Settings
from streams.core.batch import BatchResult, InputRecord
from streams.core.clock import Clock
from streams.core.state import UserState
from streams.core.state_codec import decode_state, encode_state
from streams.core.withdrawal import is_withdrawal, withdrawal_id, withdraws
from streams.delivery.ledger import CLAIMED, read_record
from streams.delivery.messages import parse_time
from streams.kafka.store import is_user_key

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
# Outcomes that say a job may have been sent but the deliverer cannot know: killed between
# its claim and its outcome. At most once allows such a job to be missing at the sink.
UNCONFIRMED = frozenset({CLAIMED, "unconfirmed"})


async def read_all(bootstrap: str, topic: str, partitions: int) -> list[Record]:
    """Every record now in `topic`, in partition then offset order, read without a group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Record] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=50_000)).values():
                records.extend(r for r in batch if r.offset < ends[TopicPartition(topic, r.partition)])
        records.sort(key=lambda r: (r.partition, r.offset))
        return records
    finally:
        await consumer.stop()


@dataclass(frozen=True, slots=True)
class IdCheck:
    """Ids expected once in a topic (or at the sink) against those found there."""

    what: str
    expected: int
    lost: list[str]
    duplicated: list[str]
    unexpected: list[str]

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)

    def describe(self) -> str:
        parts = [f"{len(ids)} {name} (e.g. {', '.join(ids[:3])})" for name, ids in self._problems() if ids]
        return f"{self.what}: " + ("; ".join(parts) if parts else f"{self.expected} as expected")

    def _problems(self) -> list[tuple[str, list[str]]]:
        return [("lost", self.lost), ("duplicated", self.duplicated), ("unexpected", self.unexpected)]


def exactly_once(what: str, expected: Iterable[str], found: Counter[str], allowed: Iterable[str] = ()) -> IdCheck:
    """Each expected id found exactly once; `allowed` ids may be found once or not at all."""
    wanted, optional = set(expected), set(allowed)
    return IdCheck(
        what,
        len(wanted),
        sorted(wanted - set(found)),
        sorted(i for i, n in found.items() if n > 1),
        sorted(set(found) - wanted - optional),
    )


@dataclass(slots=True)
class Verdict:
    """What the verifier found; `lines` says it, the last line being the summary."""

    users: int = 0
    jobs: int = 0
    emails: int = 0
    unconfirmed: int = 0
    checks: list[IdCheck] = field(default_factory=list)
    state_mismatches: list[str] = field(default_factory=list)
    forbidden_emails: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks) and not self.state_mismatches and not self.forbidden_emails

    def lines(self) -> list[str]:
        out = [c.describe() for c in self.checks]
        if self.state_mismatches:
            out.append(f"user states differ from one pass: {len(self.state_mismatches)} ({self.state_mismatches[:3]})")
        if self.forbidden_emails:
            out.append(f"emails that must not have been sent: {len(self.forbidden_emails)} {self.forbidden_emails[:3]}")
        out.extend(self.notes)
        lost = sum(len(c.lost) for c in self.checks)
        duplicated = sum(len(c.duplicated) for c in self.checks)
        head = "ALL-RECORDS-VERIFIED" if self.ok else "RECORDS-DIFFER"
        out.append(
            f"{head}: {self.users:,} users, {self.jobs:,} jobs, {self.emails:,} emails, "
            f"{lost} lost, {duplicated} duplicated"
            + (f", {self.unconfirmed} unconfirmed (deliverer killed mid-send)" if self.unconfirmed else "")
        )
        return out


def replay(settings: Settings, events: list[Record]) -> BatchResult:
    """One pass of the pure core over every event, as if one worker had never stopped."""
    by_partition: dict[int, list[InputRecord]] = defaultdict(list)
    for r in events:
        by_partition[r.partition].append(InputRecord(r.partition, r.offset, r.key, r.value, r.timestamp, r.headers))
    return build_processor(settings, Clock()).process(by_partition, lambda partition, user: None)


def durable_states(changelog: list[Record]) -> dict[str, UserState]:
    """The last state of each user the changelog holds (a tombstone removes the user)."""
    states: dict[str, bytes] = {}
    for r in changelog:
        if r.key is None or not is_user_key(r.key):
            continue
        if r.value is None:
            states.pop(r.key.decode(), None)
        else:
            states[r.key.decode()] = r.value
    return {user: decode_state(raw) for user, raw in states.items()}


def compare_states(expected: BatchResult, durable: dict[str, UserState]) -> list[str]:
    """Users whose durable state is not one pass's: missing, extra, or which fields differ."""
    wanted = {user: state for states in expected.changes.states.values() for user, state in states.items()}
    differ = [f"{u} {'missing' if u in wanted else 'extra'}" for u in sorted(set(wanted) ^ set(durable))]
    for user in sorted(set(wanted) & set(durable)):
        # After a JSON round trip, as the worker's states have been through one.
        one_pass, found = decode_state(encode_state(wanted[user])), durable[user]
        one_pass = with_snapshot_choices_of(found, one_pass)
        if one_pass != found:
            fields = [f.name for f in dataclasses.fields(found) if getattr(one_pass, f.name) != getattr(found, f.name)]
            # Which events each reflects: a state behind one pass lost updates, one first seen later was lost whole.
            reflects = (
                f"last event offset {one_pass.applied_offset} in one pass, {found.applied_offset} found; "
                f"first seen {one_pass.first_seen_ms} in one pass, {found.first_seen_ms} found"
            )
            differ.append(f"{user} {'/'.join(fields)} ({reflects})")
    return differ


def with_snapshot_choices_of(found: UserState, one_pass: UserState) -> UserState:
    """`one_pass` with the choices `found` made from the trainer's latest snapshot, which a
    replay without the trainer cannot know: the experiment variant of each job (drawn from
    the bandit posteriors) and, when the user was sent as many marketing emails, the instants
    they were counted at (quiet hours move a send to the best hour, which leans on the
    fleet's send-time curve). Neither decides whether a job exists or what its id is."""
    variants = {sent.job_id: sent.variant for sent in found.experiment_jobs}
    chosen = [sent._replace(variant=variants.get(sent.job_id, sent.variant)) for sent in one_pass.experiment_jobs]
    sends = found.marketing_sends if len(found.marketing_sends) == len(one_pass.marketing_sends) else None
    return dataclasses.replace(
        one_pass, experiment_jobs=chosen, marketing_sends=sends if sends is not None else one_pass.marketing_sends
    )


def ids_in(records: list[Record], name: str) -> Counter[str]:
    return Counter(orjson.loads(r.value)[name] for r in records if r.value is not None)


def emails_at_sink(directory: Path) -> Counter[str]:
    """Job ids of the messages the sink keeps (`<ns>-<job id>.eml`)."""
    return Counter(path.stem.split("-", 1)[1] for path in directory.glob("*.eml"))


def last_outcomes(deliveries: list[Record]) -> dict[str, str]:
    """The last record of each job on the deliveries topic (what the deliverer knows of it)."""
    outcomes: dict[str, str] = {}
    for r in deliveries:
        read = read_record(r.value)
        if read is not None and (read[1] != CLAIMED or read[0] not in outcomes):
            outcomes[read[0]] = read[1]
    return outcomes


def job_position(expected: BatchResult, job: dict[str, Any]) -> int:
    return expected.outputs.job_triggers[job["job_id"]].offset


def erased_before(expected: BatchResult) -> dict[str, int]:
    """The offset of each erased user's erase event (a user's events share a partition)."""
    return {user: e.record.offset for by_user in expected.changes.erasures.values() for user, e in by_user.items()}


def unsubscribed_at(events: list[Record]) -> dict[tuple[str, str], int]:
    """The first offset at which each (user, list) unsubscribed, read from the raw events."""
    first: dict[tuple[str, str], int] = {}
    for r in events:
        try:
            doc = orjson.loads(r.value or b"")
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and doc.get("type") == "unsubscribe" and isinstance(doc.get("user_id"), str):
            listed = (doc.get("properties") or {}).get("list", "all")
            first.setdefault((doc["user_id"], str(listed)), r.offset)
    return first


@dataclass(slots=True)
class EmailRules:
    """Which jobs must reach the sink once, which may (not due, or unconfirmed), which must not."""

    required: set[str] = field(default_factory=set)
    optional: set[str] = field(default_factory=set)
    forbidden: set[str] = field(default_factory=set)
    unconfirmed: set[str] = field(default_factory=set)
    # Jobs whose user unsubscribed after the trigger while the job was due anyway: sent or
    # not, depending on which the deliverer saw first (optional). One still waiting for its
    # `send_at` is withdrawn (forbidden).
    unsubscribed_later: set[str] = field(default_factory=set)


def withdrawn_at(expected: BatchResult) -> dict[str, list[tuple[str, int]]]:
    """The lists each user left, with the offset of the unsubscribe that withdrew them."""
    left: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for withdrawal in expected.outputs.withdrawals:
        left[withdrawal.user_id].append((withdrawal.list_name, withdrawal.record.offset))
    return left


def email_rules(
    expected: BatchResult, events: list[Record], outcomes: dict[str, str], due_before_ms: int
) -> EmailRules:
    erased, unsubscribed, withdrawn = erased_before(expected), unsubscribed_at(events), withdrawn_at(expected)
    rules = EmailRules()
    for job in expected.outputs.jobs:
        job_id, user, at = job["job_id"], job["user_id"], job_position(expected, job)
        quits = [unsubscribed.get((user, name)) for name in (job["list"], "all")]
        held = parse_time(job["send_at"], "send_at") > due_before_ms
        withdrawn_later = any(w > at and withdraws(name, job["list"]) for name, w in withdrawn.get(user, []))
        if (user in erased and at < erased[user]) or any(q is not None and q < at for q in quits):
            rules.forbidden.add(job_id)
            continue
        if held and withdrawn_later:
            rules.forbidden.add(job_id)
            continue
        if any(q is not None for q in quits):
            rules.unsubscribed_later.add(job_id)
        if outcomes.get(job_id) in UNCONFIRMED:
            rules.unconfirmed.add(job_id)
            rules.optional.add(job_id)
        elif user in erased or held or withdrawn_later:
            # Erased after this job was made (not a case the world builds), not due yet, or
            # due but withdrawn if the deliverer still held it (a retry, a restart) by then.
            rules.optional.add(job_id)
        else:
            rules.required.add(job_id)
    return rules


async def verify(settings: Settings, sink_dir: Path, due_before_ms: int) -> Verdict:
    """Read everything back and compare it with one pass of the pure core."""

    async def read(topic: str) -> list[Record]:
        return await read_all(settings.kafka_bootstrap, topic, settings.partitions)

    events = await read(settings.events_topic)
    expected = replay(settings, events)
    verdict = Verdict(jobs=len(expected.outputs.jobs))
    durable = durable_states(await read(f"{settings.app_id}-users-changelog"))
    verdict.users = len(durable)
    verdict.state_mismatches = compare_states(expected, durable)
    job_records = await read(settings.jobs_topic)
    verdict.checks.append(
        exactly_once(
            "jobs topic",
            (j["job_id"] for j in expected.outputs.jobs),
            ids_in([r for r in job_records if not is_withdrawal(r.headers)], "job_id"),
        )
    )
    verdict.checks.append(
        exactly_once(
            "withdrawals on the jobs topic",
            (withdrawal_id(w) for w in expected.outputs.withdrawals),
            ids_in([r for r in job_records if is_withdrawal(r.headers)], "withdrawal_id"),
        )
    )
    changes = (i for _, moved in expected.outputs.segment_transitions for i in moved.change_ids())
    found_changes = ids_in(await read(settings.segment_changes_topic), "change_id")
    verdict.checks.append(exactly_once("segment changes topic", changes, found_changes))
    outcomes = last_outcomes(await read(settings.deliveries_topic))
    rules = email_rules(expected, events, outcomes, due_before_ms)
    arrived = emails_at_sink(sink_dir)
    verdict.emails = sum(arrived.values())
    verdict.checks.append(exactly_once("emails at the SMTP sink", rules.required, arrived, rules.optional))
    verdict.forbidden_emails = sorted(rules.forbidden & set(arrived))
    verdict.unconfirmed = len(rules.unconfirmed - set(arrived))
    verdict.notes.append(
        f"emails: {len(rules.required):,} due, {len(rules.forbidden):,} withheld "
        "(user erased or unsubscribed first, or while it waited), "
        f"{len(rules.unconfirmed):,} unconfirmed ({len(rules.unconfirmed & set(arrived))} of them arrived), "
        f"{len(rules.unsubscribed_later & set(arrived))} sent to users who unsubscribed after the trigger "
        "(the email due)"
    )
    return verdict
