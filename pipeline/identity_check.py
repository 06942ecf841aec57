"""Measure identity resolution on a synthetic campaign: the split and merge rates.

A fresh campaign is generated, every export is ingested through the real pipeline into a
throw-away SQLite warehouse under a throw-away key, and each generated human's ids in every
tool (:func:`transforms.synth.human_source_ids`) are looked up among the resolved links.
Nothing here touches the campaign's own warehouse or keys.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from core.settings import Settings
from pipeline.ingest import ingest_file
from privacy.identity_audit import IdentitySplit
from privacy.keys import Keyring
from privacy.pseudonymize import PURPOSE_IDENTITY
from transforms.synth import SynthConfig, generate_campaign, human_source_ids
from warehouse import store
from warehouse.db import ensure_schema, make_engine
from warehouse.schema import identifier_links

log = logging.getLogger(__name__)


def split_counts(found: pl.DataFrame, *, people: int, seed: int,
                 measured_at: str) -> IdentitySplit:
    """Humans seen under several persons, and persons holding several humans.

    ``found`` pairs each generated human with every person one of their ids resolved to.

    >>> frame = pl.DataFrame({"human": [0, 0, 1, 2, 3], "person_id": ["a", "b", "c", "d", "d"]})
    >>> r = split_counts(frame, people=4, seed=0, measured_at="2026-01-01T00:00:00+00:00")
    >>> (r.humans, r.persons, r.split_humans, r.merged_persons)
    (4, 4, 1, 1)
    """
    pairs = found.unique()
    per_human = pairs.group_by("human").agg(pl.col("person_id").n_unique().alias("n"))
    per_person = pairs.group_by("person_id").agg(pl.col("human").n_unique().alias("n"))
    return IdentitySplit(people=people, seed=seed, humans=per_human.height,
                         persons=per_person.height,
                         split_humans=per_human.filter(pl.col("n") > 1).height,
                         merged_persons=per_person.filter(pl.col("n") > 1).height,
                         measured_at=measured_at)


def measure_identity_split(settings: Settings, *, people: int = 20_000, seed: int = 2026,
                           now: datetime | None = None) -> IdentitySplit:
    """Generate, ingest and compare with the generator's humans; counts only."""
    keyring = Keyring.from_bytes({1: os.urandom(32)})
    with tempfile.TemporaryDirectory(dir=settings.work, prefix="identity-check-") as tmp:
        folder = Path(tmp)
        config = SynthConfig(people=people, seed=seed)
        manifest = generate_campaign(config, folder / "exports")
        local = replace(settings, home=folder / "home")
        local.ensure_dirs()
        engine = make_engine(f"sqlite:///{folder / 'warehouse.db'}")
        ensure_schema(engine)
        for export in manifest.files:
            ingest_file(export.path, local, engine, keyring)
        ids = human_source_ids(config).unpivot(index="human", value_name="source_id")
        pseudonymizer = keyring.pseudonymizer("campaign", PURPOSE_IDENTITY)
        ids = ids.with_columns(pl.Series("pseudonym", pseudonymizer.pseudonymize_array(
            "source_id", ids.get_column("source_id").to_arrow()).to_pylist()))
        with engine.connect() as conn:
            links = store.lookup(conn, identifier_links, "pseudonym", ["person_id"],
                                 ids.get_column("pseudonym"))
        engine.dispose()
    found = ids.join(links, on="pseudonym", how="inner").select("human", "person_id")
    result = split_counts(found, people=people, seed=seed,
                          measured_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"))
    log.info("identity check on %d synthetic people: %d humans -> %d persons, %d split, "
             "%d merged", people, result.humans, result.persons, result.split_humans,
             result.merged_persons)
    return result
