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
        rows = [("NAME", "TARGET", "STEP", "DATA", "MODE", "TEST NSE", "TEST KGE")]
        for name in names:
            card = get_card(name)
            data = (card.config or {}).get("data") or {}
            source = ":".join(str(data[k]) for k in ("source", "product") if data.get(k)) or "-"
            scores = card.test_scores
            rows.append(
                (
                    name,
                    ",".join(card.targets),
                    str(card.time_step or "-"),
                    source,
                    str(card.forecast_mode or "-"),
                    *(
                        f"{scores[k]:.3f}" if isinstance(scores.get(k), int | float) else "-"
                        for k in ("nse_median", "kge_median")
                    ),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        print(
            "\nscores: median over the test period's basins/cells; `hydroml zoo show NAME` for the whole card"
        )
        return 0
    card = get_card(args.name)
    print(json.dumps(card.to_dict(), indent=2) if args.json else card.summary())
    return 0
