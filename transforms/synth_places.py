"""Where synthetic supporters live: real communes, drawn by legal population.

Paris, Lyon and Marseille are replaced by their arrondissements municipaux (a supporter
lives in "Paris 11e", postcode 75011), every other commune stands for itself, and each
commune's population is shared evenly between its postcodes. The ground truth places a
postcode exactly as the pipeline does (``Geography.place_postcode``), so a postcode that
covers communes of two départements is counted as "unplaced", as the pipeline would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from core.geography import Geography

UNPLACED = "unplaced"

#: Overseas départements: (country calling code, mobile prefixes, landline prefixes), as the
#: 3 leading digits of the 9-digit national significant number.
OVERSEAS_PHONES: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]] = {
    "971": (590, (690, 691), (590,)),
    "972": (596, (696, 697), (596,)),
    "973": (594, (694,), (594,)),
    "974": (262, (692, 693), (262,)),
    "976": (262, (639,), (269,)),
}
#: Metropolitan landline zone digit (01 Île-de-France ... 05 south-west) per région.
LANDLINE_ZONE: dict[str, int] = {
    "11": 1, "24": 2, "28": 2, "52": 2, "53": 2, "27": 3, "32": 3, "44": 3, "84": 4, "93": 4,
    "94": 4, "75": 5, "76": 5,
}


@dataclass(frozen=True)
class PlaceTable:
    """(commune, postcode) pairs with sampling weights, and the exact placement of each postcode.

    Indices: ``dep_codes[i]`` for i < len(dep_codes); the index ``len(dep_codes)`` means
    unplaced (same for régions).
    """

    pair_commune: np.ndarray
    pair_postcode: np.ndarray
    pair_cum: np.ndarray
    commune_names: pl.Series
    commune_codes: pl.Series  # INSEE code of each commune (what Action Populaire exports)
    commune_dep: np.ndarray  # département index of each commune (where it really is)
    commune_region: np.ndarray
    postcodes: pl.Series
    postcode_dep: np.ndarray  # département index where place_postcode puts it (or unplaced)
    dep_codes: tuple[str, ...]
    region_codes: tuple[str, ...]
    dep_region: np.ndarray  # région index of each département; unplaced → unplaced
    dep_pairs: tuple[np.ndarray, ...]  # pair indices of each département
    dep_pair_cum: tuple[np.ndarray, ...]

    @property
    def unplaced_dep(self) -> int:
        return len(self.dep_codes)

    @property
    def unplaced_region(self) -> int:
        return len(self.region_codes)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` pair indices, each commune drawn in proportion to its legal population."""
        return np.searchsorted(self.pair_cum, rng.random(n), side="right").clip(
            0, len(self.pair_cum) - 1)

    def sample_in_departement(self, rng: np.random.Generator, dep: int) -> int:
        """One pair inside département ``dep`` (to make sure every département appears)."""
        pairs, cum = self.dep_pairs[dep], self.dep_pair_cum[dep]
        pick = int(np.searchsorted(cum, rng.random(), side="right").clip(0, len(cum) - 1))
        return int(pairs[pick])


def build_place_table(geo: Geography) -> PlaceTable:
    """Flatten the COG snapshot into sampling arrays (deterministic order: sorted codes)."""
    dep_codes = tuple(sorted(geo.departements))
    region_codes = tuple(sorted(geo.regions))
    dep_index = {c: i for i, c in enumerate(dep_codes)}
    region_index = {c: i for i, c in enumerate(region_codes)}
    plm_parents = {c.parent for c in geo.communes.values() if c.parent}
    postcodes_of: dict[str, list[str]] = {}
    for postcode, codes in sorted(geo.postcode_communes.items()):
        for code in codes:
            postcodes_of.setdefault(code, []).append(postcode)
    communes = [c for code, c in sorted(geo.communes.items())
                if code not in plm_parents and postcodes_of.get(code) and c.population > 0]
    postcode_list = sorted({p for c in communes for p in postcodes_of[c.code]})
    postcode_index = {p: i for i, p in enumerate(postcode_list)}

    pair_commune: list[int] = []
    pair_postcode: list[int] = []
    weights: list[float] = []
    for i, commune in enumerate(communes):
        commune_postcodes = postcodes_of[commune.code]
        for postcode in commune_postcodes:
            pair_commune.append(i)
            pair_postcode.append(postcode_index[postcode])
            weights.append(commune.population / len(commune_postcodes))
    w = np.asarray(weights, dtype=np.float64)
    commune_dep = np.array([dep_index[c.departement] for c in communes], dtype=np.int64)
    pc_arr = np.asarray(pair_commune, dtype=np.int64)
    dep_of_pair = commune_dep[pc_arr]
    dep_pairs: list[np.ndarray] = []
    dep_pair_cum: list[np.ndarray] = []
    for d in range(len(dep_codes)):
        idx = np.flatnonzero(dep_of_pair == d)
        if len(idx) == 0:
            raise ValueError(f"département {dep_codes[d]} has no commune with a postcode")
        dep_pairs.append(idx)
        dep_pair_cum.append(np.cumsum(w[idx]) / w[idx].sum())

    unplaced_dep = len(dep_codes)
    postcode_dep = np.array([
        dep_index[p.departement] if (p := geo.place_postcode(pc)).departement else unplaced_dep
        for pc in postcode_list], dtype=np.int64)
    dep_region = np.array([region_index[geo.departement_region[d]] for d in dep_codes]
                          + [len(region_codes)], dtype=np.int64)
    return PlaceTable(
        pair_commune=pc_arr,
        pair_postcode=np.asarray(pair_postcode, dtype=np.int64),
        pair_cum=np.cumsum(w) / w.sum(),
        commune_names=pl.Series([c.name for c in communes], dtype=pl.String),
        commune_codes=pl.Series([c.code for c in communes], dtype=pl.String),
        commune_dep=commune_dep,
        commune_region=np.array([region_index[c.region] for c in communes], dtype=np.int64),
        postcodes=pl.Series(postcode_list, dtype=pl.String),
        postcode_dep=postcode_dep,
        dep_codes=dep_codes,
        region_codes=region_codes,
        dep_region=dep_region,
        dep_pairs=tuple(dep_pairs),
        dep_pair_cum=tuple(dep_pair_cum),
    )
