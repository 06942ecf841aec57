"""Identity resolution: all rows of one human resolve to one stable, keyed ``person_id``.

Every identifier pseudonym of a row (source id, email, phones) is a node; every row is a
node joined to its identifiers; ``identifier_links`` joins identifiers to persons known from
earlier loads. Connected components (union-find, done by scipy's sparse graph routine) are
persons. Why it matters: contribution bounds, and so the DP guarantee, hold per person only
if one human is one ``person_id``.

A new person's id is a keyed value derived from the smallest identifier pseudonym of its
component, so it reveals nothing about load order or row order. When a component touches
several existing persons they are merged into the smallest id, in the caller's transaction.

Everything here works on integer codes of sorted pseudonyms (Polars sorts and joins
strings on all cores); Python objects are made only for the few merges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sqlalchemy import Connection

from core.frames import compact
from privacy.keys import Pseudonymizer
from privacy.pseudonymize import ID_COLUMNS
from warehouse import store
from warehouse.schema import identifier_links

_KIND_OF = {"id_source": "source_id", "id_email": "email", "id_phone": "phone",
            "id_phone2": "phone"}
LINKS_SCHEMA = {"pseudonym": pl.String, "person_id": pl.String}


@dataclass(frozen=True)
class Resolution:
    """Outcome of resolving one file: a person per row, links to write, merges to apply.

    Persons are held per connected component, not per row: a file of millions of rows
    keeps one integer per row and one id per component, and the loader takes the person
    ids of one slice of rows at a time (:meth:`persons_at`).
    """

    row_component: np.ndarray  # component index per row, in row order
    component_person: pl.Series  # person_id per component
    #: Distinct pseudonyms of the file, sorted: pseudonym, column, component, known (a
    #: stored link exists; it is repointed when its person changed).
    nodes: pl.DataFrame
    repointed: pl.DataFrame  # pseudonym, person_id: stored links whose person changed
    merges: dict[str, str]  # existing person_id -> the person_id it merges into
    new_persons: pl.Series  # person_ids created by this file (sorted)

    def persons_at(self, positions: np.ndarray) -> pl.Series:
        """``person_id`` of the rows at ``positions`` (row order of the resolved rows)."""
        return self.component_person.gather(self.row_component[positions]).alias("person_id")

    @property
    def row_person(self) -> pl.Series:
        """``person_id`` of every row, in row order."""
        return self.persons_at(np.arange(len(self.row_component)))

    @property
    def new_link_count(self) -> int:
        """How many links :meth:`new_link_batches` yields."""
        return int((~self.nodes.get_column("known")).sum())

    def new_link_batches(self, size: int = 500_000) -> Iterator[pl.DataFrame]:
        """``pseudonym, kind, person_id`` of the links to store, sorted by pseudonym, in
        batches (a people file's links are several per person: never all built at once)."""
        fresh = self.nodes.filter(~pl.col("known"))
        for batch in fresh.iter_slices(size):
            yield batch.select("pseudonym", _kind(), self.component_person.gather(
                batch.get_column("component")).alias("person_id"))

    @property
    def new_links(self) -> pl.DataFrame:
        """Every link to store, at once (small files and tests)."""
        batches = list(self.new_link_batches())
        return pl.concat(batches) if batches else pl.DataFrame(
            schema={"pseudonym": pl.String, "kind": pl.String, "person_id": pl.String})


def existing_links(conn: Connection, pseudonyms: pl.Series) -> pl.DataFrame:
    """``pseudonym, person_id`` of the given pseudonyms already in ``identifier_links``."""
    return store.lookup(conn, identifier_links, "pseudonym", ["person_id"], pseudonyms)


@dataclass(frozen=True)
class IdentifierIndex:
    """A file's identifiers as integer codes: the input of :func:`resolve_index`.

    Rows are not nodes of the graph: a row belongs to the component of its smallest
    identifier (``row_node``), and a row carrying several identifiers joins them (``pairs``,
    each other identifier to that smallest one, without repeats). A history of millions of
    rows naming one identifier each adds no edge at all.
    """

    n_rows: int
    row_node: np.ndarray  # per row, the code of its smallest identifier
    pairs: pl.DataFrame  # node, first (i64): identifiers that share a row
    nodes: pl.DataFrame  # node, pseudonym, column: distinct pseudonyms in sorted order


def _long(ids: pl.DataFrame) -> pl.DataFrame:
    """``row, column, pseudonym``: one line per identifier a row carries."""
    return (ids.select("row", *[pl.col(c).cast(pl.String) for c in ID_COLUMNS])
            .unpivot(index="row", on=list(ID_COLUMNS), variable_name="column",
                     value_name="pseudonym")
            .drop_nulls("pseudonym")
            .with_columns(pl.col("column").cast(pl.Enum(list(ID_COLUMNS)))))


_NONE = np.iinfo(np.int64).max


class _HashCollision(Exception):
    """Two distinct pseudonyms of one file share a 64-bit hash (odds ~1e-7 per file)."""


def _hash(values: pl.Series) -> np.ndarray:
    """A 64-bit hash of each pseudonym, within this process (codes are never stored)."""
    return values.hash().to_numpy()


def _present(ids: pl.DataFrame) -> Iterator[tuple[int, np.ndarray, pl.Series]]:
    """Per identifier column: its number, the slice positions of its non-null values, and
    those values."""
    for number, column in enumerate(ID_COLUMNS):
        values = ids.get_column(column).cast(pl.String)
        held = values.is_not_null()
        yield number, np.flatnonzero(held.to_numpy()), values.filter(held)


def index_identifier_slices(slices: Callable[[], Iterable[pl.DataFrame]],
                            n_rows: int) -> IdentifierIndex:
    """Number the distinct pseudonyms of a file read slice by slice.

    ``slices()`` yields frames of ``row`` (the row's position, ``0 .. n_rows - 1``) and
    ``ID_COLUMNS``, the same each time it is called (three times). Distinct pseudonyms are
    found from 64-bit hashes, and only the first occurrence of each is kept as text; they
    are numbered in sorted order (so the smallest code of a component is its smallest
    pseudonym). Every mapping back is checked against the text, and should two pseudonyms
    share a hash the file is indexed again by joins on the text (exact, slower, larger).
    """
    try:
        return _index_by_hash(slices, n_rows)
    except _HashCollision:
        return _index_by_text(slices, n_rows)


def _index_by_hash(slices: Callable[[], Iterable[pl.DataFrame]],
                   n_rows: int) -> IdentifierIndex:
    hashes: list[np.ndarray] = []
    for ids in slices():
        hashes.extend(_hash(values) for _, _, values in _present(ids))
    sizes = np.array([len(h) for h in hashes], dtype=np.int64)
    _, first = np.unique(np.concatenate(hashes) if hashes else np.zeros(0, np.uint64),
                         return_index=True)
    del hashes
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    part_of = np.searchsorted(offsets, first, side="right") - 1
    kept: list[pl.DataFrame] = []
    part = 0
    for ids in slices():
        for number, _, values in _present(ids):
            local = first[part_of == part] - offsets[part]
            if len(local):
                kept.append(compact(pl.DataFrame({
                    "pseudonym": values.gather(local),
                    "column": pl.Series([ID_COLUMNS[number]] * len(local),
                                        dtype=pl.Enum(list(ID_COLUMNS)))})))
            part += 1
    del first, part_of
    schema: dict[str, pl.DataType] = {"pseudonym": pl.String(),
                                      "column": pl.Enum(list(ID_COLUMNS))}
    nodes = (pl.concat(kept) if kept else pl.DataFrame(schema=schema)).sort("pseudonym") \
        .with_row_index("node").with_columns(pl.col("node").cast(pl.Int64))
    del kept
    codes = nodes.get_column("pseudonym")
    node_hash = _hash(codes)
    by_hash = np.argsort(node_hash, kind="stable")
    sorted_hash = node_hash[by_hash]
    del node_hash
    row_node = np.full(n_rows, _NONE, dtype=np.int64)
    pairs: list[pl.DataFrame] = []
    for ids in slices():
        matrix = np.full((ids.height, len(ID_COLUMNS)), _NONE, dtype=np.int64)
        for number, where, values in _present(ids):
            h = _hash(values)
            at = np.searchsorted(sorted_hash, h).clip(max=max(len(sorted_hash) - 1, 0))
            node = by_hash[at]
            if len(h) and (sorted_hash[at] != h).any() or \
                    not (codes.gather(node) == values).all():
                raise _HashCollision
            matrix[where, number] = node
        least = matrix.min(axis=1)
        row_node[ids.get_column("row").to_numpy()] = least
        other = (matrix != _NONE) & (matrix != least[:, None])
        if other.any():
            pairs.append(pl.DataFrame({"node": matrix[other],
                                       "first": np.broadcast_to(least[:, None],
                                                                matrix.shape)[other]})
                         .unique())
    return _finish(n_rows, row_node, pairs, nodes)


def _index_by_text(slices: Callable[[], Iterable[pl.DataFrame]],
                   n_rows: int) -> IdentifierIndex:
    parts = [compact(_long(ids).select("pseudonym", "column").unique()) for ids in slices()]
    schema: dict[str, pl.DataType] = {"pseudonym": pl.String(),
                                      "column": pl.Enum(list(ID_COLUMNS))}
    nodes = (pl.concat(parts) if parts else pl.DataFrame(schema=schema)) \
        .sort("pseudonym", "column").unique("pseudonym", keep="first", maintain_order=True) \
        .with_row_index("node").with_columns(pl.col("node").cast(pl.Int64))
    del parts
    codes = nodes.select("pseudonym", "node")
    row_node = np.full(n_rows, _NONE, dtype=np.int64)
    pairs: list[pl.DataFrame] = []
    for ids in slices():
        edges = _long(ids).select("row", "pseudonym").join(codes, on="pseudonym") \
            .select("row", "node")
        first = edges.group_by("row").agg(pl.col("node").min().alias("first"))
        row_node[first.get_column("row").to_numpy()] = first.get_column("first").to_numpy()
        others = edges.join(first, on="row").filter(pl.col("node") != pl.col("first"))
        if not others.is_empty():
            pairs.append(others.select("node", "first").unique())
    return _finish(n_rows, row_node, pairs, nodes)


def _finish(n_rows: int, row_node: np.ndarray, pairs: list[pl.DataFrame],
            nodes: pl.DataFrame) -> IdentifierIndex:
    if n_rows and (row_node == _NONE).any():
        raise ValueError("a row without any identifier reached identity resolution")
    pair_frame = pl.concat(pairs).unique() if pairs else pl.DataFrame(
        schema={"node": pl.Int64, "first": pl.Int64})
    return IdentifierIndex(n_rows=n_rows, row_node=row_node, pairs=pair_frame,
                           nodes=nodes.select("node", "pseudonym", "column"))


def index_identifiers(ids: pl.DataFrame | pl.LazyFrame | pd.DataFrame) -> IdentifierIndex:
    """:func:`index_identifier_slices` of a frame held whole (columns ``ID_COLUMNS``)."""
    frame = pl.from_pandas(ids[list(ID_COLUMNS)]) if isinstance(ids, pd.DataFrame) else ids
    whole = frame.lazy().select(ID_COLUMNS).collect().with_row_index("row")
    return index_identifier_slices(lambda: [whole], whole.height)


def resolve(ids: pl.DataFrame | pd.DataFrame, known: pl.DataFrame | Mapping[str, str],
            person_keys: Pseudonymizer) -> Resolution:
    """Resolve rows (columns ``ID_COLUMNS``) against the already-known links ``known``."""
    return resolve_index(index_identifiers(ids), known, person_keys)


def resolve_index(index: IdentifierIndex, known: pl.DataFrame | Mapping[str, str],
                  person_keys: Pseudonymizer) -> Resolution:
    """Resolve an indexed file against the already-known links ``known``."""
    known_links = _known_frame(known)
    n_rows, nodes = index.n_rows, index.nodes
    n_nodes = nodes.height

    # Existing persons become extra nodes, linked to their pseudonyms.
    linked = nodes.select("pseudonym", "node").join(known_links, on="pseudonym", how="inner")
    persons_sorted = linked.get_column("person_id").unique().sort()
    person_code = linked.join(persons_sorted.to_frame().with_row_index("code"),
                              on="person_id", how="left")
    known_node = person_code.get_column("node").to_numpy().astype(np.int64)
    known_code = person_code.get_column("code").to_numpy().astype(np.int64)
    n_persons = len(persons_sorted)

    # Graph: identifiers, then existing persons; rows follow their smallest identifier.
    src = np.concatenate([index.pairs.get_column("node").to_numpy().astype(np.int64),
                          known_node])
    dst = np.concatenate([index.pairs.get_column("first").to_numpy().astype(np.int64),
                          n_nodes + known_code])
    del person_code
    total = n_nodes + n_persons
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(total, total))
    _, labels = connected_components(graph, directed=False)
    del graph, src, dst
    node_comp = labels[:n_nodes]

    # Per component: the smallest existing person, else a new id keyed on the smallest node.
    comps, first_node = np.unique(node_comp, return_index=True)  # nodes sorted: first = min
    canonical = np.full(len(comps), -1, dtype=np.int64)  # person code per component
    comp_index = np.searchsorted(comps, node_comp)
    merges: dict[str, str] = {}
    if n_persons:
        known_comp = comp_index[known_node]
        order = np.lexsort((known_code, known_comp))
        kc, kp = known_comp[order], known_code[order]
        leader = np.r_[True, kc[1:] != kc[:-1]]
        canonical[kc[leader]] = kp[leader]
        target = canonical[kc]
        moved = np.unique(np.stack([kp[kp != target], target[kp != target]]), axis=1)
        merges = dict(zip(persons_sorted.gather(moved[0]).to_list(),
                          persons_sorted.gather(moved[1]).to_list(), strict=True))
    fresh = canonical < 0
    fresh_ids = person_keys.pseudonymize_array(
        "person", nodes.get_column("pseudonym").gather(first_node[fresh]).to_arrow())
    comp_person = pl.repeat(None, len(comps), dtype=pl.String, eager=True)
    if n_persons:
        comp_person = comp_person.scatter(np.flatnonzero(~fresh),
                                          persons_sorted.gather(canonical[~fresh]))
    comp_person = comp_person.scatter(np.flatnonzero(fresh), pl.Series(fresh_ids))

    known_mask = np.zeros(n_nodes, dtype=bool)
    known_mask[known_node] = True
    resolved = nodes.select("pseudonym", "column", pl.Series("component", comp_index),
                            pl.Series("known", known_mask))
    if known_links.is_empty():
        repointed = pl.DataFrame(schema=LINKS_SCHEMA)
    else:  # a stored link whose component now belongs to another person
        stored = linked.select("node", pl.col("person_id").alias("stored"))
        now = comp_person.gather(comp_index[stored.get_column("node").to_numpy()])
        repointed = stored.with_columns(now.alias("person_id")) \
            .filter(pl.col("stored") != pl.col("person_id")) \
            .join(nodes.select("node", "pseudonym"), on="node") \
            .select("pseudonym", "person_id")
    row_component = comp_index[index.row_node] if n_rows else np.zeros(0, dtype=np.int64)
    return Resolution(row_component=row_component, component_person=comp_person,
                      nodes=resolved, repointed=repointed, merges=merges,
                      new_persons=pl.Series("person_id", fresh_ids).sort())


def _kind() -> pl.Expr:
    return pl.col("column").cast(pl.String).replace_strict(_KIND_OF).alias("kind")


def _known_frame(known: pl.DataFrame | Mapping[str, str]) -> pl.DataFrame:
    if isinstance(known, pl.DataFrame):
        return known.select(list(LINKS_SCHEMA))
    return pl.DataFrame({"pseudonym": list(known), "person_id": list(known.values())},
                        schema=LINKS_SCHEMA)
