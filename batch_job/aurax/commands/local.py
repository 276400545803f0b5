"""`aurax local`: the whole pipeline on this machine, in an embedded AWS emulation, to a go/no-go decision."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

EXAMPLES = """examples:
  aurax local                      # GO variant, with one injected spot interruption
  aurax local --variant no-go      # thresholds no model can pass: the run stops with an abort report
  aurax local --keep ./run1 --json # keep logs, checkpoints, metrics and reports; print JSON

Deploys template.yaml into moto, runs the real state machine, Lambda handlers and `aurax job` commands
(tiny MusicGen, synthetic MagnaTagATune, 2 epochs, decision after the first). Without --keep, the HTML
reports and the logs are copied to ./aurax-<run id>/. Needs the [dev] extra (moto, aws-sam-translator).
Every AWS request is authorised as the principal that makes it on AWS against the template's policies; a
denied request fails the run and is printed with the policy to add.
exit codes: 0 the run reached its expected end (GO promoted / NO-GO stopped) with no request denied, 1 not."""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "local", help="run the whole pipeline locally (emulated AWS) to a go/no-go decision",
        description="Run the whole pipeline on this machine, in an embedded AWS emulation, to a go/no-go "
                    "decision.", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=("go", "no-go"), default="go",
                        help="go: thresholds the tiny run passes; no-go: thresholds it cannot pass")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="keep every artefact (logs, dataset, checkpoints, metrics, reports) in DIR")
    parser.add_argument("--no-interruption", action="store_true", help="do not inject the spot interruption")
    parser.add_argument("--template", type=Path, default=None, help="template.yaml (default: this checkout's)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument("--json", action="store_true", help="no progress display; print the result as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..local.pipeline import run_local

    # The emulation and the handlers log a lot at INFO; the progress display says what matters.
    logging.getLogger().setLevel(logging.WARNING if not args.verbose else logging.DEBUG)
    for noisy in ("moto", "botocore", "aws_lambda_powertools"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    display = None if args.json else _Display()
    try:
        result = run_local(args.variant, keep=args.keep, template=args.template,
                           interrupt=not args.no_interruption, timeout_s=args.timeout,
                           progress=display.update if display else None)
    finally:
        if display:
            display.stop()
    expected = "ModelPromoted" if args.variant == "go" else "StoppedNoGo"
    if args.json:
        print(json.dumps(result.to_json(), indent=2, default=str))
    else:
        _summary(result, expected)
    return 0 if _reached(result, expected) else 1


def _reached(result: Any, expected: str) -> bool:
    return result.end_state == expected and result.execution_status == "SUCCEEDED" and not result.iam_denials


class _Display:
    """A rich live view: a bar over training steps, and one line per state change, alert and event."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True, log_path=False)
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), console=self.console, transient=False)
        self.task = self.bar.add_task("starting", total=None, info="")
        self.state = ""
        self.job: str | None = None
        self.bar.start()

    def update(self, p: Any) -> None:
        state_changed = p.state != self.state
        if state_changed or (p.job is not None and p.job != self.job):
            # The same job in the same state with another attempt number: Batch retried it.
            retried = not state_changed and self.job is not None and _job_name(self.job) == _job_name(p.job)
            self.state, self.job = p.state, p.job
            self.console.log(f"[bold]{p.state}[/]" + (f"  {p.job}" if p.job else "")
                             + ("  [magenta](retried by Batch)[/]" if retried else ""))
        for alert in p.new_alerts:
            self.console.log(f"[yellow]alert[/] {alert['subject']}")
        for event in p.new_events:
            self.console.log(f"[cyan]event[/] {event['detail_type']}: " + _event_line(event["detail"]))
        info = ""
        if p.view is not None:
            s, ledger = p.view.state, p.view.ledger
            loss = f"loss {s.last_loss:.3f}" if s.last_loss is not None else "loss -"
            val = f" val {s.last_val_loss:.3f}" if s.last_val_loss is not None else ""
            spend = f" ${ledger.spend_usd:.4f}" if ledger else ""
            info = f"epoch {s.epoch} step {s.step}/{s.total_steps or '?'} {loss}{val}{spend} alerts {s.alerts_sent}"
            self.bar.update(self.task, total=s.total_steps or None, completed=s.step)
        self.bar.update(self.task, description=f"{p.state[:24]:<24}", info=info)

    def stop(self) -> None:
        self.bar.stop()


def _job_name(job: str | None) -> str | None:
    return job.split(" (attempt")[0] if job else None


def _event_line(detail: dict[str, Any]) -> str:
    if "decision" in detail:
        d = detail["decision"]
        return f"{d['outcome']} at the {d['point']} point (epoch {d['epoch']})"
    if "reason" in detail:
        return f"{detail['reason']}: {detail.get('summary', '')}"[:120]
    if "code" in detail:
        return f"{detail['severity']} {detail['code']}: {detail['what']}"[:120]
    return json.dumps(detail)[:120]


def _summary(result: Any, expected: str) -> None:
    from aurax_contracts import Criterion
    from aurax_control.decision import criterion_line

    out = sys.stdout
    ok = _reached(result, expected)
    print(f"\n{'OK' if ok else 'UNEXPECTED'}: run {result.run_id} ended in {result.end_state} "
          f"({result.execution_status}{', ' + result.error if result.error else ''}) after {result.seconds:.0f} s",
          file=out)
    for d in result.decisions:
        print(f"decision at the {d['point']} point: {d['outcome']}", file=out)
        for c in d.get("criteria", []):
            print(f"  {criterion_line(Criterion.model_validate(c))}", file=out)
    interrupted = [a for a in result.batch_attempts if a["status_reason"] and a["status_reason"].startswith("Host EC2")]
    print(f"batch attempts: {len(result.batch_attempts)}, spot interruptions injected: {len(interrupted)}",
          file=out)
    print("reports:" if result.reports else "reports: none", file=out)
    for path in result.reports:
        print(f"  {path}", file=out)
    print(f"alerts sent ({len(result.alerts)}):", file=out)
    for alert in result.alerts:
        print(f"  {alert['subject']}", file=out)
    print(f"events sent ({len(result.events)}):", file=out)
    for event in result.events:
        print(f"  {event['detail_type']}: {_event_line(event['detail'] or {})}", file=out)
    if result.handler_errors:
        print(f"handler errors ({len(result.handler_errors)}; see the logs/lambda folder):", file=out)
        for error in result.handler_errors:
            print(f"  {error[:200]}", file=out)
    if result.iam_denials:
        print(f"IAM DENIED ({len(result.iam_denials)}; AWS would deny these, so the run fails):", file=out)
        for denial in result.iam_denials:
            print(f"  {denial}", file=out)
    print(f"job and function logs: {result.logs}", file=out)
