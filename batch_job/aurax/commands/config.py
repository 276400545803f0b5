"""`aurax config`: validate a run config, print a complete example, or the README's reference."""

from __future__ import annotations

import argparse
import json

from aurax_contracts import load_run_config


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config", help="validate a run config, or print an example / the reference",
        description="Work with RunConfig files (YAML or JSON).",
        epilog="examples:\n  aurax config validate run.yaml\n  aurax config example > run.yaml\n"
               "  aurax config reference",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    validate = actions.add_parser("validate", help="check a config; exit 64 with each bad field and its fix")
    validate.add_argument("path")
    validate.add_argument("--json", action="store_true", help="print the normalised config as JSON")
    validate.set_defaults(handler=_validate)
    example = actions.add_parser("example", help="print a complete config with every default")
    example.add_argument("--run-id", default="amapiano-01")
    example.set_defaults(handler=_example)
    reference = actions.add_parser("reference", help="print the configuration reference (Markdown)")
    reference.set_defaults(handler=_reference)


def _validate(args: argparse.Namespace) -> int:
    config = load_run_config(args.path)  # ContractError -> exit 64 with the message (aurax.cli)
    if args.json:
        print(json.dumps(config.model_dump(mode="json"), indent=2))
    else:
        print(f"{args.path}: valid (run {config.run_id}, {config.training.total_epochs} epochs, decision after "
              f"epoch {config.training.decision_epoch}, budget ${config.budget.budget_usd:g})")
    return 0


def _example(args: argparse.Namespace) -> int:
    from ..config_reference import example_yaml

    print(example_yaml(args.run_id), end="")
    return 0


def _reference(args: argparse.Namespace) -> int:
    from ..config_reference import reference_markdown

    print(reference_markdown())
    return 0
