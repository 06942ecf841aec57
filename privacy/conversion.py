"""(ε, δ) ↔ ρ: how a declared approximate-DP cap becomes the ρ-zCDP budget the ledger spends.

Accounting runs in exact ρ (zero-concentrated DP); campaigns and the CNIL speak (ε, δ). Two
conversions from ρ-zCDP to (ε, δ)-DP are in use:

* ``bun-steinke-2016`` (the *loose* one, Bun & Steinke 2016, Prop. 1.3):
  ε = ρ + 2·√(ρ·ln(1/δ)). Simple, closed form, invertible by hand; it wastes budget.
* ``cks-2020`` (the *tight* one, Canonne, Kamath & Steinke 2020, Cor. 13, through Rényi DP;
  what OpenDP's ``make_zCDP_to_approxDP`` uses): for every order α > 1, ρ-zCDP implies
  (ε_α, δ)-DP with ε_α = αρ + (ln(1/δ) + (α−1)·ln(α−1) − α·ln α) / (α−1); ε is the infimum.

Why the tight ρ is safe to spend: *any* α gives a valid ε_α, so an ε computed at an α that is
merely close to the optimum is an upper bound of the true one. :func:`tight_epsilon` finds α
in floating point, then evaluates ε_α at that α with 50 significant digits and rounds the
result *up*. :func:`tight_rho` bisects over exact multiples of 10⁻¹² for the largest ρ whose
upper-bound ε stays within the declared ε: the returned rational never exceeds the true
largest ρ, so spending it always implies the declared (ε, δ). For ε = 8, δ = 1e-7 it gains
14 % over the loose conversion:

>>> float(loose_rho(Decimal(8), Decimal("1e-7"))), float(tight_rho(Decimal(8), Decimal("1e-7")))
(0.803323152561, 0.919228804127)
>>> round(tight_epsilon(Fraction(1, 2), Decimal("1e-7")), 6)
5.670859
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal, localcontext
from fractions import Fraction
from functools import lru_cache
from typing import Literal

Conversion = Literal["cks-2020", "bun-steinke-2016"]
#: The conversion a new dataset's (ε, δ) cap is opened with.
TIGHT: Conversion = "cks-2020"
LOOSE: Conversion = "bun-steinke-2016"
#: Human-readable names, for reports and the CLI.
CONVERSION_NAMES: dict[str, str] = {
    TIGHT: "Canonne–Kamath–Steinke 2020 (tight, via Rényi DP)",
    LOOSE: "Bun–Steinke 2016 (ρ + 2√(ρ ln 1/δ))",
    "declared-rho": "declared in ρ (no conversion)",
    "unknown": "does not match a known conversion of the declared (ε, δ)",
}

RHO_DIGITS = 12  # ρ caps are floored to a multiple of 10**-12
_PREC = 50
_SLACK = Decimal("1e-40")  # covers the rounding of 50-digit arithmetic, upward


def _check(delta: Decimal) -> None:
    if not Decimal(0) < delta < Decimal(1):
        raise ValueError("delta must lie strictly between 0 and 1")


def loose_rho(epsilon: Decimal, delta: Decimal) -> Fraction:
    """Largest ρ with ρ + 2√(ρ·ln(1/δ)) ≤ ε, i.e. (√(ln(1/δ) + ε) − √(ln(1/δ)))², floored."""
    _check(delta)
    with localcontext() as ctx:
        ctx.prec = 60
        log_inv_delta = (Decimal(1) / delta).ln()
        root = (log_inv_delta + epsilon).sqrt() - log_inv_delta.sqrt()
        rho = root * root
        scale = 10 ** RHO_DIGITS
        # The computed value is within 10⁻⁵⁰ of the true one; step back before flooring.
        floored = int(((rho - Decimal("1e-50")) * scale).to_integral_value(rounding="ROUND_FLOOR"))
    return Fraction(max(floored, 0), scale)


def loose_epsilon(rho: Fraction, delta: Decimal | float) -> float:
    """ε of the loose conversion (display only)."""
    d = float(delta)
    r = float(rho)
    return 0.0 if r <= 0 else r + 2 * math.sqrt(r * math.log(1 / d))


def _eps_alpha_float(alpha: float, rho: float, log_inv_delta: float) -> float:
    return (alpha * rho + (log_inv_delta + (alpha - 1) * math.log(alpha - 1)
                           - alpha * math.log(alpha)) / (alpha - 1))


def _best_alpha(rho: float, log_inv_delta: float) -> float:
    """The order α minimizing ε_α, by golden-section search in floating point (ε_α is
    unimodal in α; only the *evaluation* at the α found needs to be exact)."""
    low, high = 1.0 + 1e-9, 2.0
    while _eps_alpha_float(high * 2, rho, log_inv_delta) < _eps_alpha_float(
            high, rho, log_inv_delta) and high < 1e12:
        high *= 2
    high *= 2
    ratio = (math.sqrt(5) - 1) / 2
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = _eps_alpha_float(c, rho, log_inv_delta), _eps_alpha_float(d, rho, log_inv_delta)
    for _ in range(200):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = _eps_alpha_float(c, rho, log_inv_delta)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = _eps_alpha_float(d, rho, log_inv_delta)
        if b - a < 1e-13 * b:
            break
    return (a + b) / 2


@lru_cache(maxsize=4096)
def tight_epsilon_decimal(rho: Fraction, delta: Decimal) -> Decimal:
    """ε (CKS 2020) implied by ρ-zCDP at ``delta``, as a 50-digit upper bound (rounded up)."""
    _check(delta)
    if rho <= 0:
        return Decimal(0)
    with localcontext() as ctx:
        ctx.prec = _PREC
        log_inv_delta = (Decimal(1) / delta).ln()
        alpha = Decimal(_best_alpha(float(rho), float(log_inv_delta)))
        exact_rho = Decimal(rho.numerator) / Decimal(rho.denominator)
        am1 = alpha - 1
        value = alpha * exact_rho + (log_inv_delta + am1 * am1.ln() - alpha * alpha.ln()) / am1
        ctx.rounding = ROUND_CEILING
        return +(value + _SLACK)


def tight_epsilon(rho: Fraction, delta: Decimal | float) -> float:
    """ε of the tight conversion, as a float (for display and comparisons)."""
    return float(tight_epsilon_decimal(rho, Decimal(repr(delta)) if isinstance(delta, float)
                                       else delta))


@lru_cache(maxsize=256)
def tight_rho(epsilon: Decimal, delta: Decimal) -> Fraction:
    """Largest multiple of 10⁻¹² whose tight ε (an upper bound) is ≤ ``epsilon``.

    Exact bisection over integers k (ρ = k·10⁻¹²): ε(ρ) increases with ρ, and every ε
    evaluated is an upper bound, so the result never exceeds the true tight ρ.
    """
    _check(delta)
    scale = 10 ** RHO_DIGITS
    low = int(loose_rho(epsilon, delta) * scale)  # the loose ρ is always admissible
    high = max(low, 1) * 2
    while tight_epsilon_decimal(Fraction(high, scale), delta) <= epsilon:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        if tight_epsilon_decimal(Fraction(mid, scale), delta) <= epsilon:
            low = mid
        else:
            high = mid
    return Fraction(low, scale)


def cap_rho_for(epsilon: Decimal, delta: Decimal, conversion: Conversion = TIGHT) -> Fraction:
    """The ρ cap of a declared (ε, δ) under ``conversion`` (rounded down)."""
    if conversion == TIGHT:
        return tight_rho(epsilon, delta)
    if conversion == LOOSE:
        return loose_rho(epsilon, delta)
    raise ValueError(f"unknown conversion {conversion!r}")


def conversion_of(cap_rho: Fraction, epsilon: Decimal | None, delta: Decimal | None) -> str:
    """Which conversion produced a recorded cap: ``cks-2020``, ``bun-steinke-2016``,
    ``declared-rho`` (no (ε, δ) declared) or ``unknown``."""
    if epsilon is None or delta is None:
        return "declared-rho"
    if cap_rho == tight_rho(epsilon, delta):
        return TIGHT
    if cap_rho == loose_rho(epsilon, delta):
        return LOOSE
    return "unknown"
