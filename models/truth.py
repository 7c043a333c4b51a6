"""Fixed figures of the model, and the documented "true" parameters of the synthetic history.

Everything here is either sourced in docs/CALIBRATION.md ([S]), arithmetic on such a
figure ([E]), or judgment ([J], kept wide in the priors). The synthetic default history
(:mod:`leisim.models.history`) is drawn from ``TRUTH``: it is SYNTHETIC, calibrated to public
aggregates, and implies nothing about any real insured.

Units: frequencies are disputes per policy-year per CNY million of export revenue to the
country; costs are CNY at the baseline FX rates below; durations are years.
"""

from __future__ import annotations

import math

from ..countries import COUNTRIES
from ..vocabulary import CAMPAIGN_KINDS, STAGES  # noqa: F401 - re-exported with the model's other constants
from ..vocabulary import MODELLED_DISPUTE_TYPES as DISPUTE_TYPES  # noqa: F401 - the fitted types

REFERENCE_SECTOR = "machinery"  # sector effects are relative to it (identifies the country rates)
# Campaign kind -> (country, dispute type, targeted sectors (None: all)). Schedule A complaints
# (N.D. Ill., 85% of design cases 2020-22 [S, Lex Machina]) name e-commerce sellers; ITC 337
# investigations name manufacturers' imports (22 China-involved in 2022 [S]).
CAMPAIGN_TARGETS = {"schedule_a": ("US", "trademark", ("e_commerce",)), "itc_337": ("US", "patent", None)}

# Campaign dispute durations (years, median and log-sd): a Schedule A defence ~3 months [S]; an ITC
# 337 investigation completes in 14-16 months [S]. Campaign durations are not in the history: fixed.
CAMPAIGN_DURATION = {"schedule_a": (0.25, 0.5), "itc_337": (1.25, 0.2)}

# CNY per unit of currency, the baseline FX for costs [J: 2025 levels, rounded].
BASE_FX_CNY = {
    "USD": 7.1, "EUR": 7.7, "GBP": 9.0, "JPY": 0.048, "KRW": 0.0053, "INR": 0.085, "BRL": 1.3,
    "CAD": 5.2, "MXN": 0.39, "SEK": 0.68, "CHF": 8.1, "PLN": 1.8, "RUB": 0.08, "TRY": 0.21,
    "SGD": 5.3, "AUD": 4.7, "VND": 0.00028, "THB": 0.2, "MYR": 1.55, "IDR": 0.00044,
    "AED": 1.93, "SAR": 1.89, "ZAR": 0.39, "CNY": 1.0,
}
# Annual log-volatility against CNY. [S/J] USD/CNH 1m implied 8.9% (Nov 2024), EUR/CNY ~10%
# (Jan 2024); CALIBRATION's priors [E]: USD/CNY 3-5%, EUR/CNY 6-9%. Others [J].
FX_VOLATILITY = {
    "USD": 0.04, "EUR": 0.075, "GBP": 0.08, "JPY": 0.09, "KRW": 0.07, "INR": 0.05, "BRL": 0.13,
    "CAD": 0.06, "MXN": 0.12, "SEK": 0.09, "CHF": 0.08, "PLN": 0.09, "RUB": 0.2, "TRY": 0.2,
    "SGD": 0.05, "AUD": 0.09, "VND": 0.05, "THB": 0.07, "MYR": 0.06, "IDR": 0.07,
    "AED": 0.04, "SAR": 0.04, "ZAR": 0.13, "CNY": 0.0,
}
# Loser-pays forums: (share of own costs recovered when the insured wins, adverse costs as a
# multiple of own costs when it loses). Countries not listed follow the American rule.
# DE: loser pays statutory fees only: ~EUR 42k at EUR 500k value against own counsel
# EUR 50-160k [S] -> ~0.4 [E]. GB: costs follow the event, 60-70% recoverable [E]; the other side
# spends about as much [J]. Others [J], wide.
FEE_SHIFTING = {
    "DE": (0.4, 0.45), "GB": (0.65, 0.65), "FR": (0.25, 0.25), "NL": (0.5, 0.5), "IT": (0.25, 0.25),
    "ES": (0.25, 0.25), "BE": (0.25, 0.25), "SE": (0.4, 0.4), "CH": (0.3, 0.3), "JP": (0.1, 0.1),
    "KR": (0.2, 0.2), "BR": (0.3, 0.3), "AU": (0.5, 0.5), "CA": (0.3, 0.3),
}


def fee_shifting(country: str) -> tuple[float, float]:
    return FEE_SHIFTING.get(country, (0.0, 0.0))


def region(country: str) -> str:
    return COUNTRIES[country].region


# --------------------------------------------------------------------------------------------
# The truth behind the synthetic history.

_US_USD_TO_CNY = BASE_FX_CNY["USD"]

TRUTH = {
    # Reference-sector rate per CNY million. US patent 4e-4: ~2,452 defendant-instances against
    # ~600,000 trading firms (~0.4%/yr) [S, CIPS 2024; MOFCOM], 0.3-1.5% for manufacturer-exporters
    # [E]; at a median US export revenue of ~CNY 20M, 4e-4 gives ~0.8%/yr. Germany: 551-841 suits a
    # year [S, JUVE] with ~10% against Chinese defendants [J]. Others [J] from the same base.
    "rate": {
        "patent": {"US": 4.0e-4, "DE": 2.0e-4, "GB": 5.0e-5, "FR": 5.0e-5, "NL": 8.0e-5, "IT": 3.0e-5,
                   "JP": 6.0e-5, "KR": 4.0e-5, "IN": 5.0e-5, "BR": 3.0e-5},
        # US trademark: 757 of 1,173 US cases in 2023 were trademark [S]; concentrated in e-commerce
        # (514 of 559 US e-commerce suits in 2022 [S]) through the sector effect below.
        "trademark": {"US": 1.0e-4, "DE": 3.0e-5, "GB": 1.5e-5, "FR": 1.5e-5, "NL": 1.0e-5, "IT": 1.0e-5,
                      "JP": 8.0e-6, "KR": 8.0e-6, "IN": 1.2e-5, "BR": 1.0e-5},
        # 23 of 1,173 US cases in 2023 were trade-secret cases [S].
        "trade_secret": {"US": 2.0e-5, "DE": 5.0e-6, "GB": 4.0e-6, "FR": 3.0e-6, "NL": 3.0e-6, "IT": 2.0e-6,
                         "JP": 4.0e-6, "KR": 4.0e-6, "IN": 2.0e-6, "BR": 2.0e-6},
    },
    # log relativity to the reference sector, by dispute type [J]; e-commerce trademark x60 [E].
    "sector": {
        "patent": {"electronics": 0.4, "medical_devices": 0.2, "software_telecom": 0.5, "new_energy": 0.3,
                   "e_commerce": -0.5},
        "trademark": {"electronics": 0.5, "medical_devices": 0.0, "software_telecom": 0.2, "new_energy": 0.0,
                      "e_commerce": math.log(60.0)},
        "trade_secret": {"electronics": 0.5, "medical_devices": 0.3, "software_telecom": 0.7, "new_energy": 0.5,
                         "e_commerce": -1.0},
    },
    # NB1 dispersion: Var(N) = E(N) (1 + delta) for every policy-year [J]: repeated suits against
    # the same seller make trademarks the most overdispersed.
    "dispersion": {"patent": 0.3, "trademark": 1.5, "trade_secret": 0.3},
    "year_sigma": 0.25,  # trade-tension years: US suits +83% 2019->2021 [S] is ~0.3 a year [E]
    # Campaigns per year per CNY million of target exposure; sellers hit = 1 + NB(mean, k) [J].
    # Schedule A: 938 filed in 2022, dozens to hundreds of defendants each [S]; ITC 337: 22
    # China-involved investigations, 107 Chinese-firm instances in 2022 (~5 per case) [S].
    "campaign_rate": {"schedule_a": 4.0e-3, "itc_337": 4.0e-5},
    "campaign_size": {"schedule_a": (3.0, 1.0), "itc_337": (1.5, 2.0)},
    # Stage at which a dispute ends (early, discovery, trial, appeal). US patents: ~half settle,
    # 26% voluntary and 12% contested dismissals, 3% decided on the merits [S, RPX 2021].
    "stage_probability": {
        "patent": (0.55, 0.27, 0.12, 0.06),
        "trademark": (0.72, 0.17, 0.08, 0.03),
        "trade_secret": (0.45, 0.30, 0.17, 0.08),
    },
    # Country offsets to the logits of discovery, trial, appeal against early [J]: German courts
    # decide most cases quickly; Japan ~70% judgment, 30% settlement [S].
    "stage_offset": {"DE": (0.3, 1.0, 0.3), "JP": (0.2, 1.2, 0.3), "GB": (0.2, 0.6, 0.2), "KR": (0.0, 0.5, 0.0),
                     "NL": (0.0, 0.4, 0.0), "FR": (0.0, 0.3, 0.0), "IT": (0.0, 0.2, 0.2), "IN": (0.3, 0.0, 0.3),
                     "BR": (0.2, 0.2, 0.2), "US": (0.0, 0.0, 0.0)},
    # US patent medians by stage, CNY: AIPLA 2015 $1-10M at risk: $950k through discovery, $2.0M
    # through trial [S]; early exits ~$300k and appeals ~$3.0M [J].
    "us_patent_stage_median_cny": tuple(x * _US_USD_TO_CNY for x in (3.0e5, 9.5e5, 2.0e6, 3.0e6)),
    # log cost relative to US patents: trademark 184k/461k (AIPLA 2011 means) [S], trade secret [J].
    "type_cost": {"patent": 0.0, "trademark": math.log(184 / 461), "trade_secret": 0.25},
    # log country cost level vs the US [E/J]: DE own counsel EUR 90-160k complex vs $950k; UK
    # rarely < GBP 1M each side [S]; others [J].
    "country_cost": {"US": 0.0, "DE": -1.6, "GB": -0.3, "FR": -1.7, "NL": -1.6, "IT": -1.9, "JP": -1.9,
                     "KR": -1.9, "IN": -2.3, "BR": -2.1},
    "stage_sigma": (0.9, 0.8, 0.7, 0.7),
    # Campaign defence costs, CNY: Schedule A one seller ~$20k over 3 months [S]; ITC 337 [J],
    # above district-court discovery costs.
    "campaign_cost": {"schedule_a": (2.0e4 * _US_USD_TO_CNY, 0.8), "itc_337": (1.5e6 * _US_USD_TO_CNY, 0.8)},
    # Duration medians by stage (years): early ~1 yr, US merits median 915 days, time to trial
    # ~2.4 yr [S, RPX 2021; PwC 2015]; Germany ~15 months, UPC ~14 months [S].
    "duration_median": (0.9, 1.6, 2.4, 3.5),
    "duration_sigma": 0.35,
    # P(the insured defendant wins | decided): patentees win ~33% of decided US cases [S]; 74% of
    # patentee claims rejected in Japan 2014-15 [S]. Logit offsets by country [J].
    "win_probability": 0.62,
    "win_offset": {"JP": 0.5, "DE": -0.3, "GB": 0.0, "FR": 0.1, "NL": 0.0, "IT": 0.1, "KR": 0.2, "BR": 0.0},
}

assert len(TRUTH["stage_sigma"]) == len(STAGES)
