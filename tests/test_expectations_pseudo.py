"""The pseudonymized suite: the last gate before the warehouse.

It must pass what the real pipeline stages, and fail whenever an identifier could slip through:
a new free-text column, an email or phone in any column at any position (property test), a
malformed pseudonym, a code outside the official lists.
"""

from __future__ import annotations

import base64
import csv
import secrets
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from core.settings import Settings, load_settings
from expectations import patterns
from expectations.codes import CODE_LISTS, codes
from expectations.suites import allowed_columns, pseudonymized_suite
from expectations.validate import ValidationFailed, enforce, validate_pseudonymized
from privacy.keys import Keyring

RING = Keyring.from_bytes({1: bytes(range(32))})
OFFLINE = load_settings({"ISOLOIR_HOME": "/nonexistent/isoloir"})  # gx=False never touches it


def pseudonyms(purpose: str, n: int) -> list[str]:
    return RING.pseudonymizer("campaign", purpose).pseudonymize_many(
        "email", [f"v{i}" for i in range(n)])


def staged(kind: str, n: int = 30) -> pd.DataFrame:
    """A staged frame shaped as ``privacy.pseudonymize`` writes it."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "id_source": pseudonyms("identity", n), "id_email": pseudonyms("identity-e", n),
        "id_phone": [None] * n, "id_phone2": pseudonyms("identity-p", n),
        "commune": rng.choice(["75111", "2A004", "97411", "13201"], n),
        "departement": rng.choice(["75", "2A", "974", "13"], n),
        "region": rng.choice(["11", "94", "04", "93"], n),
    })
    if kind == "people":
        return frame.assign(age_band=rng.choice(["18-24", "75+", None], n),
                            support_level=pd.array(rng.choice([1, 5, 3], n), dtype="Int8"),
                            is_volunteer=pd.array([True, False] * (n // 2), dtype="boolean"),
                            is_donor=False, email_opt_in=True, mobile_opt_in=None,
                            created_month="2026-01", fingerprint=pseudonyms("fingerprint", n),
                            withdrawn=False, updated_at="2026-03-14T09:22:00")
    rows = frame.assign(event_key=pseudonyms("event", n), fingerprint=pseudonyms("fp", n),
                        withdrawn=False)
    if kind == "contacts":
        return rows.assign(canvasser_id=pseudonyms("canvasser", n),
                           week=rng.choice(["2026-W05", "2026-W53"], n),
                           channel=rng.choice(["door", "phone", "sms", "other"], n),
                           result=rng.choice(["contacted", "not_home", "do_not_disturb"], n),
                           support_level=pd.array([None] * n, dtype="Int8"))
    return rows.assign(amount_cents=rng.integers(0, 460_000, n), month="2026-02",
                       method=rng.choice(["card", "cheque"], n), recurring=False)


@pytest.fixture
def settings(isoloir_home: Path) -> Settings:
    s = load_settings()
    s.ensure_dirs()
    return s


@pytest.mark.parametrize("kind", ["people", "contacts", "donations"])
def test_clean_staged_frames_pass_fast_path_and_gx(kind: str, settings: Settings) -> None:
    outcome = validate_pseudonymized(staged(kind), kind, f"{kind}.csv", settings)
    assert outcome.success, outcome.first_failure_message()
    assert outcome.warnings() == () and outcome.gx_rows == 30


def test_what_the_real_pipeline_stages_passes(settings: Settings) -> None:
    """A synthetic campaign, read, normalized and pseudonymized by the real code, passes."""
    from pipeline.ingest import prepare_file, read_staged
    from transforms.synth import SynthConfig, generate_campaign

    manifest = generate_campaign(SynthConfig(people=200, seed=11), settings.work / "synth")
    ring = Keyring.from_bytes({1: secrets.token_bytes(32)})
    for export in manifest.files:
        prepared = prepare_file(settings.work / "synth" / export.name, settings, ring)
        outcome = validate_pseudonymized(read_staged(prepared), prepared.kind, export.name,
                                         settings, gx=False)
        assert outcome.success, outcome.first_failure_message()
        assert outcome.rows == prepared.rows_staged + prepared.rows_withdrawn
        assert prepared.rows_staged > 0


def test_allow_list_is_the_schema_plus_the_staging_pseudonyms() -> None:
    from privacy.pseudonymize import ID_COLUMNS, KEPT_COLUMNS
    from warehouse.schema import contacts, donations, persons

    for kind, table in (("people", persons), ("contacts", contacts), ("donations", donations)):
        allowed = set(allowed_columns(kind))
        assert allowed >= {c.name for c in table.columns}
        assert allowed >= set(ID_COLUMNS) | set(KEPT_COLUMNS[kind])
        assert allowed - {c.name for c in table.columns} <= \
            set(ID_COLUMNS) | {"event_key", "fingerprint", "withdrawn", "updated_at",
                               "raw_hash", "raw_occurrence"}


def test_new_free_text_column_that_passed_raw_fails_and_quarantines(settings: Settings) -> None:
    """The raw suite ignores unmapped columns; if one reached the staged frame, this catches it."""
    from tests.test_expectations_raw import fr_rows, read_export, write_export

    rows = [r | {"commentaire": "rappeler Mme Zorglub au 06 71 82 93 04, 12 rue des Lilas, "
                                "zorglub@canary-mail.fr"} for r in fr_rows(20)]
    path = write_export(settings.landing, "fr_canvass", rows)
    frame, header, profile = read_export(path)
    from expectations.validate import validate_raw

    assert validate_raw(frame, header, profile, path.name, settings, gx=False).success

    with path.open(encoding="cp1252", newline="") as handle:
        comments = [r["commentaire"] for r in csv.DictReader(handle, delimiter=";")]
    leaky = staged("contacts", 20).assign(commentaire=comments)  # a pseudonymizer bug
    outcome = validate_pseudonymized(leaky, "contacts", path.name, settings)
    failed = {(r.rule, r.column): r for r in outcome.blocking_failures()}
    assert set(failed) == {("columns_allowed", None), ("no_personal_data", "commentaire")}
    assert failed[("columns_allowed", None)].detail == "not allowed: commentaire"
    assert failed[("no_personal_data", "commentaire")].detail == \
        "looks like: email, phone, street address"
    assert failed[("no_personal_data", "commentaire")].unexpected_count == 20
    with pytest.raises(ValidationFailed) as caught:
        enforce(outcome, settings, path)
    assert caught.value.rule == "columns_allowed"
    assert (settings.quarantine / path.name).is_file() and not path.exists()
    assert "Zorglub" not in str(caught.value) and "06 71" not in str(caught.value)


@pytest.mark.parametrize("bad", ["K1:abcdef", "k1:ABCDEF", "k1:abcdef==", "abcdef", "k:abcdef",
                                 "k1:abc0189", "k1234567:abcdef", "k1:abc def", "k1:abc\n"])
def test_malformed_pseudonyms_fail(bad: str) -> None:
    frame = staged("contacts", 5)
    frame.loc[3, "event_key"] = bad
    outcome = validate_pseudonymized(frame, "contacts", "c.csv", OFFLINE, gx=False)
    assert [(r.rule, r.column, r.first_rows) for r in outcome.blocking_failures()] == \
        [("pseudonym_format", "event_key", (4,))]


@pytest.mark.parametrize(("column", "bad", "rule"), [
    ("departement", "99", "code_in_official_list"), ("departement", "20", "code_in_official_list"),
    ("commune", "99999", "code_in_official_list"), ("region", "00", "code_in_official_list"),
    ("result", "abducted", "code_in_official_list"), ("channel", "pigeon", "code_in_official_list"),
    ("week", "2026-W54", "week_format"), ("week", "2026-05", "week_format"),
])
def test_codes_outside_the_official_lists_fail(column: str, bad: str, rule: str) -> None:
    frame = staged("contacts", 5)
    frame.loc[0, column] = bad
    outcome = validate_pseudonymized(frame, "contacts", "c.csv", OFFLINE, gx=False)
    assert [(r.rule, r.column) for r in outcome.blocking_failures()] == [(rule, column)]


def test_age_bands_and_support_levels_are_checked(settings: Settings) -> None:
    frame = staged("people", 6)
    frame["age_band"] = frame["age_band"].astype(object)
    frame.loc[1, "age_band"] = "17-24"
    frame.loc[2, "support_level"] = 6
    outcome = validate_pseudonymized(frame, "people", "p.csv", settings)  # GX agrees
    assert {(r.rule, r.column, r.first_rows) for r in outcome.blocking_failures()} == {
        ("code_in_official_list", "age_band", (2,)),
        ("code_in_official_list", "support_level", (3,))}


# ------------------------------------------------------------------ why the fast path may skip

def test_no_official_code_looks_like_personal_data() -> None:
    """Values that pass a code rule are never scanned for leaks: prove none could match."""
    from datetime import date

    from core.vocabulary import iso_weeks, months

    everything = [c for name in CODE_LISTS for c in codes(name)]
    everything += list(iso_weeks(date(2020, 1, 1), date(2030, 12, 31)))
    everything += list(months(date(2020, 1, 1), date(2030, 12, 31)))
    text = pd.Series(everything, dtype="str")
    for regex in patterns.ALL_PII_REGEXES:
        assert not text.str.contains(regex).any(), regex


@hsettings(max_examples=50, deadline=None)
@given(key=st.integers(1, 999_999),
       body=st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", min_size=1, max_size=80),
       number=st.integers(-(10**18), 10**18))
def test_valid_pseudonyms_and_integers_never_look_like_personal_data(key: int, body: str,
                                                                     number: int) -> None:
    values = pd.Series([f"k{key}:{body}", str(number), "True", "False"], dtype="str")
    assert values.str.contains(patterns.PSEUDONYM).tolist()[0]
    for regex in patterns.ALL_PII_REGEXES:
        assert not values.str.contains(regex).any(), regex


# ------------------------------------------------------------------ property: any leak fails

def french_phones() -> st.SearchStrategy[str]:
    digits = st.tuples(st.integers(1, 9), st.lists(st.integers(0, 9), min_size=8, max_size=8))

    def write(parts: tuple[int, list[int]], style: int) -> str:
        first, rest = parts
        national = f"0{first}" + "".join(map(str, rest))
        pairs = [national[i:i + 2] for i in range(0, 10, 2)]
        return [national, " ".join(pairs), ".".join(pairs), "-".join(pairs),
                f"+33{national[1:]}", f"+33 {first} " + " ".join(pairs[1:]),
                f"0033{national[1:]}", f"+33 (0){first} " + " ".join(pairs[1:])][style]

    return st.builds(write, digits, st.integers(0, 7))


def international_phones() -> st.SearchStrategy[str]:
    def write(country: int, subscriber: str, spaced: bool) -> str:
        if not spaced:
            return f"+{country}{subscriber}"
        return f"+{country} " + " ".join(subscriber[i:i + 3] for i in range(0, len(subscriber), 3))

    return st.builds(write, st.integers(1, 999),
                     st.text(alphabet="0123456789", min_size=8, max_size=11), st.booleans())


def emails() -> st.SearchStrategy[str]:
    own = st.builds(lambda u, d, t: f"{u}@{d}.{t}",
                    st.from_regex(r"[A-Za-z0-9._%+'-]{1,20}", fullmatch=True),
                    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,15}[a-z0-9])?", fullmatch=True),
                    st.sampled_from(["fr", "com", "org", "paris", "eu", "CO"]))
    return st.one_of(own, st.emails())


LEAKS = st.one_of(emails(), french_phones(), international_phones())
FILLER = st.text(alphabet="abcdefghij ", max_size=8)
BASE = staged("contacts", 12)


@hsettings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.integers(1, 12), column=st.sampled_from(list(BASE.columns)), data=st.data(),
       leak=LEAKS, before=FILLER, after=FILLER)
def test_any_email_or_phone_anywhere_fails_the_suite(rows: int, column: str, data: st.DataObject,
                                                     leak: str, before: str, after: str) -> None:
    frame = BASE.head(rows).copy()
    row = data.draw(st.integers(0, rows - 1))
    frame[column] = frame[column].astype(object)
    frame.iat[row, frame.columns.get_loc(column)] = before + leak + after
    outcome = validate_pseudonymized(frame, "contacts", "leak.csv", OFFLINE, gx=False)
    assert not outcome.success
    leak_rule = next(r for r in outcome.results
                     if r.rule == "no_personal_data" and r.column == column)
    assert not leak_rule.success and leak_rule.first_rows == (row + 1,)


def test_suite_scans_every_column_of_the_frame() -> None:
    suite = pseudonymized_suite("contacts", ["id_email", "week", "brand_new_column"])
    scanned = {r.column for r in suite.rules if r.name == "no_personal_data"}
    assert scanned == {"id_email", "week", "brand_new_column"}


def test_pseudonyms_of_the_keyring_match_the_format() -> None:
    ring = Keyring.from_bytes({1: secrets.token_bytes(32), 12: secrets.token_bytes(32)})
    values = ring.pseudonymizer("campaign", "identity").pseudonymize_many(
        "email", ["a@b.fr", "c@d.fr"])
    assert pd.Series(values, dtype="str").str.contains(patterns.PSEUDONYM).all()
    assert base64.b32decode(values[0].split(":")[1].upper())  # unpadded base32 of 240 bits
