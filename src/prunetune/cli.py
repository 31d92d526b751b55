"""The `prunetune` command line: argparse subcommands whose handlers live in `prunetune.commands`.

Handlers only parse and delegate. A `UserError` anywhere becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from prunetune.errors import UserError

# Each module in prunetune/commands/ exposes register(subparsers); its parser sets `handler`.
COMMANDS = (
    "ls", "inspect", "prune", "import_gguf", "export", "recover", "eval", "score",
    "plan", "validate", "run", "report", "pick", "reference", "demo",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="prunetune", description="Gradual structured pruning for reasoning LLMs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"prunetune.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"prunetune.commands.{name}":
                continue  # not built yet
            raise
        mod.register(sub)
    for command in sub.choices.values():
        _bound_numbers(command)
    return parser


def _bound_numbers(parser: argparse.ArgumentParser) -> None:
    """Every `type=int` / `type=float` flag parsed by the typed config's number rules and default limits
    (`--limit 10**40`, `--seed -1`, `--gen-speedup inf` are one-line errors naming the flag)."""
    from prunetune.config import SEED_MAX, bounded_flag

    for action in parser._actions:
        if action.type is int:
            action.type = bounded_flag(int, ge=0, le=SEED_MAX) if action.dest == "seed" else bounded_flag(int)
        elif action.type is float:
            action.type = bounded_flag(float)
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _bound_numbers(child)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides go anywhere on the line, also after an option (`plan R --gpus 8 k=v`)
        if isinstance(getattr(args, "overrides", None), list) and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides += extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.handler(args) or 0)
    except UserError as e:
        print(f"prunetune: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        from prunetune.io import WRITE_ERRNOS

        if e.errno not in WRITE_ERRNOS:
            raise
        where = f" '{e.filename}'" if e.filename else ""
        print(f"prunetune: error: cannot write{where}: {e.strerror} (nothing was kept)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prunetune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
