"""AURA-X control plane: plain rule functions (monitor, cost, idle, decision, reports) and the thin AWS
adapters the Lambda handlers in `functions/` call. Pure Python: no numpy, torch or matplotlib.

Rules (`monitor`, `cost`, `idle`, `decision`, `report`) take values and return values; adapters
(`aws`, `store`, `notify`, `objects`, `jobs`, `guard`) are the only modules that talk to AWS.
"""
