"""The (ε, δ) → ρ conversions: the tight one matches OpenDP's own zCDP → (ε, δ) conversion."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from privacy.conversion import (
    LOOSE,
    TIGHT,
    conversion_of,
    loose_epsilon,
    loose_rho,
    tight_epsilon,
    tight_rho,
)
from privacy.plan import Cap

EPSILONS = ("0.1", "0.5", "1", "2", "4", "8", "16")
DELTAS = ("1e-5", "1e-7", "1e-9", "1e-12")


@pytest.fixture(scope="module")
def opendp_epsilon() -> Iterator[Any]:
    """OpenDP's ε(ρ, δ): ``make_fix_delta(make_zCDP_to_approxDP(meas), δ)`` on a measurement
    whose privacy map returns exactly ρ (a user measurement: test-only feature)."""
    import opendp.prelude as dp

    dp.enable_features("contrib", "honest-but-curious")

    def epsilon(rho: float, delta: float) -> float:
        meas = dp.m.make_user_measurement(
            dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float),
            dp.zero_concentrated_divergence(), lambda x: x, lambda _: rho)
        eps, fixed = dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(meas), delta).map(1.0)
        assert fixed == delta
        return float(eps)

    try:
        yield epsilon
    finally:
        dp.disable_features("honest-but-curious")


@pytest.mark.parametrize("delta", DELTAS)
def test_tight_epsilon_matches_opendp_and_tight_rho_never_exceeds_the_declared_epsilon(
        opendp_epsilon: Any, delta: str) -> None:
    for eps in EPSILONS:
        rho = tight_rho(Decimal(eps), Decimal(delta))
        assert rho.denominator <= 10**12 and rho > 0
        theirs = opendp_epsilon(float(rho), float(delta))
        ours = tight_epsilon(rho, Decimal(delta))
        assert abs(ours - theirs) <= 1e-9, (eps, delta, ours, theirs)
        # OpenDP's own accounting of the ρ we spend stays within the declared ε...
        assert theirs <= float(eps), (eps, delta, theirs)
        # ...and the ρ is tight: 10⁻⁹ more would overshoot it.
        assert opendp_epsilon(float(rho + Fraction(1, 10**9)), float(delta)) > float(eps)
        # A ρ away from the optimum too (not only the cap): the curve itself matches.
        half = rho / 2
        assert abs(tight_epsilon(half, Decimal(delta))
                   - opendp_epsilon(float(half), float(delta))) <= 1e-9


def test_tight_conversion_gains_over_the_loose_one_for_the_default_cap() -> None:
    eps, delta = Decimal(8), Decimal("1e-7")
    tight, loose = tight_rho(eps, delta), loose_rho(eps, delta)
    assert tight == Fraction(919228804127, 10**12)
    assert loose == Fraction(803323152561, 10**12)
    assert loose_epsilon(loose, delta) <= 8 < loose_epsilon(tight, delta)
    assert Cap(epsilon=8, delta="1e-7").cap_rho() == tight
    assert Cap(epsilon=8, delta="1e-7").cap_rho(LOOSE) == loose


def test_conversion_of_a_recorded_cap_is_recognised() -> None:
    eps, delta = Decimal(8), Decimal("1e-7")
    assert conversion_of(tight_rho(eps, delta), eps, delta) == TIGHT
    assert conversion_of(loose_rho(eps, delta), eps, delta) == LOOSE
    assert conversion_of(Fraction(1, 2), eps, delta) == "unknown"
    assert conversion_of(Fraction(1, 2), None, None) == "declared-rho"
