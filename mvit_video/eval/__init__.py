"""Evaluation: multi-view scoring of videos (multiview.py), classification metrics (metrics.py), the one path of
validation and test (testing.py: score, validate, test), and the test's report files (reports.py)."""

from mvit_video.eval.metrics import summarize, topk_predictions
from mvit_video.eval.multiview import MultiViewResult, mean_view_features, mean_view_probs, run_multiview

__all__ = ["MultiViewResult", "mean_view_features", "mean_view_probs", "run_multiview", "summarize", "topk_predictions"]
