"""Statistics of a check and the verdict rules (DESIGN §5)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from app.certification.results import CheckOutcome, Grade, Sample, Verdict

Z_95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when there are no trials."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError("successes must be between 0 and trials")
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = p + z2 / (2 * trials)
    margin = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    lower = (centre - margin) / denominator
    upper = (centre + margin) / denominator
    return max(0.0, lower), min(1.0, upper)


def count_grades(samples: Iterable[Sample]) -> tuple[int, int, int]:
    passed = failed = errored = 0
    for sample in samples:
        if sample.grade is Grade.PASS:
            passed += 1
        elif sample.grade is Grade.FAIL:
            failed += 1
        else:
            errored += 1
    return passed, failed, errored


def outcome_for(
    passed: int, failed: int, errored: int, threshold: float, max_error_rate: float
) -> tuple[CheckOutcome, float | None, float, float]:
    """Pass when the lower bound reaches the threshold, fail when the upper is below it.

    Errors are not failures: they are left out of the pass rate, and when their share of
    all samples exceeds `max_error_rate` (or nothing could be graded) the check is errored.
    """
    total = passed + failed + errored
    graded = passed + failed
    if total == 0:
        return CheckOutcome.SKIPPED, None, 0.0, 1.0
    lower, upper = wilson_interval(passed, graded)
    rate = passed / graded if graded else None
    if graded == 0 or errored / total > max_error_rate:
        return CheckOutcome.ERRORED, rate, lower, upper
    if lower >= threshold:
        return CheckOutcome.PASSED, rate, lower, upper
    if upper < threshold:
        return CheckOutcome.FAILED, rate, lower, upper
    return CheckOutcome.INCONCLUSIVE, rate, lower, upper


def decide_verdict(outcomes: Iterable[tuple[CheckOutcome, bool]]) -> Verdict:
    """(outcome, required) pairs → verdict.

    Any required check failed → not_certified; any required check errored or inconclusive
    → inconclusive; all required pass and an optional one did not → with warnings.
    """
    items = list(outcomes)
    required = [o for o, req in items if req]
    optional = [o for o, req in items if not req]
    if any(o is CheckOutcome.FAILED for o in required):
        return Verdict.NOT_CERTIFIED
    if any(o in (CheckOutcome.ERRORED, CheckOutcome.INCONCLUSIVE) for o in required):
        return Verdict.INCONCLUSIVE
    if not any(o is CheckOutcome.PASSED for o in required) and required:
        return Verdict.INCONCLUSIVE
    if any(
        o
        in (
            CheckOutcome.FAILED,
            CheckOutcome.ERRORED,
            CheckOutcome.INCONCLUSIVE,
            CheckOutcome.WARNED,
        )
        for o in optional
    ):
        return Verdict.CERTIFIED_WITH_WARNINGS
    return Verdict.CERTIFIED


def overall_score(pass_rates: Iterable[float | None]) -> float | None:
    rates = [r for r in pass_rates if r is not None]
    return round(sum(rates) / len(rates), 4) if rates else None


def binomial_cdf(n: int, p: float) -> list[float]:
    """[P(X <= k) for k in 0..n] for X ~ Binomial(n, p), from log-space terms (exact enough
    for n in the many thousands, where the terms themselves underflow a float)."""
    log_p, log_q = math.log(p), math.log1p(-p)
    cdf, total = [], 0.0
    for k in range(n + 1):
        total += math.exp(
            math.lgamma(n + 1)
            - math.lgamma(k + 1)
            - math.lgamma(n - k + 1)
            + k * log_p
            + (n - k) * log_q
        )
        cdf.append(min(1.0, total))
    return cdf


def quantile_interval(
    values: Iterable[float], q: float, confidence: float = 0.95
) -> tuple[float | None, float | None, float | None]:
    """(estimate, lower, upper) of the q-quantile of the distribution the values were drawn
    from: an equal-tailed, distribution-free confidence interval from order statistics.

    With n sorted values x(1) ≤ … ≤ x(n), the number of values below the true quantile is
    Binomial(n, q), so P(x(l) ≤ Q ≤ x(u)) = P(l ≤ X < u), whatever the distribution. l is
    the largest rank with P(X < l) ≤ α/2 and u the smallest with P(X < u) ≥ 1 − α/2. When
    the sample is too small for a bound (a p95 needs n ≥ 72 for its upper bound at 95 %), that
    bound is None: unbounded, so it can decide nothing. The estimate is the nearest-rank
    quantile.
    """
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return None, None, None
    if not 0 < q < 1:
        raise ValueError("q must be between 0 and 1")
    alpha = 1 - confidence
    estimate = ordered[max(1, math.ceil(q * n)) - 1]
    cdf = binomial_cdf(n, q)  # cdf[k] = P(X <= k)
    # Ranks are 1-based: P(X < rank) = cdf[rank - 1].
    low_ranks = [rank for rank in range(1, n + 1) if cdf[rank - 1] <= alpha / 2]
    high_ranks = [rank for rank in range(1, n + 1) if cdf[rank - 1] >= 1 - alpha / 2]
    lower = ordered[low_ranks[-1] - 1] if low_ranks else None
    upper = ordered[high_ranks[0] - 1] if high_ranks else None
    return estimate, lower, upper


def quantile_outcome(
    lower: float | None, upper: float | None, limit: float, at_most: bool = True
) -> CheckOutcome:
    """A quantile against its SLO: passed when the whole interval is on the right side of
    `limit` (at most it, or with at_most=False at least it), failed when the whole interval
    is on the wrong side, else inconclusive. A missing bound is unbounded."""
    if at_most:
        if upper is not None and upper <= limit:
            return CheckOutcome.PASSED
        if lower is not None and lower > limit:
            return CheckOutcome.FAILED
        return CheckOutcome.INCONCLUSIVE
    if lower is not None and lower >= limit:
        return CheckOutcome.PASSED
    if upper is not None and upper < limit:
        return CheckOutcome.FAILED
    return CheckOutcome.INCONCLUSIVE


# Sequential sampling -----------------------------------------------------------------------
#
# A check that declares `sampling: {mode: sequential}` looks at its pass rate after every
# batch and stops as soon as the answer is known. A Wilson interval recomputed after every
# batch would be checked many times at 95 % and so miss far more often than 5 % of the
# time; the bound used here is a confidence sequence, valid at every sample size at once.
#
# It is the conjugate (beta) mixture of the Bernoulli likelihood ratio (Robbins 1970; Howard
# et al. 2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences"): for each
# candidate pass rate m,
#
#     M_n(m) = B(a + s, b + n - s) / B(a, b)  /  (m^s (1 - m)^(n - s))
#
# is a nonnegative martingale with M_0 = 1 when the true rate is m, so by Ville's inequality
# P(some n has M_n(m) >= 1/alpha) <= alpha. The confidence sequence is {m : M_n(m) < 1/alpha}:
# it covers the true rate at every n simultaneously with probability >= 1 - alpha, so a rule
# that stops when it lies wholly above or below the threshold decides wrongly with
# probability at most alpha, however often it looks. The prior Beta(a, b) only shapes where
# the sequence is tightest; it is centred on the threshold (mean = threshold, weight
# PRIOR_WEIGHT), fixed by the suite before any sample is seen.

SEQUENTIAL_METHOD = "beta-binomial-mixture-cs"
SEQUENTIAL_ALPHA = 0.05
PRIOR_WEIGHT = 5.0


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def mixture_prior(threshold: float) -> tuple[float, float]:
    centre = min(0.99, max(0.01, threshold))
    return PRIOR_WEIGHT * centre, PRIOR_WEIGHT * (1 - centre)


def log_mixture(successes: int, trials: int, m: float, prior: tuple[float, float]) -> float:
    """log M_n(m): the evidence against a true pass rate of m after `trials` samples."""
    a, b = prior
    failures = trials - successes
    log_marginal = _log_beta(a + successes, b + failures) - _log_beta(a, b)
    if (m <= 0 and successes) or (m >= 1 and failures):
        return math.inf  # a pass (or a fail) was seen that a rate of 0 (or 1) cannot give
    log_m = math.log(m) if successes else 0.0
    log_not_m = math.log1p(-m) if failures else 0.0
    return log_marginal - successes * log_m - failures * log_not_m


def excludes(
    successes: int,
    trials: int,
    m: float,
    prior: tuple[float, float],
    alpha: float = SEQUENTIAL_ALPHA,
) -> bool:
    """The confidence sequence at this n no longer holds m."""
    return log_mixture(successes, trials, m, prior) >= math.log(1 / alpha)


def confidence_sequence(
    successes: int, trials: int, threshold: float, alpha: float = SEQUENTIAL_ALPHA
) -> tuple[float, float]:
    """(lower, upper) of the confidence sequence at this n: an interval, since log M_n is
    convex in m with its minimum at the observed rate. (0, 1) before any sample."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError("successes must be between 0 and trials")
    prior = mixture_prior(threshold)
    rate = successes / trials

    def edge(inside: float, outside: float) -> float:
        if not excludes(successes, trials, outside, prior, alpha):
            return outside
        for _ in range(60):
            middle = (inside + outside) / 2
            if excludes(successes, trials, middle, prior, alpha):
                outside = middle
            else:
                inside = middle
        return inside

    return edge(rate, 0.0), edge(rate, 1.0)


def sequential_decision(
    successes: int, trials: int, threshold: float, alpha: float = SEQUENTIAL_ALPHA
) -> CheckOutcome | None:
    """PASSED when the confidence sequence lies wholly at or above the threshold, FAILED
    when wholly below it, None while it still straddles it (sample on)."""
    if trials <= 0:
        return None
    prior = mixture_prior(threshold)
    rate = successes / trials
    if threshold <= 0:
        return CheckOutcome.PASSED
    if rate > threshold and excludes(successes, trials, threshold, prior, alpha):
        return CheckOutcome.PASSED
    if rate < threshold and excludes(successes, trials, threshold, prior, alpha):
        return CheckOutcome.FAILED
    return None


def sequential_outcome_for(
    passed: int, failed: int, errored: int, threshold: float, max_error_rate: float
) -> tuple[CheckOutcome, float | None, float, float]:
    """outcome_for with the confidence sequence in place of the Wilson interval: the rule a
    sequential check stopped by is the rule it is decided by, at whatever n it stopped."""
    total = passed + failed + errored
    graded = passed + failed
    if total == 0:
        return CheckOutcome.SKIPPED, None, 0.0, 1.0
    lower, upper = confidence_sequence(passed, graded, threshold)
    rate = passed / graded if graded else None
    if graded == 0 or errored / total > max_error_rate:
        return CheckOutcome.ERRORED, rate, lower, upper
    decided = sequential_decision(passed, graded, threshold)
    return decided or CheckOutcome.INCONCLUSIVE, rate, lower, upper


# Regressions ----------------------------------------------------------------------------------


def newcombe_difference(
    passed: int, graded: int, before_passed: int, before_graded: int, z: float = Z_95
) -> tuple[float, float, float]:
    """(difference, lower, upper) of the pass rate now minus the pass rate before: Newcombe's
    hybrid score interval (1998, method 10), from the two Wilson intervals. A drop is
    significant when the whole interval is below zero."""
    if graded <= 0 or before_graded <= 0:
        raise ValueError("both rates need graded samples")
    now, before = passed / graded, before_passed / before_graded
    l_now, u_now = wilson_interval(passed, graded, z)
    l_before, u_before = wilson_interval(before_passed, before_graded, z)
    difference = now - before
    lower = difference - math.sqrt((now - l_now) ** 2 + (u_before - before) ** 2)
    upper = difference + math.sqrt((u_now - now) ** 2 + (before - l_before) ** 2)
    return difference, max(-1.0, lower), min(1.0, upper)


def significant_drop(passed: int, graded: int, before_passed: int, before_graded: int) -> bool:
    """The pass rate fell, beyond what chance explains at 95 %."""
    if graded <= 0 or before_graded <= 0:
        return False
    return newcombe_difference(passed, graded, before_passed, before_graded)[2] < 0
