"""The data catalog: one YAML entry per dataset, strictly validated, opened with one call.

Each ``data_catalog/<name>.yaml`` says where a dataset lives (a path template under a data root), which reader
parses its layout, how its variables map onto hydroml's canonical names and units, and its licence and citation.
:func:`open` resolves the path, calls the reader and converts the result with
:func:`hydroml.data.variables.to_canonical`::

    import hydroml.catalog
    hydroml.catalog.list_entries()
    ds = hydroml.catalog.open("era5_cities", root="../shared/data")

The data root comes from the ``root`` argument, else the ``HYDROML_DATA_ROOT`` environment variable. Extra
catalog folders (your own datasets) come from the ``catalog_path`` argument or ``HYDROML_CATALOG_PATH``
(folders separated by ``os.pathsep``); an entry there overrides a built-in one of the same name.

Entry keys (unknown keys are errors):

``name`` (= file name), ``description``, ``licence``, ``citation``, ``doi``, ``url``, ``reader``,
``reader_options``, ``path``, ``variables``, ``passthrough``, ``time_step`` (``daily``, ``monthly``, ``hourly``,
``static``, ``mixed``), ``extent`` (``region``, ``bbox`` [W, S, E, N], ``period`` [start, end], ``basins``,
``stations``, ``grid``, ``crs``), ``synthetic``, ``notes``, and ``products`` (named parts of a dataset, e.g.
``forcings``/``streamflow``/``attributes``, each with its own ``description``, ``reader``, ``reader_options``,
``path``, ``variables``, ``passthrough``, ``time_step``, ``extent``, ``notes``; unset keys are inherited from
the entry) with an optional ``default_product``.
"""

from __future__ import annotations

import difflib
import glob
import logging
import os
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydroml.exceptions import CatalogError

log = logging.getLogger("hydroml.catalog")

__all__ = [
    "Entry",
    "list_entries",
    "get",
    "open",
    "load_entries",
    "load_entry_file",
    "builtin_catalog_dir",
    "catalog_dirs",
    "data_root",
    "ENTRY_KEYS",
    "PRODUCT_KEYS",
    "EXTENT_KEYS",
]

ENTRY_KEYS = (
    "name",
    "description",
    "licence",
    "citation",
    "doi",
    "url",
    "reader",
    "reader_options",
    "path",
    "variables",
    "passthrough",
    "time_step",
    "extent",
    "products",
    "default_product",
    "synthetic",
    "notes",
)
PRODUCT_KEYS = (
    "description",
    "reader",
    "reader_options",
    "path",
    "variables",
    "passthrough",
    "time_step",
    "extent",
    "notes",
)
EXTENT_KEYS = ("region", "bbox", "period", "basins", "stations", "grid", "crs")
TIME_STEPS = ("daily", "monthly", "hourly", "static", "mixed")
_REQUIRED = ("name", "description", "licence", "citation")
_NOT_DATA = {"variables.yaml"}


# --------------------------------------------------------------------------------------------------------
# where the YAML files are
# --------------------------------------------------------------------------------------------------------
def builtin_catalog_dir() -> Path:
    """The folder of the built-in catalog (package ``hydroml._catalog``, mapped onto ``data_catalog/``).

    Uses :mod:`importlib.resources`; in a development checkout where the package mapping is not installed,
    falls back to the repository's ``data_catalog/`` folder.
    """
    import importlib.resources

    try:
        marker = importlib.resources.files("hydroml._catalog").joinpath("variables.yaml")
        if marker.is_file():  # also for a namespace package (no __init__.py), whose files() is multiplexed
            return Path(str(marker)).parent
    except (ModuleNotFoundError, TypeError, ValueError):
        pass
    repo = Path(__file__).resolve().parent.parent / "data_catalog"
    if (repo / "variables.yaml").is_file():
        return repo
    raise CatalogError(
        "the built-in data catalog was not found: neither the package 'hydroml._catalog' nor the folder "
        f"{repo} holds variables.yaml"
    )


def catalog_dirs(catalog_path: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """Folders searched for entries: the built-in one, then ``catalog_path`` or ``HYDROML_CATALOG_PATH``."""
    dirs = [builtin_catalog_dir()]
    extra: list[str | os.PathLike] = []
    if catalog_path is None:
        env = os.environ.get("HYDROML_CATALOG_PATH", "")
        extra = [p for p in env.split(os.pathsep) if p]
    elif isinstance(catalog_path, str | os.PathLike):
        extra = [catalog_path]
    else:
        extra = list(catalog_path)
    for p in extra:
        path = Path(p).expanduser()
        if not path.is_dir():
            raise CatalogError(
                f"catalog folder {path} does not exist (from catalog_path / HYDROML_CATALOG_PATH)"
            )
        dirs.append(path)
    return dirs


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``HYDROML_DATA_ROOT``.

    Raises
    ------
    CatalogError
        If neither is set.
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("HYDROML_DATA_ROOT")
    if env:
        return Path(env).expanduser()
    raise CatalogError("no data root: pass root=... or set the environment variable HYDROML_DATA_ROOT")


# --------------------------------------------------------------------------------------------------------
# entries
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One validated catalog entry.

    Attributes mirror the YAML keys; ``source_file`` is the YAML file it came from.
    """

    name: str
    description: str
    licence: str
    citation: str
    source_file: Path
    doi: str | None = None
    url: str | None = None
    reader: str | None = None
    reader_options: dict = field(default_factory=dict)
    path: str | None = None
    variables: dict = field(default_factory=dict)
    passthrough: list[str] | str | None = None
    time_step: str | None = None
    extent: dict = field(default_factory=dict)
    products: dict = field(default_factory=dict)
    default_product: str | None = None
    synthetic: bool = False
    notes: str | None = None

    # ----------------------------------------------------------------------------------------------------
    def product_names(self) -> list[str]:
        """Names of the entry's products (empty for single-part datasets)."""
        return list(self.products)

    def resolve(self, product: str | None = None) -> dict[str, Any]:
        """The effective settings of the entry or one of its products (product keys override the entry's).

        Raises
        ------
        CatalogError
            If ``product`` is unknown, or is needed (several products, no default) but not given.
        """
        base = {
            "description": self.description,
            "reader": self.reader,
            "reader_options": dict(self.reader_options),
            "path": self.path,
            "variables": dict(self.variables),
            "passthrough": self.passthrough,
            "time_step": self.time_step,
            "extent": dict(self.extent),
            "notes": self.notes,
        }
        if not self.products:
            if product is not None:
                raise CatalogError(f"catalog entry {self.name!r} has no products; product={product!r} given")
            return {**base, "product": None}
        product = product or self.default_product
        if product is None:
            raise CatalogError(
                f"catalog entry {self.name!r} has several products; choose one with product=...: "
                f"{', '.join(self.products)}"
            )
        if product not in self.products:
            raise CatalogError(
                f"catalog entry {self.name!r} has no product {product!r}; products: {', '.join(self.products)}"
            )
        spec = self.products[product]
        out = dict(base)
        for k, v in spec.items():
            if k == "reader_options":
                out[k] = {**base["reader_options"], **v}
            else:
                out[k] = v
        out["product"] = product
        return out

    def resolve_path(
        self, root: str | os.PathLike | None = None, product: str | None = None, **fmt: Any
    ) -> Path | None:
        """Resolve the path template under the data root and check that the data exist.

        Parameters
        ----------
        root : path, optional
            Data root (default ``HYDROML_DATA_ROOT``).
        product : str, optional
            Product whose path to resolve.
        **fmt
            Values for placeholders of the template other than ``{root}`` (e.g. ``{basin}``).

        Returns
        -------
        pathlib.Path or None
            None when the entry needs no path (e.g. generated data).

        Raises
        ------
        CatalogError
            If the data root is not set, a placeholder has no value, or nothing exists at the resolved path
            (the message names the path and the root).
        """
        spec = self.resolve(product)
        template = spec["path"]
        if template is None:
            return None
        where = f"catalog entry {self.name!r}" + (
            f" (product {spec['product']!r})" if spec["product"] else ""
        )
        base = data_root(root)
        names = _template_fields(template, f"{where} ({self.source_file})")
        missing = names - {"root"} - set(fmt)
        if missing:
            raise CatalogError(f"{where}: path template {template!r} needs value(s) for {sorted(missing)}")
        for key, value in fmt.items():
            text = str(value)
            if "/" in text or "\\" in text or text in (".", "..") or text != text.strip() or "\0" in text:
                raise CatalogError(
                    f"{where}: value {text!r} for placeholder {{{key}}} of path template {template!r} is not "
                    "allowed; expected a plain name (no '/', '\\' or '..')"
                )
        try:
            text = os.path.expandvars(os.path.expanduser(template.format(root=str(base), **fmt)))
        except (KeyError, IndexError, ValueError) as err:
            raise CatalogError(f"{where}: cannot fill path template {template!r}: {err}") from None
        path = Path(text)
        if not path.is_absolute():
            path = base / path
        inside = os.path.normpath(os.path.abspath(base))
        resolved = os.path.normpath(os.path.abspath(path))
        if resolved != inside and not resolved.startswith(inside.rstrip(os.sep) + os.sep):
            raise CatalogError(
                f"{where}: path {template!r} resolves to {resolved}, outside the data root {inside}; "
                f"expected a path under the data root ({self.source_file})"
            )
        exists = bool(glob.glob(str(path))) if any(c in str(path) for c in "*?[") else path.exists()
        if not exists:
            raise CatalogError(
                f"{where}: data not found at {path} (path {template!r} under data root {base}); pass root=... "
                "or set HYDROML_DATA_ROOT to the folder that holds it"
            )
        return path

    def summary(self) -> str:
        """A readable multi-line description of the entry."""
        lines = [f"{self.name}: {self.description.strip()}"]
        lines.append(f"  licence:   {self.licence}")
        lines.append(f"  citation:  {self.citation.strip()}")
        if self.doi:
            lines.append(f"  doi:       {self.doi}")
        if self.url:
            lines.append(f"  url:       {self.url}")
        if self.synthetic:
            lines.append("  synthetic: yes (generated data, not observations)")
        for title, spec in [(None, self.resolve_base())] + [(p, self.products[p]) for p in self.products]:
            indent = "  " if title is None else "    "
            if title is not None:
                lines.append(f"  product {title}:" + (" (default)" if title == self.default_product else ""))
                if spec.get("description"):
                    lines.append(f"{indent}{spec['description'].strip()}")
            for key in ("reader", "path", "time_step"):
                if spec.get(key):
                    lines.append(f"{indent}{key + ':':<10} {spec[key]}")
            if spec.get("reader_options"):
                lines.append(f"{indent}options:   {spec['reader_options']}")
            if spec.get("variables"):
                lines.append(f"{indent}variables:")
                for canon, v in spec["variables"].items():
                    src = v if isinstance(v, str) else (v or {}).get("source", canon)
                    units = "" if isinstance(v, str) else (v or {}).get("units", "")
                    lines.append(f"{indent}  {canon:<11} <- {src}" + (f" [{units}]" if units else ""))
            if spec.get("passthrough"):
                lines.append(f"{indent}passthrough: {spec['passthrough']}")
        if self.extent:
            lines.append("  extent:")
            for k, v in self.extent.items():
                lines.append(f"    {k}: {v}")
        if self.notes:
            lines.append(f"  notes: {self.notes.strip()}")
        lines.append(f"  defined in: {self.source_file}")
        return "\n".join(lines)

    def resolve_base(self) -> dict[str, Any]:
        """The entry's own settings, without any product."""
        return {
            "reader": self.reader,
            "path": self.path,
            "time_step": self.time_step,
            "reader_options": self.reader_options,
            "variables": self.variables,
            "passthrough": self.passthrough,
        }

    def open(self, root: str | os.PathLike | None = None, product: str | None = None, **kwargs: Any):
        """Open this entry; see :func:`hydroml.catalog.open`."""
        return _open_entry(self, root=root, product=product, **kwargs)


# --------------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------------
def _check_keys(obj: Mapping, valid: Sequence[str], where: str) -> None:
    for key in obj:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise CatalogError(f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(valid)}")


def _check_type(value: Any, types: type | tuple, key: str, where: str, what: str) -> None:
    if not isinstance(value, types):
        raise CatalogError(f"{where}: key {key!r} must be {what}, found {type(value).__name__} {value!r}")


def _template_fields(template: str, where: str) -> set[str]:
    """Placeholder names of a path template; an unbalanced ``{`` / ``}`` is a :class:`CatalogError`."""
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f}
    except ValueError as err:
        raise CatalogError(
            f"{where}: path template {template!r} is not valid ({err}); expected placeholders like "
            "'{root}/data/{basin}.nc' with balanced braces (write '{{' for a literal brace)"
        ) from None


def _validate_part(spec: Mapping, where: str) -> None:
    for key in ("description", "reader", "path", "notes"):
        if key in spec and spec[key] is not None:
            _check_type(spec[key], str, key, where, "a string")
    if spec.get("path") is not None:
        for f in _template_fields(spec["path"], where):
            if not f.isidentifier():
                raise CatalogError(
                    f"{where}: path template {spec['path']!r} has placeholder {{{f}}}; expected names such as "
                    "{root} or {basin}"
                )
    if spec.get("reader_options") is not None:
        _check_type(spec["reader_options"], dict, "reader_options", where, "a mapping")
    if spec.get("variables") is not None:
        _check_type(spec["variables"], dict, "variables", where, "a mapping")
        from hydroml.data.variables import validate_mapping

        validate_mapping(spec["variables"], where)
    pt = spec.get("passthrough")
    if pt is not None and pt != "*" and not (isinstance(pt, list) and all(isinstance(p, str) for p in pt)):
        raise CatalogError(f"{where}: key 'passthrough' must be a list of names or '*', found {pt!r}")
    ts = spec.get("time_step")
    if ts is not None and ts not in TIME_STEPS:
        raise CatalogError(f"{where}: key 'time_step' must be one of {', '.join(TIME_STEPS)}, found {ts!r}")
    ext = spec.get("extent")
    if ext is not None:
        _check_type(ext, dict, "extent", where, "a mapping")
        _check_keys(ext, EXTENT_KEYS, f"{where}, extent")
        bbox = ext.get("bbox")
        if bbox is not None:
            ok = isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(b, int | float) for b in bbox)
            if not ok or not (bbox[0] <= bbox[2] and bbox[1] <= bbox[3]):
                raise CatalogError(f"{where}: extent bbox must be [west, south, east, north], found {bbox!r}")
        period = ext.get("period")
        if period is not None and not (isinstance(period, list) and len(period) == 2):
            raise CatalogError(f"{where}: extent period must be [start, end], found {period!r}")


def load_entry_file(path: str | os.PathLike) -> Entry:
    """Read and strictly validate one catalog YAML file.

    Raises
    ------
    CatalogError
        Unknown key (naming it, the file and the valid keys), missing required key, wrong type, or a ``name``
        that differs from the file name.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise CatalogError(f"catalog file {path} does not exist") from None
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _ENTRY_CACHE:
        _ENTRY_CACHE[key] = _load_entry_file(path)
    return _ENTRY_CACHE[key]


_ENTRY_CACHE: dict[tuple, Entry] = {}


def _load_entry_file(path: Path) -> Entry:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        raw = yaml.load(path.read_text(), Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as err:
        raise CatalogError(f"{path}: not valid YAML: {err}") from None
    where = str(path)
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: a catalog entry must be a mapping of keys, found {type(raw).__name__}")
    _check_keys(raw, ENTRY_KEYS, where)
    for key in _REQUIRED:
        if not raw.get(key):
            raise CatalogError(f"{where}: required key {key!r} is missing or empty")
        _check_type(raw[key], str, key, where, "a string")
    if raw["name"] != path.stem:
        raise CatalogError(f"{where}: entry name {raw['name']!r} differs from the file name {path.stem!r}")
    for key in ("doi", "url", "default_product"):
        if raw.get(key) is not None:
            _check_type(raw[key], str, key, where, "a string")
    if raw.get("synthetic") is not None:
        _check_type(raw["synthetic"], bool, "synthetic", where, "true or false")
    _validate_part(raw, where)
    products = raw.get("products") or {}
    _check_type(products, dict, "products", where, "a mapping")
    for pname, pspec in products.items():
        pwhere = f"{where}, product {pname!r}"
        _check_type(pspec, dict, pname, where, "a mapping")
        _check_keys(pspec, PRODUCT_KEYS, pwhere)
        _validate_part(pspec, pwhere)
        if not (pspec.get("reader") or raw.get("reader")):
            raise CatalogError(f"{pwhere}: no reader (set 'reader' in the product or the entry)")
    if not products and not raw.get("reader"):
        raise CatalogError(f"{where}: required key 'reader' is missing")
    if raw.get("default_product") is not None and raw["default_product"] not in products:
        raise CatalogError(
            f"{where}: default_product {raw['default_product']!r} is not a product; products: "
            f"{', '.join(products) or 'none'}"
        )
    return Entry(
        name=raw["name"],
        description=raw["description"],
        licence=raw["licence"],
        citation=raw["citation"],
        source_file=path,
        doi=raw.get("doi"),
        url=raw.get("url"),
        reader=raw.get("reader"),
        reader_options=dict(raw.get("reader_options") or {}),
        path=raw.get("path"),
        variables=dict(raw.get("variables") or {}),
        passthrough=raw.get("passthrough"),
        time_step=raw.get("time_step"),
        extent=dict(raw.get("extent") or {}),
        products={k: dict(v) for k, v in products.items()},
        default_product=raw.get("default_product"),
        synthetic=bool(raw.get("synthetic", False)),
        notes=raw.get("notes"),
    )


def load_entries(catalog_path: str | os.PathLike | Sequence | None = None) -> dict[str, Entry]:
    """Load every entry of the built-in catalog and of the extra catalog folders.

    Later folders override earlier ones (a user entry replaces a built-in of the same name); two files with the
    same name in one folder are an error.
    """
    entries: dict[str, Entry] = {}
    for folder in catalog_dirs(catalog_path):
        seen: dict[str, Path] = {}
        for f in sorted(list(folder.glob("*.yaml")) + list(folder.glob("*.yml"))):
            if f.name in _NOT_DATA or f.name.startswith(("_", ".")):
                continue
            entry = load_entry_file(f)
            if entry.name in seen:
                raise CatalogError(
                    f"catalog entry {entry.name!r} is defined twice: {seen[entry.name]} and {f}"
                )
            seen[entry.name] = f
            if entry.name in entries:
                log.info(
                    "catalog entry %r from %s overrides %s", entry.name, f, entries[entry.name].source_file
                )
            entries[entry.name] = entry
    return entries


def list_entries(catalog_path: str | os.PathLike | Sequence | None = None) -> list[str]:
    """Names of the catalog entries, sorted.

    Examples
    --------
    >>> "era5_cities" in list_entries()
    True
    """
    return sorted(load_entries(catalog_path))


def get(name: str, catalog_path: str | os.PathLike | Sequence | None = None) -> Entry:
    """The catalog entry ``name``.

    Raises
    ------
    CatalogError
        If there is no such entry; the message lists the known ones.
    """
    entries = load_entries(catalog_path)
    if name not in entries:
        close = difflib.get_close_matches(name, list(entries), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CatalogError(f"no catalog entry {name!r}{hint}; entries: {', '.join(sorted(entries))}")
    return entries[name]


def open(  # noqa: A001 - the catalog's verb
    name: str,
    root: str | os.PathLike | None = None,
    product: str | None = None,
    *,
    convert: bool = True,
    period: slice | tuple | None = None,
    catalog_path: str | os.PathLike | Sequence | None = None,
    **kwargs: Any,
):
    """Open a catalog dataset as an :class:`xarray.Dataset` in canonical names and units.

    Parameters
    ----------
    name : str
        Entry name (see :func:`list_entries`).
    root : path, optional
        Data root under which the entry's path is resolved; default ``HYDROML_DATA_ROOT``.
    product : str, optional
        Part of a multi-part dataset (e.g. ``"streamflow"``); default the entry's ``default_product``.
    convert : bool
        Apply the entry's variable mapping (canonical names and units). False returns the reader's output.
    period : (start, end) or slice, optional
        Keep only this period (inclusive), whatever the reader; an empty selection raises
        :class:`~hydroml.exceptions.DataError` naming the period the data cover.
    catalog_path : path or list of paths, optional
        Extra catalog folders (default ``HYDROML_CATALOG_PATH``).
    **kwargs
        Values for placeholders of the path template, then options passed to the reader (overriding the
        entry's ``reader_options``).

    Returns
    -------
    xarray.Dataset
        With attributes ``catalog_entry``, ``licence``, ``citation`` (and ``doi``).

    Raises
    ------
    CatalogError
        Unknown entry or product, data root not set, data not found.
    DataError, UnitError
        From the reader or the conversion.

    Examples
    --------
    >>> ds = open("era5_cities", root="../shared/data")  # doctest: +SKIP
    >>> ds["pr"].attrs["units"]  # doctest: +SKIP
    'mm/day'
    """
    entry = get(name, catalog_path)
    return _open_entry(entry, root=root, product=product, convert=convert, period=period, **kwargs)


def _check_reader_options(reader: Any, name: str, options: Mapping, where: str) -> None:
    """Refuse options the reader does not take, naming them and the valid ones."""
    import inspect

    params = list(inspect.signature(reader).parameters.values())[1:]
    valid = [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    forwards = getattr(reader, "forwards", None)
    if forwards is not None:
        valid += [v for v in forwards() if v not in valid]
    elif any(p.kind is p.VAR_KEYWORD for p in params) and not valid:
        return
    bad = [k for k in options if k not in valid]
    if bad:
        close = difflib.get_close_matches(str(bad[0]), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise CatalogError(
            f"{where}: unknown reader option(s) {bad} for reader {name!r}{hint}; valid options: "
            f"{', '.join(valid) or 'none'}"
        )


def _open_entry(entry: Entry, root=None, product=None, convert: bool = True, period=None, **kwargs: Any):
    from hydroml.data.readers import get_reader

    spec = entry.resolve(product)
    placeholders = _template_fields(spec["path"], str(entry.source_file)) if spec["path"] else set()
    fmt = {k: kwargs.pop(k) for k in list(kwargs) if k in placeholders}
    path = entry.resolve_path(root, spec["product"], **fmt)
    reader = get_reader(spec["reader"])
    options = {**spec["reader_options"], **kwargs}
    label = entry.name + (f"[{spec['product']}]" if spec["product"] else "")
    _check_reader_options(reader, spec["reader"], options, f"catalog entry {label!r} ({entry.source_file})")
    log.info("opening %s with reader %r from %s", label, spec["reader"], path)
    ds = reader(path, **options)
    if period is not None:
        from hydroml.data.io import select_time

        ds = select_time(ds, period, source=label)
    if convert and (spec["variables"] or spec["passthrough"]):
        from hydroml.data.variables import to_canonical

        ts = spec["time_step"] if spec["time_step"] in ("daily", "monthly", "hourly") else None
        ds = to_canonical(
            ds,
            spec["variables"],
            source=f"{label} ({path})" if path else label,
            time_step=ts,
            passthrough=spec["passthrough"],
        )
    ds.attrs.update(
        {
            "catalog_entry": label,
            "licence": entry.licence,
            "citation": entry.citation.strip(),
        }
    )
    if entry.doi:
        ds.attrs["doi"] = entry.doi
    if entry.synthetic:
        ds.attrs["synthetic"] = "yes: generated data, not observations"
    return ds
