"""Dates (issue #15): ISO 8601, the day/month order per file and column, two-digit years."""

from __future__ import annotations

import traceback
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from core.errors import InputFileError
from transforms.dates import (
    MixedDateOrder,
    OrderEvidence,
    decide_order,
    order_evidence,
    parse_dates,
)
from transforms.read import plan_read
from transforms.sources import NATIONBUILDER_PEOPLE, VAN_CONTACTS


def dates(values: list[str | None], fmt: str = "%m/%d/%Y", **kw: object) -> list[date | None]:
    return parse_dates(pa.array(values, type=pa.string()), fmt, **kw).to_pylist()  # type: ignore[arg-type]


def test_iso_dates_and_timestamps_with_zone_or_offset() -> None:
    assert dates(["2026-03-14", "2026-03-14T10:22:00+01:00", "2026-03-14T23:59:59Z",
                  "2026-03-14 10:22", "2026-03-14T10:22:00.123-05:00"]) == [date(2026, 3, 14)] * 5
    # the date as written, at the writer's offset: not moved to UTC
    assert dates(["2026-03-14T00:30:00+02:00"]) == [date(2026, 3, 14)]
    assert dates(["2026-02-30", "2026-03-14T", "2026-03-14 garbage"]) == [None, None, None]


def test_the_order_decides_numeric_dates() -> None:
    assert dates(["01/02/2026"], order="mdy") == [date(2026, 1, 2)]
    assert dates(["01/02/2026"], order="dmy") == [date(2026, 2, 1)]
    assert dates(["14/03/2026"], order="mdy") == [None]  # no 14th month
    assert dates(["14.03.2026", "14-03-2026", "2026/03/14"], order="dmy") == [date(2026, 3, 14)] * 3


def test_two_digit_years_pivot_and_birth_dates_never_in_the_future() -> None:
    assert dates(["01/19/68", "01/19/69", "3/4/05"]) == \
        [date(2068, 1, 19), date(1969, 1, 19), date(2005, 3, 4)]
    reference = date(2026, 6, 28)
    assert dates(["01/19/45", "01/19/85", "01/19/20", "06/29/26", "06/28/26"],
                 latest=reference) == [date(1945, 1, 19), date(1985, 1, 19), date(2020, 1, 19),
                                       date(1926, 6, 29), date(2026, 6, 28)]
    assert dates(["01/19/2045"], latest=reference) == [date(2045, 1, 19)]  # 4 digits: as written


def test_order_evidence_and_decision() -> None:
    ambiguous = order_evidence(pa.array(["01/02/2026", "03/04/2026", None]), rows=[2, 3, 4])
    assert decide_order(ambiguous, "mdy") == ("mdy", True)
    same = order_evidence(pa.array(["01/01/2026", "2026-05-17"]), rows=[2, 3])
    assert decide_order(same, "dmy") == ("dmy", False)  # nothing to assume
    mixed = order_evidence(pa.array(["12/25/2025", "01/02/2026", "25/12/2025"]), rows=[2, 3, 4])
    assert (mixed.first_mdy, mixed.first_dmy) == (2, 4)
    with pytest.raises(MixedDateOrder) as caught:
        decide_order(mixed, "mdy")
    assert caught.value.row == 4
    later = OrderEvidence(first_dmy=900).merge(OrderEvidence(first_dmy=5, first_mdy=1000))
    assert (later.first_dmy, later.first_mdy) == (900, 1000)


def _van(path: Path, days: list[str]) -> Path:
    lines = ["VanID\tDateCanvassed\tContactType\tResultShortName\tZip5"]
    lines += [f"{i}\t{d}\tWalk\tCanvassed\t69003" for i, d in enumerate(days)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_file_mixing_orders_in_one_column_is_rejected_with_the_row(tmp_path: Path) -> None:
    days = ["03/02/2026"] * 30 + ["03/14/2026"] + ["03/02/2026"] * 30 + ["14/03/2026"]
    path = _van(tmp_path / "van.txt", days)
    with pytest.raises(InputFileError) as caught:  # across chunks: the decision is the file's
        plan_read(path, VAN_CONTACTS, chunk_rows=10)
    err = caught.value
    assert (err.rule, err.row, err.column) == ("date_order", 63, "DateCanvassed")
    assert "14/03" not in "".join(traceback.format_exception(err))


def test_a_file_decided_by_its_last_row(tmp_path: Path) -> None:
    path = _van(tmp_path / "van.txt", ["03/02/2026"] * 30 + ["14/03/2026"])
    plan = plan_read(path, VAN_CONTACTS, chunk_rows=10)
    assert plan.attrs["date_orders"] == {"contact_date": "dmy"}
    assert plan.report.assumed_date_orders() == {}
    ambiguous = plan_read(_van(tmp_path / "v2.txt", ["03/02/2026"] * 5), VAN_CONTACTS)
    assert ambiguous.report.assumed_date_orders() == {"DateCanvassed": "mm/dd"}


def test_reference_date_uses_the_decided_order(tmp_path: Path) -> None:
    header = ("nationbuilder_id,email,phone_number,mobile_number,primary_zip,born_at,"
              "support_level,is_volunteer,email_opt_in,created_at,do_not_contact")
    rows = ["1,,,,69003,19/01/85,,,,01/03/2026,", "2,,,,69003,02/01/45,,,,28/02/2026 10:00,"]
    path = tmp_path / "nb.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    plan = plan_read(path, NATIONBUILDER_PEOPLE)
    assert plan.attrs["reference_date"] == date(2026, 3, 1)
    assert plan.attrs["date_orders"] == {"birth_date": "dmy", "created_at": "dmy"}
