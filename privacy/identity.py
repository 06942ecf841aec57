"""Identity resolution: all rows of one human resolve to one stable, keyed ``person_id``.

Every identifier pseudonym of a row (source id, email, phones) is a node; a row joins its
nodes; ``identifier_links`` joins nodes to persons known from earlier loads. Connected
components (union-find, done by scipy's sparse graph routine) are persons. Why it matters:
contribution bounds, and so the DP guarantee, hold per person only if one human is one
``person_id``.

A new person's id is a keyed value derived from the smallest identifier pseudonym of its
component, so it reveals nothing about load order. When a component touches several
existing persons they are merged into the smallest id, in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sqlalchemy import Connection, select

from privacy.keys import Pseudonymizer
from privacy.pseudonymize import ID_COLUMNS
from warehouse.schema import identifier_links

_LOOKUP_BATCH = 5_000
_KIND_OF = {"id_source": "source_id", "id_email": "email", "id_phone": "phone",
            "id_phone2": "phone"}


@dataclass(frozen=True)
class Resolution:
    """Outcome of resolving one file: a person per row, links to write, merges to apply."""

    row_person: np.ndarray  # person_id per row (object array)
    new_links: pd.DataFrame  # pseudonym, kind, person_id: links not yet in identifier_links
    merges: dict[str, str]  # existing person_id -> the person_id it merges into
    new_persons: frozenset[str]


def existing_links(conn: Connection, pseudonyms: np.ndarray) -> dict[str, str]:
    """person_id of each pseudonym already in ``identifier_links`` (batched lookups).

    Talks to the driver directly: compiling hundreds of expanding ``IN`` statements through
    the ORM layer cost more than the lookups themselves.
    """
    found: dict[str, str] = {}
    if conn.execute(select(identifier_links.c.pseudonym).limit(1)).first() is None:
        return found  # first load: nothing to look up
    table = identifier_links.name
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        for start in range(0, len(pseudonyms), _LOOKUP_BATCH):
            batch = [str(p) for p in pseudonyms[start:start + _LOOKUP_BATCH]]
            if conn.dialect.name == "postgresql":
                cursor.execute(f"SELECT pseudonym, person_id FROM {table} "
                               "WHERE pseudonym = ANY(%s)", (batch,))
            else:
                marks = ",".join("?" * len(batch))
                cursor.execute(f"SELECT pseudonym, person_id FROM {table} "
                               f"WHERE pseudonym IN ({marks})", batch)
            found.update(dict(cursor.fetchall()))
    finally:
        cursor.close()
    return found


def resolve(ids: pd.DataFrame, known: dict[str, str], person_keys: Pseudonymizer) -> Resolution:
    """Resolve rows (columns ``ID_COLUMNS``) against the already-known links ``known``."""
    n_rows = len(ids)
    stacked = ids[list(ID_COLUMNS)].to_numpy(dtype=object)
    flat = stacked.ravel()
    present = pd.notna(flat)
    codes = np.full(flat.shape, -1, dtype=np.int64)
    codes[present], nodes = pd.factorize(flat[present])
    nodes = np.asarray(nodes, dtype=object)
    n_nodes = len(nodes)
    codes = codes.reshape(stacked.shape)

    kinds = np.empty(n_nodes, dtype=object)
    for j, column in enumerate(ID_COLUMNS):
        col = codes[:, j]
        kinds[col[col >= 0]] = _KIND_OF[column]

    # Existing persons become extra nodes, linked to their pseudonyms.
    node_person = np.array([known.get(p) for p in nodes], dtype=object)
    has_person = pd.notna(node_person)
    person_codes, persons = pd.factorize(node_person[has_person])
    person_nodes = n_nodes + person_codes

    # Edges: the first identifier of each row to every other identifier of that row,
    # and each pseudonym to its existing person.
    first = np.where(codes >= 0, codes, np.iinfo(np.int64).max).min(axis=1)
    if n_rows and (first == np.iinfo(np.int64).max).any():
        raise ValueError("a row without any identifier reached identity resolution")
    src = [np.repeat(first, codes.shape[1])[codes.ravel() >= 0], np.flatnonzero(has_person)]
    dst = [codes.ravel()[codes.ravel() >= 0], person_nodes]
    total = n_nodes + len(persons)
    a = np.concatenate(src) if total else np.array([], dtype=np.int64)
    b = np.concatenate(dst) if total else np.array([], dtype=np.int64)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(total, total))
    _, labels = connected_components(graph, directed=False)

    # Per component: canonical person = smallest existing person_id, else a new keyed id.
    # Minimums are taken on sorted integer codes (factorize(sort=True) keeps string order):
    # grouping strings directly falls back to slow per-group Python in pandas.
    comp_of_node = labels[:n_nodes]
    node_rank, node_sorted = pd.factorize(pd.Series(nodes, dtype=object), sort=True)
    node_sorted = np.asarray(node_sorted, dtype=object)
    person_rank = np.full(n_nodes, -1, dtype=np.int64)
    person_sorted = np.array([], dtype=object)
    if has_person.any():
        ranks, uniq = pd.factorize(pd.Series(node_person[has_person], dtype=object), sort=True)
        person_rank[has_person] = ranks
        person_sorted = np.asarray(uniq, dtype=object)
    linked = pd.DataFrame({"comp": comp_of_node[has_person], "person": person_rank[has_person]})
    canonical_rank = linked.groupby("comp")["person"].min()
    pairs = linked.drop_duplicates()
    target_rank = canonical_rank.reindex(pairs["comp"].to_numpy()).to_numpy()
    moved = pairs["person"].to_numpy() != target_rank
    merges = dict(zip(person_sorted[pairs["person"].to_numpy()[moved]].tolist(),
                      person_sorted[target_rank[moved]].tolist(), strict=True))
    is_fresh = ~np.isin(comp_of_node, canonical_rank.index.to_numpy())
    fresh_rank = pd.Series(node_rank[is_fresh]).groupby(comp_of_node[is_fresh]).min()
    fresh_ids = person_keys.pseudonymize_many("person", node_sorted[fresh_rank.to_numpy()].tolist())
    comp_person = pd.concat([
        pd.Series(person_sorted[canonical_rank.to_numpy()], index=canonical_rank.index,
                  dtype=object),
        pd.Series(fresh_ids, index=fresh_rank.index, dtype=object)])

    node_final = comp_person.reindex(comp_of_node).to_numpy(dtype=object)
    row_person = node_final[first] if n_rows else np.array([], dtype=object)

    stale = ~has_person | (node_person != node_final)
    new_links = pd.DataFrame({"pseudonym": nodes[stale], "kind": kinds[stale],
                              "person_id": node_final[stale]})
    return Resolution(row_person=row_person, new_links=new_links, merges=merges,
                      new_persons=frozenset(fresh_ids))
