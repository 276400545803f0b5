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


@cache
def runtime() -> Runtime:
    settings = Settings.from_env()
    return Runtime(settings, RunStore(settings.run_table),
                   Notifier(settings.alert_topic_arn, settings.event_bus_name))


def reset_runtime() -> None:
    """Tests change the environment between cases."""
    runtime.cache_clear()
