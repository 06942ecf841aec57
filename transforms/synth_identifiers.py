"""Synthetic phone numbers and email addresses, and the many ways tools write them.

Every synthetic human gets identifiers no other synthetic human has (numbers come from
affine permutations of a counter, emails carry the NationBuilder id), so identity
resolution on normalized identifiers can join a person's rows across exports without
ever merging two people: the ground truth's "rows per person" stays exact. What varies is
only the *writing*: ``06 12 34 56 78``, ``+33 6 12 34 56 78``, ``0033612345678``,
``'0612345678``; ``Marie.Martin12@Orange.fr`` vs `` MARIE.MARTIN12@ORANGE.FR ``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import polars as pl

from transforms.synth_places import LANDLINE_ZONE, OVERSEAS_PHONES, PlaceTable

#: Metropolitan mobile blocks (the two digits after the 0) that phone validators accept
#: (phonenumbers' metadata for FR: 06 0-2, 06 4-8, 07 3-9), leaving out 0639/069x (overseas
#: mobiles) and 079 (kept for numbers moved out of a canary's way).
_MOBILE_BLOCKS = np.array([60, 61, 62, 64, 65, 66, 67, 68, 73, 74, 75, 76, 77, 78])
_MOBILE_SPACE = len(_MOBILE_BLOCKS) * 10_000_000
#: Landlines: zone digit 1-5, then a second digit 1-5 (valid in every zone: 026x, 040x and
#: 059x are not metropolitan numbers).
_LAND_SPACE = 50_000_000
_RESERVED_BLOCK = 799_000_000
_COPRIME_MULTIPLIERS = (48_271, 69_621, 40_693, 16_811, 39_373, 2_147_483, 1_103_515_243)


@cache
def valid_subblocks(cc: int, block: int) -> tuple[int, ...]:
    """The two digits after an overseas block (``690``, ``0262``...) that make valid numbers.

    Overseas numbering plans are patchy (Guadeloupe's 0691 has 14 valid sub-blocks), so the
    generator asks phonenumbers once per block rather than produce numbers a normalizer
    would rightly reject.
    """
    import phonenumbers

    def valid(sub: int, rest: str) -> bool:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(f"+{cc}{block}{sub:02d}{rest}")))

    return tuple(sub for sub in range(100) if all(valid(sub, r) for r in ("0000", "5555", "9999")))


PHONE_STYLES: tuple[str, ...] = (
    "national", "spaced", "international", "e164", "0033", "dots", "apostrophe",
)
EMAIL_STYLES: tuple[str, ...] = ("as_is", "lower", "upper", "title", "padded", "upper_padded")


def _coprime_multiplier(choice: int, modulus: int) -> int:
    candidates = [a for a in _COPRIME_MULTIPLIERS if np.gcd(a, modulus) == 1]
    return int(candidates[choice % len(candidates)])


@dataclass(frozen=True)
class PhonePlan:
    """Seed-dependent permutations that turn counters into unique, valid-looking numbers."""

    mobile_a: int
    mobile_b: int
    land_a: int
    land_b: int
    local_choice: int
    local_b: int

    @classmethod
    def from_rng(cls, rng: np.random.Generator) -> PhonePlan:
        return cls(
            mobile_a=_coprime_multiplier(int(rng.integers(1 << 30)), _MOBILE_SPACE),
            mobile_b=int(rng.integers(_MOBILE_SPACE)),
            land_a=_coprime_multiplier(int(rng.integers(1 << 30)), _LAND_SPACE),
            land_b=int(rng.integers(_LAND_SPACE)),
            local_choice=int(rng.integers(1 << 30)),
            local_b=int(rng.integers(1 << 30)),
        )

    def metro_mobile(self, pid: np.ndarray) -> np.ndarray:
        v = (pid % _MOBILE_SPACE * self.mobile_a + self.mobile_b) % _MOBILE_SPACE
        return _MOBILE_BLOCKS[v // 10_000_000] * 10_000_000 + v % 10_000_000

    def metro_landline(self, pid: np.ndarray, zone: np.ndarray) -> np.ndarray:
        v = (pid % _LAND_SPACE * self.land_a + self.land_b) % _LAND_SPACE
        return zone * 100_000_000 + (1 + v // 10_000_000) * 10_000_000 + v % 10_000_000

    def local(self, cc: int, block: int, counter: np.ndarray) -> np.ndarray:
        """Overseas numbers: a 3-digit block (690, 262...), a valid sub-block, 4 digits."""
        subs = np.array(valid_subblocks(cc, block), dtype=np.int64)
        space = len(subs) * 10_000
        a = _coprime_multiplier(self.local_choice, space)
        v = (counter % space * a + self.local_b % space) % space
        return block * 1_000_000 + subs[v // 10_000] * 10_000 + v % 10_000


@dataclass
class NumberCounters:
    """How many overseas numbers each block has handed out so far (one per run)."""

    used: dict[int, int] = field(default_factory=dict)

    def take(self, prefix: int, n: int) -> np.ndarray:
        start = self.used.get(prefix, 0)
        self.used[prefix] = start + n
        return np.arange(start, start + n, dtype=np.int64)


@dataclass(frozen=True)
class Phones:
    """Per person: calling code and 9-digit national significant number; 0 = none."""

    mobile_cc: np.ndarray
    mobile_nsn: np.ndarray
    land_cc: np.ndarray
    land_nsn: np.ndarray


def make_phones(plan: PhonePlan, places: PlaceTable, rng: np.random.Generator, pid: np.ndarray,
                dep: np.ndarray, region: np.ndarray, counters: NumberCounters) -> Phones:
    """Everyone gets at least one phone; overseas people mostly get local numbers."""
    n = len(pid)
    has_mobile = rng.random(n) < 0.88
    has_land = np.where(has_mobile, rng.random(n) < 0.30, True)
    mobile_cc = np.full(n, 33, dtype=np.int64)
    mobile = plan.metro_mobile(pid)
    land_cc = np.full(n, 33, dtype=np.int64)
    zone_of_region = np.array([LANDLINE_ZONE.get(code, 1) for code in places.region_codes],
                              dtype=np.int64)
    land = plan.metro_landline(pid, zone_of_region[region])
    local_mobile = rng.random(n) < 0.8
    pick = rng.integers(0, 2, size=n)
    for code, (cc, mobile_blocks, land_blocks) in OVERSEAS_PHONES.items():
        here = dep == places.dep_codes.index(code)
        if not here.any():
            continue
        for b, block in enumerate(mobile_blocks):
            sel = np.flatnonzero(here & local_mobile & (pick % len(mobile_blocks) == b))
            mobile[sel] = plan.local(cc, block, counters.take(block, len(sel)))
            mobile_cc[sel] = cc
        sel = np.flatnonzero(here)
        land[sel] = plan.local(cc, land_blocks[0], counters.take(land_blocks[0], len(sel)))
        land_cc[sel] = cc
    return Phones(mobile_cc=mobile_cc, mobile_nsn=np.where(has_mobile, mobile, 0),
                  land_cc=land_cc, land_nsn=np.where(has_land, land, 0))


def canary_nsn(phone: str) -> int:
    """The 9-digit national significant number of a French number written any usual way."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) < 9:
        raise ValueError("a canary phone needs at least 9 digits")
    return int(digits[-9:])


def avoid_numbers(nsn: np.ndarray, reserved: np.ndarray, pid: np.ndarray) -> np.ndarray:
    """Move the rare generated number equal to a reserved (canary) one into block 0799."""
    if len(reserved) == 0:
        return nsn
    clash = np.isin(nsn, reserved) & (nsn != 0)
    return np.where(clash, _RESERVED_BLOCK + pid % 1_000_000, nsn)


def pick_styles(rng: np.random.Generator, n: int, weights: dict[str, float],
                styles: tuple[str, ...]) -> np.ndarray:
    """Draw a writing style per row from named weights."""
    p = np.array([weights.get(s, 0.0) for s in styles], dtype=np.float64)
    return np.searchsorted(np.cumsum(p / p.sum()), rng.random(n), side="right").clip(
        0, len(styles) - 1).astype(np.int8)


_ONE = pl.Series([str(i) for i in range(10)], dtype=pl.String)
_TWO = pl.Series([f"{i:02d}" for i in range(100)], dtype=pl.String)
_THREE = pl.Series([f"{i:03d}" for i in range(1000)], dtype=pl.String)


def by_style(n: int, style: np.ndarray, writers: Sequence[Callable[[np.ndarray], pl.Series]],
             skip: np.ndarray | None = None) -> pl.Series:
    """Row ``i`` written by ``writers[style[i]]`` (each writer only sees its own rows);
    ``None`` where ``skip`` or where the style is not a writer's index."""
    pieces: list[pl.Series] = []
    position = np.full(n, -1, dtype=np.int64)
    written = 0
    for code, writer in enumerate(writers):
        mask = style == code
        if skip is not None:
            mask &= ~skip
        idx = np.flatnonzero(mask)
        if len(idx):
            pieces.append(writer(idx).cast(pl.String))
            position[idx] = np.arange(written, written + len(idx))
            written += len(idx)
    pieces.append(pl.Series([None], dtype=pl.String))
    position[position < 0] = written  # the trailing empty cell
    return pl.concat(pieces, rechunk=True).gather(position)


def _phone_text(style: str, cc: np.ndarray, nsn: np.ndarray) -> pl.Series:
    """Numbers written in one ``PHONE_STYLES`` style, built from digit groups (fast)."""
    if style in ("national", "apostrophe", "e164", "0033"):
        digits = pl.lit(pl.Series(nsn).cast(pl.String))  # 9 digits: the first is never 0
        if style in ("national", "apostrophe"):
            parts = [pl.lit("'0" if style == "apostrophe" else "0"), digits]
        else:
            prefix = "+" if style == "e164" else "00"
            parts = [pl.lit(prefix), pl.lit(pl.Series(cc).cast(pl.String)), digits]
        return pl.select(pl.concat_str(parts)).to_series()
    pairs = [pl.lit(_TWO.gather(nsn // 10**k % 100)) for k in (6, 4, 2, 0)]
    if style == "international":
        metro = pl.lit(pl.Series(cc == 33))
        lead = pl.lit(_ONE.gather(nsn // 100_000_000))
        block = pl.lit(_THREE.gather(nsn // 1_000_000))
        cc_text = pl.lit(pl.Series(cc).cast(pl.String))
        expr = pl.when(metro).then(
            pl.concat_str([pl.lit("+33"), lead, *pairs], separator=" ")
        ).otherwise(pl.concat_str([pl.concat_str([pl.lit("+"), cc_text]), block, *pairs[1:]],
                                  separator=" "))
    else:
        first = pl.lit(_TWO.gather(nsn // 100_000_000))  # "06"
        expr = pl.concat_str([first, *pairs], separator={"spaced": " ", "dots": "."}[style])
    return pl.select(expr).to_series()


def format_phones(cc: np.ndarray, nsn: np.ndarray, style: np.ndarray) -> pl.Series:
    """Write each number in its row's style (``PHONE_STYLES``); ``None`` where there is none."""
    writers = [
        (lambda idx, name=name: _phone_text(name, cc[idx], nsn[idx])) for name in PHONE_STYLES
    ]
    return by_style(len(nsn), style, writers, skip=nsn == 0)


def build_emails(first_ascii: pl.Series, last_ascii: pl.Series, number: np.ndarray,
                 domain: pl.Series, layout: np.ndarray) -> pl.Series:
    """Email addresses as people type them; the number makes each one unique."""
    n_text = pl.Series(number).cast(pl.String)

    def writer(parts: list[str]) -> Callable[[np.ndarray], pl.Series]:
        def write(idx: np.ndarray) -> pl.Series:
            cols = {"f": first_ascii.gather(idx), "l": last_ascii.gather(idx),
                    "n": n_text.gather(idx), "d": domain.gather(idx),
                    "i": first_ascii.gather(idx).str.slice(0, 1)}
            exprs = [pl.lit(cols[p]) if p in cols else pl.lit(p) for p in parts]
            return pl.select(pl.concat_str(exprs)).to_series()
        return write

    layouts = [["f", ".", "l", "n", "@", "d"], ["i", "l", "n", "@", "d"], ["f", "n", "@", "d"],
               ["l", ".", "f", "n", "@", "d"], ["f", "_", "l", ".", "n", "@", "d"]]
    return by_style(len(number), layout, [writer(parts) for parts in layouts])


def vary_emails(emails: pl.Series, style: np.ndarray) -> pl.Series:
    """The same address written another way (``EMAIL_STYLES``): case and surrounding spaces."""
    def padded(values: pl.Series, left: str = " ") -> pl.Series:
        return pl.select(pl.concat_str([pl.lit(left), pl.lit(values), pl.lit(" ")])).to_series()

    writers: list[Callable[[np.ndarray], pl.Series]] = [
        lambda idx: emails.gather(idx),
        lambda idx: emails.gather(idx).str.to_lowercase(),
        lambda idx: emails.gather(idx).str.to_uppercase(),
        lambda idx: emails.gather(idx).str.to_titlecase(),
        lambda idx: padded(emails.gather(idx)),
        lambda idx: padded(emails.gather(idx).str.to_uppercase(), "  "),
    ]
    return by_style(len(emails), style, writers)


def malform_emails(emails: pl.Series, kind: np.ndarray) -> pl.Series:
    """Dirty rows: where ``kind >= 0``, an address a validator must reject (no @, two @, no
    domain dot, a space); other rows are kept as they are."""
    idx = np.flatnonzero(kind >= 0)
    if len(idx) == 0:
        return emails
    writers: list[Callable[[np.ndarray], pl.Series]] = [
        lambda i: emails.gather(idx[i]).str.replace("@", "", literal=True),
        lambda i: emails.gather(idx[i]).str.replace("@", "@@", literal=True),
        lambda i: emails.gather(idx[i]).str.replace(r"\.[a-z]+$", ""),
        lambda i: emails.gather(idx[i]).str.replace("@", " @ ", literal=True),
    ]
    bad = by_style(len(idx), kind[idx] % len(writers), writers)
    return emails.clone().scatter(idx, bad)
