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
    persons = r.row_person.to_list()
    assert persons[0] == persons[1] == persons[2]
    assert persons[3] != persons[0]
    assert len(r.new_persons) == 2
    assert all(PSEUDONYM_RE.match(p) for p in r.new_persons)


def test_person_id_does_not_depend_on_row_order() -> None:
    rows = [("nb:1", "e1", None, None), ("van:9", "e1", "p1", None), ("nb:2", None, None, None)]
    a = resolve(frame(rows), {}, PERSON_KEYS)
    b = resolve(frame(rows[::-1]), {}, PERSON_KEYS)
    assert set(a.row_person) == set(b.row_person)


def test_links_from_earlier_loads_are_reused_and_persons_merged() -> None:
    first = resolve(frame([("nb:1", "e1", None, None), ("nb:2", "e2", None, None)]), {}, PERSON_KEYS)
    known = dict(first.new_links.select("pseudonym", "person_id").rows())
    # a later file shows that e1 and e2 are the same human
    later = resolve(frame([("van:7", "e1", "p9", None), ("van:7", "e2", None, None)]), known,
                    PERSON_KEYS)
    p1, p2 = sorted({known["nb:1"], known["nb:2"]})
    assert set(later.row_person) == {p1}
    assert later.merges == {p2: p1}
    assert later.new_persons.is_empty()
    added = dict(later.new_links.select("pseudonym", "person_id").rows())
    moved = dict(later.repointed.rows())
    assert added == {"van:7": p1, "p9": p1}
    assert moved == {"e2": p1} and "e1" not in moved


def test_empty_input() -> None:
    r = resolve(frame([]), {}, PERSON_KEYS)
    assert len(r.row_person) == 0 and r.new_links.is_empty()


def test_merging_three_existing_persons_keeps_the_smallest_and_row_order_is_kept() -> None:
    first = resolve(frame([("nb:1", "e1", None, None), ("nb:2", "e2", None, None),
                           ("nb:3", "e3", None, None)]), {}, PERSON_KEYS)
    known = dict(first.new_links.select("pseudonym", "person_id").rows())
    a, b, c = sorted({known["nb:1"], known["nb:2"], known["nb:3"]})
    later = resolve(frame([("x:1", "e1", None, None), ("x:9", "e9", None, None),
                           ("x:1", "e2", "p3", None), ("x:2", None, "p3", "e3")]), known,
                    PERSON_KEYS)
    rows = later.row_person.to_list()
    assert rows[0] == rows[2] == rows[3] == a and rows[1] not in (a, b, c)
    assert later.merges == {b: a, c: a}
    assert later.new_persons.to_list() == [rows[1]]


def test_a_hash_collision_falls_back_to_the_exact_index(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Distinct pseudonyms are found from 64-bit hashes; should two share one, the file is
    indexed again from the text, with the same result."""
    import numpy as np

    from privacy import identity

    rows = [(f"nb:{i % 40}", f"e{i % 13}" if i % 3 else None, f"p{i % 29}" if i % 5 else None,
             None) for i in range(200)]
    honest = resolve(frame(rows), {}, PERSON_KEYS)
    colliding = lambda values: (values.hash() % 7).to_numpy()  # noqa: E731
    monkeypatch.setattr(identity, "_hash", colliding)
    fallback = resolve(frame(rows), {}, PERSON_KEYS)
    assert fallback.row_person.to_list() == honest.row_person.to_list()
    assert fallback.new_links.sort("pseudonym").equals(honest.new_links.sort("pseudonym"))
    assert np.array_equal(np.unique(fallback.row_component), np.unique(honest.row_component))
