"""``hydroml zoo``: list and describe the pretrained models."""

from __future__ import annotations

import argparse

NAME = "zoo"
HELP = "list the pretrained models or show one's metadata card"
DESCRIPTION = (
    "The model zoo: named pretrained models 'architecture.tag' trained on the demo data by "
    "scripts/train_zoo.py. Use a name with `hydroml forecast NAME --data ...`, or in Python with "
    "hydroml.zoo.load(NAME)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``hydroml zoo``."""
    sub = parser.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    p_list = sub.add_parser("list", help="list the pretrained models with their test scores")
    p_list.add_argument("pattern", nargs="?", default="*", help="glob pattern, e.g. 'lstm.*' (default: all)")
    p_show = sub.add_parser(
        "show", help="show one model's card: inputs, units, training data, scores, licence"
    )
    p_show.add_argument("name", help="zoo name, e.g. lstm.demo_discharge")
    p_show.add_argument("--json", action="store_true", help="print the whole card as JSON")


def run(args: argparse.Namespace) -> int:
    """Run ``hydroml zoo``."""
    import json

    from hydroml.zoo import get_card, list_models

    if args.zoo_command == "list":
        names = list_models(args.pattern)
        if not names:
            print(f"no pretrained model matches {args.pattern!r}")
            return 0
        width = max(len(n) for n in names)
        for name in names:
            card = get_card(name)
            scores = ", ".join(
                f"{k}={v:.3f}" for k, v in card.test_scores.items() if isinstance(v, int | float)
            )
            targets = ",".join(card.targets)
            print(f"{name:<{width}}  -> {targets:<10} {card.training_data}  [{scores}]")
        return 0
    card = get_card(args.name)
    print(json.dumps(card.to_dict(), indent=2) if args.json else card.summary())
    return 0
