from servesim.cluster.driver import ArrivalSource, run_replica

__all__ = ["ArrivalSource", "run_replica"]
