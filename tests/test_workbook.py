"""Issue #15: Excel workbooks in landing/ read as the CSV they were saved from.

Cells map to the CSV path's values (number cells holding ids, date cells, postcodes as text),
formulas read their cached values, a protected or corrupt workbook is quarantined with its
rule, a profile's ``sheet`` is honoured, and the converted sheet never outlives the read.
"""

from __future__ import annotations

import io
import stat
import zipfile
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from core.errors import InputFileError
from transforms.exports import open_export
from transforms.normalize import normalize_chunk
from transforms.read import read_chunk
from transforms.workbook import sheet_as_csv

openpyxl = pytest.importorskip("openpyxl")

DONATION_HEADER = ["donor_id", "first_name", "email", "zip", "amount", "date", "method",
                   "recurring"]


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    lines = [",".join(header)] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _xlsx(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def _normalized(path: Path, work: Path, source: str = "auto") -> pd.DataFrame:
    with open_export(path, source, work_dir=work) as opened:
        plan = opened.plan(1000, validate=True)
        frame = normalize_chunk(read_chunk(plan, 0), opened.profile, path.name)[0]
    return frame


def test_number_date_and_text_cells_read_as_the_csv_does(tmp_path: Path) -> None:
    text = _csv(tmp_path / "donations.csv", DONATION_HEADER, [
        ["123", "Zephyrine", "z@canary-mail.fr", "01000", "12.50", "2026-03-14", "card", "false"],
        ["124", "Anselme", "a@canary-mail.fr", "75011", "1000", "2026-03-15", "cheque", "true"],
    ])
    book = _xlsx(tmp_path / "donations.xlsx", {"Dons": [
        DONATION_HEADER,
        [123, "Zephyrine", "z@canary-mail.fr", "01000", 12.5, date(2026, 3, 14), "card", False],
        [124.0, "Anselme", "a@canary-mail.fr", "75011", 1000, datetime(2026, 3, 15), "cheque",
         True],
    ]})
    expected = _normalized(text, tmp_path / "work")
    got = _normalized(book, tmp_path / "work")
    pd.testing.assert_frame_equal(got, expected)
    assert got["source_id"].tolist() == ["nb:123", "nb:124"]  # never nb:123.0
    assert got["commune"].iloc[0] is not None and got["departement"].iloc[0] == "01"
    assert got["amount_cents"].tolist() == [1250, 100000]


def test_a_formula_reads_its_cached_value(tmp_path: Path) -> None:
    book = _xlsx(tmp_path / "donations.xlsx", {"Dons": [
        DONATION_HEADER,
        [123, "Zephyrine", "z@canary-mail.fr", "01000", "=10+2.5", date(2026, 3, 14), "card",
         False],
    ]})
    # openpyxl writes formulas without a cached value; write the one Excel would have saved
    data = io.BytesIO()
    with zipfile.ZipFile(book) as src, zipfile.ZipFile(data, "w") as dst:
        for item in src.infolist():
            content = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                assert b"<f>10+2.5</f><v />" in content
                content = content.replace(b"<f>10+2.5</f><v />", b"<f>10+2.5</f><v>12.5</v>")
            dst.writestr(item, content)
    book.write_bytes(data.getvalue())
    assert _normalized(book, tmp_path / "work")["amount_cents"].tolist() == [1250]


def test_the_profile_sheet_is_read_else_the_first(tmp_path: Path) -> None:
    rows = [DONATION_HEADER, [7, "X", "x@example.org", "75011", 5, date(2026, 1, 2), "card",
                              False]]
    book = _xlsx(tmp_path / "dons.xlsx", {"Notes": [["note", "auteur"], ["a", "b"]], "Dons": rows})
    profile = tmp_path / "dons.yaml"
    profile.write_text(
        "name: dons_xlsx\nkind: donations\nnamespace: nb\nid_column: donor_id\n"
        "date_format: '%Y-%m-%d'\nrequired: [donor_id, amount, date, method]\n"
        "fields: {source_id: donor_id, email: email, postcode: zip, donation_date: date,"
        " amount: amount, method: method, recurring: recurring}\nsheet: Dons\n",
        encoding="utf-8")
    with open_export(book, str(profile), work_dir=tmp_path / "work") as opened:
        assert opened.sheet == "Dons"
        assert opened.sniff().to_dict()["sheet"] == "Dons"
    with pytest.raises(InputFileError) as err:  # the first sheet holds no export
        with open_export(book, "auto", work_dir=tmp_path / "work"):
            pass
    assert err.value.rule == "missing_column"


def test_a_missing_profile_sheet_is_named(tmp_path: Path) -> None:
    book = _xlsx(tmp_path / "dons.xlsx", {"Feuil1": [DONATION_HEADER]})
    with pytest.raises(InputFileError) as err:
        with sheet_as_csv(book, tmp_path / "work", "Dons"):
            pass
    assert err.value.rule == "workbook_sheet"


def test_the_converted_sheet_is_private_and_deleted(tmp_path: Path) -> None:
    book = _xlsx(tmp_path / "donations.xlsx", {"Dons": [
        DONATION_HEADER, [123, "Zephyrine", "z@canary-mail.fr", "01000", 12.5,
                          date(2026, 3, 14), "card", False]]})
    work = tmp_path / "work"
    with sheet_as_csv(book, work) as converted:
        assert converted.path.name == "donations.xlsx"  # messages name the workbook
        assert stat.S_IMODE(converted.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(converted.path.parent.stat().st_mode) == 0o700
        assert converted.path.read_text(encoding="utf-8").splitlines()[1] == \
            "123,Zephyrine,z@canary-mail.fr,01000,12.5,2026-03-14,card,false"
    assert list(work.iterdir()) == []


def test_row_numbers_are_the_sheet_rows(tmp_path: Path) -> None:
    book = _xlsx(tmp_path / "donations.xlsx", {"Dons": [
        DONATION_HEADER,
        [1, "A", "a@example.org", "75011", 5, date(2026, 1, 2), "card", False],
        [None] * 8,
        [2, "B\nsur deux lignes", "b@example.org", "75011", 5, date(2026, 1, 3), "card", False],
        [3, "C", "c@example.org", "75011", "douze", date(2026, 1, 4), "card", False],
    ]})
    with pytest.raises(InputFileError) as err:
        _normalized(book, tmp_path / "work")
    assert err.value.rule == "amount_format" and err.value.row == 5
    assert "douze" not in str(err.value) and err.value.file == "donations.xlsx"


def test_a_protected_workbook_is_rejected_as_encrypted(tmp_path: Path) -> None:
    msoffcrypto = pytest.importorskip("msoffcrypto.format.ooxml")
    plain = _xlsx(tmp_path / "plain.xlsx", {"Dons": [DONATION_HEADER]})
    locked = tmp_path / "donations_locked.xlsx"
    with plain.open("rb") as src, locked.open("wb") as dst:
        msoffcrypto.OOXMLFile(src).encrypt("secret", dst)
    with pytest.raises(InputFileError) as err:
        with open_export(locked, work_dir=tmp_path / "work"):
            pass
    assert err.value.rule == "workbook_encrypted"


@pytest.mark.parametrize("content", [b"PK\x03\x04 truncated zip", b"not a workbook at all",
                                     b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600])
def test_a_corrupt_workbook_is_unreadable(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "broken.xlsx"
    bad.write_bytes(content)
    with pytest.raises(InputFileError) as err:
        with open_export(bad, work_dir=tmp_path / "work"):
            pass
    assert err.value.rule == "workbook_unreadable"
    assert list((tmp_path / "work").iterdir()) == []


def test_the_landing_listing_and_the_raw_task_take_workbooks(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    from core.settings import load_settings
    from pipeline.tasks import QUARANTINED, list_landing_files, validate_raw_file

    monkeypatch.setenv("ISOLOIR_HOME", str(tmp_path / "home"))
    settings = load_settings()
    settings.ensure_dirs()
    good = _xlsx(settings.landing / "dons.xlsx", {"Dons": [
        DONATION_HEADER, [123, "Z", "z@example.org", "01000", 12.5, date(2026, 3, 14), "card",
                          False]]})
    bad = settings.landing / "locked.xlsx"
    bad.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "EncryptedPackage".encode("utf-16-le"))
    assert list_landing_files(settings) == [str(good), str(bad)]
    checked = validate_raw_file(str(good), settings)
    assert checked["status"] == "valid" and checked["label"] == "dons.xlsx · donations"
    assert checked["dialect"]["format"] == "xlsx"
    assert checked["profile_detection"]["decided_by"] == ["donor_id", "amount", "date", "method"]
    rejected = validate_raw_file(str(bad), settings)
    assert rejected["status"] == QUARANTINED and "workbook_encrypted" in rejected["rule"]
    assert (settings.quarantine / "locked.xlsx").exists()
    assert list((settings.work / "workbooks").iterdir()) == []
