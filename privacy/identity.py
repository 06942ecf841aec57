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

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sqlalchemy import Connection

from privacy.keys import Pseudonymizer
from privacy.pseudonymize import ID_COLUMNS
from warehouse import store
from warehouse.schema import identifier_links

_KIND_OF = {"id_source": "source_id", "id_email": "email", "id_phone": "phone",
            "id_phone2": "phone"}
LINKS_SCHEMA = {"pseudonym": pl.String, "person_id": pl.String}


@dataclass(frozen=True)
class Resolution:
    """Outcome of resolving one file: a person per row, links to write, merges to apply."""

    row_person: pl.Series  # person_id per row, in row order
    new_links: pl.DataFrame  # pseudonym, kind, person_id (sorted by pseudonym): not yet stored
    repointed: pl.DataFrame  # pseudonym, person_id: stored links whose person changed
    merges: dict[str, str]  # existing person_id -> the person_id it merges into
    new_persons: pl.Series  # person_ids created by this file (sorted)


def existing_links(conn: Connection, pseudonyms: pl.Series) -> pl.DataFrame:
    """``pseudonym, person_id`` of the given pseudonyms already in ``identifier_links``."""
    return store.lookup(conn, identifier_links, "pseudonym", ["person_id"], pseudonyms)


@dataclass(frozen=True)
class IdentifierIndex:
    """A file's identifiers as integer codes: the input of :func:`resolve_index`."""

    n_rows: int
    edges: pl.DataFrame  # row (u32), node (i64): row ``row`` carries identifier ``node``
    nodes: pl.DataFrame  # node, pseudonym, column: distinct pseudonyms in sorted order


def index_identifiers(ids: pl.DataFrame | pl.LazyFrame | pd.DataFrame) -> IdentifierIndex:
    """Number the distinct pseudonyms of ``ids`` (columns ``ID_COLUMNS``) in sorted order.

    Sorted, so the smallest code of a component is its smallest pseudonym. A lazy frame (a
    parquet scan) is never held whole: only the long form is built.
    """
    frame = pl.from_pandas(ids[list(ID_COLUMNS)]) if isinstance(ids, pd.DataFrame) else ids
    lazy = frame.lazy().select([pl.col(c).cast(pl.String) for c in ID_COLUMNS])
    long = (lazy.with_row_index("row")
            .unpivot(index="row", on=list(ID_COLUMNS), variable_name="column",
                     value_name="pseudonym")
            .drop_nulls("pseudonym")
            .with_columns(pl.col("column").cast(pl.Enum(list(ID_COLUMNS))))
            .sort("pseudonym")
            .with_columns((pl.col("pseudonym") != pl.col("pseudonym").shift(1))
                          .fill_null(True).alias("first"))
            .with_columns((pl.col("first").cum_sum() - 1).cast(pl.Int64).alias("node"))
            .collect())
    n_rows = lazy.select(pl.len()).collect().item()
    if n_rows and long.get_column("row").n_unique() != n_rows:
        raise ValueError("a row without any identifier reached identity resolution")
    nodes = long.filter(pl.col("first")).select("node", "pseudonym", "column")
    return IdentifierIndex(n_rows=n_rows, edges=long.select("row", "node"), nodes=nodes)


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

    # Graph: row nodes after identifier nodes, person nodes after row nodes.
    row_nodes = n_nodes + index.edges.get_column("row").to_numpy().astype(np.int64)
    src = np.concatenate([row_nodes, known_node])
    dst = np.concatenate([index.edges.get_column("node").to_numpy().astype(np.int64),
                          n_nodes + n_rows + known_code])
    del row_nodes, linked, person_code
    total = n_nodes + n_rows + n_persons
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(total, total))
    _, labels = connected_components(graph, directed=False)
    del graph, src, dst
    node_comp = labels[:n_nodes]
    row_comp = labels[n_nodes:n_nodes + n_rows]

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

    node_person = comp_person.gather(comp_index)
    row_person = comp_person.gather(np.searchsorted(comps, row_comp)) if n_rows else \
        pl.Series("person_id", [], dtype=pl.String)
    resolved = nodes.with_columns(node_person.alias("person_id"))
    if known_links.is_empty():
        new_links = resolved.select("pseudonym", _kind(), "person_id")
        repointed = pl.DataFrame(schema=LINKS_SCHEMA)
    else:
        stored = resolved.join(known_links.rename({"person_id": "stored"}), on="pseudonym",
                               how="left")
        new_links = (stored.filter(pl.col("stored").is_null())
                     .select("pseudonym", _kind(), "person_id"))
        repointed = stored.filter(pl.col("stored").is_not_null() &
                                  (pl.col("stored") != pl.col("person_id"))) \
            .select("pseudonym", "person_id")
    return Resolution(row_person=row_person.alias("person_id"), new_links=new_links,
                      repointed=repointed, merges=merges,
                      new_persons=pl.Series("person_id", fresh_ids).sort())


def _kind() -> pl.Expr:
    return pl.col("column").cast(pl.String).replace_strict(_KIND_OF).alias("kind")


def _known_frame(known: pl.DataFrame | Mapping[str, str]) -> pl.DataFrame:
    if isinstance(known, pl.DataFrame):
        return known.select(list(LINKS_SCHEMA))
    return pl.DataFrame({"pseudonym": list(known), "person_id": list(known.values())},
                        schema=LINKS_SCHEMA)
