"""Bad landing files are rejected before anything is loaded: the file, the line, the rule.

Every bad line carries canary values; no message (nor any chained exception) may show them.
"""

from __future__ import annotations

import csv
import io
import random
import traceback
from pathlib import Path

import pytest

from core.errors import InputFileError
from transforms.read import (
    detect_profile,
    read_chunks,
    sniff_dialect,
    validate_whole_file,
)
from transforms.sources import FR_CANVASS, NATIONBUILDER_PEOPLE, VAN_CONTACTS

CANARY_NAME = "Xanthippe"
CANARY_EMAIL = "xanthippe.canari@canary-mail.fr"
CANARY_STREET = "rue du Canari Mauve"
CANARIES = (CANARY_NAME, CANARY_EMAIL, CANARY_STREET, "0671829304", "zzcanaryzz")

NB_HEADER = ["nationbuilder_id", "first_name", "last_name", "email", "email_opt_in",
             "phone_number", "mobile_number", "mobile_opt_in", "do_not_contact", "born_at",
             "primary_address1", "primary_zip", "support_level", "is_volunteer", "is_donor",
             "created_at", "note"]


def nb_row(i: int, *, canary: bool = False) -> list[str]:
    name = CANARY_NAME if canary else f"Prenom{i}"
    email = CANARY_EMAIL if canary else f"p{i}@example.org"
    street = CANARY_STREET if canary else f"{i} rue Haute"
    return [str(1000 + i), name, "Dupont", email, "true", "06 71 82 93 04" if canary else "",
            "", "false", "false", "04/23/1961", street, "69003", "2", "true", "false",
            "01/15/2026", "zzcanaryzz note" if canary else ""]


def nb_text(rows: int = 6, *, canary_at: int | None = None, delimiter: str = ",") -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow(NB_HEADER)
    for i in range(rows):
        writer.writerow(nb_row(i, canary=i == canary_at))
    return buf.getvalue()


def write(path: Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return path


def check_all(path: Path, source: str = "auto") -> int:
    """What every ingest does before loading anything."""
    profile = detect_profile(path, source)
    dialect = sniff_dialect(path, profile)
    return validate_whole_file(path, profile, dialect)


def rejected(path: Path, rule: str, line: int | None, source: str = "auto") -> InputFileError:
    with pytest.raises(InputFileError) as caught:
        check_all(path, source)
    err = caught.value
    assert err.rule == rule, str(err)
    assert err.file == path.name
    message = str(err)
    assert path.name in message and f"'{rule}'" in message
    if line is not None:
        assert err.row == line, message
        assert f"row {line}" in message
    shown = "".join(traceback.format_exception(err)).lower()
    for canary in CANARIES:
        assert canary.lower() not in shown, f"{canary!r} leaked into {message!r}"
    return err


def test_a_good_file_passes(tmp_path: Path) -> None:
    path = write(tmp_path / "nationbuilder.csv", nb_text(6, canary_at=2))
    assert check_all(path) == 6


# --------------------------------------------------------------------------- empty / header


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\n\n  \r\n"], ids=["zero", "bom", "blank"])
def test_empty_file(tmp_path: Path, data: bytes) -> None:
    rejected(write(tmp_path / "people.csv", data), "empty_file", None)


def test_empty_file_given_a_profile(tmp_path: Path) -> None:
    path = write(tmp_path / "people.csv", b"")
    with pytest.raises(InputFileError) as caught:
        validate_whole_file(path, NATIONBUILDER_PEOPLE,
                            sniff_dialect(write(tmp_path / "ok.csv", nb_text(1)),
                                          NATIONBUILDER_PEOPLE))
    assert caught.value.rule == "empty_file"


@pytest.mark.parametrize("tail", ["", "\n", "\n\n"])
def test_header_only(tmp_path: Path, tail: str) -> None:
    text = ",".join(NB_HEADER) + tail
    rejected(write(tmp_path / "people.csv", text), "header_only", 1)


# --------------------------------------------------------------------------- truncation / fields


def test_truncated_last_line_without_newline(tmp_path: Path) -> None:
    text = nb_text(5) + ",".join(nb_row(9, canary=True)[:6])  # cut mid-record, no newline
    rejected(write(tmp_path / "people.csv", text), "truncated_line", 7)


def test_truncated_line_in_the_middle(tmp_path: Path) -> None:
    lines = nb_text(6, canary_at=3).splitlines()
    lines[4] = ",".join(nb_row(3, canary=True)[:-3])
    err = rejected(write(tmp_path / "people.csv", "\n".join(lines) + "\n"), "truncated_line", 5)
    assert "14 fields where the header has 17" in str(err)


def test_extra_fields(tmp_path: Path) -> None:
    lines = nb_text(6, canary_at=1).splitlines()
    lines[2] = lines[2] + "," + CANARY_STREET
    rejected(write(tmp_path / "people.csv", "\n".join(lines) + "\n"), "extra_fields", 3)


def test_last_line_without_newline_but_complete_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path / "people.csv", nb_text(4).rstrip("\n"))
    assert check_all(path) == 4


# --------------------------------------------------------------------------- quotes


def test_quote_never_closed(tmp_path: Path) -> None:
    lines = nb_text(6, canary_at=2).splitlines()
    lines[3] = lines[3].replace(CANARY_STREET, '"' + CANARY_STREET)
    rejected(write(tmp_path / "people.csv", "\n".join(lines) + "\n"), "unbalanced_quote", 4)


def test_quote_inside_a_field(tmp_path: Path) -> None:
    lines = nb_text(6, canary_at=4).splitlines()
    lines[5] = lines[5].replace(CANARY_STREET, '"rue"' + CANARY_STREET)
    rejected(write(tmp_path / "people.csv", "\n".join(lines) + "\n"), "unbalanced_quote", 6)


def test_quote_never_closed_in_a_large_file(tmp_path: Path) -> None:
    """The opened quote swallows more than a record may hold: still named as a quote."""
    lines = nb_text(120_000).splitlines()  # 14 MB: more than one block of the scan
    lines[10] = lines[10].replace("rue Haute", '"rue Haute zzcanaryzz')
    rejected(write(tmp_path / "people.csv", "\n".join(lines) + "\n"), "unbalanced_quote", 11)


def test_quoted_newlines_and_escaped_quotes_are_fine(tmp_path: Path) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(NB_HEADER)
    row = nb_row(1)
    row[-1] = 'a note\nover "two" lines, with commas'
    writer.writerow(row)
    writer.writerow(nb_row(2))
    assert check_all(write(tmp_path / "people.csv", buf.getvalue())) == 2


# --------------------------------------------------------------------------- delimiter


def test_a_profile_delimiter_is_a_hint_not_a_requirement(tmp_path: Path) -> None:
    """The French-Excel re-save of a comma export (issue #15) is read, as are | and tab."""
    for delimiter in (";", "|", "\t"):
        path = write(tmp_path / "nationbuilder.csv", nb_text(4, canary_at=1, delimiter=delimiter))
        assert check_all(path) == 4
        assert check_all(path, "nationbuilder_people") == 4
        assert sniff_dialect(path, NATIONBUILDER_PEOPLE).delimiter == delimiter
    header = ["VanID", "DateCanvassed", "ContactType", "ResultShortName", "Zip5", "CanvassedBy"]
    text = ",".join(header) + "\n" + f"1,03/02/2026,Walk,Canvassed,69003,{CANARY_NAME}\n"
    assert check_all(write(tmp_path / "van.txt", text), "van_contacts") == 1


def test_no_known_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path / "nationbuilder.csv", nb_text(4, canary_at=1, delimiter=":"))
    err = rejected(path, "delimiter", 1)
    assert "none of , ; tab |" in str(err)
    rejected(path, "delimiter", 1, source="nationbuilder_people")


# --------------------------------------------------------------------------- encodings


def test_invalid_utf8_after_valid_utf8(tmp_path: Path) -> None:
    lines = nb_text(8).splitlines()
    lines[2] = lines[2].replace("Prenom1", "Zoé")
    head = ("\n".join(lines[:6]) + "\n").encode("utf-8")
    bad = lines[6].replace("Prenom5", CANARY_NAME + "é").encode("cp1252")
    data = head + bad + b"\n" + lines[7].encode() + b"\n"
    rejected(write(tmp_path / "people.csv", data), "mixed_encoding", 7)


def test_invalid_utf8_far_into_the_file(tmp_path: Path) -> None:
    """Past the sniffed head: found by the whole-file pass, with its line."""
    lines = nb_text(3000).splitlines()
    lines[1] = lines[1].replace("Prenom0", "Zoé")
    lines[2900] = lines[2900].replace("Dupont", "Dup\udce9nt")
    data = "\n".join(lines).encode("utf-8", errors="surrogateescape") + b"\n"
    rejected(write(tmp_path / "people.csv", data), "mixed_encoding", 2901)


def test_utf8_bom_then_cp1252(tmp_path: Path) -> None:
    text = nb_text(4).replace("Prenom2", CANARY_NAME + "é")
    rejected(write(tmp_path / "people.csv", b"\xef\xbb\xbf" + text.encode("cp1252")),
             "mixed_encoding", 4)


def test_utf8_sequences_in_a_cp1252_file(tmp_path: Path) -> None:
    header = ";".join(["id_contact", "date_passage", "nom", "code_postal", "résultat"])
    rows = [f"P{i};10/02/2026;Nom{i};69003;Absent" for i in range(5)]
    cp = (header + "\n" + "\n".join(rows[:3]) + "\n").encode("cp1252")
    utf = f"P9;10/02/2026;{CANARY_NAME}é;69003;Contacté\n".encode()
    data = cp + utf + (rows[4] + "\n").encode("cp1252")
    rejected(write(tmp_path / "porte.csv", data), "mixed_encoding", 5, source="fr_canvass")


def test_bytes_undefined_in_cp1252(tmp_path: Path) -> None:
    header = ";".join(["id_contact", "date_passage", "code_postal", "résultat"])
    data = (header + "\nP1;10/02/2026;69003;Absent\n").encode("cp1252") + \
        b"P2;10/02/2026;69003;Abs\x81ent\n"
    rejected(write(tmp_path / "porte.csv", data), "encoding", 3, source="fr_canvass")


def test_utf16_is_read_and_utf32_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "people.csv", nb_text(3).encode("utf-16"))
    assert check_all(path) == 3
    assert sniff_dialect(path, NATIONBUILDER_PEOPLE).encoding == "utf-16-le"
    rejected(write(tmp_path / "people32.csv", nb_text(3).encode("utf-32")), "encoding", 1)


def test_utf16_with_an_unpaired_surrogate_names_the_line(tmp_path: Path) -> None:
    data = bytearray(nb_text(5).encode("utf-16-le"))
    at = nb_text(5).index("\n", nb_text(5).index("\n") + 1) * 2 + 6  # inside line 3
    data[at:at + 2] = b"\x00\xd8"  # a lone high surrogate
    rejected(write(tmp_path / "people.csv", b"\xff\xfe" + bytes(data)), "encoding", 3)


# --------------------------------------------------------------------------- columns


def test_missing_required_column_is_named(tmp_path: Path) -> None:
    text = nb_text(4, canary_at=0).replace("primary_zip", "zone", 1)
    err = rejected(write(tmp_path / "nationbuilder_people.csv", text), "missing_column", 1,
                   source="nationbuilder_people")
    assert err.column == "primary_zip" and "primary_zip" in str(err)


def test_auto_detection_names_the_closest_profile(tmp_path: Path) -> None:
    text = nb_text(4, canary_at=0).replace("born_at", "birthday", 1)
    err = rejected(write(tmp_path / "export.csv", text), "missing_column", 1)
    assert "nationbuilder_people" in str(err) and "born_at" in str(err)


def test_duplicate_mapped_column(tmp_path: Path) -> None:
    text = nb_text(3).replace("last_name", "email", 1)
    rejected(write(tmp_path / "nationbuilder_people.csv", text), "duplicate_column", 1,
             source="nationbuilder_people")


# --------------------------------------------------------------------------- size / binary


@pytest.mark.parametrize("quoted", [False, True])
def test_one_megabyte_field(tmp_path: Path, quoted: bool) -> None:
    lines = nb_text(5).splitlines()
    big = "zzcanaryzz" * 100_000
    lines[4] = lines[4].replace("Prenom3", f'"{big}"' if quoted else big)
    rejected(write(tmp_path / "people.csv", "\n".join(lines) + "\n"), "field_too_large", 5)


def test_a_field_just_over_64_kib(tmp_path: Path) -> None:
    lines = nb_text(3).splitlines()
    lines[2] = lines[2].replace("Prenom1", "x" * (64 * 1024 + 1))
    rejected(write(tmp_path / "people.csv", "\n".join(lines) + "\n"), "field_too_large", 3)
    lines[2] = lines[2].replace("x" * (64 * 1024 + 1), "x" * (60 * 1024))
    assert check_all(write(tmp_path / "people.csv", "\n".join(lines) + "\n")) == 3


def test_binary_garbage(tmp_path: Path) -> None:
    garbage = random.Random(7).randbytes(20_000)
    rejected(write(tmp_path / "people.csv", garbage), "binary_content", None)


def test_binary_garbage_after_a_valid_header(tmp_path: Path) -> None:
    garbage = random.Random(11).randbytes(20_000)
    data = (",".join(NB_HEADER) + "\n").encode() + garbage
    rejected(write(tmp_path / "nationbuilder_people.csv", data), "binary_content", None)


def test_control_bytes_without_nul(tmp_path: Path) -> None:
    noise = bytes(random.Random(3).choice(range(1, 9)) for _ in range(5000))
    data = (",".join(NB_HEADER) + "\n").encode() + noise
    rejected(write(tmp_path / "nationbuilder_people.csv", data), "binary_content", None)


def test_a_nul_byte_deep_in_the_file(tmp_path: Path) -> None:
    lines = nb_text(3000).splitlines()
    lines[2500] = lines[2500].replace("Prenom2499", "Pre\x00nom")
    rejected(write(tmp_path / "people.csv", "\n".join(lines) + "\n"), "binary_content", 2501)


# --------------------------------------------------------------------------- read without validate


def test_read_chunks_alone_still_names_the_rule(tmp_path: Path) -> None:
    """A caller that skips validation gets the same error, never the parser's message."""
    lines = nb_text(6, canary_at=3).splitlines()
    lines[4] = ",".join(nb_row(3, canary=True)[:-4])
    path = write(tmp_path / "people.csv", "\n".join(lines) + "\n")
    with pytest.raises(InputFileError) as caught:
        list(read_chunks(path, NATIONBUILDER_PEOPLE))
    assert caught.value.rule == "truncated_line" and caught.value.row == 5
    shown = "".join(traceback.format_exception(caught.value)).lower()
    assert all(c.lower() not in shown for c in CANARIES)


def test_profiles_of_other_dialects_reject_too(tmp_path: Path) -> None:
    van = "\t".join(["VanID", "DateCanvassed", "ContactType", "ResultShortName", "Zip5"])
    van += "\n1\t03/02/2026\tWalk\tCanvassed\n"
    with pytest.raises(InputFileError) as caught:
        validate_whole_file(write(tmp_path / "van.txt", van), VAN_CONTACTS,
                            sniff_dialect(tmp_path / "van.txt", VAN_CONTACTS))
    assert caught.value.rule == "truncated_line" and caught.value.row == 2
    fr = ";".join(["id_contact", "date_passage", "code_postal", "résultat"]) + "\r\n"
    path = write(tmp_path / "pap.csv", fr, "cp1252")
    with pytest.raises(InputFileError) as caught:
        validate_whole_file(path, FR_CANVASS, sniff_dialect(path, FR_CANVASS))
    assert caught.value.rule == "header_only"


def test_a_bare_carriage_return_splits_the_record_as_the_reader_would(tmp_path: Path) -> None:
    lines = nb_text(5).splitlines()
    lines[3] = lines[3] + "zz\rcanaryzz"  # inside the (unquoted) last field
    rejected(write(tmp_path / "people.csv", "\n".join(lines) + "\n"), "truncated_line", 5)
    lines[3] = lines[3].replace("zz\rcanaryzz", '"zz\rcanaryzz"')
    assert check_all(write(tmp_path / "people.csv", "\n".join(lines) + "\n")) == 5
