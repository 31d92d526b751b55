"""`prunetune ls [-v]`: what is registered: model families, built-in models, scorers, recovery methods,
budget allocations, tasks, text sources and shipped recipes; `-v` adds each entry's documented options and every recipe key."""


def register(sub):
    p = sub.add_parser("ls", help="list model families, built-in models, scorers, recovery methods, tasks, recipes")
    p.add_argument("-v", "--verbose", action="store_true", help="also print each entry's options with defaults")
    p.set_defaults(handler=run)


def _registries():
    from prunetune.checkpoint import MODELS
    from prunetune.data import SOURCES
    from prunetune.loop.allocations import ALLOCATIONS
    from prunetune.pruning.importance import (
        EXPERT_NEURON_SCORERS,
        EXPERT_SCORERS,
        HIDDEN_SCORERS,
        KV_SCORERS,
        LAYER_SCORERS,
        MLP_SCORERS,
    )
    from prunetune.recovery import TUNERS
    from prunetune.tasks import TASKS

    return (
        ("built-in models", MODELS),
        ("mlp scorers", MLP_SCORERS),
        ("kv scorers", KV_SCORERS),
        ("layer scorers", LAYER_SCORERS),
        ("expert scorers", EXPERT_SCORERS),
        ("expert neurons", EXPERT_NEURON_SCORERS),
        ("hidden scorers", HIDDEN_SCORERS),
        ("recovery", TUNERS),
        ("allocations", ALLOCATIONS),
        ("tasks", TASKS),
        ("text sources", SOURCES),
    )


def options_of(entry) -> list[tuple[str, str, str]]:
    """(name, default, doc) of an entry's options: its options dataclass, or its constructor's keywords."""
    import inspect

    from prunetune.config import describe

    if entry.options is not None:
        return describe(entry.options)
    if not isinstance(entry.obj, type):  # a function's parameters are its calling convention, not options
        return []
    from prunetune.tasks import TASKS, task_options

    docs = getattr(entry.obj, "option_docs", {})  # e.g. the tasks' think / enable_thinking (tasks/thinking.py)
    if entry.name in TASKS and TASKS.get(entry.name) is entry.obj:  # typed and bounded like config keys
        return [(n, repr(d), " ".join(filter(None, (_type_text(tp, bounds), docs.get(n, "")))))
                for n, tp, d, bounds in task_options(entry.obj)]
    try:
        params = inspect.signature(entry.obj).parameters.values()
    except (TypeError, ValueError):
        return []
    return [
        (p.name, "(required)" if p.default is p.empty else repr(p.default), docs.get(p.name, ""))
        for p in params
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"
    ]


def _type_text(tp, bounds: dict) -> str:
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
    limits = ", ".join(f"{words[k]} {v}" for k, v in bounds.items()) if name in ("int", "float") or "int" in name else ""
    return f"{name}{f' ({limits})' if limits else ''}"


def recipe_keys() -> list[tuple[str, str, str]]:
    """(dotted key, default, doc) of every recipe key, sections flattened (`recovery.growth`, ...)."""
    import dataclasses

    from prunetune.config import describe
    from prunetune.loop.recipe import Recipe

    sections = {f.name: f.default_factory for f in dataclasses.fields(Recipe)
                if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory)}
    out = []
    for name, default, doc in describe(Recipe):
        if name in sections:
            for k, d, text in describe(sections[name]):
                out.append((f"{name}.{k}", d, text))
                if (name, k) == ("recovery", "allocation_options"):
                    out += _allocation_keys()
                sub = _optional_section(sections[name], k)  # e.g. recovery.prompts: {sources, ...}
                if sub is not None:
                    out += [(f"{name}.{k}.{kk}", dd, tt) for kk, dd, tt in describe(sub)]
        else:
            out.append((name, default, doc))
    return out


def _allocation_keys() -> list[tuple[str, str, str]]:
    """recovery.allocation_options.<option> of every registered allocation, with the flat key older recipes used."""
    from prunetune.config import describe
    from prunetune.loop.allocations import ALLOCATIONS
    from prunetune.loop.recipe import FLAT_ALLOCATION_KEYS

    old = {v: k for k, v in FLAT_ALLOCATION_KEYS.items()}
    return [(f"recovery.allocation_options.{k}", d,
             f"allocation: {e.name} only: {text}" + (f" (older recipes: recovery.{old[e.name, k]})" if (e.name, k) in old else ""))
            for e in ALLOCATIONS.entries() if e.options is not None for k, d, text in describe(e.options)]


def _optional_section(cls, key: str):
    """The dataclass a `X | None` field of `cls` holds, or None when the field is no such section."""
    import dataclasses
    import typing

    hint = typing.get_type_hints(cls).get(key)
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def run(args) -> int:
    from prunetune.loop.recipe import shipped_recipes
    from prunetune.models import FAMILIES
    from prunetune.table import format_table

    print("families:        " + ", ".join(FAMILIES))
    for title, registry in _registries():
        if not args.verbose:
            print(f"{title + ':':<17}" + ", ".join(registry.names()))
            continue
        print(f"\n{title}:")
        for entry in registry.entries():
            print(f"  {entry.name}: {entry.doc}")
            opts = options_of(entry)
            if opts:
                print(format_table(None, [[f"    {n}", d, doc] for n, d, doc in opts]))
    print(("\n" if args.verbose else "") + f"{'recipes:':<17}" + ", ".join(sorted(shipped_recipes())))
    if args.verbose:
        print("\nrecipe keys (YAML sections, or key=value overrides on the command line):")
        print(format_table(None, [[f"  {n}", d, doc] for n, d, doc in recipe_keys()]))
    return 0
