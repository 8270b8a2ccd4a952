"""How a full bench run picks its figures from interleaved rounds (bench/common.py)."""

from __future__ import annotations

import time
from itertools import count

from bench.common import Interleaved, cpu_clock, steal_pct


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
        2,
        lambda: {"rate": 100.0},
        lambda: {"rate": None if next(n) == 1 else 50.0},
        lambda r: r["rate"],
    )
    assert best == {"rate": 50.0}
    assert runs.paired_ratios(lambda r: r["rate"]) == [0.5, None]


def test_lower_is_better_keeps_each_sides_lowest_and_skips_rounds_without_a_figure() -> None:
    base_p99, our_p99 = iter([6.0, 5.1, 7.3]), iter([67.8, None, 3.4])
    runs, base, best = Interleaved.run(
        3,
        lambda: {"p99": next(base_p99)},
        lambda: {"p99": next(our_p99)},
        lambda r: r["p99"],
        lower_is_better=True,
    )
    assert base == {"p99": 5.1} and best == {"p99": 3.4}
    assert runs.paired_ratios(lambda r: r["p99"]) == [11.3, None, 0.466]


def test_every_round_records_what_the_host_took() -> None:
    def spin() -> dict:  # type: ignore[type-arg]
        deadline = time.process_time() + 0.2  # long enough for the machine's clock to move
        while time.process_time() < deadline:
            pass
        return {"rate": 1.0}

    runs, _, _ = Interleaved.run(2, spin, spin, lambda r: r["rate"])
    for side in ("baseline", "ours"):
        assert len(runs.steal[side]) == 2
        assert all(s is not None and 0.0 <= s <= 100.0 for s in runs.steal[side])


def test_steal_is_read_from_the_machines_own_clock() -> None:
    steal, everything = cpu_clock()
    assert 0.0 <= steal <= everything
    # A stretch the clock has not moved over is None, not a ratio of two rounding errors.
    assert steal_pct((steal, everything + 1.0)) is None
