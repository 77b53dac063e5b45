// TCKR's published membership protocol, computed as its notebook computes it
// (`kr mia --protocol tckr`; Note [TCKR protocol] in steps/mia.cpp).
//
// Note [TCKR notebook]
// TCKR (NicoloResmini/TCKR, src/mia_lira.ipynb) scores its shipped models as follows, and
// kr reproduces it step for step so its AUCs can be set beside the paper's, flaws included:
//  - shadows come in pairs: the IN shadow trains on a stratified half of the test split, the
//    OUT shadow on a stratified half of the IN shadow's data; "IN" and "OUT" label whole
//    models, not points: every challenge point is scored against all IN and all OUT shadows,
//    whether or not a given shadow trained on it (the train members, no shadow ever did);
//  - one query per point (no augmentation);
//  - the three scores take the model's raw outputs as probabilities (no softmax): clipped to
//    [1e-10, 1 - 1e-10] for the two "logit" scores, the logit margin for the third;
//  - global variance: one scalar mean and one variance (ddof 1) over all shadows and points;
//    per example: each point's mean and variance (ddof 0) over the shadows;
//  - online: the Gaussian log-likelihood ratio; offline: -(x - mu_out)^2 / (2 sigma_out^2),
//    which is two-sided (a point far *below* the OUT mean also scores low, but one far above
//    scores as low as one far below); sigma floored at 1e-10; ratios clipped to +-1e10 and NaN
//    ones dropped;
//  - ROC by scikit-learn's roc_curve (intermediate points dropped) and auc; TPR at FPR f read
//    as tpr[searchsorted(fpr, f)], the first point whose FPR is >= f (so it may exceed f);
//  - the reported attack is the best of the 12 by AUC on the challenge set itself.
// tests/reference/tckr_notebook.py transcribes that scoring; its outputs on fixed arrays
// (tests/reference/tckr_notebook.json) are what the unit test holds kr to.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "kr/core/json.hpp"

namespace kr::privacy {

enum class TckrScore { logit_stable, logit_unstable, logits };

// The notebook's per-point score (N) float64 of outputs (N, K) used as probabilities.
at::Tensor tckr_point_score(const at::Tensor& outputs, const at::Tensor& labels, TckrScore score);

// LiRA.fit_predict: shadow outputs (S, N, K) of the IN and OUT models, the target's (N, K).
// Returns the clipped likelihood ratios (N) and in `kept` (N, bool) which were not NaN.
at::Tensor tckr_fit_predict(const at::Tensor& shadow_in, const at::Tensor& shadow_out,
                            const at::Tensor& target, const at::Tensor& labels, bool online,
                            TckrScore score, bool global_variance, at::Tensor* kept = nullptr);

// LiRA.evaluate: roc_curve (drop_intermediate) and auc; TPR at 0.1, 1 and 10 % FPR by
// searchsorted. `members` (N) 0/1.
struct TckrEvaluation {
  double auc = 0.5;
  double tpr_at_0_1 = 0, tpr_at_1 = 0, tpr_at_10 = 0;
};
TckrEvaluation tckr_evaluate(const at::Tensor& scores, const at::Tensor& members);

// The 12 combinations in the notebook's order (attack offline/online x score x global
// variance True/False), each named e.g. "online_global_logit_stable", and the best: the
// first of highest AUC, as max() over the notebook's list picks it.
struct TckrVariant {
  std::string name;
  at::Tensor scores;  // (N), NaN where the notebook drops the point
  at::Tensor kept;    // (N) bool
  TckrEvaluation evaluation;
};
std::vector<TckrVariant> tckr_variants(const at::Tensor& shadow_in, const at::Tensor& shadow_out,
                                       const at::Tensor& target, const at::Tensor& labels,
                                       const at::Tensor& members);
std::size_t tckr_best(const std::vector<TckrVariant>& variants);

// One target audited by the notebook's protocol: every variant's figures (the notebook's
// AUC and TPRs; kr's own ROC of the same scores and its point-bootstrap intervals beside
// them), the best, and CSV rows.
struct TckrAudit {
  Json variants = Json::object();
  std::string best;
  std::string csv;
};
TckrAudit audit_target_tckr(const std::string& target, const at::Tensor& shadow_in,
                            const at::Tensor& shadow_out, const at::Tensor& target_outputs,
                            const at::Tensor& labels, const at::Tensor& members, double accuracy,
                            int bootstrap, std::uint64_t seed);

}  // namespace kr::privacy
