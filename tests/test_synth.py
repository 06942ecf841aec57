"""The synthetic campaign generator: dialects, determinism, realism, ground truth, CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from core.geography import load_geography
from core.vocabulary import CAP_PER_CANDIDATE_CENTS, RESULTS
from transforms.sources import BUILTIN_PROFILES, RESULT_MAP
from transforms.synth import (
    CanaryPerson,
    SynthConfig,
    SynthConfigError,
    SynthManifest,
    generate_campaign,
)

PEOPLE = 2_000
SEED = 11
CANARY = CanaryPerson("Zéphyrine", "Quatrebarbes", "Zephyrine.Quatrebarbes@Canary-Mail.fr",
                      "06 71 82 93 04", "17 rue du Canari Jaune")
CONFIG = SynthConfig(people=PEOPLE, seed=SEED, canaries=(CANARY,), chunk_people=1_000)

#: How each export is read back: its own encoding, delimiter and decimal mark.
DIALECTS = {
    "nationbuilder_people": {"encoding": "utf-8-sig", "sep": ",", "decimal": "."},
    "van_contacts": {"encoding": "utf-8", "sep": "\t", "decimal": "."},
    "fr_canvass": {"encoding": "cp1252", "sep": ";", "decimal": ","},
    "donations": {"encoding": "utf-8", "sep": ",", "decimal": "."},
}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> SynthManifest:
    return generate_campaign(CONFIG, tmp_path_factory.mktemp("campaign"))


@pytest.fixture(scope="module")
def frames(campaign: SynthManifest) -> dict[str, pd.DataFrame]:
    return {name: read(campaign, name) for name in DIALECTS}


@pytest.fixture(scope="module")
def truth(campaign: SynthManifest) -> dict:
    return json.loads(campaign.ground_truth.read_text(encoding="utf-8"))


def read(manifest: SynthManifest, profile: str, **kwargs: object) -> pd.DataFrame:
    options = {"dtype": str, "keep_default_na": False} | DIALECTS[profile] | kwargs
    return pd.read_csv(manifest.file(profile).path, **options)  # type: ignore[call-overload]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def norm_email(value: str) -> str:
    return value.strip().lower()


def norm_phone(value: str) -> str:
    """Metropolitan French numbers to ``0XXXXXXXXX`` (enough for the canary checks)."""
    digits = re.sub(r"\D", "", value)
    if digits.startswith("0033"):
        digits = "0" + digits[4:]
    elif digits.startswith("33") and value.strip().startswith("+"):
        digits = "0" + digits[2:]
    return digits


# -- dialects ------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", sorted(DIALECTS))
def test_each_export_reads_back_in_its_own_dialect(campaign: SynthManifest, profile: str) -> None:
    frame = read(campaign, profile)
    declared = BUILTIN_PROFILES[profile]
    assert len(frame) == campaign.file(profile).rows > 0
    assert set(declared.required) <= set(frame.columns)
    # the source's own event id is optional: VAN writes ContactsContactID in some exports only
    mapped = {raw for field, raw in declared.fields.items() if field != "event_id"}
    assert mapped <= set(frame.columns)
    assert not frame[declared.id_column].eq("").any()
    for column in mapped:
        assert frame[column].ne("").any(), f"{profile}.{column} is always empty"


def test_people_export_has_a_bom_and_the_others_do_not(campaign: SynthManifest) -> None:
    assert campaign.file("nationbuilder_people").path.read_bytes()[:3] == b"\xef\xbb\xbf"
    for profile in ("van_contacts", "fr_canvass", "donations"):
        assert campaign.file(profile).path.read_bytes()[:3] != b"\xef\xbb\xbf"
    # decoded without the BOM-aware codec, the first header carries it (as naive readers see)
    text = campaign.file("nationbuilder_people").path.read_text(encoding="utf-8")
    assert next(csv.reader([text.splitlines()[0]]))[0] == "\ufeffnationbuilder_id"


def test_french_export_is_cp1252_with_decimal_commas(campaign: SynthManifest) -> None:
    data = campaign.file("fr_canvass").path.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    text = data.decode("cp1252")
    assert "résultat" in text.splitlines()[0] and "\r\n" in text
    numeric = read(campaign, "fr_canvass", dtype={"durée_min": float, "id_contact": str})
    assert numeric["durée_min"].dtype == float and (numeric["durée_min"] > 0).all()
    assert numeric["durée_min"].ne(numeric["durée_min"].round()).any()  # real decimals
    frame = read(campaign, "fr_canvass")
    assert frame["durée_min"].str.fullmatch(r"\d+,\d").all()
    accented = frame["prénom"][frame["prénom"].str.contains("[éèêëïîôç]", regex=True)]
    assert len(accented) > 0


def test_accented_names_round_trip_between_exports(frames: dict[str, pd.DataFrame]) -> None:
    people_first = set(frames["nationbuilder_people"]["first_name"])
    people_last = {v.upper() for v in frames["nationbuilder_people"]["last_name"]}
    assert set(frames["fr_canvass"]["prénom"]) <= people_first
    assert set(frames["fr_canvass"]["nom"]) <= people_last


def test_dates_are_written_in_each_tool_format(frames: dict[str, pd.DataFrame]) -> None:
    start, end = CONFIG.start, CONFIG.end
    for profile, column in (("van_contacts", "DateCanvassed"), ("fr_canvass", "date_passage"),
                            ("donations", "date")):
        fmt = BUILTIN_PROFILES[profile].date_format
        days = {datetime.strptime(v, fmt).date() for v in frames[profile][column]}
        assert min(days) >= start and max(days) <= end, profile
    people = frames["nationbuilder_people"]
    born = [datetime.strptime(v, "%m/%d/%Y").date() for v in people["born_at"] if v]
    ages = [end.year - b.year - ((end.month, end.day) < (b.month, b.day)) for b in born]
    assert min(ages) >= 18 and max(ages) <= 95 and max(ages) - min(ages) > 50


def test_tag_lists_are_comma_separated_inside_one_quoted_cell(campaign: SynthManifest) -> None:
    path = campaign.file("nationbuilder_people").path
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == PEOPLE
    assert any("," in row["tag_list"] for row in rows)
    assert '"' in path.read_text(encoding="utf-8-sig")  # quoted where needed
    assert {row["is_volunteer"] for row in rows} == {"true", "false"}
    assert {row["support_level"] for row in rows} == {"", "1", "2", "3", "4", "5"}


def test_donation_amounts_are_euros_with_a_dot(frames: dict[str, pd.DataFrame]) -> None:
    amounts = frames["donations"]["amount"]
    assert amounts.str.fullmatch(r"\d+\.\d\d").all()
    assert set(frames["donations"]["method"]) <= {"card", "cheque", "transfer"}
    assert set(frames["donations"]["recurring"]) == {"true", "false"}


# -- determinism ---------------------------------------------------------------------------

def test_same_seed_gives_byte_identical_files(campaign: SynthManifest, tmp_path: Path) -> None:
    again = generate_campaign(CONFIG, tmp_path / "again")
    for first, second in zip(campaign.files, again.files, strict=True):
        assert first.sha256 == second.sha256 == sha256(second.path), first.name
    assert campaign.ground_truth_sha256 == again.ground_truth_sha256
    assert sha256(again.ground_truth) == again.ground_truth_sha256


def test_a_different_seed_gives_different_files(campaign: SynthManifest, tmp_path: Path) -> None:
    other = generate_campaign(SynthConfig(people=PEOPLE, seed=SEED + 1, canaries=(CANARY,),
                                          chunk_people=1_000), tmp_path / "other")
    for first, second in zip(campaign.files, other.files, strict=True):
        assert first.sha256 != second.sha256, first.name


def test_nothing_is_left_behind_but_the_five_files(campaign: SynthManifest) -> None:
    names = sorted(p.name for p in campaign.out_dir.iterdir())
    assert names == sorted([f.name for f in campaign.files] + ["ground_truth.json"])


# -- realism -------------------------------------------------------------------------------

def test_canary_appears_everywhere_written_differently(frames: dict[str, pd.DataFrame]) -> None:
    people = frames["nationbuilder_people"]
    row = people[people["last_name"] == CANARY.last_name]
    assert len(row) == 1
    nb_id = row["nationbuilder_id"].iloc[0]
    assert row["primary_address1"].iloc[0] == CANARY.street
    assert row["do_not_contact"].iloc[0] == "false"
    van = frames["van_contacts"]
    van_rows = van[van["Phone"].map(norm_phone) == norm_phone(CANARY.phone)]
    fr = frames["fr_canvass"]
    fr_rows = fr[fr["nom"] == CANARY.last_name.upper()]
    don = frames["donations"]
    don_rows = don[don["donor_id"] == nb_id]
    assert len(van_rows) and len(fr_rows) and len(don_rows)
    assert van_rows["Address"].eq(CANARY.street).all()
    all_emails = [row["email"].iloc[0], *van_rows["Email"], *fr_rows["email"], *don_rows["email"]]
    written = {e for e in all_emails if e}
    assert {norm_email(e) for e in written} == {norm_email(CANARY.email)}
    assert len(written) >= 2  # the same address, written at least two ways
    phones = [row["mobile_number"].iloc[0], *van_rows["Phone"], *fr_rows["téléphone"]]
    phones = [p for p in phones if p]
    assert {norm_phone(p) for p in phones} == {norm_phone(CANARY.phone)}
    assert len(set(phones)) >= 2


def test_identifiers_are_written_differently_across_exports(
        frames: dict[str, pd.DataFrame]) -> None:
    van_phones = frames["van_contacts"]["Phone"]
    fr_phones = frames["fr_canvass"]["téléphone"]
    nb_phones = frames["nationbuilder_people"]["mobile_number"]
    assert van_phones.str.startswith("+33 ").any() and van_phones.str.fullmatch(r"\+33\d{9}").any()
    assert fr_phones.str.fullmatch(r"0033\d{9}").any()
    assert fr_phones.str.fullmatch(r"0\d( \d\d){4}").any()
    assert nb_phones.str.startswith("'0").any()
    assert van_phones.str.match(r"\+(262|590|594|596) ").any()  # overseas numbers
    van_emails = frames["van_contacts"]["Email"]
    assert van_emails.str.match(r"^\s+\S+@\S+\s+$").any()
    written = van_emails[van_emails != ""]
    assert (written.str.upper() == written).any() and (written.str.lower() == written).any()


def test_no_two_people_share_an_email_or_a_phone(frames: dict[str, pd.DataFrame]) -> None:
    people = frames["nationbuilder_people"]
    emails = [norm_email(e) for e in people["email"] if e]
    assert len(emails) == len(set(emails))
    numbers = [norm_phone(p) for p in people["mobile_number"] if p]
    assert len(numbers) == len(set(numbers))


def test_households_share_an_address(frames: dict[str, pd.DataFrame]) -> None:
    people = frames["nationbuilder_people"]
    homes = Counter(zip(people["primary_address1"], people["primary_city"], strict=True))
    shared = [home for home, n in homes.items() if n >= 2]
    assert len(shared) > PEOPLE * 0.1


def test_people_live_in_real_communes_including_corsica_paris_and_overseas(
        frames: dict[str, pd.DataFrame]) -> None:
    geo = load_geography()
    zips = frames["nationbuilder_people"]["primary_zip"].str.lstrip("'")
    zips = zips[zips != ""]
    assert zips.isin(geo.postcode_communes.keys()).all()
    placed = {z: geo.place_postcode(z).departement for z in set(zips)}
    corsica = {placed[z] for z in zips if z.startswith("20")}
    assert {"2A", "2B"} <= corsica and corsica <= {"2A", "2B", None}
    deps = {d for d in placed.values() if d}
    assert {"971", "972", "973", "974", "976"} <= deps
    assert len(deps) >= 95  # every département is seeded; a few postcodes are ambiguous
    paris = [z for z in zips if z.startswith("750")]
    assert paris and {geo.postcode_communes[z][0][:3] for z in paris} == {"751"}
    cities = frames["nationbuilder_people"]["primary_city"]
    assert cities.str.contains("Arrondissement").any()
    assert not cities.isin(["Paris", "Lyon", "Marseille"]).any()


def test_dirty_rows_are_few_and_below_the_ingest_threshold(
        frames: dict[str, pd.DataFrame], truth: dict) -> None:
    people = frames["nationbuilder_people"]
    emails = people["email"][people["email"] != ""].reset_index(drop=True).str.strip()
    malformed = ~emails.str.fullmatch(r"[^@\s]+@[^@\s]+\.[A-Za-z]+")
    assert 0 < malformed.sum() == truth["people"]["dirty_malformed_email"]
    assert malformed.mean() < 0.02
    missing_zip = (people["primary_zip"] == "").sum()
    assert 0 < missing_zip == truth["people"]["dirty_missing_postcode"] < PEOPLE * 0.01


def test_shares_of_flags_are_realistic(frames: dict[str, pd.DataFrame]) -> None:
    people = frames["nationbuilder_people"]
    share = {c: (people[c] == "true").mean() for c in
             ("is_volunteer", "is_donor", "do_not_contact", "email_opt_in")}
    assert 0.03 < share["is_volunteer"] < 0.08
    assert 0.05 < share["is_donor"] < 0.12
    assert 0.002 < share["do_not_contact"] < 0.03
    assert 0.3 < share["email_opt_in"] < 0.7
    donors = people[people["is_donor"] == "true"]
    assert (donors["donations_count"].astype(int) > 0).all()
    assert set(frames["donations"]["donor_id"]) == set(donors["nationbuilder_id"])


def test_donations_respect_the_caps_but_for_a_few_outliers(
        frames: dict[str, pd.DataFrame], truth: dict) -> None:
    don = frames["donations"]
    cents = (don["amount"].astype(float) * 100).round().astype(int)
    per_donor = cents.groupby(don["donor_id"]).sum()
    over = int((per_donor > CAP_PER_CANDIDATE_CENTS).sum())
    assert 1 <= over <= max(3, len(per_donor) // 50)  # at least one per chunk, ~0.2 % else
    assert over == truth["donations"]["donors_over_candidate_cap"]
    assert truth["donations"]["total_cents"] == int(cents.sum())
    people = frames["nationbuilder_people"].set_index("nationbuilder_id")
    nb_total = people.loc[per_donor.index, "donations_amount_in_cents"].astype(int)
    assert (nb_total == per_donor).all()


def test_contacts_are_heavy_tailed_around_the_requested_mean(truth: dict) -> None:
    per_person = truth["contacts"]["rows_per_person"]
    assert 3.5 < per_person["mean"] < 6.5
    assert per_person["max"] >= 25 and per_person["median"] <= 4
    assert 0.5 * PEOPLE < per_person["persons"] < 0.7 * PEOPLE


# -- ground truth --------------------------------------------------------------------------

def test_ground_truth_keys_are_public_codes(truth: dict) -> None:
    geo = load_geography()
    people = truth["people"]
    assert set(people["by_departement"]) == set(geo.departements) | {"unplaced"}
    assert set(people["by_region"]) == set(geo.regions) | {"unplaced"}
    assert set(truth["contacts"]["by_result"]) == set(RESULTS)
    assert set(people["age_band_by_support"]) == {"18-24", "25-34", "35-44", "45-54", "55-64",
                                                  "65-74", "75+", "unknown"}
    assert set(truth["donations"]["by_region_month"]) == set(geo.regions) | {"unplaced"}
    assert all(v > 0 for k, v in people["by_departement"].items() if k != "unplaced")
    text = json.dumps(truth)
    assert CANARY.last_name not in text and "@" not in text  # aggregates only


def test_ground_truth_people_counts_match_the_file(frames: dict[str, pd.DataFrame],
                                                   truth: dict) -> None:
    geo = load_geography()
    people = frames["nationbuilder_people"]
    counted = people[people["do_not_contact"] == "false"]
    deps = Counter(geo.place_postcode(z.lstrip("'")).departement or "unplaced"
                   for z in counted["primary_zip"])
    expected = {k: v for k, v in truth["people"]["by_departement"].items() if v}
    assert dict(deps) == expected
    assert truth["people"]["counted"] == len(counted)
    assert truth["people"]["volunteers"] == int((counted["is_volunteer"] == "true").sum())
    levels = Counter(v or "unknown" for v in counted["support_level"])
    assert dict(levels) == {k: v for k, v in truth["people"]["support_level"].items() if v}
    assert truth["people"]["email_opt_in"]["opted_in"] == int(
        (counted["email_opt_in"] == "true").sum())


def test_ground_truth_contact_counts_match_the_files(campaign: SynthManifest,
                                                     frames: dict[str, pd.DataFrame],
                                                     truth: dict) -> None:
    contacts = truth["contacts"]
    assert contacts["by_source"] == {"van_contacts": campaign.file("van_contacts").rows,
                                     "fr_canvass": campaign.file("fr_canvass").rows}
    assert contacts["rows"] == sum(contacts["by_source"].values())
    assert sum(contacts["by_iso_week"].values()) == contacts["rows"]
    results = Counter(RESULT_MAP[v.lower()] for v in frames["van_contacts"]["ResultShortName"])
    results.update(RESULT_MAP[v.lower()] for v in frames["fr_canvass"]["résultat"])
    assert dict(results) == {k: v for k, v in contacts["by_result"].items() if v}
    weeks = Counter(f"{d.isocalendar()[0]}-W{d.isocalendar()[1]:02d}" for d in (
        datetime.strptime(v, "%m/%d/%Y").date() for v in frames["van_contacts"]["DateCanvassed"]))
    weeks.update(f"{d.isocalendar()[0]}-W{d.isocalendar()[1]:02d}" for d in (
        datetime.strptime(v, "%d/%m/%Y").date() for v in frames["fr_canvass"]["date_passage"]))
    assert dict(weeks) == {k: v for k, v in contacts["by_iso_week"].items() if v}
    assert truth["donations"]["rows"] == campaign.file("donations").rows


# -- configuration and CLI -----------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"people": 0}, {"people": 10, "contacts_per_person": 0.5},
    {"people": 10, "start": date(2026, 5, 1), "end": date(2026, 4, 1)}, {"people": 10, "seed": -1},
])
def test_bad_configuration_names_the_setting(kwargs: dict) -> None:
    with pytest.raises(SynthConfigError) as err:
        SynthConfig(**kwargs)
    assert str(err.value).split(":")[0] in kwargs


def test_canary_must_be_well_formed() -> None:
    with pytest.raises(ValueError, match="email"):
        CanaryPerson("A", "B", "not-an-email", "0612345678", "1 rue X")


def test_cli_help_lists_the_options() -> None:
    from cli.main import app

    result = CliRunner().invoke(app, ["synth", "--help"])
    assert result.exit_code == 0
    for option in ("--people", "--seed", "--out", "--contacts-per-person", "--start", "--end"):
        assert option in result.output


def test_cli_writes_a_campaign(tmp_path: Path) -> None:
    from cli.main import app

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["synth", "--people", "300", "--seed", "5", "--out", str(out),
                                      "--start", "2026-02-02", "--end", "2026-03-29", "--json",
                                      "--all-sources"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["people"] == 300
    assert {f["name"] for f in doc["files"]} == {"nationbuilder_people.csv",
                                                 "van_contact_history.txt",
                                                 "porte_a_porte.csv", "donations.csv",
                                                 "action_network_people.csv",
                                                 "action_populaire.csv",
                                                 "nationbuilder_contacts.csv",
                                                 "nationbuilder_donations.csv",
                                                 "van_my_voters.txt"}
    truth = json.loads((out / "ground_truth.json").read_text(encoding="utf-8"))
    assert truth["generator"]["start"] == "2026-02-02"
    assert list(truth["contacts"]["by_iso_week"])[0] == "2026-W06"


def test_cli_default_output_keeps_ground_truth_out_of_landing(isoloir_home: Path) -> None:
    from cli.main import app

    result = CliRunner().invoke(app, ["synth", "--people", "200"])
    assert result.exit_code == 0, result.output
    landing = isoloir_home / "landing"
    # by default, exactly the four exports the ground truth describes
    assert sorted(p.name for p in landing.iterdir()) == [
        "donations.csv", "nationbuilder_people.csv", "porte_a_porte.csv",
        "van_contact_history.txt"]
    assert (isoloir_home / "synth" / "ground_truth.json").exists()


def test_cli_rejects_bad_values_with_exit_2(tmp_path: Path) -> None:
    from cli.main import app

    result = CliRunner().invoke(app, ["synth", "--people", "10", "--out", str(tmp_path),
                                      "--start", "2026-05-01", "--end", "2026-04-01"])
    assert result.exit_code == 2
    assert "end" in result.output


def test_identifiers_join_through_the_pipeline_normalizers(frames: dict[str, pd.DataFrame],
                                                           truth: dict) -> None:
    """Every phone is valid (metropolitan and overseas), every attempt's phone is a known
    person's, and only the deliberately malformed emails are rejected."""
    from transforms.normalize import normalize_email, normalize_phones

    def phones(series: pd.Series) -> pd.Series:
        # a RangeIndex: normalize_phones/normalize_email misalign results on any other index
        present = series[series != ""].reset_index(drop=True)
        normalized = normalize_phones(present)
        assert normalized.notna().all(), "a generated phone is not a valid number"
        return normalized

    people = frames["nationbuilder_people"]
    known = set(phones(people["phone_number"])) | set(phones(people["mobile_number"]))
    assert any(p.startswith(("+590", "+596", "+594", "+262")) for p in known)
    for profile, column in (("van_contacts", "Phone"), ("fr_canvass", "téléphone")):
        assert set(phones(frames[profile][column])) <= known, profile
    emails = people["email"][people["email"] != ""].reset_index(drop=True)
    assert int(normalize_email(emails).isna().sum()) == truth["people"]["dirty_malformed_email"]


def test_other_tools_exports_leave_the_core_files_byte_identical(tmp_path: Path) -> None:
    """The extra exports draw from a generator of their own: the four core files (and the
    ground truth's aggregates) are the same bytes with or without them."""
    from transforms.synth_sources import EXTRA_EXPORTS

    core = generate_campaign(SynthConfig(people=1_500, seed=3, chunk_people=1_000), tmp_path / "a")
    every = generate_campaign(SynthConfig(people=1_500, seed=3, chunk_people=1_000,
                                          extra_sources=True), tmp_path / "b")
    assert [(f.name, f.sha256) for f in every.files[:4]] == [(f.name, f.sha256) for f in core.files]
    assert sorted(f.profile for f in every.files[4:]) == sorted(EXTRA_EXPORTS)
    assert all(f.rows > 0 for f in every.files)
    truth_a = json.loads(core.ground_truth.read_text(encoding="utf-8"))
    truth_b = json.loads(every.ground_truth.read_text(encoding="utf-8"))
    truth_b["generator"].pop("extra_sources")
    assert truth_a == truth_b
