"""The CloudWatch metrics the dashboard (template.yaml) plots, published as EMF by the monitor and the ledger.

The dashboard finds them with `SEARCH('{AuraX,RunId} MetricName="..."')`, which matches only metrics whose
dimensions are exactly {RunId}; Powertools would add a `service` dimension to each metric, so it is turned off.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

RUN_DIMENSION = "RunId"
UNITS: dict[str, MetricUnit] = {"SamplesPerSecond": MetricUnit.CountPerSecond, "Interruptions": MetricUnit.Count,
                                "BadLines": MetricUnit.Count}


def run_metrics() -> Metrics:
    """Metrics without the `service` dimension (an explicit empty service overrides POWERTOOLS_SERVICE_NAME)."""
    return Metrics(service="")


def publish(metrics: Metrics, run_id: str, values: Mapping[str, float | None]) -> None:
    """One EMF document for one run (the RunId dimension differs between runs); None and non-finite values are
    never published."""
    finite = {name: value for name, value in values.items() if value is not None and math.isfinite(value)}
    if not finite:
        return
    metrics.add_dimension(name=RUN_DIMENSION, value=run_id)
    for name, value in finite.items():
        metrics.add_metric(name=name, unit=UNITS.get(name, MetricUnit.NoUnit), value=value)
    metrics.flush_metrics()
