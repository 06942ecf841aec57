"""Regression: normalizers keep values whatever the frame's index (later chunks, filtered frames)."""

import pandas as pd

from transforms.normalize import normalize_email
from transforms.phones import normalize_phones


def test_values_survive_a_non_default_index() -> None:
    emails = pd.Series([" Jeanne.Dupont@Example.FR ", "not-an-email"], index=[200_000, 200_001])
    phones = pd.Series(["06 12 34 56 78", "+33 6 12 34 56 78"], index=[7, 3])
    assert normalize_email(emails).tolist()[0] == "jeanne.dupont@example.fr"
    assert normalize_email(emails).index.tolist() == [200_000, 200_001]
    assert normalize_phones(phones).tolist() == ["+33612345678", "+33612345678"]


def test_dates_parse_from_a_chunked_column() -> None:
    import pyarrow as pa

    from transforms.normalize import parse_dates

    column = pa.chunked_array([["01/02/2026", "not a date"], ["03/04/2026"]])
    assert parse_dates(column, "%m/%d/%Y").to_pylist()[::2] == [
        __import__("datetime").date(2026, 1, 2), __import__("datetime").date(2026, 3, 4)]
