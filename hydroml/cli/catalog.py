"""``hydroml catalog``: list and describe the datasets of the data catalog."""

from __future__ import annotations

NAME = "catalog"
HELP = "list the datasets of the data catalog, or show one entry"
DESCRIPTION = """List the datasets hydroml knows (data_catalog/*.yaml plus your own folders in
HYDROML_CATALOG_PATH), or show one entry: description, licence, citation, reader, path template, variable
mapping (source name and units -> canonical name) and products.

Examples:
  hydroml catalog list
  hydroml catalog show era5_cities
  hydroml catalog show moselle_mhm --root ../shared/data      # also checks that the files exist

In Python: hydroml.catalog.open("era5_cities", root="../shared/data")."""


def add_arguments(parser) -> None:
    import argparse

    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the examples' line breaks
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p_list = sub.add_parser("list", help="list the catalog entries")
    p_list.add_argument(
        "--catalog-path", action="append", metavar="DIR", help="extra catalog folder (repeatable)"
    )
    p_show = sub.add_parser("show", help="show one catalog entry")
    p_show.add_argument("name", help="entry name (see `hydroml catalog list`)")
    p_show.add_argument(
        "--root", metavar="DIR", help="data root: also resolve the entry's path(s) and check they exist"
    )
    p_show.add_argument(
        "--catalog-path", action="append", metavar="DIR", help="extra catalog folder (repeatable)"
    )


def run(args) -> int:
    from hydroml import catalog
    from hydroml.exceptions import CatalogError

    if args.action == "list":
        entries = catalog.load_entries(args.catalog_path)
        rows = []
        for name in sorted(entries):
            e = entries[name]
            readers = sorted({e.resolve(p)["reader"] for p in e.products} if e.products else {e.reader})
            steps = sorted(
                {str(e.resolve(p)["time_step"]) for p in e.products} if e.products else {str(e.time_step)}
            )
            desc = " ".join(e.description.split())
            rows.append((name, ",".join(readers), "/".join(s for s in steps if s != "None") or "-", desc))
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        w2 = max(len(r[2]) for r in rows)
        print(f"{'NAME':<{w0}}  {'READER':<{w1}}  {'STEP':<{w2}}  DESCRIPTION")
        for name, reader, step, desc in rows:
            short = desc if len(desc) <= 70 else desc[:67] + "..."
            print(f"{name:<{w0}}  {reader:<{w1}}  {step:<{w2}}  {short}")
        return 0
    entry = catalog.get(args.name, args.catalog_path)
    print(entry.summary())
    if args.root is not None:
        parts = entry.product_names() or [None]
        status = 0
        for p in parts:
            label = f"product {p}" if p else "data"
            try:
                path = entry.resolve_path(args.root, p)
                print(f"  {label}: {path if path else '(generated, no files)'} [found]")
            except CatalogError as err:
                print(f"  {label}: {err}")
                status = 1
        return status
    return 0
