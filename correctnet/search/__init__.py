"""Where to compensate: candidate layers and the placement search.

The Fig. 9 candidate rule, the reward, the plan cache, the RL and exhaustive placement
searches, the picklable plan evaluator, and the equal-cost digital-layer baseline.

Modules: ``cache``, ``candidates``, ``digital_baseline``, ``evaluator``, ``placement``,
``random_search``.
Their public names are importable from here too; they load on first use (PEP 562), so
importing the package stays cheap.
"""

from __future__ import annotations

from correctnet.lazy import lazy_getattr

_LAZY = {
    "PlanCache": "correctnet.search.cache",
    "Evaluator": "correctnet.search.cache",
    "CandidateResult": "correctnet.search.candidates",
    "select_candidates": "correctnet.search.candidates",
    "monte_carlo_tail_accuracy": "correctnet.search.candidates",
    "PlanEvaluator": "correctnet.search.evaluator",
    "SearchConfig": "correctnet.search.placement",
    "SearchResult": "correctnet.search.placement",
    "PolicyRNN": "correctnet.search.placement",
    "reward": "correctnet.search.placement",
    "rl_search": "correctnet.search.placement",
    "exhaustive_search": "correctnet.search.placement",
    "action_space_size": "correctnet.search.placement",
    "RandomSearchResult": "correctnet.search.random_search",
    "random_search": "correctnet.search.random_search",
    "draw_plans": "correctnet.search.random_search",
    "evaluated_plans": "correctnet.search.random_search",
    "DigitalBaseline": "correctnet.search.digital_baseline",
    "best_digital_layers": "correctnet.search.digital_baseline",
    "layer_costs": "correctnet.search.digital_baseline",
    "maximal_digital_sets": "correctnet.search.digital_baseline",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
