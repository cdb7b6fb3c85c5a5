from servesim.metrics.summary import SLO, summarize

__all__ = ["SLO", "summarize"]
