"""How a full bench run picks its figures from interleaved rounds (bench/common.py)."""

from __future__ import annotations

from itertools import count

from bench.common import Interleaved


def test_rounds_alternate_and_each_side_keeps_its_best() -> None:
    order: list[str] = []
    base_rates, our_rates = iter([300.0, 480.0, 330.0]), iter([120.0, 110.0, 140.0])

    def baseline() -> dict:  # type: ignore[type-arg]
        order.append("baseline")
        return {"rate": next(base_rates)}

    def ours() -> dict:  # type: ignore[type-arg]
        order.append("ours")
        return {"rate": next(our_rates)}

    runs, base, best = Interleaved.run(3, baseline, ours, lambda r: r["rate"])
    assert order == ["baseline", "ours"] * 3
    assert base == {"rate": 480.0} and best == {"rate": 140.0}
    assert len(runs.loads) == 4  # before the first round and after each
    # Each round's ours against the baseline measured just before it.
    assert runs.paired_ratios(lambda r: r["rate"]) == [0.4, 0.229, 0.424]


def test_a_round_without_a_figure_is_never_the_best() -> None:
    n = count()
    runs, base, best = Interleaved.run(
        2, lambda: {"rate": 100.0}, lambda: {"rate": None if next(n) == 1 else 50.0},
        lambda r: r["rate"])
    assert best == {"rate": 50.0}
    assert runs.paired_ratios(lambda r: r["rate"]) == [0.5, None]
