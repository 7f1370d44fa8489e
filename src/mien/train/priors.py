"""A temperature per class prior, fitted on valid logits (used by `mien train`'s export and `mien quantize`)."""

from __future__ import annotations

import numpy as np

from mien.expression.calibration import fit_temperature, reliability, softmax

# The valid sets' dataset families each prior's temperature is fitted on; other priors on all valid sets pooled.
PRIOR_FIT_DOMAINS = {"natural": ("ferplus", "rafdb"), "ferplus": ("ferplus",), "rafdb": ("rafdb",)}


def fit_priors(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray],
               shifts: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per prior (a shift added to the logits): its temperature, the sets it was fitted on, ECE before and
    after, and accuracy per valid set. `logits`/`labels` are keyed by valid set name (e.g. `rafdb-valid`)."""
    results = {}
    for name, shift in shifts.items():
        wanted = PRIOR_FIT_DOMAINS.get(name, ())
        chosen = [s for s in logits if s.split("-")[0] in wanted] or list(logits)
        z = np.concatenate([logits[s] for s in chosen]) + shift
        y = np.concatenate([labels[s] for s in chosen])
        temperature = fit_temperature(z, y)
        results[name] = {
            "shift": [float(v) for v in shift], "temperature": temperature, "fitted_on": chosen,
            "ece_before": reliability(softmax(z), y)["ece"],
            "ece_after": reliability(softmax(z, temperature), y)["ece"],
            "valid_accuracy": {s: float(((logits[s] + shift).argmax(1) == labels[s]).mean()) for s in logits}}
    return results
