"""The ``cliplens`` command line: one sub-command per module listed in :data:`COMMANDS`.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from cliplens.core.errors import CliplensError

COMMANDS: dict[str, str] = {
    "models": "cliplens.jobs.models_command",
    "probe": "cliplens.jobs.probe_command",
    "index": "cliplens.jobs.index_command",
    "serve": "cliplens.serve.serve_command",
    "extract": "cliplens.jobs.extract_command",
    "train-sae": "cliplens.jobs.train_sae_command",
    "saes": "cliplens.jobs.saes_command",
    "topk": "cliplens.jobs.topk_command",
    "eval": "cliplens.jobs.eval_command",
    "heads": "cliplens.jobs.heads_command",
    "demo": "cliplens.demo.__main__",
}


def _load(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cliplens", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = _load(name)
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(_load(args.command).run(args))
    except CliplensError as exc:
        print(f"cliplens {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
