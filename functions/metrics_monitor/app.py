"""S3 ObjectCreated on `runs/<run_id>/metrics/*.jsonl`: the divergence watch over each new chunk.

Each object is processed once (Powertools Idempotency keyed on bucket, key, ETag and sequencer), so a
duplicate S3 event or a Lambda retry sends no second alert. The template gives it 1024 MB; a 100,000-record
chunk is streamed line by line (tests/control measures its peak memory).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import idempotent_function
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from aurax_control.dashboard import publish, run_metrics
from aurax_control.idempotency import idempotency_config, persistence_layer
from aurax_control.inputs import S3Notification
from aurax_control.monitoring import process_object
from aurax_control.runtime import runtime

logger = Logger()
metrics = run_metrics()
config = idempotency_config("[bucket, key, etag, sequencer]", days=14)


@idempotent_function(data_keyword_argument="s3_object", persistence_store=persistence_layer(), config=config)
def handle_object(s3_object: dict[str, Any]) -> dict[str, Any]:
    report = process_object(runtime(), s3_object["bucket"], s3_object["key"], datetime.now(UTC))
    if report is None:
        logger.info("not a metrics chunk; ignored", extra=s3_object)
        return {"key": s3_object["key"], "ignored": True}
    summary = report.summary
    if summary.bad_total:
        logger.warning("bad metric lines", extra={"run_id": report.run_id, "key": report.key,
                                                  "counts": {k.value: n for k, n in summary.bad.items()},
                                                  "examples": summary.bad_examples})
    publish(metrics, report.run_id, report.metrics())
    result = {"run_id": report.run_id, "key": report.key, "records": summary.records, "bad_lines": summary.bad_total,
              "alerts": report.alerts, "stopped": report.stopped}
    logger.info("chunk processed", extra=result)
    return result


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config.register_lambda_context(context)
    parsed = parse(event=event, model=S3Notification)
    results = []
    for record in parsed.Records:
        if not record.eventName.startswith("ObjectCreated"):
            continue
        obj = record.s3.object
        results.append(handle_object(s3_object={
            "bucket": record.s3.bucket.name, "key": unquote_plus(obj.key), "etag": obj.eTag or "",
            "sequencer": obj.sequencer or ""}))
    return {"objects": results}
