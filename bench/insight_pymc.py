"""pymc-marketing's BetaGeoModel (MAP) on a customer summary; run by insight_bench.py in a venv that has it.

Usage: PYTHON bench/insight_pymc.py SUMMARY.csv HORIZON_DAYS DAYS_13_WEEKS  (prints one JSON line)
"""

import json
import sys
import time

import numpy as np
import pandas as pd

start = time.perf_counter()
from pymc_marketing.clv import BetaGeoModel  # noqa: E402

import_s = time.perf_counter() - start
data = pd.read_csv(sys.argv[1])
horizon, soon = float(sys.argv[2]), float(sys.argv[3])
start = time.perf_counter()
model = BetaGeoModel(data=data)
model.fit(method="map", progressbar=False)
fit_s = time.perf_counter() - start
expected = np.asarray(model.expected_purchases(data=data, future_t=horizon)).ravel()
p_alive = np.asarray(model.expected_probability_alive(data=data)).ravel()
params = {
    k: float(v.values.ravel()[0]) for k, v in model.fit_result.data_vars.items() if v.size == 1
}
x, T = data["frequency"].to_numpy(), data["T"].to_numpy()


def p_order(t: float) -> np.ndarray:
    # Same closed form as BG/NBD anywhere: P(alive) times P(a purchase in t | alive).
    return p_alive * (1 - ((params["alpha"] + T) / (params["alpha"] + T + t)) ** (params["r"] + x))


print(
    json.dumps(
        {
            "import_s": import_s,
            "fit_s": fit_s,
            "params": params,
            "expected": expected.tolist(),
            "p_order": p_order(horizon).tolist(),
            "p_order_13w": p_order(soon).tolist(),
        }
    )
)
