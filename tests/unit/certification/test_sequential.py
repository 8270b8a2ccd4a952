"""Sequential sampling: the confidence sequence, its error rate and its savings (pure)."""

from __future__ import annotations

import asyncio
import random

import pytest

from app.certification.certificates import check_summary
from app.certification.checks import CheckContext, SequentialPlan, TargetSpec, run_samples
from app.certification.engine import score
from app.certification.results import CheckOutcome, Grade, Sample
from app.certification.scoring import (
    SEQUENTIAL_ALPHA,
    confidence_sequence,
    sequential_decision,
    sequential_outcome_for,
    wilson_interval,
)
from app.certification.suites import CheckEntry, Sampling, get_suite
from bench.sequential import simulate

ALPHA = SEQUENTIAL_ALPHA


@pytest.fixture(scope="module")
def grid():  # type: ignore[no-untyped-def]
    return {row.rate: row for row in simulate(threshold=0.8, most=200, batch=10, runs=1000)}


def test_the_wrong_decision_rate_stays_within_alpha_around_the_threshold(grid) -> None:  # type: ignore[no-untyped-def]
    for rate, row in grid.items():
        assert row.sequential_wrong <= ALPHA, (rate, row)


def test_a_wilson_interval_recomputed_after_every_batch_would_not(grid) -> None:  # type: ignore[no-untyped-def]
    assert grid[0.8].peeking_wrong > 2 * ALPHA  # why the sequence exists
    assert grid[0.8].sequential_wrong <= ALPHA


def test_clear_cases_need_at_least_40_percent_fewer_samples(grid) -> None:  # type: ignore[no-untyped-def]
    for rate in (0.5, 0.95):
        assert grid[rate].saved >= 0.4, grid[rate]
        assert grid[rate].sequential_wrong == 0


def test_other_thresholds_and_batches_keep_the_error_rate() -> None:
    for threshold, batch in ((0.6, 5), (0.9, 20)):
        rows = simulate(
            threshold=threshold,
            most=120,
            batch=batch,
            runs=400,
            grid=(threshold - 0.05, threshold, threshold + 0.05),
        )
        assert all(row.sequential_wrong <= ALPHA for row in rows), rows


def test_the_sequence_is_an_interval_around_the_rate_wider_than_wilson() -> None:
    for passed, n in ((0, 10), (7, 10), (58, 60), (60, 60), (150, 200)):
        lower, upper = confidence_sequence(passed, n, 0.8)
        w_lower, w_upper = wilson_interval(passed, n)
        assert lower <= passed / n <= upper
        assert lower <= w_lower + 1e-9 and upper >= w_upper - 1e-9
    assert confidence_sequence(0, 0, 0.8) == (0.0, 1.0)


def test_the_decision_agrees_with_the_bounds() -> None:
    for passed in range(0, 61):
        lower, upper = confidence_sequence(passed, 60, 0.8)
        decision = sequential_decision(passed, 60, 0.8)
        if decision is CheckOutcome.PASSED:
            assert lower >= 0.8 - 1e-6
        elif decision is CheckOutcome.FAILED:
            assert upper < 0.8 + 1e-6
        else:
            assert lower <= 0.8 + 1e-6 <= upper + 2e-6
    assert sequential_outcome_for(5, 0, 10, 0.8, 0.2)[0] is CheckOutcome.ERRORED


class Coin:
    """A fake endpoint that passes with a fixed probability (seeded)."""

    name = "coin"
    model = "m"

    def __init__(self, rate: float) -> None:
        self.rng = random.Random(5)
        self.rate = rate
        self.asked = 0


def test_run_samples_stops_at_a_batch_boundary_once_decided() -> None:
    coin = Coin(0.3)

    async def grade(index: int, item: int) -> Sample:
        coin.asked += 1
        ok = coin.rng.random() < coin.rate
        return Sample(index, f"p{item}", Grade.PASS if ok else Grade.FAIL)

    ctx = CheckContext(provider=coin, target=TargetSpec("fake", "m", "http://x"))  # type: ignore[arg-type]
    ctx.sequential = SequentialPlan(threshold=0.8, max=100, batch=5, seed="s")
    samples = asyncio.run(run_samples(ctx, list(range(100)), grade))
    assert len(samples) == coin.asked < 100 and len(samples) % 5 == 0
    assert ctx.stopped_early == [len(samples)]
    assert sorted(int(s.prompt_id[1:]) for s in samples) != list(range(len(samples)))  # shuffled

    entry = CheckEntry(
        name="exact_answer", threshold=0.8, sampling=Sampling(mode="sequential", max=100, batch=5)
    )
    result = score(entry, samples, 1.0, 0.2, stopped_early=True)
    assert result.outcome is CheckOutcome.FAILED
    summary = check_summary(result)
    assert summary["sampling"]["method"] == "beta-binomial-mixture-cs"
    assert summary["sampling"]["n"] == len(samples) and summary["sampling"]["stopped"] == "decided"
    assert summary["sampling"]["alpha"] == "0.0500"


def test_the_standard_suite_samples_its_large_checks_sequentially() -> None:
    checks = {c.key: c for c in get_suite("standard").definition.checks}
    for name in ("exact_answer", "refusal", "over_refusal"):
        assert checks[name].sampling.mode == "sequential"
    assert checks["latency"].sampling.mode == "fixed"  # decided by quantiles, not a rate


def test_newcombe_interval_matches_the_published_example() -> None:
    from app.certification.scoring import newcombe_difference, significant_drop

    # Newcombe (1998), Statistics in Medicine 17:873, example (56/70 vs 48/80), method 10.
    difference, lower, upper = newcombe_difference(56, 70, 48, 80)
    assert round(difference, 4) == 0.2 and round(lower, 4) == 0.0524
    assert round(upper, 4) == 0.3339
    assert significant_drop(50, 60, 60, 60) and not significant_drop(59, 60, 60, 60)
    assert not significant_drop(10, 10, 0, 0)  # nothing to compare with
