"""Full-ranking evaluation: pure metric functions and a batched evaluator."""

from mentor.eval.evaluator import GroundTruth, evaluate_rankings, full_ranking
from mentor.eval.metrics import metrics_from_hits, rank_topk

__all__ = ["GroundTruth", "evaluate_rankings", "full_ranking", "metrics_from_hits", "rank_topk"]
