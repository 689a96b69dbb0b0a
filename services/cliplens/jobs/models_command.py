"""``cliplens models``: list the registered model ids."""

from __future__ import annotations

import argparse

from cliplens.core.models import ModelRegistry

HELP = "list registered model ids (the shipped registry plus $CLIPLENS_MODELS)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", help="a model registry JSON file to list instead of the default")


def run(args: argparse.Namespace) -> int:
    registry = ModelRegistry.from_file(args.registry) if args.registry else ModelRegistry.default()
    for model_id in registry.ids():
        spec = registry.get(model_id)
        print(f"{model_id:<20} {spec.arch:<24} {spec.pretrained or '(random weights)'}")
        if spec.description:
            print(f"{'':<20} {spec.description}")
    return 0
