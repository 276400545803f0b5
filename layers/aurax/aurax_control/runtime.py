"""What every handler builds once per Lambda container: settings, the run store, the notifier."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from aurax_contracts import ContractError, RunConfig, RunLayout, parse_run_config

from . import objects
from .notify import Notifier
from .settings import Settings
from .store import RunStore


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    store: RunStore
    notifier: Notifier

    def layout(self, run_id: str) -> RunLayout:
        return RunLayout(self.settings.root, run_id)

    def load_config(self, config_uri: str | None, run_id: str) -> RunConfig:
        """The run's validated config (from the URI plan_run recorded, else the layout's config.json)."""
        uri = config_uri or self.layout(run_id).config_uri
        text = objects.read_text(uri)
        if text is None:
            raise ContractError(uri, ["the run config does not exist; fix: upload it (aurax start does) "
                                      "or check config_uri"])
        return parse_run_config(text, uri)


def runtime() -> Runtime:
    """The runtime for the current environment (read on each call: an emulator running several stacks in
    one process changes it between invocations; the objects are built once per distinct environment)."""
    return _runtime_for(Settings.from_env())


@cache
def _runtime_for(settings: Settings) -> Runtime:
    return Runtime(settings, RunStore(settings.run_table),
                   Notifier(settings.alert_topic_arn, settings.event_bus_name))


def reset_runtime() -> None:
    _runtime_for.cache_clear()
