"""The canary's own error-rate bound, recomputed from its definition with scipy.

``rate_upper_bound`` is the largest rate ``p`` above the estimate at which the Beta(1, 1)
mixture of likelihood ratios ``B(1 + x, 1 + n - x) / (p^x (1 - p)^(n - x))`` stays below
``1 / alpha``. The oracle evaluates that martingale with ``scipy.special`` and finds its root
with ``scipy.optimize.brentq``; a bound that is tighter than the definition (a looser
threshold) would no longer hold at every look.
"""

from __future__ import annotations

import math

import pytest
from scipy.optimize import brentq
from scipy.special import betaln, xlog1py, xlogy

from canarystream.analysis.sequential import rate_upper_bound
from canarystream.errors import AnalysisError


def _log_martingale(p: float, events: int, trials: int) -> float:
    return float(betaln(1 + events, 1 + trials - events) - xlogy(events, p)) - float(
        xlog1py(trials - events, -p)
    )


def _oracle(events: int, trials: int, alpha: float) -> float:
    threshold = math.log(1.0 / alpha)
    top = 1.0 - 1e-12
    if _log_martingale(top, events, trials) < threshold:
        return 1.0
    return float(
        brentq(
            lambda p: _log_martingale(p, events, trials) - threshold,
            events / trials,
            top,
            xtol=1e-15,
        )
    )


@pytest.mark.parametrize(
    ("events", "trials"),
    [(0, 1), (1, 1), (0, 2), (0, 100), (3, 500), (40, 1000), (0, 2000), (7, 20)],
)
@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.3])
def test_the_bound_is_where_the_mixture_martingale_reaches_one_over_alpha(
    events: int, trials: int, alpha: float
) -> None:
    assert rate_upper_bound(events, trials, alpha) == pytest.approx(
        _oracle(events, trials, alpha), rel=1e-9, abs=1e-12
    )


def test_without_trials_or_with_every_trial_failed_nothing_is_bounded() -> None:
    assert rate_upper_bound(0, 0, 0.1) == 1.0
    assert rate_upper_bound(5, 5, 0.1) == 1.0


@pytest.mark.parametrize(("events", "trials"), [(6, 5), (-1, 5)])
def test_events_outside_the_trials_are_refused(events: int, trials: int) -> None:
    with pytest.raises(
        AnalysisError, match=rf"^events must be within 0\.\.trials, got {events} of {trials}$"
    ):
        rate_upper_bound(events, trials, 0.1)
