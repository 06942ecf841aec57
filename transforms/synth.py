"""Synthetic campaign exports, written the way each real tool writes them.

Engineers test the pipeline on these files instead of real personal data. One run writes:

* ``nationbuilder_people.csv`` (profile ``nationbuilder_people``): UTF-8 with BOM, comma;
* ``van_contact_history.txt`` (``van_contacts``): tab-delimited UTF-8, one row per attempt;
* ``porte_a_porte.csv`` (``fr_canvass``): cp1252, ``;``, dd/mm/yyyy, decimal comma, CRLF;
* ``donations.csv`` (``donations``): UTF-8 comma, euros with a dot;
* ``ground_truth.json``: exact aggregates for tests and benchmarks (never ingested).

With ``extra_sources=True`` (``isoloir synth --all-sources``), five more
exports of the same people are written beside them (:mod:`transforms.synth_sources`):
``action_network_people.csv``, ``action_populaire.csv``, ``nationbuilder_contacts.csv``,
``nationbuilder_donations.csv`` and ``van_my_voters.txt``. They draw from a generator of their
own, so the four core files are byte-identical either way; the ground truth covers the core
files only.

The same human appears in several files with identifiers written differently, households
share an address, people live in real communes drawn by legal population, and a small
deterministic share of rows is dirty. Generation is deterministic for a seed: chunk ``i``
of ``chunk_people`` people draws from ``numpy.random.default_rng([seed, i])``, so the bytes
depend only on the configuration. Chunks stream to disk, so memory stays flat whatever
the size (10 M attempt rows fit well within 2 GB).

>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as tmp:
...     manifest = generate_campaign(SynthConfig(people=300, seed=7), pathlib.Path(tmp))
...     [f.profile for f in manifest.files]
['nationbuilder_people', 'van_contacts', 'fr_canvass', 'donations']
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl

from core.errors import EXIT_BAD_INPUT, InvariantViolation, IsoloirError
from core.geography import COG_YEAR, load_geography
from transforms.synth_activity import (
    DONATION_COLUMNS,
    FR_COLUMNS,
    VAN_COLUMNS,
    build_activity_model,
    make_contacts,
    make_donations,
)
from transforms.synth_identifiers import NumberCounters
from transforms.synth_people import (
    NB_COLUMNS,
    CanaryPerson,
    build_people_model,
    make_people,
    people_frame,
)
from transforms.synth_places import build_place_table
from transforms.synth_sources import EXTRA_EXPORTS, ExtraCounters, extra_frames
from transforms.synth_truth import GroundTruth
from transforms.synth_vocab import build_vocabulary

log = logging.getLogger(__name__)

PEOPLE_FILE = "nationbuilder_people.csv"
VAN_FILE = "van_contact_history.txt"
FR_FILE = "porte_a_porte.csv"
DONATIONS_FILE = "donations.csv"
GROUND_TRUTH_FILE = "ground_truth.json"

DEFAULT_START = date(2026, 1, 5)
DEFAULT_END = date(2026, 6, 28)
MAX_CONTACTS_PER_PERSON_MEAN = 100.0

ProgressCallback = Callable[[int, int], None]
"""Called after each chunk with (people written so far, people in total)."""

# Stream ids of the seeded generators (one per concern, never shared).
_STREAM_MODEL = 0
_STREAM_CHUNK = 1
_STREAM_EXTRA = 2

__all__ = [
    "CanaryPerson", "SynthConfig", "SynthConfigError", "SynthFile", "SynthManifest",
    "generate_campaign", "PEOPLE_FILE", "VAN_FILE", "FR_FILE", "DONATIONS_FILE",
    "GROUND_TRUTH_FILE",
]


class SynthConfigError(IsoloirError, ValueError):
    """A synthetic-campaign setting is out of range; the message names the setting."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Same config (incl. ``chunk_people``) → byte-identical files."""

    people: int
    seed: int = 2026
    contacts_per_person: float = 5.0  # mean attempts over the people canvassed
    start: date = DEFAULT_START
    end: date = DEFAULT_END
    canaries: tuple[CanaryPerson, ...] = ()
    canvassed_share: float = 0.6
    chunk_people: int = 100_000
    #: Also write the other tools' exports (transforms.synth_sources).
    extra_sources: bool = False

    def __post_init__(self) -> None:
        if self.people < 1:
            raise SynthConfigError("people: must be at least 1")
        if self.people < len(self.canaries):
            raise SynthConfigError("people: must be at least the number of canaries")
        if not 1.0 <= self.contacts_per_person <= MAX_CONTACTS_PER_PERSON_MEAN:
            raise SynthConfigError(
                f"contacts_per_person: must be between 1 and {MAX_CONTACTS_PER_PERSON_MEAN:g}")
        if self.end < self.start:
            raise SynthConfigError("end: must not be before start")
        if not 0.0 < self.canvassed_share <= 1.0:
            raise SynthConfigError("canvassed_share: must be in (0, 1]")
        if self.chunk_people < 1_000 and self.chunk_people < self.people:
            raise SynthConfigError("chunk_people: must be at least 1000")
        if self.seed < 0:
            raise SynthConfigError("seed: must not be negative")
        if len(self.canaries) > self.chunk_people:
            raise SynthConfigError("canaries: more canaries than people in the first chunk")


@dataclass(frozen=True)
class SynthFile:
    """One written export: where it is, which source profile reads it, rows and checksum."""

    name: str
    profile: str
    rows: int
    sha256: str
    path: Path


@dataclass(frozen=True)
class SynthManifest:
    """What a run wrote. ``files`` are the exports; the ground truth is kept apart."""

    config: SynthConfig
    out_dir: Path
    files: tuple[SynthFile, ...]
    ground_truth: Path
    ground_truth_sha256: str

    def file(self, profile: str) -> SynthFile:
        """The export read by source profile ``profile``."""
        for f in self.files:
            if f.profile == profile:
                return f
        raise KeyError(f"no synthetic export for profile {profile!r}")

    def to_dict(self) -> dict[str, object]:
        return {
            "out_dir": str(self.out_dir), "people": self.config.people, "seed": self.config.seed,
            "files": [{"name": f.name, "profile": f.profile, "rows": f.rows, "sha256": f.sha256,
                       "path": str(f.path)} for f in self.files],
            "ground_truth": str(self.ground_truth),
            "ground_truth_sha256": self.ground_truth_sha256,
        }


class _Sink:
    """A CSV file written chunk by chunk in one tool's dialect, hashed as it goes."""

    def __init__(self, path: Path, profile: str, columns: tuple[str, ...], separator: str, *,
                 encoding: str = "utf-8", bom: bool = False, line_terminator: str = "\n") -> None:
        self.path, self.profile, self.columns = path, profile, columns
        self.separator, self.encoding, self.line_terminator = separator, encoding, line_terminator
        self.rows = 0
        self._hash = hashlib.sha256()
        self._fh: BinaryIO = path.open("wb")
        if bom:
            self._put(b"\xef\xbb\xbf")
        self._put((separator.join(columns) + line_terminator).encode(encoding))

    def _put(self, data: bytes) -> None:
        self._fh.write(data)
        self._hash.update(data)

    def write(self, frame: pl.DataFrame) -> None:
        if tuple(frame.columns) != self.columns:
            raise InvariantViolation(f"{self.profile}: columns drifted from the declared header")
        buffer = io.BytesIO()
        frame.write_csv(buffer, include_header=False, separator=self.separator,
                        line_terminator=self.line_terminator, quote_style="necessary")
        data = buffer.getvalue()
        if self.encoding != "utf-8":  # every vocabulary entry is cp1252-safe by construction
            data = data.decode("utf-8").encode(self.encoding)
        self._put(data)
        self.rows += frame.height

    def close(self) -> None:
        self._fh.close()

    def result(self) -> SynthFile:
        return SynthFile(self.path.name, self.profile, self.rows, self._hash.hexdigest(),
                         self.path)


def _write_chunk(writes: list[tuple[_Sink, pl.DataFrame]], people_done: int) -> int:
    """Write one chunk's frames in order, releasing each as soon as it is on disk."""
    while writes:
        sink, frame = writes.pop(0)
        sink.write(frame)
        del frame
    return people_done


def _report(progress: ProgressCallback | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def generate_campaign(config: SynthConfig, out_dir: Path,
                      progress: ProgressCallback | None = None) -> SynthManifest:
    """Write the four exports and the ground truth into ``out_dir``; return what was written.

    Files are first written in a hidden staging folder inside ``out_dir`` and moved in
    place only once complete, so a watcher of a landing folder never sees half a file.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".synth-{os.getpid()}-{config.seed}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        files, truth_doc = _generate(config, staging, progress)
        truth_bytes = (json.dumps(truth_doc, indent=2, sort_keys=True) + "\n").encode("utf-8")
        (staging / GROUND_TRUTH_FILE).write_bytes(truth_bytes)
        placed: list[SynthFile] = []
        for f in files:
            target = out_dir / f.name
            os.replace(f.path, target)
            placed.append(SynthFile(f.name, f.profile, f.rows, f.sha256, target))
        truth_path = out_dir / GROUND_TRUTH_FILE
        os.replace(staging / GROUND_TRUTH_FILE, truth_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest = SynthManifest(config=config, out_dir=out_dir, files=tuple(placed),
                             ground_truth=truth_path,
                             ground_truth_sha256=hashlib.sha256(truth_bytes).hexdigest())
    log.info("synthetic campaign: %d people, %s", config.people,
             ", ".join(f"{f.name} {f.rows} rows" for f in manifest.files))
    return manifest


def _generate(config: SynthConfig, folder: Path,
              progress: ProgressCallback | None) -> tuple[list[SynthFile], dict[str, object]]:
    geo = load_geography()
    places = build_place_table(geo)
    model_rng = np.random.default_rng([config.seed, _STREAM_MODEL])
    vocab = build_vocabulary(model_rng)
    people_model = build_people_model(vocab, places, model_rng, start=config.start,
                                      end=config.end, canaries=config.canaries)
    activity = build_activity_model(vocab, model_rng, people=config.people,
                                    contacts_per_person=config.contacts_per_person,
                                    canvassed_share=config.canvassed_share,
                                    start=config.start, end=config.end)
    truth = GroundTruth(places, config.start, config.end)
    counters = NumberCounters()
    with ExitStack() as stack:
        people_sink = _Sink(folder / PEOPLE_FILE, "nationbuilder_people", NB_COLUMNS, ",",
                            bom=True)
        stack.callback(people_sink.close)
        van_sink = _Sink(folder / VAN_FILE, "van_contacts", VAN_COLUMNS, "\t")
        stack.callback(van_sink.close)
        fr_sink = _Sink(folder / FR_FILE, "fr_canvass", FR_COLUMNS, ";", encoding="cp1252",
                        line_terminator="\r\n")
        stack.callback(fr_sink.close)
        donation_sink = _Sink(folder / DONATIONS_FILE, "donations", DONATION_COLUMNS, ",")
        stack.callback(donation_sink.close)
        extra_sinks: dict[str, _Sink] = {}
        for profile, (name, columns, separator, bom) in (
                EXTRA_EXPORTS.items() if config.extra_sources else ()):
            extra_sinks[profile] = _Sink(folder / name, profile, columns, separator, bom=bom)
            stack.callback(extra_sinks[profile].close)
        extra_counters = ExtraCounters()
        # One writer thread formats, encodes, hashes and writes chunk i while chunk i+1 is
        # drawn (polars releases the GIL while writing CSV); one chunk in flight at most.
        writer = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="synth-writer"))
        pending: Future[int] | None = None
        for index, lo in enumerate(range(0, config.people, config.chunk_people)):
            hi = min(config.people, lo + config.chunk_people)
            rng = np.random.default_rng([config.seed, _STREAM_CHUNK, index])
            people = make_people(people_model, rng, lo, hi, config.people, counters)
            contacts = make_contacts(activity, people, rng)
            donations = make_donations(activity, people, rng)
            writes = [(people_sink, people_frame(people_model, people, donations.summary, rng)),
                      (van_sink, contacts.van), (fr_sink, contacts.fr),
                      (donation_sink, donations.frame)]
            if extra_sinks:
                extra_rng = np.random.default_rng([config.seed, _STREAM_EXTRA, index])
                extras = extra_frames(people_model, activity, people, contacts, donations,
                                      extra_rng, extra_counters)
                writes.extend((extra_sinks[p], frame) for p, frame in extras.items())
            truth.add_people(people)
            truth.add_contacts(people, contacts)
            truth.add_donations(people, donations)
            del people, contacts, donations
            if pending is not None:
                _report(progress, pending.result(), config.people)
            pending = writer.submit(_write_chunk, writes, hi)
        if pending is not None:
            _report(progress, pending.result(), config.people)
    files = [sink.result() for sink in (people_sink, van_sink, fr_sink, donation_sink,
                                        *extra_sinks.values())]
    generator = {
        "seed": config.seed, "people": config.people,
        "contacts_per_person": config.contacts_per_person,
        "canvassed_share": config.canvassed_share, "start": config.start.isoformat(),
        "end": config.end.isoformat(), "age_reference_date": config.end.isoformat(),
        "chunk_people": config.chunk_people, "cog_year": COG_YEAR,
        "canaries": len(config.canaries),
    }
    if config.extra_sources:  # the ground truth still describes the four core exports only
        generator["extra_sources"] = sorted(EXTRA_EXPORTS)
    return files, truth.to_dict(generator)


def human_source_ids(config: SynthConfig) -> pl.DataFrame:
    """Each generated human's id in every tool: ``human``, ``nb``, ``van``, ``pap``.

    The generator's identity ground truth, for measuring how well identity resolution
    joins a human's rows (a split human is two privacy units). Rebuilt from the models
    alone (cheap: no chunk is drawn); the ids are the ones the exports carry, namespaced as
    ingest namespaces them (``nb:``, ``van:``, ``pap:``). Synthetic data only.
    """
    from transforms.synth_activity import _PAP_SPACE, _VANID_SPACE

    geo = load_geography()
    places = build_place_table(geo)
    model_rng = np.random.default_rng([config.seed, _STREAM_MODEL])
    vocab = build_vocabulary(model_rng)
    build_people_model(vocab, places, model_rng, start=config.start, end=config.end,
                       canaries=config.canaries)
    activity = build_activity_model(vocab, model_rng, people=config.people,
                                    contacts_per_person=config.contacts_per_person,
                                    canvassed_share=config.canvassed_share,
                                    start=config.start, end=config.end)
    pid = np.arange(config.people, dtype=np.int64)
    van = 100_000_000 + (pid * activity.vanid_a + activity.vanid_b) % _VANID_SPACE
    pap = (pid * activity.pap_a + activity.pap_b) % _PAP_SPACE
    return pl.DataFrame({"human": pid, "nb": pid + 1, "van": van, "pap": pap}).select(
        "human",
        pl.concat_str([pl.lit("nb:"), pl.col("nb").cast(pl.String)]).alias("nb"),
        pl.concat_str([pl.lit("van:"), pl.col("van").cast(pl.String)]).alias("van"),
        pl.concat_str([pl.lit("pap:PAP"), pl.col("pap").cast(pl.String).str.zfill(9)])
        .alias("pap"))
