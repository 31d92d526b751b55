"""Name -> object registries (scorers, tuners, tasks, text sources, built-in models), one mechanism for all.

Add an entry with the decorator `@REGISTRY.register("name", options=OptionsDataclass)`. Entries from
outside a registry's own package (the built-in offline world, a third-party plugin) come from modules
named in the `prunetune.plugins` entry-point group, imported on the first lookup of any registry.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from prunetune.errors import UserError, did_you_mean

PLUGIN_GROUP = "prunetune.plugins"
_FALLBACK_PLUGINS = ("prunetune.builtin",)  # for a source tree run without `pip install` (no entry points)
_plugins_loaded = False


def load_plugins() -> None:
    """Import every module registered under the `prunetune.plugins` entry-point group (once)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    names = {ep.value: ep for ep in entry_points(group=PLUGIN_GROUP)}
    for ep in names.values():
        ep.load()
    for module in _FALLBACK_PLUGINS:
        if module not in names:
            importlib.import_module(module)


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    doc: str
    options: type | None
    """A dataclass of the entry's options (typed, each field documented), or None."""


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, *, options: type | None = None, doc: str | None = None):
        """Decorator: register the decorated object under `name` (its docstring's first line is its doc)."""

        def add(obj):
            if name in self._entries and self._entries[name].obj is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            text = doc if doc is not None else ((obj.__doc__ or "").strip().splitlines() or [""])[0]
            self._entries[name] = Entry(name, obj, text, options)
            return obj

        return add

    def entry(self, name: str) -> Entry:
        if name not in self._entries:
            load_plugins()
        if name not in self._entries:
            raise UserError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self.names())}; "
                f"choose from {', '.join(self.names())}"
            )
        return self._entries[name]

    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def names(self) -> list[str]:
        load_plugins()
        return list(self._entries)

    def entries(self) -> list[Entry]:
        load_plugins()
        return list(self._entries.values())

    def __iter__(self):
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()
