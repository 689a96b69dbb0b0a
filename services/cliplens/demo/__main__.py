"""``cliplens demo`` / ``make demo``: the whole pipeline offline on the demo model (see pipeline.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "run the offline end-to-end demo: extract, train an SAE, top-k, serve over gRPC, report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("demo-out"), help="output directory (default: demo-out)"
    )
    parser.add_argument("--epochs", type=int, default=20, help="SAE training epochs (default: 20)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (for the in-process evaluation)")


def run(args: argparse.Namespace) -> int:
    from cliplens.demo.pipeline import run_demo

    run_demo(args.out, args.epochs, args.device)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="cliplens demo", description=HELP)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
