"""Reading: dialect sniffing per tool, profile detection, YAML profiles, chunked reads."""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import replace
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from transforms.normalize import normalize_chunk
from transforms.profiles_yaml import ProfileError, load_profile
from transforms.read import (
    FileDialect,
    detect_profile,
    plan_read,
    read_chunk,
    read_chunks,
    sha256_file,
    sniff_dialect,
    validate_whole_file,
)
from transforms.sources import DONATIONS, FR_CANVASS, NATIONBUILDER_PEOPLE, VAN_CONTACTS

NB_HEADER = ["nationbuilder_id", "first_name", "last_name", "email", "email_opt_in",
             "phone_number", "mobile_number", "mobile_opt_in", "do_not_contact", "born_at",
             "primary_address1", "primary_city", "primary_zip", "support_level", "tag_list",
             "is_volunteer", "created_at", "note"]
VAN_HEADER = ["VanID", "DateCanvassed", "ContactType", "InputType", "ResultShortName",
              "CanvassedBy", "SurveyQuestionName", "SurveyResponseName", "Address", "City",
              "Zip5", "Phone", "Email"]
FR_HEADER = ["id_contact", "date_passage", "nom", "prénom", "adresse", "code_postal", "commune",
             "téléphone", "email", "résultat", "intention", "commentaire", "militant"]
DON_HEADER = ["donor_id", "first_name", "email", "zip", "amount", "date", "method", "recurring"]


def write_csv(path: Path, header: list[str], rows: list[list[str]], *, delimiter: str = ",",
              encoding: str = "utf-8", bom: bool = False, eol: str = "\n") -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=eol)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode(encoding))
    return path


def nb_row(i: int, note: str = "") -> list[str]:
    return [str(1000 + i), f"Secretname{i}", "Dupont", f"p{i}@example.org", "true",
            f"06 12 34 {i % 100:02d} 78", "", "false", "false", "04/23/1961",
            f"{i} rue Secrète", "Lyon", "69003", str(1 + i % 5), "canvass,donor", "true",
            f"01/{1 + i % 28:02d}/2026", note]


def nb_file(path: Path, n: int = 5, **kw: object) -> Path:
    return write_csv(path, NB_HEADER, [nb_row(i) for i in range(n)], bom=True, **kw)  # type: ignore[arg-type]


def van_file(path: Path) -> Path:
    rows = [["50", "03/02/2026", "Walk", "MiniVAN", "Canvassed", "Jean Militant", "Support ID",
             "2 - Lean Support", "1 rue Basse", "Lyon", "69003", "", ""],
            ["51", "03/03/2026", "Phone", "Phone Bank", "Not Home", "Jean Militant", "", "",
             "2 rue Basse", "Paris", "75011", "06 12 34 56 78", "x@example.org"]]
    return write_csv(path, VAN_HEADER, rows, delimiter="\t")


def fr_file(path: Path) -> Path:
    rows = [["P1", "10/02/2026", "NOM", "Prénom", "3 allée Verte", "97100", "Basse-Terre",
             "0690 12 34 56", "", "Contacté", "1", "très gentille; à revoir", "Hélène Militante"],
            ["P2", "11/02/2026", "NOM", "Éloïse", "4 allée Verte", "20000", "Ajaccio", "", "",
             "Déménagé", "", "", "Hélène Militante"]]
    return write_csv(path, FR_HEADER, rows, delimiter=";", encoding="cp1252", eol="\r\n")


def don_file(path: Path) -> Path:
    rows = [["1000", "Secretname", "a@example.org", "69003", "50.00", "2026-02-14", "card",
             "false"]]
    return write_csv(path, DON_HEADER, rows)


# --------------------------------------------------------------------------- dialects


def test_nationbuilder_dialect_is_bom_utf8_comma(tmp_path: Path) -> None:
    path = nb_file(tmp_path / "nationbuilder_people.csv")
    assert sniff_dialect(path, NATIONBUILDER_PEOPLE) == FileDialect("utf-8-sig", ",", ".", True)
    assert detect_profile(path) is NATIONBUILDER_PEOPLE


def test_van_dialect_is_tab_utf8(tmp_path: Path) -> None:
    path = van_file(tmp_path / "contact_history.txt")
    assert sniff_dialect(path, VAN_CONTACTS) == FileDialect("utf-8", "\t", ".", False)
    assert sniff_dialect(path) == FileDialect("utf-8", "\t", ".", False)
    assert detect_profile(path) is VAN_CONTACTS


def test_french_app_dialect_is_cp1252_semicolon_decimal_comma(tmp_path: Path) -> None:
    path = fr_file(tmp_path / "porte_a_porte.csv")
    assert sniff_dialect(path, FR_CANVASS) == FileDialect("cp1252", ";", ",", False)
    assert sniff_dialect(path).decimal == ","  # a ';' file without profile: French Excel
    assert detect_profile(path) is FR_CANVASS


def test_donations_dialect(tmp_path: Path) -> None:
    path = don_file(tmp_path / "export.csv")
    assert sniff_dialect(path, DONATIONS) == FileDialect("utf-8", ",", ".", False)
    assert detect_profile(path) is DONATIONS


def test_a_utf8_file_for_a_cp1252_profile_is_read_as_utf8(tmp_path: Path) -> None:
    """UTF-8 is unambiguous: a French app export re-saved as UTF-8 still reads right."""
    path = fr_file(tmp_path / "pap.csv")
    path.write_bytes(path.read_bytes().decode("cp1252").encode("utf-8"))
    assert sniff_dialect(path, FR_CANVASS).encoding == "utf-8"
    frame = next(read_chunks(path, FR_CANVASS))
    assert frame["result"].tolist() == ["Contacté", "Déménagé"]


def test_encoding_is_decided_by_the_first_non_ascii_bytes_anywhere(tmp_path: Path) -> None:
    rows = [[f"P{i}", "10/02/2026", "NOM", "Pre", "rue", "69003", "Lyon", "", "", "Absent",
             "", "", "Paul"] for i in range(3000)]
    rows[-1][9] = "Contacté"  # the only accent, far past the sampled head
    path = write_csv(tmp_path / "pap.csv", FR_HEADER, rows, delimiter=";", encoding="cp1252")
    assert sniff_dialect(path, FR_CANVASS).encoding == "cp1252"
    frames = list(read_chunks(path, FR_CANVASS))
    assert frames[-1]["result"].iloc[-1] == "Contacté"


def test_sha256_is_of_the_raw_bytes(tmp_path: Path) -> None:
    path = nb_file(tmp_path / "nb.csv")
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- profiles


def test_profile_by_name_and_unknown_name(tmp_path: Path) -> None:
    path = van_file(tmp_path / "anything.txt")
    assert detect_profile(path, "van_contacts") is VAN_CONTACTS
    with pytest.raises(ProfileError, match="known|one of"):
        detect_profile(path, "salesforce")


YAML_PROFILE = """\
name: action_network_custom
kind: people
namespace: an
description: Action Network activists export
delimiter: ","
date_format: "%Y-%m-%d"
id_column: uuid
required: [uuid, email, zip_code, consent_analytics]
fields:
  source_id: uuid
  email: email
  postcode: zip_code
  insee_code: location_citycode
  created_at: created_date
lawful_basis: consent_column
consent_column: consent_analytics
filename_hints: [action_network]
"""


def test_yaml_profile_reads_a_generic_export(tmp_path: Path) -> None:
    profile_path = tmp_path / "an.yaml"
    profile_path.write_text(YAML_PROFILE, encoding="utf-8")
    rows = [["u1", "Ann", "a@example.org", "20000", "2A004", "2026-01-05", "oui", "x"],
            ["u2", "Bob", "b@example.org", "75011", "", "2026-02-07", "non", "y"]]
    data = write_csv(tmp_path / "action_network.csv",
                     ["uuid", "first_name", "email", "zip_code", "location_citycode",
                      "created_date", "consent_analytics", "can2_user_tags"], rows)
    profile = detect_profile(data, str(profile_path))
    assert profile.name == "action_network_custom" and profile.namespace == "an"
    frame = next(read_chunks(data, profile))
    assert frame["consent"].tolist() == ["oui", "non"]
    assert frame["insee_code"].tolist()[0] == "2A004" and pd.isna(frame["insee_code"].iloc[1])
    assert "first_name" not in frame.columns and "Ann" not in frame.to_string()
    assert frame.attrs["reference_date"] == date(2026, 2, 7)


@pytest.mark.parametrize(("change", "complaint"), [
    (("namespace: an", "namespace: An-1"), "namespace"),
    (("  email: email", "  surname: last_name"), "surname"),
    (("kind: people", "kind: events"), "kind"),
    (("filename_hints", "colour: blue\nfilename_hints"), "colour"),
    (("id_column: uuid", "id_column: email_id"), "id_column"),
    (("name: action_network_custom", "name: van_contacts"), "built-in"),
    (("lawful_basis: consent_column\n", "lawful_basis: consent_column\nvalue_maps: "
      "{result: {agreed: happy}}\n"), "vocabulary"),
    (('date_format: "%Y-%m-%d"', "date_format: YYYY-MM-DD"), "date_format"),
    (("fields:", "fields: [\n"), "YAML"),
])
def test_bad_yaml_profiles_name_the_key(tmp_path: Path, change: tuple[str, str],
                                        complaint: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(YAML_PROFILE.replace(*change), encoding="utf-8")
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert complaint in str(caught.value) and "bad.yaml" in str(caught.value)


def test_missing_yaml_profile(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="cannot read"):
        detect_profile(nb_file(tmp_path / "nb.csv"), str(tmp_path / "nope.yaml"))


# --------------------------------------------------------------------------- chunked reads


def test_chunks_carry_internal_names_only(tmp_path: Path) -> None:
    path = nb_file(tmp_path / "nb.csv", 3)
    frame = next(read_chunks(path, NATIONBUILDER_PEOPLE))
    assert set(frame.columns) == set(NATIONBUILDER_PEOPLE.fields) | {"row_number"}
    assert frame["row_number"].dtype == "int64"
    assert frame["source_id"].tolist() == ["1000", "1001", "1002"]
    assert frame["postcode"].tolist() == ["69003"] * 3
    text = frame.to_string()
    assert "Secretname" not in text and "Secrète" not in text and "canvass" not in text
    assert frame["is_donor"].isna().all()  # optional column absent from this export
    assert frame["phone2"].isna().all()  # empty cells are missing, not ""


def test_row_numbers_are_lines_even_across_multiline_notes_and_blank_lines(tmp_path: Path) -> None:
    rows = [nb_row(0, "one\nnote\non three lines"), nb_row(1), nb_row(2, 'say "hi"\r\nbye'),
            nb_row(3)]
    path = write_csv(tmp_path / "nb.csv", NB_HEADER, rows, bom=True, eol="\r\n")
    data = path.read_bytes().replace(b"\r\n1003", b"\r\n\r\n\r\n1003")  # two blank lines
    path.write_bytes(data)
    dialect = sniff_dialect(path, NATIONBUILDER_PEOPLE)
    assert validate_whole_file(path, NATIONBUILDER_PEOPLE, dialect) == 4
    frame = next(read_chunks(path, NATIONBUILDER_PEOPLE, dialect))
    assert frame["row_number"].tolist() == [2, 5, 6, 10]
    assert frame["source_id"].tolist() == ["1000", "1001", "1002", "1003"]
    lines = data.decode("utf-8-sig").split("\n")
    for line_no, source_id in zip(frame["row_number"], frame["source_id"], strict=True):
        assert lines[line_no - 1].startswith(source_id)


def test_row_numbers_across_scan_blocks(tmp_path: Path) -> None:
    """Over 8 MiB with a multi-line record every few thousand: lines stay exact."""
    n = 70_000
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(nb_row(0)[1:-1])
    plain = buf.getvalue() + "," + "x" * 60 + "\n"
    split = buf.getvalue() + ',"a\nb"\n'
    body = "".join(f"{i}," + (split if i % 5000 == 7 else plain) for i in range(n))
    path = tmp_path / "nb.csv"
    path.write_text(",".join(NB_HEADER) + "\n" + body, encoding="utf-8")
    assert path.stat().st_size > 8 * 1024 * 1024
    dialect = sniff_dialect(path, NATIONBUILDER_PEOPLE)
    assert validate_whole_file(path, NATIONBUILDER_PEOPLE, dialect) == n
    frames = read_chunks(path, NATIONBUILDER_PEOPLE, dialect, chunk_rows=30_000)
    got = pd.concat(f[["source_id", "row_number"]] for f in frames).reset_index(drop=True)
    assert got["source_id"].tolist() == [str(i) for i in range(n)]
    expected = [i + 2 + len(range(7, i, 5000)) for i in range(n)]  # one extra line per split
    assert got["row_number"].tolist() == expected


def test_chunked_read_equals_one_chunk(tmp_path: Path) -> None:
    path = nb_file(tmp_path / "nb.csv", 23)
    whole = next(read_chunks(path, NATIONBUILDER_PEOPLE, chunk_rows=1000))
    for size in (1, 4, 7, 23):
        frames = list(read_chunks(path, NATIONBUILDER_PEOPLE, chunk_rows=size))
        assert [len(f) for f in frames][:-1] == [size] * (len(frames) - 1)
        pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), whole)
        assert all(f.attrs["reference_date"] == date(2026, 1, 23) for f in frames)


def test_cp1252_values_are_decoded_and_free_text_dropped(tmp_path: Path) -> None:
    path = fr_file(tmp_path / "porte_a_porte.csv")
    frame = next(read_chunks(path, FR_CANVASS))
    assert frame["result"].tolist() == ["Contacté", "Déménagé"]
    assert frame["canvasser_id"].tolist() == ["Hélène Militante"] * 2
    assert frame["row_number"].tolist() == [2, 3]
    assert "gentille" not in frame.to_string() and "Éloïse" not in frame.to_string()


def test_old_mac_line_endings(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "don.csv", DON_HEADER,
                     [["1", "A", "", "69003", "5", "2026-01-01", "card", "true"],
                      ["2", "B", "", "69003", "7", "2026-01-02", "cash", "false"]], eol="\r")
    assert validate_whole_file(path, DONATIONS, sniff_dialect(path, DONATIONS)) == 2
    frame = next(read_chunks(path, DONATIONS))
    assert frame["row_number"].tolist() == [2, 3] and frame["amount"].tolist() == ["5", "7"]


def test_a_given_reference_date_skips_the_first_pass(tmp_path: Path) -> None:
    path = nb_file(tmp_path / "nb.csv", 3)
    frame = next(read_chunks(path, NATIONBUILDER_PEOPLE, reference_date=date(2030, 1, 1)))
    assert frame.attrs["reference_date"] == date(2030, 1, 1)
    assert next(read_chunks(path, NATIONBUILDER_PEOPLE)).attrs["reference_date"] == \
        date(2026, 1, 3)
    assert "reference_date" not in next(read_chunks(don_file(tmp_path / "d.csv"), DONATIONS)).attrs


def test_blank_lines_before_the_header(tmp_path: Path) -> None:
    path = don_file(tmp_path / "don.csv")
    path.write_bytes(b"\r\n\r\n" + path.read_bytes())
    dialect = sniff_dialect(path, DONATIONS)
    assert validate_whole_file(path, DONATIONS, dialect) == 1
    frame = next(read_chunks(path, DONATIONS, dialect))
    assert frame["row_number"].tolist() == [4] and frame["amount"].tolist() == ["50.00"]


# --------------------------------------------------------------------------- issue #15


def test_utf16_is_read_in_chunks_without_a_copy(tmp_path: Path) -> None:
    """Excel's "Unicode text": UTF-16 LE with BOM, tab, CRLF; accents and multi-line notes."""
    rows = [nb_row(i, note="à revoir\nsur deux lignes, « guillemets »" if i % 7 == 0 else "")
            for i in range(95)]
    original = write_csv(tmp_path / "nb.csv", NB_HEADER, rows, bom=True)
    buf = io.StringIO()
    csv.writer(buf, delimiter="\t", lineterminator="\r\n").writerows([NB_HEADER, *rows])
    work = tmp_path / "u16"
    work.mkdir()
    path = work / "nationbuilder_unicode.txt"
    path.write_bytes(buf.getvalue().encode("utf-16"))
    dialect = sniff_dialect(path, NATIONBUILDER_PEOPLE)
    assert dialect.to_dict() == {"encoding": "utf-16-le", "delimiter": "tab", "decimal": ".",
                                 "bom": True, "line_ending": "CRLF"}
    assert validate_whole_file(path, NATIONBUILDER_PEOPLE, dialect) == 95
    got = pd.concat(read_chunks(path, NATIONBUILDER_PEOPLE, chunk_rows=10), ignore_index=True)
    want = pd.concat(read_chunks(original, NATIONBUILDER_PEOPLE, chunk_rows=10),
                     ignore_index=True)
    pd.testing.assert_frame_equal(got.drop(columns="row_number"),
                                  want.drop(columns="row_number"))
    assert got["row_number"].tolist() == want["row_number"].tolist()
    assert sorted(p.name for p in work.iterdir()) == [path.name]  # nothing transcoded to disk
    be = work / "be.txt"
    be.write_bytes(buf.getvalue().encode("utf-16-be"))  # no BOM: known by its zero bytes
    assert sniff_dialect(be, NATIONBUILDER_PEOPLE).encoding == "utf-16-be"
    assert len(pd.concat(read_chunks(be, NATIONBUILDER_PEOPLE, chunk_rows=10))) == 95


def test_latin1_profile_hint_and_cp1252_default(tmp_path: Path) -> None:
    path = fr_file(tmp_path / "pap.csv")
    assert sniff_dialect(path, FR_CANVASS).encoding == "cp1252"
    latin = replace(FR_CANVASS, name="fr_latin", encoding="latin-1")
    assert sniff_dialect(path, latin).encoding == "latin-1"
    frame = next(read_chunks(path, latin))
    assert frame["canvasser_id"].tolist() == ["Hélène Militante"] * 2


def test_headers_match_case_accents_and_aliases(tmp_path: Path) -> None:
    header = ["ID_Contact", "Date Passage", "Nom", "Code postal", "Téléphone portable",
              "Courriel", "Resultat", "Militant", "Colonne 0612345678"]
    rows = [["P1", "10/02/2026", "NOM", "69003", "06 12 34 56 78", "a@example.org", "Absent",
             "Hélène", "secret"]]
    path = write_csv(tmp_path / "export.csv", header, rows, delimiter=";")
    assert detect_profile(path) is FR_CANVASS
    plan = plan_read(path, FR_CANVASS)
    assert plan.report.aliases == {"id_contact": "ID_Contact", "date_passage": "Date Passage",
                                   "code_postal": "Code postal", "téléphone": "Téléphone portable",
                                   "email": "Courriel", "résultat": "Resultat",
                                   "militant": "Militant"}
    assert plan.report.ignored == ("Nom", "(column 9)")  # a value-like name is not echoed
    frame = read_chunk(plan, 0)
    assert frame[["phone", "email", "result"]].iloc[0].tolist() == \
        ["06 12 34 56 78", "a@example.org", "Absent"]
    assert "secret" not in frame.astype(str).to_numpy().ravel().tolist()


def test_decimal_comma_with_thousands_is_decided_per_file(tmp_path: Path) -> None:
    rows = [["1000", "X", "a@example.org", "69003", amount, "14/02/2026", "card", "false"]
            for amount in ("50", "1 234,50", "1.234,50", "12,5", "7")]
    path = write_csv(tmp_path / "dons.csv", DON_HEADER, rows, delimiter=";")
    plan = plan_read(path, DONATIONS)
    assert plan.dialect.decimal == "," and plan.attrs["decimal"] == ","
    frame, _ = normalize_chunk(read_chunk(plan, 0), DONATIONS, path.name)
    assert frame["amount_cents"].tolist() == [5000, 123450, 123450, 1250, 700]
    assert frame["month"].tolist() == ["2026-02"] * 5
