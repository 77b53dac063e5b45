#!/usr/bin/python3
"""A short transcription of the scoring in TCKR's notebook (NicoloResmini/TCKR,
src/mia_lira.ipynb: stable_logit, unstable_logit, logits_to_score,
gaussian_likelihood_ratio, one_sided_test, LiRA.fit_predict, LiRA.evaluate and the
order of test_all_combinations), run on fixed arrays. It writes tckr_notebook.json:
the arrays and the notebook's figures for each of the 12 variants, which the unit test
Tckr.MatchesTheNotebookTranscription holds kr's `--protocol tckr` to.

  tests/reference/tckr_notebook.py > tests/reference/tckr_notebook.json

Needs numpy and scikit-learn (the notebook's roc_curve and auc); kr's tests read only
the JSON.
"""
import json
from itertools import product

import numpy as np
from sklearn.metrics import auc, roc_curve

EPS = 1e-10


def stable_logit(probs, y):
    probs = np.clip(probs.astype(np.float64), EPS, 1 - EPS)
    n = len(probs)
    log_f_y = np.log(probs)[np.arange(n), y][:, None]
    mask = np.ones_like(probs, dtype=bool)
    mask[np.arange(n), y] = False
    others = np.maximum(probs[mask].reshape(n, -1).sum(axis=1, keepdims=True), EPS)
    return log_f_y - np.log(others)


def unstable_logit(probs, y):
    probs = np.clip(probs, EPS, 1 - EPS).astype(np.float64)
    f_y = probs[np.arange(len(probs)), y][:, None]
    return np.log(f_y) - np.log(1 - f_y)


def logits_to_score(logits, y):
    n = len(logits)
    z_y = logits[np.arange(n), y][:, None]
    others = logits.copy()
    others[np.arange(n), y] = -np.inf
    return z_y - np.max(others, axis=1, keepdims=True)


def likelihood_ratio(x, mu_in, s_in, mu_out, s_out):
    s_in, s_out = np.maximum(s_in, EPS), np.maximum(s_out, EPS)
    return np.sum(-0.5 * np.log(2 * np.pi * s_in ** 2) - 0.5 * (x - mu_in) ** 2 / s_in ** 2
                  + 0.5 * np.log(2 * np.pi * s_out ** 2) + 0.5 * (x - mu_out) ** 2 / s_out ** 2,
                  axis=1)


def one_sided(x, mu_out, s_out):
    s_out = np.maximum(s_out, EPS)
    return -0.5 * np.sum((x - mu_out) ** 2 / s_out ** 2, axis=1)


SCORES = {"logit_stable": stable_logit, "logit_unstable": unstable_logit,
          "logits": logits_to_score}


def fit(scores, global_variance):
    if global_variance:
        mu = np.mean(scores, axis=(0, 1))
        var = np.maximum(np.nanmean(np.var(scores, axis=(0, 1), ddof=1)), np.finfo(float).tiny)
    else:
        mu = np.mean(scores, axis=0)
        var = np.maximum(np.var(scores, axis=0), np.finfo(float).tiny)
    return mu, var


def fit_predict(shadow_in, shadow_out, target, y, attack, score, global_variance):
    f = SCORES[score]
    scores_out = np.array([f(p, y) for p in shadow_out.astype(np.float64)])
    x = f(target.astype(np.float64), y)
    mu_out, var_out = fit(scores_out, global_variance)
    if attack == "online":
        scores_in = np.array([f(p, y) for p in shadow_in.astype(np.float64)])
        mu_in, var_in = fit(scores_in, global_variance)
        lr = likelihood_ratio(x, mu_in, np.sqrt(var_in), mu_out, np.sqrt(var_out))
    else:
        lr = one_sided(x, mu_out, np.sqrt(var_out))
    lr = np.clip(lr, -1e10, 1e10)
    mask = ~np.isnan(lr)
    return lr[mask], mask


def evaluate(lr, membership):
    fpr, tpr, _ = roc_curve(membership, lr)
    out = {"auc": float(auc(fpr, tpr))}
    for key, f in (("tpr_at_0.1%", 0.001), ("tpr_at_1%", 0.01), ("tpr_at_10%", 0.1)):
        idx = np.searchsorted(fpr, f)
        out[key] = float(tpr[idx]) if idx < len(tpr) else 0.0
    return out


def main():
    rng = np.random.RandomState(20)
    pairs, n, k = 3, 60, 4
    y = rng.randint(0, k, size=n)
    membership = np.r_[np.ones(n // 2), np.zeros(n // 2)]
    # Raw outputs on both sides of [0, 1] (the notebook clips them as probabilities), a
    # membership signal on the label's output, and ties (rounded values).
    def outputs(signal):
        z = np.round(rng.normal(0.3, 0.8, size=(n, k)), 2)
        z[np.arange(n), y] += signal * membership + np.round(rng.normal(0, 0.3, n), 2)
        return z.astype(np.float32)
    shadow_in = np.array([outputs(0.4) for _ in range(pairs)])
    shadow_out = np.array([outputs(0.0) for _ in range(pairs)])
    target = outputs(0.8)
    variants = []
    for attack, score, global_variance in product(["offline", "online"], list(SCORES),
                                                  [True, False]):
        lr, mask = fit_predict(shadow_in, shadow_out, target, y, attack, score, global_variance)
        figures = evaluate(lr, membership[mask])
        figures["name"] = "%s_%s_%s" % (attack, "global" if global_variance else "per_example",
                                        score)
        figures["kept"] = int(mask.sum())
        variants.append(figures)
    best = max(variants, key=lambda v: v["auc"])["name"]
    print(json.dumps({"labels": y.tolist(), "membership": membership.tolist(),
                      "shadow_in": shadow_in.tolist(), "shadow_out": shadow_out.tolist(),
                      "target": target.tolist(), "variants": variants, "best": best}))


if __name__ == "__main__":
    main()
