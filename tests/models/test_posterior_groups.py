"""The posterior file's ArviZ groups: what `arviz.loo`, `plot_ppc`, `bfmi` and `plot_energy` read.

One small fit (two countries, four years, short chains) written by the project's own functions,
shared by the module; the shipped file checked for the same groups and for clean provenance.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings

import jax
import numpy as np
import pytest
from scipy import stats

from leisim.data.generate import default_portfolio_dir
from leisim.models import fit as fitting
from leisim.models.history import generate_history, load_history, write_history
from leisim.models.posterior import default_posterior_path, write_tree
from leisim.models.settings import FitSettings
from leisim.models.truth import DISPUTE_TYPES, REFERENCE_SECTOR, TRUTH
from leisim.scenarios.portfolio import load_portfolio
from leisim.vocabulary import STAGES

az = pytest.importorskip("arviz")

COUNTRIES = ("US", "DE")
YEARS = (2022, 2023, 2024, 2025)
SETTINGS = FitSettings(chains=2, warmup=60, samples=60, max_tree_depth=6)
MACHINE_FOLDERS = ("/home", "/work", "/tmp")


def _open(path):
    # ArviZ 0.2x announces its 1.0 rewrite with a FutureWarning on some calls: not ours to fix.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return az.from_netcdf(path)


@pytest.fixture(scope="module")
def small_fit(tmp_path_factory):
    """(path of the written posterior, the history, the FitResult) of one small fit."""
    portfolio = load_portfolio(default_portfolio_dir())
    keep = [portfolio.countries.index(c) for c in COUNTRIES]
    exposure = portfolio.exposure[:, keep]
    policies = np.flatnonzero(exposure.sum(axis=1) > 0)
    book = dataclasses.replace(
        portfolio, countries=COUNTRIES, exposure=exposure[policies],
        policy_id=tuple(portfolio.policy_id[p] for p in policies), sector=tuple(portfolio.sector[p] for p in policies),
        **{f: getattr(portfolio, f)[policies] for f in ("premium_cny", "deductible_cny", "coinsurance",
                                                        "limit_per_dispute_cny", "aggregate_limit_cny", "subsidy_share")})
    truth = copy.deepcopy(TRUTH)  # rates x3: a few dozen disputes with costs in four years
    truth["rate"] = {t: {c: v * 3.0 for c, v in table.items()} for t, table in TRUTH["rate"].items()}
    folder = tmp_path_factory.mktemp("history")
    history = load_history(write_history(folder, generate_history(book, seed=5, truth=truth, years=YEARS)))
    result = fitting.fit(history, SETTINGS)
    path = folder.parent / "posterior.nc"
    write_tree(fitting.to_datatree(result, history, provenance={"command": "pytest", "leisim_version": "test"}), path)
    return path, history, result


def test_every_observation_has_a_log_likelihood_and_replicates_with_observed_data_dims(small_fit):
    idata = _open(small_fit[0])
    assert {"disputes", "campaigns", "cost_cny", "duration_years", "won"} <= set(idata.log_likelihood.data_vars)
    assert {"disputes", "campaigns", "cost_cny", "won"} <= set(idata.posterior_predictive.data_vars)
    n_chains, n_draws = SETTINGS.chains, SETTINGS.samples
    for group, (chains, draws) in (("log_likelihood", (n_chains, n_draws)), ("posterior_predictive", (n_chains, n_draws)),
                                   ("prior_predictive", (1, fitting.PRIOR_DRAWS))):
        for name, var in idata[group].data_vars.items():
            observed = idata.observed_data[name]
            assert var.dims == ("chain", "draw") + observed.dims, (group, name)
            assert var.shape == (chains, draws) + observed.shape, (group, name)
            assert np.all(np.isfinite(var.values)), (group, name)


def test_loo_is_finite_for_each_observed_variable(small_fit):
    idata = _open(small_fit[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto k above 0.7 with 120 draws: expected, not the point here
        for name in idata.log_likelihood.data_vars:
            assert np.isfinite(az.loo(idata, var_name=name).elpd_loo), name


def test_plot_ppc_bfmi_and_plot_energy_run(small_fit):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idata = _open(small_fit[0])
    assert np.all(np.isfinite(az.bfmi(idata)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"arviz\.")  # its matplotlib calls
        az.plot_ppc(idata, var_names=["disputes", "cost_cny"], num_pp_samples=20)
        az.plot_ppc(idata, group="prior", var_names=["disputes"], num_pp_samples=20)
        az.plot_energy(idata)
    plt.close("all")
    stats_ = idata.sample_stats
    assert {"energy", "tree_depth", "diverging", "acceptance_rate", "n_steps", "lp"} <= set(stats_.data_vars)
    assert int(stats_["tree_depth"].max()) <= SETTINGS.max_tree_depth + 1


def test_pointwise_log_likelihood_is_the_documented_density(small_fit):
    # One draw, one observation each: the frequency model's NB1 count and the severity model's
    # closed, uncensored dispute (stage and cost, truncated at the deductible), from SciPy.
    idata = _open(small_fit[0])
    post, obs, loglik = idata.posterior.isel(chain=1, draw=7), idata.observed_data, idata.log_likelihood
    post = {k: np.asarray(v.values, np.float64) for k, v in post.data_vars.items()}
    countries, sectors = list(idata.posterior["country"].values), list(idata.posterior["free_sector"].values)
    years = list(idata.posterior["history_year"].values)
    i = int(np.argmax(obs["disputes"].values))  # a group with disputes
    c, t = countries.index(obs["group_country"].values[i]), DISPUTE_TYPES.index(obs["group_dispute_type"].values[i])
    sector = obs["group_sector"].values[i]
    beta = 0.0 if sector == REFERENCE_SECTOR else post["sector_effect"][sectors.index(sector), t]
    mean = np.exp(post["log_rate"][c, t] + beta + post["year_effect"][years.index(obs["group_year"].values[i])]
                  + np.log(obs["exposure"].values[i]))
    concentration = mean / post["dispersion"][t]  # NB1: Var = mean (1 + delta)
    expected = stats.nbinom.logpmf(obs["disputes"].values[i], concentration, concentration / (concentration + mean))
    np.testing.assert_allclose(loglik["disputes"].values[1, 7, i], expected, rtol=1e-4)

    exact = np.flatnonzero(obs["closed"].values & ~obs["censored"].values)
    assert exact.size, "the small history has no closed, uncensored dispute"
    j = int(exact[0])
    c = countries.index(obs["dispute_country"].values[j])
    t, s = DISPUTE_TYPES.index(obs["dispute_dispute_type"].values[j]), STAGES.index(obs["stage"].values[j])
    p, median, sigma = np.exp(post["stage_log_probability"][c, t]), np.exp(post["log_median"][c, t]), post["sigma"]
    reported = np.sum(p * stats.lognorm.sf(obs["deductible_cny"].values[j], sigma, scale=median))
    expected = (np.log(p[s]) + stats.lognorm.logpdf(obs["cost_cny"].values[j], sigma[s], scale=median[s])
                - np.log(reported))
    np.testing.assert_allclose(loglik["cost_cny"].values[1, 7, j], expected, rtol=1e-4)


def test_the_model_checks_are_deterministic_for_a_seed(small_fit):
    _, history, result = small_fit
    data = (fitting.FrequencyData.from_history(history), fitting.SeverityData.from_history(history))
    again = fitting.model_checks(result.posterior, *data, seed=SETTINGS.seed)
    for group in ("log_likelihood", "posterior_predictive", "prior_predictive"):
        for name, value in getattr(result, group).items():
            np.testing.assert_array_equal(again[group][name], value, err_msg=f"{group}/{name}")


def test_an_older_file_is_completed_without_touching_its_draws(small_fit, tmp_path):
    # What data/complete.py did to the shipped posterior: a file without the groups, with a
    # "history" attribute, gains them; its draws and older variables stay as they were.
    import xarray as xr

    path, history, _ = small_fit
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        new = {"log_likelihood", "posterior_predictive", "prior_predictive"}
        groups = {f"/{name}": tree[name].to_dataset() for name in tree.children if name not in new}
    posterior = groups["/posterior"]
    posterior.attrs = {k: v for k, v in posterior.attrs.items() if not k.startswith("leisim_history")}
    posterior.attrs["history"] = str(tmp_path / "history")
    groups["/sample_stats"] = groups["/sample_stats"].drop_vars(["energy", "n_steps", "tree_depth"])
    groups["/observed_data"] = groups["/observed_data"].drop_vars(["won", "closed"])
    old = tmp_path / "old.nc"
    write_tree(xr.DataTree.from_dict(groups), old)
    with xr.open_datatree(old, engine="h5netcdf") as tree:
        completed = fitting.complete(tree, history, version="test")
    assert new <= set(completed.children)
    assert "history" not in completed["posterior"].attrs and "leisim_completed" in completed["posterior"].attrs
    xr.testing.assert_identical(completed["posterior"].to_dataset().drop_attrs(), posterior.drop_attrs())
    assert {"n_steps", "tree_depth", "acceptance_rate"} <= set(completed["sample_stats"].data_vars)
    with xr.open_datatree(path, engine="h5netcdf") as fresh:
        xr.testing.assert_equal(completed["observed_data"].to_dataset(), fresh["observed_data"].to_dataset())
        # the fit's own, to float32 rounding (a file's draws are float32, a fit's float64)
        xr.testing.assert_allclose(completed["log_likelihood"].to_dataset(), fresh["log_likelihood"].to_dataset(),
                                   rtol=1e-4, atol=1e-6)
        for name in ("posterior_predictive", "prior_predictive"):
            assert completed[name].to_dataset().sizes == fresh[name].to_dataset().sizes, name


def test_progress_bars_only_on_a_terminal(monkeypatch):
    seen = []

    class Sampler:
        def run(self, *args, **kwargs):
            pass

        def get_samples(self, group_by_chain):
            return {}

        def get_extra_fields(self, group_by_chain):
            return {}

    monkeypatch.setattr(fitting, "_sampler", lambda model, settings, progress: seen.append(progress) or Sampler())
    for tty in (False, True):
        monkeypatch.setattr(fitting.sys.stderr, "isatty", lambda tty=tty: tty)
        fitting.run_nuts(None, None, key=jax.random.key(0), settings=SETTINGS, progress=True)
    fitting.run_nuts(None, None, key=jax.random.key(0), settings=SETTINGS, progress=False)
    assert seen == [False, True, False]


def test_the_shipped_posterior_has_the_groups_and_no_machine_path():
    # Its draws predate these groups (data/complete.py added them): no energy, the rest as a fit's.
    import xarray as xr

    path = default_posterior_path()
    tree = xr.open_datatree(path, engine="h5netcdf")
    for node in tree.subtree:
        for owner in [node, *node.ds.variables.values()]:
            for name, value in owner.attrs.items():
                assert name != "history", (node.path, name)
                assert not any(folder in str(value) for folder in MACHINE_FOLDERS), (node.path, name, value)
    assert tree["posterior"].attrs["leisim_history"] == "data/default/history"
    idata = _open(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a few Pareto k above 0.7
        for name in ("disputes", "cost_cny"):
            assert np.isfinite(az.loo(idata, var_name=name).elpd_loo), name
    for group in ("log_likelihood", "posterior_predictive"):
        for name, var in idata[group].data_vars.items():
            sizes = (idata.posterior.sizes["chain"], idata.posterior.sizes["draw"])
            assert var.shape == sizes + idata.observed_data[name].shape, (group, name)
