"""The tables `tidemail eval` prints, and the targets it checks."""

from __future__ import annotations

from dataclasses import dataclass

from app.tools.eval_reco import WINDOW, Scoreboard

BLEND = "tidemail blend"
POPULARITY = ("popularity", "decayed popularity")
BASELINES = (*POPULARITY, "item-to-item")
WINDOWED = (BLEND, "previous release", *BASELINES)


@dataclass(frozen=True, slots=True)
class Ratios:
    """The blend's hit-rate@10 over the baselines', and the windows after the first in
    which it was below popularity."""

    new_over_popularity: float
    new_over_item_to_item: float
    all_over_best_baseline: float
    windows_below_popularity: list[int]


def ratios(board: Scoreboard) -> Ratios:
    def rate(mode: str, name: str) -> float:
        return board.tally(mode, name).hit_rate

    def over(mode: str, names: tuple[str, ...]) -> float:
        best = max(rate(mode, name) for name in names)
        return rate(mode, BLEND) / best if best else float("inf")

    below = [
        window + 1
        for window in range(1, board.window_count())
        for mode in ("all", "new")
        if _window_rate(board, mode, BLEND, window) < max(_window_rate(board, mode, p, window) for p in POPULARITY)
    ]
    return Ratios(over("new", POPULARITY), over("new", ("item-to-item",)), over("all", BASELINES), sorted(set(below)))


def _window_rate(board: Scoreboard, mode: str, name: str, window: int) -> float:
    tally = board.windows.get((mode, name, window))
    return tally.hit_rate if tally else 0.0


def report_board(board: Scoreboard) -> str:
    names = list(dict.fromkeys(name for _, name in board.overall))
    all_n, new_n = (board.tally(mode, BLEND).predictions for mode in ("all", "new"))
    lines = [
        f"== {board.world} world, seed {board.seed}: {board.events:,} events, {board.users:,} users",
        f"{'':<22}{'(a) all clicks and purchases':>30}{'(b) products new to the user':>32}",
        f"{'recommender':<22}{'hit@10':>14}{'NDCG@10':>12}{'':>4}{'hit@10':>16}{'NDCG@10':>12}",
    ]
    for name in names:
        a, b = board.tally("all", name), board.tally("new", name)
        lines.append(f"{name:<22}{a.hit_rate:>14.1%}{a.ndcg:>12.3f}{'':>4}{b.hit_rate:>16.1%}{b.ndcg:>12.3f}")
    lines.append(f"{'predictions':<22}{all_n:>14,}{'':>16}{new_n:>16,}")
    windows = range(board.window_count())
    lines.append(f"(b) hit@10 per window of {WINDOW:,} events:")
    lines.append(f"{'window':<22}" + "".join(f"{w + 1:>6}" for w in windows))
    for name in WINDOWED:
        lines.append(f"{name:<22}" + "".join(f"{_window_rate(board, 'new', name, w):>6.1%}" for w in windows))
    return "\n".join(lines)


def report_targets(world: str, boards: list[Scoreboard]) -> str:
    """The issue's targets, seed by seed."""
    found = [ratios(board) for board in boards]
    seeds = ", ".join(str(board.seed) for board in boards)

    def spread(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}x" for v in values)

    below = ", ".join(
        f"seed {b.seed}: {r.windows_below_popularity or 'none'}" for b, r in zip(boards, found, strict=True)
    )
    lines = [f"targets, {world} world (seeds {seeds}):"]
    if world == "longtail":
        lines += [
            f"  (b) blend / best popularity {spread([r.new_over_popularity for r in found])} (target >= 1.5x)",
            f"  (b) blend / item-to-item {spread([r.new_over_item_to_item for r in found])} (target >= 1.15x)",
            f"  (a) blend / best baseline {spread([r.all_over_best_baseline for r in found])} (target >= 1.2x)",
        ]
    else:
        lines.append(f"  (b) blend / best popularity {spread([r.new_over_popularity for r in found])} (target >= 2x)")
    lines.append(f"  windows after the first where the blend is below popularity: {below} (target: none)")
    return "\n".join(lines)
