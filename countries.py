"""Countries (ISO 3166 alpha-2) that leisim knows, with their litigation currency and region.

`EU` is not a country: disputes before the UPC are booked to the country of the local division
(docs/CALIBRATION.md: 72-80% of UPC actions are in German local divisions).
"""

from __future__ import annotations

from typing import NamedTuple

from .vocabulary import DISPUTE_TYPES  # noqa: F401 - the types a scenario may name (vocabulary.py)


class Country(NamedTuple):
    name: str
    currency: str
    region: str


COUNTRIES: dict[str, Country] = {
    "US": Country("United States", "USD", "north_america"),
    "CA": Country("Canada", "CAD", "north_america"),
    "MX": Country("Mexico", "MXN", "latin_america"),
    "BR": Country("Brazil", "BRL", "latin_america"),
    "DE": Country("Germany", "EUR", "europe"),
    "FR": Country("France", "EUR", "europe"),
    "NL": Country("Netherlands", "EUR", "europe"),
    "IT": Country("Italy", "EUR", "europe"),
    "ES": Country("Spain", "EUR", "europe"),
    "BE": Country("Belgium", "EUR", "europe"),
    "SE": Country("Sweden", "SEK", "europe"),
    "CH": Country("Switzerland", "CHF", "europe"),
    "PL": Country("Poland", "PLN", "europe"),
    "GB": Country("United Kingdom", "GBP", "europe"),
    "RU": Country("Russia", "RUB", "europe"),
    "TR": Country("Turkey", "TRY", "europe"),
    "JP": Country("Japan", "JPY", "asia_pacific"),
    "KR": Country("South Korea", "KRW", "asia_pacific"),
    "IN": Country("India", "INR", "asia_pacific"),
    "SG": Country("Singapore", "SGD", "asia_pacific"),
    "AU": Country("Australia", "AUD", "asia_pacific"),
    "VN": Country("Vietnam", "VND", "asia_pacific"),
    "TH": Country("Thailand", "THB", "asia_pacific"),
    "MY": Country("Malaysia", "MYR", "asia_pacific"),
    "ID": Country("Indonesia", "IDR", "asia_pacific"),
    "AE": Country("United Arab Emirates", "AED", "middle_east_africa"),
    "SA": Country("Saudi Arabia", "SAR", "middle_east_africa"),
    "ZA": Country("South Africa", "ZAR", "middle_east_africa"),
    "CN": Country("China", "CNY", "asia_pacific"),
}

CURRENCIES: frozenset[str] = frozenset(c.currency for c in COUNTRIES.values())



# Median duration of a dispute from filing to closing, in years, for the plain one-stage cells of
# fixed scenarios (the payment pattern for reserves). docs/CALIBRATION.md "Severity and duration":
# US non-merits cases ~1 yr and merits cases 915 days (RPX 2021), time to trial ~2.4 yr (PwC 2015),
# so ~1.3 yr over the US outcome mix [J]; Germany ~15 months (Munich); UPC ~14 months (417 days to
# merits); Japan 12-16 months. Other countries: judgment (1.5 yr). Log-sd DURATION_SIGMA [J].
DURATION_MEDIAN_YEARS: dict[str, float] = {
    "US": 1.3, "DE": 1.25, "FR": 1.5, "NL": 1.2, "GB": 1.5, "JP": 1.2, "KR": 1.2, "IN": 2.5, "BR": 2.5,
}
DEFAULT_DURATION_YEARS = 1.5
DURATION_SIGMA = 0.6


def duration_median_years(country: str) -> float:
    return DURATION_MEDIAN_YEARS.get(country, DEFAULT_DURATION_YEARS)
