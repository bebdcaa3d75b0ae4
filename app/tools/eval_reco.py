"""`tidemail eval`: every recommender against the same event stream, prequentially.

Each event is first predicted, then learned. Two questions are asked of each
recommender's top 10, from what the worker knows of the user just before the event:

(a) all clicks and purchases: was the product in it?
(b) products new to the user: when a user first touches a product (views, clicks,
    adds to a cart or buys one they never touched before), was it in it?

Every recommender learns from the same trainer, and ranks with the snapshot it
published last (every `SNAPSHOT_EVERY` interactions), as a worker would. They rank the
way an email would, never offering what the user touched as far as the worker knows
(recent history, cart, recent orders), except "recently touched", which is exactly
that list and shows how much of (a) is re-finding; and the previous release, which
excluded only the cart and orders.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from app.tools.eval_previous import PreviousRelease
from app.tools.eval_recommenders import RECOMMENDERS, Ranking, UserView
from app.tools.generator import EventGenerator
from app.tools.generator_longtail import LongTailGenerator
from models.interactions import Product
from models.item_trainer import ItemTrainer
from models.popularity import Popularity
from models.reco import DEFAULT_WEIGHTS, ItemModel, remember
from streams.core.errors import InvalidEvent
from streams.core.events import Event, parse_event
from streams.core.learning import interactions_of

K = 10
START_MS = 1_795_852_800_000
SESSION_EVERY_MS = 120_000
SNAPSHOT_EVERY = 2_000
WINDOW = 10_000
ORDERS_KEPT = 10
MODES = ("all", "new")


@dataclass(frozen=True, slots=True)
class World:
    name: str
    users: int
    stream: Callable[[int, int], Iterator[tuple[bytes, bytes]]]
    catalogue: Callable[[int, int], list[tuple[str, dict[str, Any]]]]


def _shipped(users: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    return EventGenerator(users, seed, broken_share=0.0).messages(clock_ms=_session_clock())


def _longtail(users: int, seed: int) -> Iterator[tuple[bytes, bytes]]:
    return LongTailGenerator(users, seed, broken_share=0.0).messages(clock_ms=_session_clock())


def _session_clock() -> Callable[[], int]:
    ticks = itertools.count(START_MS, SESSION_EVERY_MS)
    return lambda: next(ticks)


WORLDS = {
    "shipped": World("shipped", 2_000, _shipped, lambda users, seed: []),
    "longtail": World(
        "longtail", 20_000, _longtail, lambda users, seed: LongTailGenerator(users, seed, 0.0).catalogue()
    ),
}


@dataclass(slots=True)
class Tally:
    predictions: int = 0
    hits: int = 0
    gain: float = 0.0

    def add(self, rank: int | None) -> None:
        self.predictions += 1
        if rank is not None:
            self.hits += 1
            self.gain += 1.0 / math.log2(rank + 2)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.predictions if self.predictions else 0.0

    @property
    def ndcg(self) -> float:
        return self.gain / self.predictions if self.predictions else 0.0


@dataclass(slots=True)
class Scoreboard:
    """Tallies per (mode, recommender), overall and per window of `WINDOW` events."""

    world: str
    seed: int
    events: int = 0
    users: int = 0
    overall: dict[tuple[str, str], Tally] = field(default_factory=dict)
    windows: dict[tuple[str, str, int], Tally] = field(default_factory=dict)

    def add(self, mode: str, name: str, window: int, rank: int | None) -> None:
        self.overall.setdefault((mode, name), Tally()).add(rank)
        self.windows.setdefault((mode, name, window), Tally()).add(rank)

    def tally(self, mode: str, name: str) -> Tally:
        return self.overall.get((mode, name), Tally())

    def window_count(self) -> int:
        return 1 + max((w for _, _, w in self.windows), default=-1)


class Evaluation:
    """One prequential run over one world's stream."""

    def __init__(self, world: World, events: int, seed: int, recommenders: dict[str, Ranking] = RECOMMENDERS) -> None:
        self._world = world
        self._events = events
        self._seed = seed
        self._recommenders = recommenders
        self.trainer = ItemTrainer(half_life_days=14, capacity=5_000)
        self.previous = PreviousRelease(seed)
        # All-time popularity: a half-life no stream outlives.
        self.all_time = Popularity(half_life_days=math.inf, capacity=5_000)
        self.snapshot = ItemModel.empty()
        self.all_time_list: list[str] = []
        self.views: dict[str, UserView] = {}
        self._learned = 0
        self.board = Scoreboard(world.name, seed)

    def run(self) -> Scoreboard:
        for sku, entry in self._world.catalogue(self._world.users, self._seed):
            self.trainer.update_catalog(sku, entry)
            self.all_time.describe(Product(sku, str(entry["name"]), str(entry["category"]), float(entry["price"])))
        stream = itertools.islice(self._world.stream(self._world.users, self._seed), self._events)
        for index, (key, value) in enumerate(stream):
            try:
                event = parse_event(value, key, 65_536)
            except InvalidEvent:
                continue
            self._predict(event, index // WINDOW)
            self._learn(event)
        self.board.events = self._events
        self.board.users = len(self.views)
        return self.board

    def _predict(self, event: Event, window: int) -> None:
        interactions = interactions_of(event, DEFAULT_WEIGHTS)
        if not interactions:
            return
        view = self.views.get(event.user_id) or UserView()
        targets: list[tuple[str, str]] = []
        for interaction, _ in interactions:
            if event.type in ("click", "purchase"):
                targets.append(("all", interaction.sku))
            if interaction.sku not in view.ever:
                targets.append(("new", interaction.sku))
        if not targets:
            return
        for name, rank in self._recommenders.items():
            top = rank(view, self, K)
            for mode, sku in targets:
                self.board.add(mode, name, window, top.index(sku) if sku in top else None)

    def _learn(self, event: Event) -> None:
        view = self.views.setdefault(event.user_id, UserView())
        for interaction, product in interactions_of(event, DEFAULT_WEIGHTS):
            self.trainer.learn_one((interaction, product))
            self.previous.learn_one((interaction, product))
            self.all_time.learn_one((interaction, product))
            view.history = remember(view.history, interaction)
            view.ever.add(interaction.sku)
            self._learned += 1
            if self._learned % SNAPSHOT_EVERY == 0:
                self.snapshot = self.trainer.export()
                self.previous.publish()
                self.all_time_list = [p.sku for p in self.all_time.predict_top(0, 1_000)]
        if event.type == "cart_add":
            view.cart.add(event.properties["item"]["sku"])
        elif event.type == "cart_remove":
            view.cart.discard(event.properties["sku"])
        elif event.type == "purchase":
            view.orders = [*view.orders, [item["sku"] for item in event.properties["items"]]][-ORDERS_KEPT:]
            view.cart.clear()


def evaluate(world: str, events: int, seed: int) -> Scoreboard:
    return Evaluation(WORLDS[world], events, seed).run()
