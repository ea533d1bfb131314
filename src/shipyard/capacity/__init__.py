"""Capacity planning: how many replicas and cores a target load needs at a p99 budget, and what they
cost, from what one version measures on this machine.

`measure` (measuring.py) times ONNX Runtime by batch size and the real server's CPU per request around
the model; `plan` (plan.py) turns those figures into workers, replicas, cores and dollars, with no I/O,
so that its arithmetic can be checked with figures given by hand.
"""

from shipyard.capacity.measuring import machine, measure
from shipyard.capacity.plan import BatchRow, Figures, Latency, Plan, Target, latency, plan

__all__ = ["BatchRow", "Figures", "Latency", "Plan", "Target", "latency", "machine", "measure", "plan"]
