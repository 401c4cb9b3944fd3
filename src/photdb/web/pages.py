"""The human pages: search, light curves with downloads, candidates with stamps, images.

Each route checks its parameters (one readable line and a 4xx for anything it cannot
take), calls one function of :mod:`photdb.api` (or :mod:`photdb.survey.browse`) on a
pooled read-only connection in a worker thread, and renders a Jinja2 template. The
plot is drawn in the browser by ``static/lightcurve.js`` from
:func:`photdb.plot.plot_series`, the same description the matplotlib plot uses.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import astropy.units as u
import numpy as np
import psycopg
from astropy.table import Column
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from photdb import __version__, api
from photdb.archive.query import QueryError, find_objects, parse_coord, parse_radius
from photdb.export import EXPORT_FORMATS, export_lightcurve
from photdb.lightcurve import band_colour, band_label, magnitude_system
from photdb.plot import plot_series
from photdb.survey import browse
from photdb.web.service import ReadOnlyPool, ServiceError, WebConfig, db_error, log
from photdb.web.stamps import StampError, cutout, stamp_png

__all__ = ["page_routes"]

_ENV = Environment(loader=PackageLoader("photdb.web", "templates"),
                   autoescape=select_autoescape(["html"]))  # fmt: skip
_ENV.globals.update(version=__version__, band_label=band_label, band_colour=band_colour,
                    magnitude_system=magnitude_system)  # fmt: skip
_ENV.filters["fmt"] = lambda v, spec="{:.4f}": "" if _missing(v) else spec.format(v)
_INT = re.compile(r"^\s*\d{1,18}\s*$")
_BAND = re.compile(r"^[A-Za-z0-9_.+-]{1,16}$")
_NAME = re.compile(r"^[\w\s.+*%:'\-()/\[\]]{1,64}$", re.UNICODE)


def _missing(v) -> bool:
    if v is None or v is np.ma.masked:
        return True
    return isinstance(v, float | np.floating) and not math.isfinite(v)


# ------------------------------------------------------------------------- parameters


def _param(request: Request, name: str, *, maxlen: int = 64) -> str | None:
    values = request.query_params.getlist(name)
    if not values or not values[-1].strip():
        return None
    if len(set(values)) > 1:
        raise ServiceError(f"parameter {name} given twice with different values")
    value = values[-1].strip()
    if len(value) > maxlen:
        raise ServiceError(f"parameter {name} is longer than {maxlen} characters")
    if any(ord(ch) < 32 for ch in value):
        raise ServiceError(f"parameter {name} contains control characters")
    return value


def _int_param(request: Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    text = _param(request, name, maxlen=20)
    if text is None:
        return default
    if not _INT.match(text):
        raise ServiceError(f"parameter {name}={text!r} is not a whole number")
    value = int(text)
    if not lo <= value <= hi:
        raise ServiceError(f"parameter {name} must be between {lo} and {hi}")
    return value


def _float_param(request: Request, name: str) -> float | None:
    text = _param(request, name, maxlen=32)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ServiceError(f"parameter {name}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise ServiceError(f"parameter {name} must be a finite number")
    return value


def _band(request: Request, name: str = "filter") -> str | None:
    text = _param(request, name, maxlen=16)
    if text is not None and not _BAND.match(text):
        raise ServiceError(f"parameter {name}={text!r} is not a band name")
    return text


def _radius(request: Request, config: WebConfig, default: str) -> u.Quantity:
    text = _param(request, "radius", maxlen=32) or default
    try:
        r = parse_radius(text, default_unit=u.arcsec)
    except QueryError as exc:
        raise ServiceError(str(exc)) from None
    if r.to_value(u.arcsec) > config.max_cone_arcsec:
        raise ServiceError(f"radius {text!r} is larger than {config.max_cone_arcsec:g} arcsec")
    return r


def _position(request: Request):
    ra, dec = _param(request, "ra", maxlen=32), _param(request, "dec", maxlen=32)
    if ra is None and dec is None:
        return None
    if ra is None or dec is None:
        raise ServiceError("give both ra and dec")
    for name, text in (("ra", ra), ("dec", dec)):
        try:
            value = float(text)
        except ValueError:
            continue  # sexagesimal: parse_coord judges it
        if not math.isfinite(value):
            raise ServiceError(f"parameter {name} must be a finite number")
        if name == "dec" and not -90 <= value <= 90:
            raise ServiceError("dec must be between -90 and 90 degrees")
    try:
        coord = parse_coord(ra, dec)
    except QueryError:
        raise ServiceError(f"cannot read the position ra={ra!r}, dec={dec!r}") from None
    if not (np.isfinite(coord.ra.deg) and np.isfinite(coord.dec.deg)):
        raise ServiceError(f"cannot read the position ra={ra!r}, dec={dec!r}")
    return coord


def _target(request: Request, config: WebConfig) -> dict:
    """The light curve asked for: object name/id, refsource id or position + radius."""
    name, ref = _param(request, "object"), _int_param(request, "refsource", None, 1, 2**62)
    coord = _position(request)
    if sum(x is not None for x in (name, ref, coord)) != 1:
        raise ServiceError("give one of object=NAME, refsource=ID, or ra=, dec= (and radius=)")
    if name is not None and not _NAME.match(name):
        raise ServiceError(f"object name {name!r} has characters no catalogue name has")
    return {"object": name, "refsource": ref, "coord": coord,
            "radius": _radius(request, config, "1arcsec")}  # fmt: skip


# ------------------------------------------------------------------------- helpers


def _html(name: str, status: int = 200, **context) -> HTMLResponse:
    return HTMLResponse(_ENV.get_template(name).render(**context), status_code=status)


def error_page(exc: ServiceError) -> HTMLResponse:
    """A 4xx/5xx page whose message is one line."""
    return _html("error.html", exc.status, message=exc.message, title="error")


def _rows(table) -> list[dict]:
    """Rows as dicts of plain Python values, None for masked or non-finite (column-wise:
    astropy's row access is too slow for 10^4-point light curves)."""
    cols = {}
    for name in table.colnames:
        col = table[name]
        if not isinstance(col, Column):  # mixins (SkyCoord, Time): the pages use ra/dec, iso
            continue
        mask = np.ma.getmaskarray(col)
        values = np.asarray(col).tolist()
        cols[name] = [None if m or _missing(v) else v for v, m in zip(values, mask, strict=True)]
    return [dict(zip(cols, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]


class Pages:
    """The page handlers over one pool."""

    def __init__(self, pool: ReadOnlyPool, config: WebConfig):
        self.pool, self.config = pool, config

    def call(self, fn: Callable, *args, **kw):
        """Run ``fn(conn, ...)`` on a pooled connection; database errors as one line."""
        try:
            with self.pool.connection() as conn:
                return fn(conn, *args, **kw)
        except QueryError as exc:
            raise ServiceError(str(exc), 404 if str(exc).startswith("no ") else 400) from None
        except psycopg.Error as exc:
            raise db_error(exc, self.config.statement_timeout_s) from None

    async def run(self, fn: Callable, *args, **kw):
        return await run_in_threadpool(self.call, fn, *args, **kw)

    # ---------------------------------------------------------------- routes

    async def home(self, request: Request) -> Response:
        def counts(conn):
            return conn.execute(
                "SELECT (SELECT count(*) FROM objects), (SELECT count(*) FROM lightcurves),"
                " (SELECT count(*) FROM galexposures), (SELECT count(*) FROM galimages),"
                " (SELECT count(*) FROM galvarobjs)"
            ).fetchone()

        n = await self.run(counts)
        return _html("home.html", title="photdb", counts=n)

    async def search(self, request: Request) -> Response:
        ref = _int_param(request, "refsource", None, 1, 2**62)
        if ref is not None:
            return RedirectResponse(f"/lightcurve?refsource={ref}", 303)
        q = _param(request, "q")
        if q is None:
            raise ServiceError("type a name, an id or a position (RA Dec) to search for")
        parts = q.replace(",", " ").split()
        if len(parts) == 2 and all(re.match(r"^[-+0-9.:hmsd°'\"]+$", p) for p in parts):
            _radius(request, self.config, "10arcsec")  # refused here if it is no radius
            radius = _param(request, "radius", maxlen=32) or "10arcsec"
            return RedirectResponse("/cone?" + urlencode({"ra": parts[0], "dec": parts[1],
                                                           "radius": radius}), 303)  # fmt: skip
        if not _NAME.match(q):
            raise ServiceError(f"{q!r} is neither a name nor a position")
        found = await self.run(find_objects, q)
        if len(found) == 1:
            return RedirectResponse("/lightcurve?" + urlencode({"object": int(found["id"][0])}),
                                    303)  # fmt: skip
        return _html("objects.html", title=f"objects named {q}", query=q, objects=_rows(found),
                     sources=[], coord=None)  # fmt: skip

    async def cone(self, request: Request) -> Response:
        coord = _position(request)
        if coord is None:
            raise ServiceError("give ra= and dec= (and radius=)")
        radius = _radius(request, self.config, "10arcsec")
        limit = self.config.cone_rows

        def both(conn):
            objs = api.cone(coord, radius, conn=conn, limit=limit)
            srcs = api.cone(coord, min(radius, 30 * u.arcsec), table="galsources", conn=conn,
                            limit=limit)  # fmt: skip
            return objs, srcs[np.ma.getmaskarray(srcs["ref_id"]) | (srcs["ref_id"] < 0)]

        objs, refs = await self.run(both)
        return _html("objects.html", title="cone search", query=None, objects=_rows(objs),
                     sources=_rows(refs), coord=coord, radius=radius,
                     limit=limit)  # fmt: skip

    async def lightcurve(self, request: Request) -> Response:
        target = _target(request, self.config)
        lc = await self.run(self._lightcurve, target)
        spec = plot_series(lc)
        query = {k: v for k, v in request.query_params.items() if k in
                 ("object", "refsource", "ra", "dec", "radius")}  # fmt: skip
        downloads = [(fmt, "/lightcurve." + fmt + "?" + urlencode(query)) for fmt in EXPORT_FORMATS]
        return _html("lightcurve.html", title=spec["title"], lc=lc, meta=lc.meta,
                     points=_rows(lc),
                     spec_json=json.dumps(spec).replace("</", "<\\/"), spec=spec,
                     downloads=downloads, truncated=lc.meta.get("truncated"))  # fmt: skip

    def _lightcurve(self, conn, target):
        lc = api.get_lightcurve(conn, object=target["object"], coord=target["coord"],
                                refsource=target["refsource"], radius=target["radius"])  # fmt: skip
        if len(lc) > self.config.lightcurve_rows:
            meta = dict(lc.meta)
            lc = lc[: self.config.lightcurve_rows]
            lc.meta.update(meta, truncated=self.config.lightcurve_rows)
        return lc

    async def download(self, request: Request) -> Response:
        fmt = request.path_params["fmt"]
        if fmt not in EXPORT_FORMATS:
            raise ServiceError(f"unknown format {fmt[:20]!r}: use {', '.join(EXPORT_FORMATS)}", 404)
        target = _target(request, self.config)
        lc = await self.run(self._lightcurve, target)
        body = await run_in_threadpool(export_lightcurve, lc, fmt)
        suffix, mime = EXPORT_FORMATS[fmt]
        name = lc.meta.get("object_name") or (
            f"ref{target['refsource']}" if target["refsource"] else "lightcurve"
        )
        stem = re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(name))
        return Response(body, media_type=mime, headers={
            "content-disposition": f'attachment; filename="{stem}{suffix}"'})  # fmt: skip

    async def candidates(self, request: Request) -> Response:
        band = _band(request)
        min_rep = _int_param(request, "min_repeats", 2, 1, 10_000)
        mag_min, mag_max = _float_param(request, "mag_min"), _float_param(request, "mag_max")
        coord = _position(request)
        radius = _radius(request, self.config, "60arcsec") if coord is not None else None
        limit = self.config.candidate_rows

        def load(conn):
            counts = api.repeat_counts(filter=band, conn=conn)
            # filtered, ordered and cut in SQL (an index scan of galrefstats)
            where = dict(filter=band, min_repeats=min_rep, mag_range=(mag_min, mag_max),
                         position=coord, radius=radius)  # fmt: skip
            cands = api.variable_candidates(limit=limit, conn=conn, **where)
            total = api.count_candidates(conn=conn, **where)
            outliers = api.reference_outliers(filter=band, limit=limit, conn=conn)
            worst = browse.strongest_detections(conn, [int(i) for i in cands["refsource_id"]])
            filters = [
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT filter FROM galexposures WHERE filter IS NOT NULL ORDER BY 1"
                )
            ]
            return counts, cands, worst, total, filters, outliers  # fmt: skip

        counts, cands, worst, total, filters, outliers = await self.run(load)
        rows = _rows(cands[[c for c in cands.colnames if c != "coord"]])
        for r in rows:
            r["search_stamp"] = worst.get(int(r["refsource_id"]))
        return _html("candidates.html", title="variable candidates", counts=_rows(counts),
                     rows=rows, total=total, limit=limit, filters=filters,
                     outliers=_rows(outliers),
                     form={"filter": band or "", "min_repeats": min_rep,
                           "mag_min": "" if mag_min is None else mag_min,
                           "mag_max": "" if mag_max is None else mag_max,
                           "ra": _param(request, "ra", maxlen=32) or "",
                           "dec": _param(request, "dec", maxlen=32) or "",
                           "radius": _param(request, "radius", maxlen=32) or ""})  # fmt: skip

    async def stamp(self, request: Request) -> Response:
        text = request.path_params["gid"]
        if not _INT.match(text):
            raise ServiceError(f"stamp {text[:30]!r}: not a measurement id", 404)
        size = _int_param(request, "size", 41, 9, 201)
        where = await self.run(browse.source_stamps, int(text))
        if where is None:
            raise ServiceError(f"no measurement {text}", 404)
        folder, filename, hdu, x, y = where[:5]
        if x is None or y is None:
            raise ServiceError(f"measurement {text} has no pixel position", 404)

        def make() -> bytes:
            return stamp_png(cutout(Path(folder) / filename, int(hdu), float(x), float(y), size))

        try:
            png = await run_in_threadpool(make)
        except StampError as exc:
            raise ServiceError(str(exc), 404) from None
        return Response(png, media_type="image/png", headers={"cache-control": "max-age=3600"})

    async def images(self, request: Request) -> Response:
        status = _param(request, "status", maxlen=12)
        if status is not None and status not in ("new", "done", "failed"):
            raise ServiceError("status must be new, done or failed")
        band = _band(request)
        limit = self.config.image_rows
        table = await self.run(browse.images, status=status, filter=band, limit=limit + 1)
        rows = _rows(table[:limit])
        summary: dict[str, int] = {}
        for r in rows:
            key = r["status"] or "not registered"
            summary[key] = summary.get(key, 0) + 1
        return _html("images.html", title="exposures and images", rows=rows,
                     truncated=len(table) > limit, limit=limit, summary=summary,
                     status_filter=status or "", band=band or "")  # fmt: skip


def page_routes(pool: ReadOnlyPool, config: WebConfig) -> list[Route]:
    """The page routes; a :class:`ServiceError` becomes a one-line error page."""
    pages = Pages(pool, config)

    def guarded(handler, *, plain: bool = False):
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as exc:
                err = exc
            except Exception as exc:  # noqa: BLE001 - one line in the log, none to the client
                log.error("page %s failed: %s: %s", request.url.path, type(exc).__name__,
                          str(exc).splitlines()[0][:200] if str(exc) else "")  # fmt: skip
                err = ServiceError("internal error", 500)
            if plain:
                return Response(err.message + "\n", status_code=err.status,
                                media_type="text/plain; charset=utf-8")  # fmt: skip
            return error_page(err)

        return endpoint

    return [
        Route("/", guarded(pages.home)),
        Route("/search", guarded(pages.search)),
        Route("/cone", guarded(pages.cone)),
        Route("/lightcurve", guarded(pages.lightcurve)),
        Route("/lightcurve.{fmt}", guarded(pages.download, plain=True)),
        Route("/candidates", guarded(pages.candidates)),
        Route("/stamp/{gid}.png", guarded(pages.stamp, plain=True)),
        Route("/images", guarded(pages.images)),
    ]
