from servesim.perf.base import StepCostModel, StepShape
from servesim.perf.roofline import RooflineModel

__all__ = ["StepCostModel", "StepShape", "RooflineModel"]
