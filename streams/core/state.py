"""Per-user state and its pure transition `apply(state, event, policy) -> state`.

`apply` never mutates its input: containers it changes are copied first, so a
caller may keep the old state (to compare, or to retry) without surprises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from models import interests
from models.propensity import Probe
from streams.core.events import CONTEXT_FIELDS, Event, parse_timestamp
from streams.core.windows import Buckets

MILLIS_PER_DAY = 86_400_000
# How strongly each kind of behaviour signals interest in a category.
INTEREST_WEIGHTS = {"page_view": 1.0, "click": 2.0, "cart_add": 4.0, "purchase": 8.0}
MAX_INTERESTS = 20
DEFAULT_LIST = "marketing"
# A list name that stands for every list, in `unsubscribe` and `subscribe` events.
ALL_LISTS = "all"


class ExperimentSend(NamedTuple):
    """An experiment email sent to the user, kept to attribute opens, clicks and purchases."""

    job_id: str
    experiment: str
    variant: str
    sent_ms: int
    rewarded: bool


@dataclass(frozen=True, slots=True)
class StatePolicy:
    """Bounds and rates that shape per-user state; derived from settings."""

    dedupe_window: int = 32
    interest_half_life_days: float = 14.0
    daily_history_days: int = 35
    recent_purchases_kept: int = 10


@dataclass(slots=True)
class UserState:
    """Everything Tidemail knows about one user, kept in the `users` table."""

    user_id: str
    applied_offset: int = -1
    recent_event_ids: list[str] = field(default_factory=list)
    traits: dict[str, Any] = field(default_factory=dict)
    first_seen_ms: int = 0
    last_seen_ms: int = 0
    signed_up_ms: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    last_seen_by_type: dict[str, int] = field(default_factory=dict)
    daily_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    revenue: dict[str, float] = field(default_factory=dict)
    daily_revenue: dict[str, dict[str, float]] = field(default_factory=dict)
    interests: dict[str, list[float]] = field(default_factory=dict)
    cart: dict[str, Any] | None = None
    recent_purchases: list[dict[str, Any]] = field(default_factory=list)
    last_email_open_ms: int | None = None
    last_email_click_ms: int | None = None
    unsubscribed_lists: list[str] = field(default_factory=list)
    # When the address last hard-bounced; cleared when the user gives a new address.
    hard_bounced_ms: int | None = None
    # When the user last entered each flow, and the keys they entered it with (latest last).
    flows_entered: dict[str, int] = field(default_factory=dict)
    flow_keys: dict[str, list[str]] = field(default_factory=dict)
    # Runs in progress: {"flow", "key", "run", "step", "due", "cause"} (see streams/flows.py).
    flow_runs: list[dict[str, Any]] = field(default_factory=list)
    # When marketing emails to this user are (to be) sent, for the frequency cap.
    marketing_sends: list[int] = field(default_factory=list)
    windows: dict[str, Buckets] = field(default_factory=dict)
    segments: dict[str, int] = field(default_factory=dict)
    next_check_ms: int | None = None
    indexed_due_ms: int | None = None
    # The recommender's per-user part: the last interactions, flat [sku, weight, sku, ...].
    recent_interactions: list[Any] = field(default_factory=list)
    # Send-time optimisation's per-user part: opens and clicks per local hour of the week.
    engagement_hours: dict[str, float] = field(default_factory=dict)
    # Propensity's open probe: features at an instant and the outcomes seen since.
    propensity_probe: Probe | None = None
    # Recent experiment emails, for attributing rewards.
    experiment_jobs: list[ExperimentSend] = field(default_factory=list)
    # Per list, the latest `subscribe` or `unsubscribe`: {"at": its instant, "consented_at":
    # when consent was given (None once withdrawn), "source": where}. Orders the two kinds of
    # event, so an old one replayed cannot undo a newer one.
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # When this user id was last erased (an `erase` event): events at or before it are the
    # erased person's and are skipped (see streams/core/erasure.py).
    erased_ms: int | None = None

    @property
    def email(self) -> str | None:
        value = self.traits.get("email")
        return value if isinstance(value, str) and value else None

    @property
    def first_name(self) -> str | None:
        value = self.traits.get("first_name")
        return value if isinstance(value, str) and value else None

    def copy(self) -> UserState:
        """A shallow copy; much faster than `dataclasses.replace`, which matters per event."""
        return UserState(
            self.user_id,
            self.applied_offset,
            self.recent_event_ids,
            self.traits,
            self.first_seen_ms,
            self.last_seen_ms,
            self.signed_up_ms,
            self.counts,
            self.last_seen_by_type,
            self.daily_counts,
            self.revenue,
            self.daily_revenue,
            self.interests,
            self.cart,
            self.recent_purchases,
            self.last_email_open_ms,
            self.last_email_click_ms,
            self.unsubscribed_lists,
            self.hard_bounced_ms,
            self.flows_entered,
            self.flow_keys,
            self.flow_runs,
            self.marketing_sends,
            self.windows,
            self.segments,
            self.next_check_ms,
            self.indexed_due_ms,
            self.recent_interactions,
            self.engagement_hours,
            self.propensity_probe,
            self.experiment_jobs,
            self.subscriptions,
            self.erased_ms,
        )

    def is_unsubscribed(self, list_name: str = DEFAULT_LIST) -> bool:
        return list_name in self.unsubscribed_lists or ALL_LISTS in self.unsubscribed_lists

    def has_consent(self, list_name: str = DEFAULT_LIST) -> bool:
        """Whether a `subscribe` recorded consent to the list (or to all lists) that no
        unsubscribe from it has withdrawn since."""
        return any(
            record is not None and record["consented_at"] is not None
            for record in (self.subscriptions.get(list_name), self.subscriptions.get(ALL_LISTS))
        )


def is_duplicate(state: UserState, event: Event) -> bool:
    """True when this event id was already applied (a producer retry or a replay)."""
    return event.event_id in state.recent_event_ids


def apply(state: UserState, event: Event, policy: StatePolicy) -> UserState:
    """The state after `event`; the same object when the event was already applied."""
    if is_duplicate(state, event):
        return state
    ts = event.timestamp_ms
    day = str(ts // MILLIS_PER_DAY)
    kept_ids = state.recent_event_ids[len(state.recent_event_ids) - policy.dedupe_window + 1 :]
    new = state.copy()
    new.recent_event_ids = [*kept_ids, event.event_id]
    new.first_seen_ms = min(state.first_seen_ms, ts) if state.first_seen_ms else ts
    new.last_seen_ms = max(state.last_seen_ms, ts)
    new.counts = {**state.counts, event.type: state.counts.get(event.type, 0) + 1}
    new.last_seen_by_type = {**state.last_seen_by_type, event.type: max(state.last_seen_by_type.get(event.type, 0), ts)}
    new.daily_counts = _count_day(state.daily_counts, day, event.type, policy.daily_history_days)
    if event.context:
        context_traits = {k: v for k in CONTEXT_FIELDS if (v := event.context.get(k)) is not None}
        new.traits = {**new.traits, **context_traits}
    category = event.properties.get("category")
    if category is None and event.type == "cart_add":
        category = event.properties["item"]["category"]
    if category is not None and event.type in INTEREST_WEIGHTS:
        new.interests = interests.bump(
            new.interests, category, INTEREST_WEIGHTS[event.type], ts, policy.interest_half_life_days, MAX_INTERESTS
        )
    handler = _TYPE_HANDLERS.get(event.type)
    if handler is not None:
        handler(new, event, policy)
    if new.hard_bounced_ms is not None and new.email != state.email:
        new.hard_bounced_ms = None  # a new address deserves a new chance
    return new


def _count_day(
    daily: dict[str, dict[str, int]], day: str, event_type: str, keep_days: int
) -> dict[str, dict[str, int]]:
    bucket = daily.get(day, {})
    updated = {**daily, day: {**bucket, event_type: bucket.get(event_type, 0) + 1}}
    return _prune_days(updated, int(day), keep_days)


def _prune_days(daily: dict[str, Any], today: int, keep_days: int) -> dict[str, Any]:
    if len(daily) <= keep_days:
        return daily
    # Buckets are kept relative to the newest day seen, so late events cannot evict current ones.
    newest = max(today, *(int(d) for d in daily))
    return {d: v for d, v in daily.items() if newest - int(d) < keep_days}


def _on_signup(state: UserState, event: Event, policy: StatePolicy) -> None:
    if state.signed_up_ms is None:
        state.signed_up_ms = event.timestamp_ms
    source = event.properties.get("source")
    if source is not None:
        state.traits = {**state.traits, "signup_source": source}


def _on_profile_update(state: UserState, event: Event, policy: StatePolicy) -> None:
    updated = dict(state.traits)
    for name, value in event.properties["traits"].items():
        if value is None:
            updated.pop(name, None)
        else:
            updated[name] = value
    state.traits = updated


def _on_cart_add(state: UserState, event: Event, policy: StatePolicy) -> None:
    cart_id = event.properties["cart_id"]
    item = event.properties["item"]
    current = state.cart if state.cart and state.cart["cart_id"] == cart_id else {"cart_id": cart_id, "items": {}}
    items = dict(current["items"])
    existing = items.get(item["sku"])
    quantity = item.get("quantity", 1) + (existing["quantity"] if existing else 0)
    items[item["sku"]] = {**item, "quantity": quantity}
    state.cart = {"cart_id": cart_id, "items": items, "updated_ms": _later(current, event)}


def _on_cart_remove(state: UserState, event: Event, policy: StatePolicy) -> None:
    cart = state.cart
    if not cart or cart["cart_id"] != event.properties["cart_id"]:
        return
    items = {sku: item for sku, item in cart["items"].items() if sku != event.properties["sku"]}
    state.cart = {"cart_id": cart["cart_id"], "items": items, "updated_ms": _later(cart, event)} if items else None


def _on_purchase(state: UserState, event: Event, policy: StatePolicy) -> None:
    props = event.properties
    currency = props["currency"]
    total = float(props["total"])
    day = str(event.timestamp_ms // MILLIS_PER_DAY)
    state.revenue = {**state.revenue, currency: round(state.revenue.get(currency, 0.0) + total, 2)}
    bucket = state.daily_revenue.get(day, {})
    state.daily_revenue = _prune_days(
        {**state.daily_revenue, day: {**bucket, currency: round(bucket.get(currency, 0.0) + total, 2)}},
        int(day),
        policy.daily_history_days,
    )
    purchase = {
        "order_id": props["order_id"],
        "at_ms": event.timestamp_ms,
        "skus": [item["sku"] for item in props["items"]],
        "total": total,
        "currency": currency,
    }
    state.recent_purchases = [*state.recent_purchases, purchase][-policy.recent_purchases_kept :]
    for item in props["items"]:
        state.interests = interests.bump(
            state.interests,
            item["category"],
            INTEREST_WEIGHTS["purchase"],
            event.timestamp_ms,
            policy.interest_half_life_days,
            MAX_INTERESTS,
        )
    # A purchase converts the cart: the shop empties it, so do we.
    if state.cart is not None and (props.get("cart_id") in (None, state.cart["cart_id"])):
        state.cart = None


def _on_email_open(state: UserState, event: Event, policy: StatePolicy) -> None:
    state.last_email_open_ms = max(state.last_email_open_ms or 0, event.timestamp_ms)


def _on_email_click(state: UserState, event: Event, policy: StatePolicy) -> None:
    state.last_email_click_ms = max(state.last_email_click_ms or 0, event.timestamp_ms)


def _on_unsubscribe(state: UserState, event: Event, policy: StatePolicy) -> None:
    list_name = event.properties.get("list") or DEFAULT_LIST
    if _superseded(state, list_name, event):
        return
    if list_name not in state.unsubscribed_lists:
        state.unsubscribed_lists = [*state.unsubscribed_lists, list_name]
    withdrawn = {"at": event.timestamp_ms, "consented_at": None, "source": None}
    state.subscriptions = {**state.subscriptions, list_name: withdrawn}


def _on_subscribe(state: UserState, event: Event, policy: StatePolicy) -> None:
    """Lift the unsubscribe from the list (from every list not left later, for `all`), and
    record the consent. A subscribe to one list leaves an unsubscribe from `all` in force."""
    props = event.properties
    list_name = props.get("list") or DEFAULT_LIST
    if _superseded(state, list_name, event):
        return
    consented = props.get("consented_at")
    consented_ms = parse_timestamp(consented) if consented is not None else event.timestamp_ms
    given = {"at": event.timestamp_ms, "consented_at": consented_ms, "source": props.get("source")}
    if list_name == ALL_LISTS:
        state.unsubscribed_lists = [name for name in state.unsubscribed_lists if _superseded(state, name, event)]
    else:
        state.unsubscribed_lists = [name for name in state.unsubscribed_lists if name != list_name]
    state.subscriptions = {**state.subscriptions, list_name: given}


def _superseded(state: UserState, list_name: str, event: Event) -> bool:
    """Whether a newer subscribe or unsubscribe of the list came first: this event is older news."""
    latest = state.subscriptions.get(list_name)
    return latest is not None and event.timestamp_ms < latest["at"]


def _on_email_bounce(state: UserState, event: Event, policy: StatePolicy) -> None:
    if event.properties["bounce"] == "hard":
        state.hard_bounced_ms = max(state.hard_bounced_ms or 0, event.timestamp_ms)


def _later(cart: dict[str, Any], event: Event) -> int:
    return max(int(cart.get("updated_ms", 0)), event.timestamp_ms)


_TYPE_HANDLERS = {
    "signup": _on_signup,
    "profile_update": _on_profile_update,
    "cart_add": _on_cart_add,
    "cart_remove": _on_cart_remove,
    "purchase": _on_purchase,
    "email_open": _on_email_open,
    "email_click": _on_email_click,
    "unsubscribe": _on_unsubscribe,
    "subscribe": _on_subscribe,
    "email_bounce": _on_email_bounce,
}
