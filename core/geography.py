"""French geography from INSEE's Code officiel géographique (COG) and La Poste's postcode base.

These lists are the *public key sets* of every geographic group in a published table:
a key seen only in the data (a tiny commune with one supporter) would reveal that
supporter, so groups always come from here. Placement never guesses from the first two
digits of a postcode: a postcode may cover several communes, and a few cross département
lines (domain.md, "French geography").
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from types import MappingProxyType

COG_YEAR = 2025


@dataclass(frozen=True)
class Commune:
    code: str
    name: str
    kind: str  # commune-actuelle | arrondissement-municipal
    parent: str | None
    departement: str
    region: str
    population: int


@dataclass(frozen=True)
class Placement:
    """Where a postcode or INSEE code puts a supporter; ``None`` fields could not be decided."""

    commune: str | None
    departement: str | None
    region: str | None

    @property
    def placed(self) -> bool:
        return self.departement is not None


UNPLACED = Placement(None, None, None)


@dataclass(frozen=True)
class Geography:
    """One COG snapshot: code lists and the postcode table, read-only."""

    year: int
    regions: Mapping[str, str]
    departements: Mapping[str, str]
    departement_region: Mapping[str, str]
    communes: Mapping[str, Commune]
    postcode_communes: Mapping[str, tuple[str, ...]]
    circonscriptions: tuple[str, ...]

    def place_commune(self, insee_code: str) -> Placement:
        """Place by INSEE commune code; PLM municipalities stay whole, arrondissements stay."""
        commune = self.communes.get(insee_code.strip().upper())
        if commune is None:
            return UNPLACED
        return Placement(commune.code, commune.departement, commune.region)

    def place_postcode(self, postcode: str) -> Placement:
        """Place through La Poste's table: one commune → it; one département → that only."""
        return _place_postcode(self, postcode)


def _place_postcode(geo: Geography, postcode: str) -> Placement:
    codes = geo.postcode_communes.get(postcode)
    if not codes:
        return UNPLACED
    if len(codes) == 1:
        return geo.place_commune(codes[0])
    deps = {geo.communes[c].departement for c in codes}
    if len(deps) != 1:
        return UNPLACED
    dep = deps.pop()
    return Placement(None, dep, geo.departement_region[dep])


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("core").joinpath("data", "geo", name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


@lru_cache(maxsize=1)
def load_geography() -> Geography:
    """Load the packaged COG snapshot once per process (immutable, so safe to share)."""
    regions = {r["code"]: r["nom"] for r in _rows("regions.csv")}
    deps = _rows("departements.csv")
    departements = {r["code"]: r["nom"] for r in deps}
    dep_region = {r["code"]: r["region"] for r in deps}
    communes = {
        r["code"]: Commune(r["code"], r["nom"], r["type"], r["commune_parent"] or None,
                           r["departement"], r["region"], int(r["population"] or 0))
        for r in _rows("communes.csv")
    }
    by_postcode: dict[str, list[str]] = {}
    for r in _rows("codes_postaux.csv"):
        if r["code_commune"] in communes:  # merged/foreign communes absent from the COG
            by_postcode.setdefault(r["code_postal"], []).append(r["code_commune"])
    circos = tuple(r["code"] for r in _rows("circonscriptions_legislatives.csv"))
    return Geography(
        year=COG_YEAR,
        regions=MappingProxyType(regions),
        departements=MappingProxyType(departements),
        departement_region=MappingProxyType(dep_region),
        communes=MappingProxyType(communes),
        postcode_communes=MappingProxyType({k: tuple(sorted(set(v))) for k, v in by_postcode.items()}),
        circonscriptions=circos,
    )
