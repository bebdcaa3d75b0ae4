"""The recommenders `tidemail eval` compares: the shipped blend, each of its components
alone (popularity alone is the decayed popularity baseline), the previous release's
ranking, and the baselines any recommender has to beat."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from models.ranking import Blend, first_offerable, item_to_item_top, popular_top

if TYPE_CHECKING:
    from app.tools.eval_reco import Evaluation


@dataclass(slots=True)
class UserView:
    """What the worker knows of a user (`history`, `cart`, `orders`), and every product
    they ever touched (`ever`), which only the evaluation knows."""

    history: list[Any] = field(default_factory=list)
    cart: set[str] = field(default_factory=set)
    orders: list[list[str]] = field(default_factory=list)
    ever: set[str] = field(default_factory=set)

    @property
    def bought(self) -> list[str]:
        return [sku for order in self.orders for sku in order]

    @property
    def owned(self) -> frozenset[str]:
        return frozenset(self.cart) | frozenset(self.bought)

    @property
    def touched(self) -> frozenset[str]:
        return self.owned | frozenset(self.history[::2])


Ranking = Callable[[UserView, "Evaluation", int], list[str]]


def _blend(blend: Blend) -> Ranking:
    def rank(view: UserView, run: Evaluation, k: int) -> list[str]:
        return [r.sku for r in run.snapshot.predict_top(view.history, k, view.owned, view.bought, blend)]

    return rank


def previous_release(view: UserView, run: Evaluation, k: int) -> list[str]:
    """The ranking of the release before this evaluation (`app.tools.eval_previous`)."""
    return run.previous.top(view.history, view.bought, view.owned, run.snapshot, k)


def popularity(view: UserView, run: Evaluation, k: int) -> list[str]:
    """The most popular products of all time."""
    return first_offerable(run.all_time_list, run.snapshot, view.touched, k)


def decayed_popularity(view: UserView, run: Evaluation, k: int) -> list[str]:
    """The most popular products, counts halving every 14 days (the trainer's list)."""
    return popular_top(run.snapshot, k, view.touched)


def item_to_item(view: UserView, run: Evaluation, k: int) -> list[str]:
    """The products users most often touched next after the user's last product, then
    popular ones."""
    return item_to_item_top(view.history, run.snapshot, k, view.touched)


def recently_touched(view: UserView, run: Evaluation, k: int) -> list[str]:
    """The user's own latest products, most recent first: a re-finding reference."""
    recent = [*reversed(view.history[::2]), *sorted(view.cart), *reversed(view.bought)]
    return list(dict.fromkeys(recent))[:k]


# A component alone ranks by itself and fills the rest of the ten with popular products.
RECOMMENDERS: dict[str, Ranking] = {
    "tidemail blend": _blend(Blend()),
    "  sequence alone": _blend(Blend(categories=0, rules=0, popularity=0)),
    "  categories alone": _blend(Blend(sequence=0, rules=0, popularity=0)),
    "  rules alone": _blend(Blend(sequence=0, categories=0, popularity=0)),
    "previous release": previous_release,
    "popularity": popularity,
    "decayed popularity": decayed_popularity,
    "item-to-item": item_to_item,
    "recently touched": recently_touched,
}
