"""Thresholds, metrics and the block bootstrap."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from asgm.errors import AsgmError
from asgm.evaluate import (balanced_threshold, binary_metrics, block_bootstrap, expected_f_beta_threshold, f_beta_threshold, specificity_threshold,
                           youden_threshold)


def noisy_scores(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, np.clip(0.5 * y + rng.normal(0.25, 0.2, n), 0, 1)


def test_f1_threshold_maximises_f1():
    y, p = noisy_scores()
    threshold, best = f_beta_threshold(y, p)
    assert best == pytest.approx(f1_score(y, p >= threshold))
    for other in np.linspace(0.05, 0.95, 19):
        assert f1_score(y, p >= other) <= best + 1e-12


def test_expected_f1_threshold_is_the_best_threshold_for_labels_drawn_from_the_probabilities():
    """When the labels are drawn from the probabilities, the plug-in threshold's realised F1 is the best
    any threshold reaches (to sampling error) and, as for any calibrated scores, it is half the best
    F1 (Lipton et al. 2014)."""
    rng = np.random.default_rng(0)
    p = rng.beta(0.6, 1.2, 40_000)
    y = (rng.random(len(p)) < p).astype(int)
    threshold, expected = expected_f_beta_threshold(p)
    best = max(f1_score(y, p >= t) for t in np.linspace(0.05, 0.95, 91))
    assert f1_score(y, p >= threshold) == pytest.approx(best, abs=0.005)
    assert expected == pytest.approx(best, abs=0.01) and threshold == pytest.approx(expected / 2, abs=0.01)
    assert expected_f_beta_threshold(p, 0.5)[0] > threshold  # F0.5 favours precision


def test_balanced_threshold_is_the_best_for_labels_drawn_from_the_probabilities_whatever_the_share_of_mines():
    """The plug-in threshold for sensitivity + specificity is the mean probability; with labels drawn
    from the probabilities its realised balanced accuracy is the best any threshold reaches; and where
    F1's cut on the model's scores falls as mines become more common (the same scores calibrated to
    30, 50 and 70 % of mines), the balanced cut moves a quarter as far or less."""
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    score = rng.normal(0, 1, 60_000)  # a model's log-odds under a 50 % share of mines
    results = {}
    for share in (0.3, 0.5, 0.7):
        p = 1 / (1 + np.exp(-(score + np.log(share / (1 - share)))))  # the same scores calibrated to that share
        y = (rng.random(len(p)) < p).astype(int)
        threshold = balanced_threshold(p)
        assert threshold == pytest.approx(p.mean(), abs=1e-3)
        best = max(balanced_accuracy_score(y, p >= t) for t in np.linspace(0.02, 0.98, 97))
        assert balanced_accuracy_score(y, p >= threshold) == pytest.approx(best, abs=0.005)
        results[share] = (score[p >= threshold].min(), score[p >= expected_f_beta_threshold(p)[0]].min())
    balanced_cut = [r[0] for r in results.values()]
    f1_cut = [r[1] for r in results.values()]
    assert f1_cut[0] > f1_cut[1] > f1_cut[2] and f1_cut[0] - f1_cut[2] > 1.0  # F1 calls more with more mines
    assert max(balanced_cut) - min(balanced_cut) < 0.25 * (f1_cut[0] - f1_cut[2])  # the balanced cut hardly moves


def test_youden_threshold_maximises_the_labels_balanced_accuracy():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.3 * y + rng.normal(0.35, 0.2, 200), 0, 1)
    threshold, best = youden_threshold(y, p)
    assert balanced_accuracy_score(y, p >= threshold) == pytest.approx(best)
    assert best == pytest.approx(max(balanced_accuracy_score(y, p >= t) for t in np.unique(p)))


def test_balanced_threshold_refuses_non_probabilities():
    assert 0.1 < balanced_threshold(np.array([0.9, 0.9, 0.9, 0.2, 0.1])) <= 0.9
    with pytest.raises(AsgmError, match=r"probabilities in \[0, 1\]"):
        balanced_threshold(np.array([0.5, np.nan]))


def test_expected_f1_threshold_keeps_tied_scores_together_and_refuses_non_probabilities():
    threshold, _ = expected_f_beta_threshold(np.array([0.9, 0.9, 0.9, 0.2, 0.1]))
    assert 0.2 < threshold <= 0.9
    with pytest.raises(AsgmError, match=r"probabilities in \[0, 1\]"):
        expected_f_beta_threshold(np.array([0.5, 1.7]))
    with pytest.raises(AsgmError, match=r"probabilities in \[0, 1\]"):
        expected_f_beta_threshold(np.array([0.5, np.nan]))


def test_f05_threshold_favours_precision():
    y, p = noisy_scores()
    assert f_beta_threshold(y, p, 0.5)[0] >= f_beta_threshold(y, p, 1.0)[0]


@pytest.mark.parametrize("target", [0.8, 0.95, 0.99])
def test_specificity_threshold_reaches_the_target_and_no_more_than_needed(target):
    y, p = noisy_scores(seed=1)
    t = specificity_threshold(y, p, target)
    spec = lambda thr: np.mean(p[y == 0] < thr)  # noqa: E731
    assert spec(t) >= target
    below = np.sort(p[y == 0])
    assert spec(below[below < t].max()) < target  # one negative lower would break the target


def test_metrics_match_sklearn_and_weights_equal_repetition():
    y, p = noisy_scores(60, seed=2)
    m = binary_metrics(y, p, 0.5)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["f1"] == pytest.approx(f1_score(y, p >= 0.5))
    w = np.random.default_rng(0).integers(0, 3, len(y)).astype(float)
    repeated = binary_metrics(np.repeat(y, w.astype(int)), np.repeat(p, w.astype(int)), 0.5)
    weighted = binary_metrics(y, p, 0.5, weight=w)
    for key in repeated:
        assert weighted[key] == pytest.approx(repeated[key]), key


def test_one_class_is_a_clear_error():
    with pytest.raises(AsgmError, match="both mines and non-mines"):
        f_beta_threshold(np.zeros(5), np.linspace(0, 1, 5))


def test_block_bootstrap_resamples_blocks_not_patches():
    """Copies of a patch in one block add no information: the interval must stay as wide as with one
    copy, whereas treating the copies as independent patches would shrink it."""
    y, p = noisy_scores(40, seed=3)
    copies = 10
    yy, pp = np.repeat(y, copies), np.repeat(p, copies)
    by_block = block_bootstrap(yy, pp, np.repeat(np.arange(40), copies), 0.5, n_boot=400, seed=0)
    by_patch = block_bootstrap(yy, pp, np.arange(len(yy)), 0.5, n_boot=400, seed=0)
    single = block_bootstrap(y, p, np.arange(40), 0.5, n_boot=400, seed=0)
    width = lambda t: (t["ci_high"] - t["ci_low"]).loc["roc_auc"]  # noqa: E731
    assert width(by_block) == pytest.approx(width(single), rel=0.25)
    assert width(by_patch) < 0.6 * width(by_block)
    assert by_block.loc["roc_auc", "n_blocks"] == 40


def test_block_bootstrap_interval_holds_the_estimate_and_is_seeded():
    y, p = noisy_scores(80, seed=4)
    blocks = np.arange(80) // 4
    a = block_bootstrap(y, p, blocks, 0.5, n_boot=200, seed=1)
    b = block_bootstrap(y, p, blocks, 0.5, n_boot=200, seed=1)
    assert a.equals(b)
    assert ((a["ci_low"] <= a["value"] + 1e-12) & (a["value"] <= a["ci_high"] + 1e-12)).all()


def test_too_few_blocks_warns():
    y, p = noisy_scores(30, seed=5)
    with pytest.warns(UserWarning, match="only 3 spatial blocks"):
        block_bootstrap(y, p, np.arange(30) % 3, 0.5, n_boot=20)


def test_mines_in_few_blocks_warn():
    y, p = noisy_scores(60, seed=6)
    blocks = np.where(y == 1, 0, np.arange(60) + 1)  # every mine in one block
    with pytest.warns(UserWarning, match="mines lie in 1 and its non-mines in"):
        table = block_bootstrap(y, p, blocks, 0.5, n_boot=20)
    assert table["n_mine_blocks"].iloc[0] == 1


def test_the_packages_warnings_read_as_one_sentence_without_source_line():
    import warnings

    import asgm
    from asgm.errors import AsgmWarning

    assert asgm.AsgmWarning is AsgmWarning
    assert warnings.formatwarning("few test blocks", AsgmWarning, "evaluate.py", 141, "warnings.warn(...)") == "Warning: few test blocks\n"
    assert "evaluate.py:141" in warnings.formatwarning("other", UserWarning, "evaluate.py", 141, "warnings.warn(...)")


def test_ranking_metrics_equal_scikit_learn_with_ties_and_bootstrap_weights():
    from sklearn.metrics import average_precision_score, roc_auc_score

    from asgm.evaluate import ranking_metrics

    rng = np.random.default_rng(0)
    for case in range(300):
        n = int(rng.integers(2, 60))
        y = rng.integers(0, 2, n)
        p = np.round(rng.random(n), int(rng.integers(1, 4)))  # coarse scores: many ties
        w = rng.integers(0, 4, n).astype(float) if case % 3 else None  # block-bootstrap-like weights, zeros included
        weight = np.ones(n) if w is None else w
        if len(np.unique(y[weight > 0])) < 2:
            assert np.isnan(ranking_metrics(y, p, w)).all()
            continue
        roc, ap = ranking_metrics(y, p, w)
        assert roc == pytest.approx(roc_auc_score(y, p, sample_weight=w), abs=1e-12), case
        assert ap == pytest.approx(average_precision_score(y, p, sample_weight=w), abs=1e-12), case


def test_threshold_rule_reads_the_fields_and_older_files_text():
    from asgm.evaluate import threshold_rule

    assert threshold_rule({"rule": "labels", "chosen_on": "out_of_fold", "chosen_by": "maximum expected F1"}) == ("labels", "out_of_fold")
    older = "maximum expected F1 of the platt-calibrated probabilities of the out-of-fold predictions of 500 training and validation patches"
    assert threshold_rule({"chosen_by": older}) == ("expected", "out_of_fold")
    assert threshold_rule({"chosen_by": "maximum F1 on the validation split"}) == ("labels", "validation")
