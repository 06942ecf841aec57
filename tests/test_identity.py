import pandas as pd

from privacy.identity import resolve
from privacy.keys import PSEUDONYM_RE, Keyring
from privacy.pseudonymize import ID_COLUMNS

PERSON_KEYS = Keyring.from_bytes({1: bytes(range(32))}).pseudonymizer("campaign", "person")


def frame(rows: list[tuple[str | None, ...]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(ID_COLUMNS))


def test_rows_sharing_any_identifier_become_one_person() -> None:
    ids = frame([("nb:1", "e1", None, None), ("van:9", None, "p1", None),
                 ("pap:3", "e1", "p1", None), ("nb:2", "e2", None, "p2")])
    r = resolve(ids, {}, PERSON_KEYS)
    assert r.row_person[0] == r.row_person[1] == r.row_person[2]
    assert r.row_person[3] != r.row_person[0]
    assert len(r.new_persons) == 2
    assert all(PSEUDONYM_RE.match(p) for p in r.new_persons)


def test_person_id_does_not_depend_on_row_order() -> None:
    rows = [("nb:1", "e1", None, None), ("van:9", "e1", "p1", None), ("nb:2", None, None, None)]
    a = resolve(frame(rows), {}, PERSON_KEYS)
    b = resolve(frame(rows[::-1]), {}, PERSON_KEYS)
    assert set(a.row_person) == set(b.row_person)


def test_links_from_earlier_loads_are_reused_and_persons_merged() -> None:
    first = resolve(frame([("nb:1", "e1", None, None), ("nb:2", "e2", None, None)]), {}, PERSON_KEYS)
    known = dict(zip(first.new_links["pseudonym"], first.new_links["person_id"], strict=True))
    # a later file shows that e1 and e2 are the same human
    later = resolve(frame([("van:7", "e1", "p9", None), ("van:7", "e2", None, None)]), known,
                    PERSON_KEYS)
    p1, p2 = sorted({known["nb:1"], known["nb:2"]})
    assert set(later.row_person) == {p1}
    assert later.merges == {p2: p1}
    assert not later.new_persons
    relinked = dict(zip(later.new_links["pseudonym"], later.new_links["person_id"], strict=True))
    assert relinked["e2"] == p1 and relinked["van:7"] == p1 and "e1" not in relinked


def test_empty_input() -> None:
    r = resolve(frame([]), {}, PERSON_KEYS)
    assert len(r.row_person) == 0 and r.new_links.empty
