"""Countries (ISO 3166 alpha-2) that leisim knows, with their litigation currency and region.

`EU` is not a country: disputes before the UPC are booked to the country of the local division
(CALIBRATION.md: 72-80% of UPC actions are in German local divisions).
"""

from __future__ import annotations

from typing import NamedTuple


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

DISPUTE_TYPES: tuple[str, ...] = ("patent", "trademark", "trade_secret", "design", "copyright")
