"""Fit the Bayesian frequency and severity models to the shipped synthetic history (run: python examples/fit.py).

A full fit takes minutes on two cores; LEISIM_EXAMPLE_SAMPLES shortens it (the tests run it with few).
"""

import os

import leisim

SAMPLES = int(os.environ.get("LEISIM_EXAMPLE_SAMPLES", 500))

history = leisim.load_history()  # or leisim.load_history("history/")
fitted = leisim.fit(history, chains=2, warmup=SAMPLES, samples=SAMPLES, seed=0)
for row in fitted.summary[:5]:
    print(f"{row['name']:30} mean {row['mean']:8.3f}  R-hat {row['r_hat']:.3f}  bulk ESS {row['ess_bulk']:.0f}")
print(fitted.posterior)
fitted.save("results/example-posterior.nc", overwrite=True)
