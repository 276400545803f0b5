"""`aurax decide REPORT`: re-decide offline from an evaluation report, with the Decide function's own rule."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aurax_contracts import EvalReport, RunConfig

EXAMPLES = """examples:
  aurax decide runs/my-run/eval/decision/report.json --config run.yaml --spend 212.40
  aurax decide s3://BUCKET/runs/my-run/eval/decision/report.json --config stricter.yaml --json

A re-decision is an audit or a what-if (other thresholds, another prompt set): it is labelled as such and
touches nothing: no event, no message, no run state. Without --spend the cost criterion cannot be judged and
fails (`aurax status RUN` shows the spend).

exit codes: 0 decided (GO or NO-GO: see the output), 64 bad config or arguments, 65 report missing or
unreadable"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "decide", help="re-decide go/no-go offline from an evaluation report",
        description="Apply the go/no-go rule (the Decide step's own code) to an evaluation report "
                    "(report.json), with the run config's decision settings or changed ones.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", metavar="REPORT", help="the evaluation's report.json (a path or s3:// URI)")
    parser.add_argument("--config", metavar="URI", help="run config whose decision settings apply "
                        "(default: the run's config.json beside the report's eval/ folder, else the defaults)")
    parser.add_argument("--spend", type=float, metavar="USD", help="spend so far, for the cost criterion")
    parser.add_argument("--json", action="store_true", help="print the Decision as JSON")
    parser.set_defaults(handler=run)


def run_config_beside(report_uri: str, point: str) -> str | None:
    """The `config.json` of the run a report sits in (`{run}/eval/{point}/report.json`), when it is there: an
    audit re-decides with the settings the run was decided with, not with today's defaults."""
    from aurax_contracts.layout import join

    from .. import storage

    location = storage.parse_uri(report_uri)
    # A local report by its absolute path, so that `decide eval/decision/report.json` inside the run finds it too
    where = report_uri if location.scheme == "s3" else location.key
    suffix = f"/eval/{point}/report.json"
    if not where.endswith(suffix):
        return None
    config_uri = join(where.removesuffix(suffix), "config.json")
    return config_uri if storage.exists(config_uri) else None


def decision_settings(config_arg: str | None, report_uri: str, report: EvalReport) -> tuple[RunConfig, str | None]:
    """The run config to decide with (`--config`, else the run's own beside the report, else the defaults), and a
    note saying which when the user did not name it. Raises StorageError/ContractError for an unreadable one."""
    from aurax_contracts import ContractError, RunConfig, parse_run_config

    from .. import storage

    if config_arg:
        return parse_run_config(storage.read_text(config_arg), config_arg), None
    try:
        config_uri = run_config_beside(report_uri, report.point)
        if config_uri is None:
            return RunConfig(run_id=report.run_id), ("no --config and no run config beside the report: deciding "
                                                     "with the defaults")
        config = parse_run_config(storage.read_text(config_uri), config_uri)
    except storage.StorageError as exc:
        # e.g. S3's 403 for a HeadObject without s3:ListBucket: not a file the user named, so say how to go on
        raise storage.StorageError(f"{exc} (the run's own config beside the report, read because no --config "
                                   "was given; give --config FILE to decide with other settings)") from exc
    except ContractError as exc:
        # Not a file the user named: say where it came from and how to decide without it.
        raise ContractError(f"{exc.what} (the run's own config, read because no --config was given)", [
            *exc.problems, "to decide with other settings, give --config FILE (a run config YAML/JSON) "
            "rather than editing the run's record"]) from exc
    return config, f"deciding with the run's own config {config_uri} (--config to change it)"


def run(args: argparse.Namespace) -> int:
    import math
    import sys
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from aurax_contracts import ContractError, EvalReport
    from aurax_control.decision import decide, describe

    from .. import storage
    from ..errors import InputError

    if args.spend is not None and not 0 <= args.spend < math.inf:
        raise ContractError("aurax decide arguments", [
            f"--spend {args.spend:g}: give the run's spend so far in USD, a number >= 0 (`aurax status RUN` shows "
            "it)"])
    try:
        report = EvalReport.model_validate_json(storage.read_bytes(args.report))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        reason = f"{where}: {first['msg']}" if where else first["msg"]
        raise InputError(f"{args.report} is not an evaluation report this version reads ({reason}); "
                         "give the report.json `aurax job evaluate` wrote, or evaluate again with this "
                         "version") from exc
    config, source = decision_settings(args.config, args.report, report)
    if source:
        print(f"aurax: note: {source}", file=sys.stderr)
    if config.run_id != report.run_id:
        print(f"aurax: note: the config is run {config.run_id}'s, the report run {report.run_id}'s",
              file=sys.stderr)
    decision = decide(report, args.spend, config, datetime.now(UTC), re_decision=True)
    print(decision.model_dump_json(indent=2) if args.json else describe(decision).rstrip("\n"))
    return 0
