"""Benchmarks: what `leisim bench` times (kernel.py), the plain reference implementation of the
documented model (reference_model.py: imports nothing from leisim), the large-book memory check
(large_portfolio.py). Figures quoted anywhere go into RESULTS.md with machine, command and date."""
