"""File formats leisim reads below the scenario layer: the portfolio CSVs (policies.csv, exposures.csv)."""
