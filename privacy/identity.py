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
    """person_id of each pseudonym already in ``identifier_links`` (batched lookups)."""
    found: dict[str, str] = {}
    for start in range(0, len(pseudonyms), _LOOKUP_BATCH):
        batch = pseudonyms[start:start + _LOOKUP_BATCH].tolist()
        rows = conn.execute(select(identifier_links.c.pseudonym, identifier_links.c.person_id)
                            .where(identifier_links.c.pseudonym.in_(batch)))
        found.update({r.pseudonym: r.person_id for r in rows})
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
    comp_of_node = labels[:n_nodes]
    frame = pd.DataFrame({"comp": comp_of_node, "node": nodes, "person": node_person})
    existing = frame.dropna(subset=["person"]).groupby("comp")["person"]
    canonical = existing.min()
    merges: dict[str, str] = {}
    for comp, members in existing.unique().items():
        target = canonical[comp]
        merges.update({p: target for p in members if p != target})
    fresh = frame.loc[~frame["comp"].isin(canonical.index)].groupby("comp")["node"].min()
    fresh_ids = person_keys.pseudonymize_many("person", fresh.tolist())
    comp_person = pd.concat([canonical, pd.Series(fresh_ids, index=fresh.index, dtype=object)])

    node_final = comp_person.reindex(comp_of_node).to_numpy(dtype=object)
    row_person = node_final[first] if n_rows else np.array([], dtype=object)

    stale = ~has_person | (node_person != node_final)
    new_links = pd.DataFrame({"pseudonym": nodes[stale], "kind": kinds[stale],
                              "person_id": node_final[stale]})
    return Resolution(row_person=row_person, new_links=new_links, merges=merges,
                      new_persons=frozenset(fresh_ids))
