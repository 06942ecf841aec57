from core.geography import load_geography
from core.vocabulary import age_band, iso_weeks, months


def test_code_lists_have_official_sizes() -> None:
    geo = load_geography()
    assert len(geo.regions) == 18
    assert len(geo.departements) == 101
    assert len(geo.circonscriptions) == 577
    assert {"2A", "2B", "971", "972", "973", "974", "976"} <= set(geo.departements)


def test_postcode_placement_follows_la_poste_not_the_first_two_digits() -> None:
    geo = load_geography()
    assert geo.place_postcode("75001").commune == "75101"  # Paris arrondissement
    assert geo.place_postcode("75001").departement == "75"
    assert geo.place_postcode("20000").departement == "2A"  # never "20"
    assert geo.place_postcode("20200").departement == "2B"
    assert geo.place_postcode("97100").departement == "971"
    # a postcode that crosses a département line cannot be placed
    assert not geo.place_postcode("01200").placed
    # several communes in one département: département only
    several = geo.place_postcode("01000")
    assert several.commune is None and several.departement == "01"
    assert not geo.place_postcode("99999").placed


def test_age_bands_and_periods() -> None:
    assert age_band(17) is None
    assert age_band(18) == "18-24"
    assert age_band(95) == "75+"
    from datetime import date

    assert iso_weeks(date(2026, 1, 1), date(2026, 1, 12)) == ("2026-W01", "2026-W02", "2026-W03")
    assert months(date(2025, 11, 5), date(2026, 2, 1)) == ("2025-11", "2025-12", "2026-01", "2026-02")
