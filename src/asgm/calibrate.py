"""Probability calibration fitted on validation predictions (``training.calibration``).

A network trained with early stopping and class weights rarely outputs probabilities that mean
what they say. ``platt`` fits a logistic regression on the log-odds of the validation
probabilities (two numbers, safe on small validation sets); ``isotonic`` fits a monotone step
function (more flexible, needs more validation patches). Both are monotone, so they never change
which of two patches ranks higher (ROC-AUC and average precision stay, up to the ties isotonic
creates); they change what a probability and therefore a fixed threshold mean. The fitted map is a
small JSON mapping stored in the model directory (``calibration.json``) and applied by
``asgm.predict`` and the region scan.
"""

from __future__ import annotations

import numpy as np

from asgm.config import CALIBRATIONS as METHODS
from asgm.errors import AsgmError

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def fit_calibration(y: np.ndarray, p: np.ndarray, method: str) -> dict:
    """Fit ``method`` on (validation) labels ``y`` and probabilities ``p``.

    Returns
    -------
    dict
        JSON-ready: ``{"method": "none"}``, ``{"method": "platt", "slope", "intercept"}`` or
        ``{"method": "isotonic", "x", "y"}`` (the step function's knots).

    Raises
    ------
    AsgmError
        Unknown method, or validation labels of one class only.
    """
    if method not in METHODS:
        raise AsgmError(f"unknown calibration {method!r}; choose one of {', '.join(METHODS)} (training.calibration)")
    if method == "none":
        return {"method": "none"}
    y, p = np.asarray(y).astype(int), np.asarray(p, float)
    if len(np.unique(y)) < 2:
        raise AsgmError("calibration needs mines and non-mines among the validation patches")
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        fit = LogisticRegression(C=1e6).fit(_logit(p)[:, None], y)
        return {"method": "platt", "slope": float(fit.coef_[0, 0]), "intercept": float(fit.intercept_[0]), "fitted_on": len(y)}
    from sklearn.isotonic import IsotonicRegression

    fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    return {"method": "isotonic", "x": fit.X_thresholds_.tolist(), "y": fit.y_thresholds_.tolist(), "fitted_on": len(y)}


def apply_calibration(calibration: dict | None, p: np.ndarray) -> np.ndarray:
    """Calibrated probabilities (float32); ``None`` or ``{"method": "none"}`` leaves ``p`` as it is."""
    p = np.asarray(p, np.float32)
    method = (calibration or {}).get("method", "none")
    if method == "none":
        return p
    if method == "platt":
        z = calibration["slope"] * _logit(p) + calibration["intercept"]
        return np.where(np.isnan(p), np.nan, 1 / (1 + np.exp(-z))).astype(np.float32)
    if method == "isotonic":
        return np.where(np.isnan(p), np.nan, np.interp(p, calibration["x"], calibration["y"])).astype(np.float32)
    raise AsgmError(f"calibration method {method!r} is unknown to this version of asgm; retrain the model")


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed share of mines − mean probability| over ``bins`` equal-width probability bins,
    weighted by the patches in each (0: perfectly calibrated)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            error += sel.mean() * abs(y[sel].mean() - p[sel].mean())
    return float(error)
