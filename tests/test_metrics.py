"""metrics.py against hand-computed values, sklearn's documented examples, and brute-force re-computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ast_cli import metrics


# -- single-label ------------------------------------------------------------------------------
def test_single_label_by_hand():
    labels = ["a", "b", "c", "d"]
    # truth:      a  a  a  b  b  c  c  c  c
    # predicted:  a  a  b  b  c  c  c  a  c      (d never occurs)
    targets = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = [0, 0, 1, 1, 2, 2, 2, 0, 2]
    scores = np.eye(4)[predicted] + 0.01  # argmax = predicted
    report = metrics.single_label(scores, targets, labels)
    assert report["accuracy"] == pytest.approx(6 / 9)
    assert report["confusion_matrix"] == {"labels": ["a", "b", "c"], "matrix": [[2, 1, 0], [0, 1, 1], [1, 0, 3]]}
    # F1 = 2tp / (2tp + fp + fn): a 4/(4+1+1), b 2/(2+1+1), c 6/(6+1+1); d is absent from truth and predictions
    f1 = [4 / 6, 2 / 4, 6 / 8]
    assert report["macro_f1"] == pytest.approx(sum(f1) / 3)
    rows = {r["label"]: r for r in report["per_class"]}
    assert set(rows) == {"a", "b", "c"}
    assert rows["a"]["accuracy"] == pytest.approx(2 / 3) and rows["b"]["accuracy"] == pytest.approx(1 / 2)
    assert rows["c"]["accuracy"] == pytest.approx(3 / 4) and rows["c"]["support"] == 4
    assert [rows[k]["f1"] for k in "abc"] == pytest.approx(f1)


def test_predicted_class_without_support_counts_in_macro_f1():
    report = metrics.single_label(np.eye(3)[[0, 2]], np.array([0, 1]), ["a", "b", "c"])
    rows = {r["label"]: r for r in report["per_class"]}
    assert rows["c"]["accuracy"] is None and rows["c"]["f1"] == 0.0 and rows["b"]["f1"] == 0.0
    assert report["macro_f1"] == pytest.approx(1 / 3)  # sklearn: labels of truth and predictions


# -- multi-label -------------------------------------------------------------------------------
def test_sklearn_documented_examples():
    # sklearn's docstrings: average_precision_score -> 0.83..., roc_auc_score (binary) -> 0.75
    y, s = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])
    assert metrics.average_precision(y, s) == pytest.approx(0.8333333333)
    assert metrics.roc_auc(y, s) == pytest.approx(0.75)


def test_ties_and_undefined_classes():
    assert metrics.roc_auc(np.array([0, 1, 0, 1]), np.full(4, 0.5)) == 0.5
    assert metrics.average_precision(np.array([0, 1, 0, 1]), np.full(4, 0.5)) == 0.5
    assert math.isnan(metrics.average_precision(np.zeros(3), np.arange(3.0)))
    assert math.isnan(metrics.roc_auc(np.ones(3), np.arange(3.0)))


def test_d_prime_is_sqrt2_times_probit():
    assert metrics.d_prime(0.5) == 0.0
    assert metrics.d_prime(0.8413447460685429) == pytest.approx(math.sqrt(2), abs=1e-9)  # Phi(1)
    assert metrics.d_prime(0.9) == pytest.approx(1.2815515655446004 * math.sqrt(2))


def _auc_pairs(y, s):
    """Mann-Whitney: P(score of a positive > score of a negative), ties counting half."""
    pos, neg = s[y == 1], s[y == 0]
    return np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])


def _ap_thresholds(y, s):
    """Average precision straight from its definition: every distinct score as a threshold, highest first."""
    total, previous_recall = 0.0, 0.0
    for t in sorted(set(s.tolist()), reverse=True):
        chosen = s >= t
        recall = (y[chosen] == 1).sum() / (y == 1).sum()
        precision = (y[chosen] == 1).sum() / chosen.sum()
        total += (recall - previous_recall) * precision
        previous_recall = recall
    return total


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=2, max_size=30))
def test_ap_and_auc_equal_brute_force(pairs):
    y = np.array([int(a) for a, _ in pairs])
    s = np.array([float(b) for _, b in pairs])  # few distinct values: many ties
    if y.sum() == 0 or y.sum() == len(y):
        return
    assert metrics.roc_auc(y, s) == pytest.approx(_auc_pairs(y, s))
    assert metrics.average_precision(y, s) == pytest.approx(_ap_thresholds(y, s))


def test_multi_label_report_means_over_classes():
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    scores = np.array([[0.9, 0.1, 0.2], [0.2, 0.8, 0.3], [0.6, 0.3, 0.1], [0.4, 0.5, 0.9]])
    report = metrics.multi_label(scores, targets, ["x", "y", "z"])
    ap = [metrics.average_precision(targets[:, k], scores[:, k]) for k in range(2)]
    auc = [metrics.roc_auc(targets[:, k], scores[:, k]) for k in range(2)]
    assert report["classes_scored"] == 2  # z has no positives: no AP, no AUC
    assert report["mAP"] == pytest.approx(np.mean(ap))
    assert report["mAUC"] == pytest.approx(np.mean(auc))
    assert report["d_prime"] == pytest.approx(metrics.d_prime(np.mean(auc)))  # of the mean AUC, as the authors
    assert [r["label"] for r in report["per_class"]] == ["x", "y"]
    assert metrics.main_metric(report) == ("mAP", report["mAP"])


def test_render_mentions_every_class():
    report = metrics.single_label(np.eye(2)[[0, 1, 1]], np.array([0, 1, 0]), ["dog", "rain"])
    text = metrics.format_report(report)
    assert "accuracy 0.6667" in text and "confusion matrix" in text and "dog" in text and "rain" in text


# -- standard error of the main metric (the epoch kept by ast finetune) -------------------------
def test_standard_error_of_accuracy_is_the_binomial_one():
    from sklearn.metrics import accuracy_score

    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, 50)
    scores = rng.normal(size=(50, 4)) + 1.5 * np.eye(4)[targets]
    p = accuracy_score(targets, scores.argmax(1))
    assert metrics.standard_error(scores, targets, False) == pytest.approx(math.sqrt(p * (1 - p) / 50))
    assert metrics.standard_error(scores[:1], targets[:1], False) == 0.0


def _draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n clips of 5 classes, each present with probability 0.3, scored by the truth plus noise."""
    targets = (rng.random((n, 5)) < 0.3).astype(np.int64)
    return targets + rng.normal(size=(n, 5)), targets


@pytest.mark.parametrize("n,most", [(200, 2000), (800, 200)])
def test_bootstrap_standard_error_of_map_matches_the_spread_over_new_draws(n, most):
    """The truth is the spread of sklearn's mAP over 300 independent validation sets of n clips; the
    bootstrap sees one set at a time. Its relative error with 200 resamples is about 1/sqrt(2 * 199) = 5 %,
    and from one set to another some 10 % more: the mean over 4 sets is asked to lie within 25 %. With
    ``most`` below n it resamples a subset and scales by sqrt(most / n)."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    maps = []
    for _ in range(300):
        scores, targets = _draw(rng, n)
        maps.append(np.mean([average_precision_score(targets[:, k], scores[:, k]) for k in range(5)]))
    truth = float(np.std(maps, ddof=1))
    estimates = [metrics.standard_error(*_draw(rng, n), True, rounds=200, most=most, seed=seed) for seed in range(4)]
    assert 0.75 < np.mean(estimates) / truth < 1.25, (estimates, truth)
    scores, targets = _draw(rng, n)
    assert metrics.standard_error(scores, targets, True) == metrics.standard_error(scores, targets, True)  # seeded
