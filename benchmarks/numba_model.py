"""Plain Numba implementation of leisim's posterior-driven model: the speed peer of the JAX engine.

The "plain Numba Monte Carlo" the engine is compared against. It simulates the model of
``benchmarks/reference_model.py`` (docs/MODEL.md, "The simulation model, as documented") year by
year in compiled loops, one cell and one dispute at a time, with Numba's own random generator. It
shares no code with the JAX engine (nothing from ``simulator/`` or ``scenarios/``): its inputs are
those of ``reference_model.load_inputs`` (the same files parsed the same way, the same
NotImplementedError for what that model does not support) and its outputs the per-year arrays of
``reference_model.simulate``, so that ``reference_model.summarize`` applies unchanged.

Per simulated year ``y``, with posterior sample ``d = y mod D``:

1. the log-normal year effect ``level``; one mean-1 log-normal FX factor per currency;
2. one NB1 count per (policy, country, dispute type) cell, of mean ``base_rate * level``, drawn by
   inversion of its probability function (exact; most cells are 0, so one uniform per cell), or as
   a Poisson-gamma mixture when the mean exceeds ``INVERSION_MAX_MEAN``; Poisson where the
   dispersion is 0 (the mixture in every cell, a gamma variate each, is several times slower);
3. Schedule A / ITC 337 campaigns: Poisson count, ``1 + NB(m, k)`` sellers per campaign drawn with
   replacement by exposure share (binary search in a cumulative table built once), single-stage
   log-normal cost;
4. stage and log-normal cost of ordinary disputes, FX, fee shifting at trial or appeal;
5. deductible, coinsurance, per-dispute limit, per-policy annual aggregate limit with pro-rata
   attribution (gross, by country);
6. the reinsurance program in its inuring order: quota share, per-dispute XL with annual cap
   (cut pro rata when it binds), stop loss on the retained total: net.

Years run in blocks (``block``, 2,000 by default); block ``b`` seeds the generator with the
``b``-th word of ``SeedSequence(seed)``, so a run is reproducible, and ``parallel=True`` (blocks
spread over the cores with ``numba.prange``; Numba's generator is per thread) returns the same
years as the single-thread path.

Numba is optional: ``pip install 'leisim[bench]'``.

Usage::

    python benchmarks/numba_model.py --years 100000 --seed 1 [--parallel] [--scenario PATH]
        [--posterior PATH] [--portfolio DIR] [--block N] [--json OUT]

API::

    inputs = reference_model.load_inputs(posterior_path=..., portfolio_dir=..., scenario=...)
    out = simulate(inputs, years=100_000, seed=1, parallel=True)   # dict of NumPy arrays
"""

from __future__ import annotations

import math
import time

import numpy as np

try:
    import numba
except ImportError as error:  # an optional dependency
    raise ImportError("benchmarks/numba_model.py needs Numba: pip install 'leisim[bench]'") from error

if __package__:
    from . import reference_model
else:  # run as a script: python benchmarks/numba_model.py
    import reference_model

INVERSION_MAX_MEAN = 30.0  # NB1 by inversion up to this mean (P(0) >= e^-30: no underflow, ~mean steps)
QUOTA_SHARE, PER_DISPUTE_XL, STOP_LOSS = 0, 1, 2
TRIAL, APPEAL = 2, 3  # decided on the merits: fee shifting


# --- Kernel --------------------------------------------------------------------------------------

@numba.njit
def _nb1(lam, delta, log1p_delta):
    """NB1 count of mean lam and variance lam (1 + delta); Poisson when delta <= 0."""
    if lam <= 0.0:
        return 0
    if delta <= 0.0:
        return np.random.poisson(lam)
    r = lam / delta
    if lam > INVERSION_MAX_MEAN:
        return np.random.poisson(np.random.gamma(r, delta))
    # P(0) = (1 + delta)^-r, P(k + 1) / P(k) = (r + k) / (k + 1) * delta / (1 + delta)
    q = delta / (1.0 + delta)
    pk = math.exp(-r * log1p_delta)
    cdf = pk
    u = np.random.random()
    k = 0
    while u >= cdf and pk > 0.0:
        pk *= (r + k) / (k + 1) * q
        k += 1
        cdf += pk
    return k


@numba.njit
def _grow(a):
    b = np.empty(2 * a.shape[0], a.dtype)
    b[: a.shape[0]] = a
    return b


@numba.njit
def _simulate_block(seed, y0, y1, a, out):
    """Years y0 .. y1 - 1 into rows y0 .. y1 - 1 of `out`, from a generator seeded with `seed`."""
    (base_rate, dispersion, log1p_dispersion, sigma_year, fx_vol, country_currency, sev_mult, freq_mult,
     fee_recovered, fee_adverse, stage_cum, log_median, sigma, win_probability, entry_policy, entry_country,
     deductible, coinsurance, limit_per_dispute, aggregate_limit,
     camp_country, camp_W, camp_log_rate, camp_mean_extra, camp_concentration, camp_log_median, camp_sigma,
     camp_size, camp_entries, camp_cum, re_type, re_params) = a
    gross, net, ground_up, disputes, pay_before_aggregate, gross_by_country, disputes_by_country = out
    np.random.seed(seed)
    D, E, T = base_rate.shape
    S = sigma.shape[1]
    fx = np.empty(fx_vol.shape[0])
    policy_total = np.zeros(deductible.shape[0])
    pol = np.empty(256, np.int64)       # this year's disputes: policy, country, cost
    cty = np.empty(256, np.int64)
    cost = np.empty(256)
    pay = np.empty(256)                 # payment after the per-dispute terms
    retained = np.empty(256)

    for y in range(y0, y1):
        d = y % D
        level = math.exp(sigma_year[d] * np.random.standard_normal())
        for v in range(fx.shape[0]):
            s = fx_vol[v]
            fx[v] = math.exp(s * np.random.standard_normal() - 0.5 * s * s)

        # ordinary disputes: NB1 count per cell, stage, cost, FX, fee shifting
        n = 0
        for e in range(E):
            c = entry_country[e]
            for t in range(T):
                k = _nb1(base_rate[d, e, t] * level, dispersion[d, t], log1p_dispersion[d, t])
                for _ in range(k):
                    u = np.random.random()
                    stage = 0
                    for j in range(S - 1):
                        if stage_cum[d, c, t, j] < u:
                            stage += 1
                    X = math.exp(log_median[d, c, t, stage] + sigma[d, stage] * np.random.standard_normal())
                    X *= fx[country_currency[c]] * sev_mult[c]
                    if stage == TRIAL or stage == APPEAL:
                        if np.random.random() < win_probability[d, c]:
                            X *= 1.0 - fee_recovered[c]
                        else:
                            X *= 1.0 + fee_adverse[c]
                    if n == pol.shape[0]:
                        pol, cty, cost = _grow(pol), _grow(cty), _grow(cost)
                    pol[n], cty[n], cost[n] = entry_policy[e], c, X
                    n += 1

        # campaigns: Poisson count, 1 + NB(m, k) sellers by exposure share, single-stage cost
        for g in range(camp_country.shape[0]):
            c = camp_country[g]
            L = camp_size[g]
            rate = math.exp(camp_log_rate[g, d]) * camp_W[g] * level * freq_mult[c]
            conc = camp_concentration[g, d]
            for _ in range(np.random.poisson(rate)):
                sellers = 1 + np.random.poisson(camp_mean_extra[g, d] * np.random.gamma(conc, 1.0 / conc))
                for _ in range(sellers):
                    u = np.random.random()
                    lo, hi = 0, L - 1       # first i with cum[i] > u (the last if none)
                    while lo < hi:
                        mid = (lo + hi) // 2
                        if camp_cum[g, mid] > u:
                            hi = mid
                        else:
                            lo = mid + 1
                    X = math.exp(camp_log_median[g, d] + camp_sigma[g, d] * np.random.standard_normal())
                    X *= fx[country_currency[c]] * sev_mult[c]
                    if n == pol.shape[0]:
                        pol, cty, cost = _grow(pol), _grow(cty), _grow(cost)
                    pol[n], cty[n], cost[n] = entry_policy[camp_entries[g, lo]], c, X
                    n += 1

        # policy terms, annual aggregate limit per policy, pro-rata attribution
        if pay.shape[0] < pol.shape[0]:
            pay, retained = np.empty(pol.shape[0]), np.empty(pol.shape[0])
        for i in range(n):
            policy_total[pol[i]] = 0.0
        for i in range(n):
            p = pol[i]
            pay[i] = min((1.0 - coinsurance[p]) * max(cost[i] - deductible[p], 0.0), limit_per_dispute[p])
            policy_total[p] += pay[i]
        g_sum = gu_sum = pba_sum = 0.0
        for i in range(n):
            tot = policy_total[pol[i]]
            x = pay[i] * min(tot, aggregate_limit[pol[i]]) / tot if tot > 0.0 else 0.0
            retained[i] = x
            g_sum += x
            gu_sum += cost[i]
            pba_sum += pay[i]
            gross_by_country[y, cty[i]] += x
            disputes_by_country[y, cty[i]] += 1

        # reinsurance, inuring in the listed order, on each dispute's attributed payment
        ceded = 0.0
        for r in range(re_type.shape[0]):
            if re_type[r] == QUOTA_SHARE:
                cession = re_params[r, 0]
                for i in range(n):
                    part = cession * retained[i]
                    retained[i] -= part
                    ceded += part
            elif re_type[r] == PER_DISPUTE_XL:
                retention, limit, cap = re_params[r, 0], re_params[r, 1], re_params[r, 2]
                annual = 0.0
                for i in range(n):
                    annual += min(max(retained[i] - retention, 0.0), limit)
                scale = cap / annual if annual > cap else 1.0
                for i in range(n):
                    part = min(max(retained[i] - retention, 0.0), limit) * scale
                    retained[i] -= part
                    ceded += part
            else:  # STOP_LOSS
                attachment, limit = re_params[r, 0], re_params[r, 1]
                R = 0.0
                for i in range(n):
                    R += retained[i]
                cy = min(max(R - attachment, 0.0), limit)
                keep = (R - cy) / R if R > 0.0 else 1.0
                for i in range(n):
                    retained[i] *= keep
                ceded += cy

        gross[y], net[y], ground_up[y], pay_before_aggregate[y], disputes[y] = g_sum, g_sum - ceded, gu_sum, pba_sum, n


@numba.njit
def _run_serial(seeds, block, years, a, out):
    for b in range(seeds.shape[0]):
        _simulate_block(seeds[b], b * block, min((b + 1) * block, years), a, out)


@numba.njit(parallel=True)
def _run_parallel(seeds, block, years, a, out):
    for b in numba.prange(seeds.shape[0]):
        _simulate_block(seeds[b], b * block, min((b + 1) * block, years), a, out)


# --- Driver --------------------------------------------------------------------------------------

def _arrays(inp) -> tuple:
    """The kernel's inputs, in the order _simulate_block unpacks them (contiguous NumPy arrays)."""
    f = lambda x: np.ascontiguousarray(x, dtype=np.float64)  # noqa: E731
    i = lambda x: np.ascontiguousarray(x, dtype=np.int64)  # noqa: E731
    D, K = inp.D, len(inp.campaigns)
    L = max([k["target_entries"].shape[0] for k in inp.campaigns], default=1)
    camp_entries, camp_cum = np.zeros((K, L), np.int64), np.ones((K, L))
    for g, k in enumerate(inp.campaigns):
        camp_entries[g, : k["target_entries"].shape[0]] = k["target_entries"]
        camp_cum[g, : k["target_cum"].shape[0]] = k["target_cum"]
    camp = lambda name: f(np.array([k[name] for k in inp.campaigns]).reshape(K, D))  # noqa: E731

    # reinsurance: one row per contract, in inuring order: (cession, -, -), (retention, limit, cap),
    # (attachment, limit, -)
    re_type, re_params = np.zeros(len(inp.reinsurance), np.int64), np.zeros((len(inp.reinsurance), 3))
    for r, con in enumerate(inp.reinsurance):
        if con["type"] == "quota_share":
            re_type[r], re_params[r, 0] = QUOTA_SHARE, con["cession"]
        elif con["type"] == "per_dispute_xl":
            re_type[r], re_params[r] = PER_DISPUTE_XL, (con["retention"], con["limit"], con["cap"])
        elif con["type"] == "stop_loss":
            re_type[r], re_params[r, :2] = STOP_LOSS, (con["attachment"], con["limit"])
        else:
            raise NotImplementedError(f"reinsurance type {con['type']!r}")
    return (
        f(inp.base_rate), f(inp.dispersion), f(np.log1p(np.maximum(inp.dispersion, 0.0))), f(inp.sigma_year),
        f(inp.fx_vol), i(inp.country_currency), f(inp.sev_mult), f(inp.freq_mult), f(inp.fee_recovered),
        f(inp.fee_adverse), f(inp.stage_cum), f(inp.log_median), f(inp.sigma), f(inp.win_probability),
        i(inp.entry_policy), i(inp.entry_country), f(inp.deductible), f(inp.coinsurance),
        f(inp.limit_per_dispute), f(inp.aggregate_limit),
        i([k["country"] for k in inp.campaigns]), f([k["W"] for k in inp.campaigns]), camp("log_rate"),
        camp("mean_extra"), camp("concentration"), camp("log_median"), camp("sigma"),
        i([k["target_entries"].shape[0] for k in inp.campaigns]), camp_entries, camp_cum,
        re_type, re_params,
    )


def simulate(inputs, *, years: int, seed: int, block: int = 2000, parallel: bool = False) -> dict:
    """Simulate `years` years; year y uses posterior sample y mod D. Returns the per-year arrays of
    ``reference_model.simulate`` (same keys). `parallel`: blocks over Numba's threads, same years."""
    years, C = int(years), len(inputs.countries)
    nblocks = -(-years // block)
    seeds = np.random.SeedSequence(seed).generate_state(max(nblocks, 1), np.uint32)[:nblocks]
    out = (np.zeros(years), np.zeros(years), np.zeros(years), np.zeros(years, np.int64), np.zeros(years),
           np.zeros((years, C)), np.zeros((years, C), np.int64))
    (_run_parallel if parallel else _run_serial)(seeds, block, years, _arrays(inputs), out)
    keys = ("gross", "net", "ground_up", "disputes", "pay_before_aggregate", "gross_by_country", "disputes_by_country")
    res = dict(zip(keys, out))
    res["countries"] = inputs.countries
    res["premium"] = inputs.premium_total
    return res


# --- Command line --------------------------------------------------------------------------------

def main(argv=None) -> None:
    def extend(ap):
        ap.add_argument("--parallel", action="store_true", help="blocks over Numba's threads (NUMBA_NUM_THREADS)")

    a, scenario, years, seed = reference_model.parse_command_line(argv, __doc__.split("\n\n")[0], extend)
    t0 = time.perf_counter()
    inputs = reference_model.load_inputs(posterior_path=a.posterior, portfolio_dir=a.portfolio, scenario=scenario)
    t1 = time.perf_counter()
    simulate(inputs, years=1, seed=seed, block=a.block, parallel=a.parallel)  # JIT compilation
    t2 = time.perf_counter()
    out = simulate(inputs, years=years, seed=seed, block=a.block, parallel=a.parallel)
    t3 = time.perf_counter()

    res = reference_model.summarize(out)
    res.update(
        years=years, seed=seed, scenario=str(a.scenario), posterior=str(a.posterior),
        portfolio=str(a.portfolio), samples=inputs.D, parallel=a.parallel,
        threads=numba.get_num_threads() if a.parallel else 1,
        expected_disputes=reference_model.expected_disputes(inputs),
        load_seconds=t1 - t0, compile_seconds=t2 - t1, simulate_seconds=t3 - t2,
        years_per_s=years / (t3 - t2),
    )
    reference_model.write_report(res, a.json)


if __name__ == "__main__":
    main()
