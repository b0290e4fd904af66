"""Which plugin answered to each name a run used: kept in run.json, so that a resumed or compared run can
say when another plugin (or another version of it) now provides a name, since its numbers may not compare."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # comparing two runs reads run.json only: no plugins loaded
    from ..plugins import Registry
    from .suite import Suite


def providers(suite: "Suite", registry: "Registry") -> dict[str, dict[str, str]]:
    """The plugin (and distribution) that provides each backend, backbone, strategy and data source the suite
    uses, by kind then name."""
    backbones = {f"{backend}/{name}": registry.owner("backbone", f"{backend}/{name}")
                 for backend in suite.backends for name in suite.backbones
                 if ("backbone", f"{backend}/{name}") in registry.owners}
    backbones.update({f"{backend}/{name}": registry.owner("catalog", f"{name.split(':', 1)[0]}:*")
                      for backend in suite.backends for name in suite.backbones if ":" in name})
    return {"backend": {name: registry.owner("backend", name) for name in suite.backends},
            "backbone": backbones,
            "strategy": {name: registry.owner("strategy", name) for name in suite.strategies},
            "dataset": {suite.dataset["source"]: registry.owner("dataset", suite.dataset["source"])}}


def latest_providers(meta: dict[str, Any]) -> dict[str, Any] | None:
    """A run.json's providers as of its last start: its latest resume's, else its first run's."""
    resumed = [r["providers"] for r in meta.get("resumes") or [] if isinstance(r, dict) and "providers" in r]
    return resumed[-1] if resumed else meta.get("providers")


def provider_changes(before: dict[str, Any] | None, now: dict[str, Any] | None, where: str,
                     before_label: str = "") -> list[str]:
    """One line per name that another plugin provides in ``now`` than in ``before`` (both run.json
    ``providers``); ``before_label`` names the earlier side where it is another run."""
    lines = []
    earlier = f" in {before_label}" if before_label else ""
    for kind, names in (now or {}).items():
        for name, label in names.items():
            old = ((before or {}).get(kind) or {}).get(name)
            if old is not None and old != label:
                lines.append(f"{where}: {kind} {name!r} was provided by plugin {old}{earlier}; now by plugin {label}: "
                             "its numbers may not compare")
    return lines
