"""Virtual Observatory interfaces: Simple Cone Search 1.03 and synchronous TAP 1.1.

Routes (mounted by :func:`photdb.web.app.create_app`)::

    GET      /scs/objects         SCS 1.03 over objects (pgSphere coordequ, GiST)
    GET      /scs/galsources      SCS 1.03 over galsources (ra/dec, q3c)
    GET|POST /tap/sync            TAP 1.1 synchronous ADQL (REQUEST=doQuery)
    GET      /tap/capabilities    VOSI capabilities (TAPRegExt)
    GET      /tap/availability    VOSI availability
    GET      /tap/tables          VOSI tables (VODataService tableset); /tap/tables/{name}
    GET      /tap                 a short text index

Every query runs on the read-only pool of :mod:`photdb.web.service`, in a ``READ
ONLY`` transaction with its own ``SET LOCAL statement_timeout``, through a
server-side cursor that fetches at most MAXREC+1 rows. ADQL is checked and
translated by :mod:`photdb.web.adql`; only published tables
(:mod:`photdb.web.metadata`) can be named. Errors are VOTables (TAP:
``QUERY_STATUS=ERROR``; SCS: ``INFO name="Error"``) with HTTP 400 (the client's
fault) or 503/500 (ours); no traceback ever leaves the process.

Cone search and TAP share the parameter parsing, the query runner and the result
FIELDs, so they stay in one module (~490 lines); the documents are written by
:mod:`photdb.web.votable`.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from photdb.web import metadata as md
from photdb.web import votable as vt
from photdb.web.adql import RADIAL_FROM_DEG, ADQLError, translate
from photdb.web.service import ReadOnlyPool, ServiceError, WebConfig, db_error, log

VOError = ServiceError

_SPOINT = re.compile(r"^\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\)$")
_SCIRCLE = re.compile(r"^<\s*\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\)\s*,\s*([-+0-9.eE]+)\s*>$")


def _convert(value, pg_type: str):
    """pgSphere text (radians) -> degrees lists; everything else unchanged."""
    if value is None or not isinstance(value, str):
        return value
    if pg_type == "spoint":
        m = _SPOINT.match(value)
        return [math.degrees(float(m[1])), math.degrees(float(m[2]))] if m else None
    if pg_type == "scircle":
        m = _SCIRCLE.match(value)
        return [math.degrees(float(x)) for x in m.groups()] if m else None
    return value


# ------------------------------------------------------------------ the service


class VOService:
    """State shared by the VO routes: the pool, the published catalogue, the limits."""

    def __init__(self, pool: ReadOnlyPool, config: WebConfig):
        self.config = config
        self.pool = pool
        self.started = datetime.now(UTC)
        self._tables: list[md.TableInfo] | None = None
        self._by_attr: dict[tuple[int, int], md.ColumnInfo] = {}
        self._type_names: dict[int, str] = {}
        self._lock = threading.Lock()

    # -- catalogue -------------------------------------------------------------------
    def tables(self) -> list[md.TableInfo]:
        with self._lock:
            if self._tables is None:
                with self.pool.connection() as conn:
                    tables = md.catalogue(conn)
                    lookup = md.column_lookup(tables)
                    rows = conn.execute(
                        """SELECT c.oid, a.attnum, n.nspname, c.relname, a.attname
                           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                           JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE n.nspname IN ('public', 'tap_schema') AND a.attnum > 0
                             AND c.relkind IN ('r', 'v', 'm')"""
                    ).fetchall()
                    self._type_names = dict(conn.execute("SELECT oid, typname FROM pg_type"))
                    conn.rollback()
                self._by_attr = {
                    (oid, num): lookup[(s, t, a)]
                    for oid, num, s, t, a in rows
                    if (s, t, a) in lookup
                }
                self._tables = tables
            return self._tables

    def type_name(self, oid: int) -> str:
        return self._type_names.get(oid, "text")

    # -- running SQL ---------------------------------------------------------------------
    def run(self, query: str, params, maxrec: int):
        """Run one read-only query; return (fields, rows, overflow)."""
        self.tables()
        try:
            with self.pool.connection() as conn:
                with conn.transaction():
                    conn.execute("SET TRANSACTION READ ONLY")
                    # again per transaction: a session-level change cannot outlive it
                    conn.execute(f"SET LOCAL statement_timeout = {self.pool.timeout_ms}")
                    cur = conn.cursor(name="vo_query")
                    cur.execute(query, params)
                    rows = cur.fetchmany(maxrec + 1) if maxrec > 0 else []
                    desc = cur.description or []
                    res = cur.pgresult
                    sources = [
                        (res.ftable(i), res.ftablecol(i)) if res is not None else (0, 0)
                        for i in range(len(desc))
                    ]
                    cur.close()
        except psycopg.Error as exc:
            raise db_error(exc, self.config.statement_timeout_s) from None
        overflow = maxrec == 0 or len(rows) > maxrec
        rows = rows[:maxrec]
        fields, types = [], []
        for d, src in zip(desc, sources, strict=True):
            pg_type = self.type_name(d.type_code)
            dt, size, xtype = md.votable_type(pg_type)
            meta = self._by_attr.get(src)
            if meta is not None and meta.pg_type == pg_type:
                # a plain column: its declared type, as TAP_SCHEMA says (taplint MDQ)
                dt, size, xtype = meta.datatype, meta.arraysize, meta.xtype
            fields.append(
                vt.Field(
                    d.name, dt, size,
                    unit=meta.unit if meta else "deg" if xtype in ("point", "circle") else None,
                    ucd=meta.ucd if meta else None, xtype=xtype,
                    description=meta.description if meta else None,
                )
            )  # fmt: skip
            types.append(pg_type)
        if any(t in ("spoint", "scircle") for t in types):  # pgSphere text -> degrees
            rows = [[_convert(v, t) for v, t in zip(r, types, strict=True)] for r in rows]
        return unicode_fields(fields, rows), rows, overflow


def unicode_fields(fields: list[vt.Field], rows) -> list[vt.Field]:
    """Declare text columns holding non-ASCII values as unicodeChar (VOTable char is ASCII)."""
    for i, f in enumerate(fields):
        if f.datatype == "char" and any(isinstance(r[i], str) and not r[i].isascii() for r in rows):
            f.datatype = "unicodeChar"
    return fields


# ------------------------------------------------------------------ parameters


async def _params(request: Request, limit: int) -> dict[str, str]:
    """Query string and form body merged, names upper-cased (DALI: case-insensitive)."""
    out: dict[str, str] = {}
    items = list(request.query_params.multi_items())
    if request.method == "POST":
        ctype = request.headers.get("content-type", "")
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            raise VOError(f"request body larger than {limit} bytes", 413)
        body = b""
        async for chunk in request.stream():  # chunked bodies have no Content-Length
            body += chunk
            if len(body) > limit:
                raise VOError(f"request body larger than {limit} bytes", 413)
        request._body = body  # Starlette's cache: form() parses what was read here
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            try:
                form = await request.form(max_files=0, max_fields=100)
            except Exception:  # noqa: BLE001 - malformed bodies: one message
                raise VOError("cannot read the form body (uploads are not supported)") from None
            for k, v in form.multi_items():
                if not isinstance(v, str):
                    raise VOError("file uploads are not supported")
                items.append((k, v))
        elif ctype and (await request.body()).strip():
            raise VOError(f"unsupported request body type {ctype.split(';')[0]!r}")
    for k, v in items:
        key = k.upper()
        if key in out and out[key] != v:
            raise VOError(f"parameter {key} given twice with different values")
        out[key] = v
    return out


def _float(params: dict, name: str) -> float:
    text = params.get(name)
    if text is None or not text.strip():
        raise VOError(f"missing parameter {name}")
    if len(text) > 64:
        raise VOError(f"parameter {name} is too long")
    try:
        value = float(text)
    except ValueError:
        raise VOError(f"parameter {name}={text[:64]!r} is not a number") from None
    if not math.isfinite(value):
        raise VOError(f"parameter {name} must be finite")
    return value


def _int(params: dict, name: str, default: int, lo: int, hi: int) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    if len(text) > 20 or not re.fullmatch(r"\s*[+]?\d+\s*", text):
        raise VOError(f"parameter {name}={text[:20]!r} is not a non-negative integer")
    value = int(text)
    if not lo <= value <= hi:
        raise VOError(f"parameter {name} must be between {lo} and {hi}")
    return value


# ------------------------------------------------------------------ SCS


@dataclass(frozen=True)
class ConeTable:
    """How SCS reads one table: SQL pieces and the columns of each verbosity."""

    table: str
    select: dict[str, str]  # output column -> SQL expression (ra, dec in degrees)
    where: str
    dist: str
    verb1: tuple[str, ...]
    verb2: tuple[str, ...]


CONES = {
    "objects": ConeTable(
        "objects",
        {
            "id": "id",
            "ra": "degrees(long(coordequ))",
            "dec": "degrees(lat(coordequ))",
            "gaia_name": "gaia_name",
            "simbad_name": "simbad_name",
            "vsx_name": "vsx_name",
            "ucac4_name": "ucac4_name",
            "apass_name": "apass_name",
            "class": "class",
            "description": "description",
        },
        "coordequ <@ scircle(spoint(radians(%(ra)s), radians(%(dec)s)), radians(%(sr)s))",
        "degrees(coordequ <-> spoint(radians(%(ra)s), radians(%(dec)s)))",
        ("id", "ra", "dec"),
        ("id", "ra", "dec", "gaia_name", "simbad_name", "vsx_name"),
    ),
    "galsources": ConeTable(
        "galsources",
        {c: c for c in md.PUBLISHED["galsources"].columns},
        "{cone}",
        "q3c_dist(ra, dec, %(ra)s, %(dec)s)",
        ("id", "ra", "dec"),
        ("id", "ra", "dec", "galimage_id", "mag", "magerr", "ref_id", "flags"),
    ),
}

_SCS_UCD1 = {"id": "ID_MAIN", "ra": "POS_EQ_RA_MAIN", "dec": "POS_EQ_DEC_MAIN"}


def scs_fields(cone: ConeTable, names, style: str) -> list[vt.Field]:
    pub = md.PUBLISHED[cone.table].columns
    out = []
    for name in names:
        meta = pub.get(name, md.Col())
        ucd = meta.ucd
        unit = meta.unit
        if name in ("ra", "dec"):
            unit = "deg"
            ucd = f"pos.eq.{name};meta.main"
        if name == "id":
            ucd = "meta.id;meta.main"
        if style == "ucd1" and name in _SCS_UCD1:
            ucd = _SCS_UCD1[name]
        dt = {"id": "long", "ra": "double", "dec": "double"}.get(name)
        if dt is None:
            dt = _GALSOURCES_TYPES.get(name, "char") if cone.table == "galsources" else "char"
        desc = meta.description or ("right ascension (ICRS)" if name == "ra" else
                                    "declination (ICRS)" if name == "dec" else None)  # fmt: skip
        out.append(vt.Field(name, dt, "*" if dt == "char" else None, unit, ucd, None, desc))
    out.append(vt.Field("_r", "double", None, "deg", "pos.angDistance", None,
                        "distance from the cone centre"))  # fmt: skip
    return out


_GALSOURCES_TYPES = {
    "galimage_id": "int", "mag": "float", "magerr": "float", "magerr_raw": "float",
    "flux": "float", "dflux": "float", "x": "float", "y": "float", "ref_id": "long",
    "qf": "float", "rchi2": "float", "fracflux": "float", "flags": "int",
}  # fmt: skip


def scs_search(svc: VOService, table: str, params: dict) -> tuple[str, int]:
    cfg = svc.config
    cone = CONES[table]
    ra = _float(params, "RA")
    dec = _float(params, "DEC")
    sr = _float(params, "SR")
    if not -90.0 <= dec <= 90.0:
        raise VOError("DEC must be between -90 and 90 degrees")
    if sr < 0 or sr > cfg.scs_max_sr_deg:
        raise VOError(f"SR must be between 0 and {cfg.scs_max_sr_deg} degrees")
    ra %= 360.0
    verb = _int(params, "VERB", 2, 1, 3)
    maxrec = _int(params, "MAXREC", cfg.scs_maxrec, 0, cfg.scs_maxrec)
    names = cone.verb1 if verb == 1 else cone.verb2 if verb == 2 else tuple(cone.select)
    fields = scs_fields(cone, names, cfg.scs_ucd_style)
    if sr == 0 or maxrec == 0:  # metadata query (SCS 1.03 section 2, pyvo's .columns)
        return vt.votable(fields, [], infos_before=[vt.info("QUERY_STATUS", "OK")]), 200
    cols = ", ".join(f"{cone.select[n]} AS {_qi(n)}" for n in names)
    where = cone.where
    if "{cone}" in where:  # q3c: q3c_join is faster for small cones, radial for large ones
        where = (
            "q3c_join(%(ra)s, %(dec)s, ra, dec, %(sr)s)"
            if sr < RADIAL_FROM_DEG
            else "q3c_radial_query(ra, dec, %(ra)s, %(dec)s, %(sr)s)"
        )
    query = (
        f"SELECT {cols}, {cone.dist} AS _r FROM {cone.table} WHERE {where} ORDER BY _r, 1 "
        f"LIMIT {maxrec + 1}"
    )
    t0 = time.perf_counter()
    _, rows, overflow = svc.run(query, {"ra": ra, "dec": dec, "sr": sr}, maxrec)
    after = [vt.info("QUERY_STATUS", "OVERFLOW", f"truncated at {maxrec} rows")] if overflow else []
    body = vt.votable(
        unicode_fields(fields, rows),
        rows,
        infos_before=[
            vt.info("QUERY_STATUS", "OK"),
            vt.info("query_ms", f"{(time.perf_counter() - t0) * 1e3:.1f}"),
        ],
        infos_after=after,
        description=f"photdb cone search on {table}",
    )
    return body, 200


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ------------------------------------------------------------------ TAP


FORMATS = {
    "votable": "votable", "application/x-votable+xml": "votable", "text/xml": "votable",
    "application/x-votable+xml;serialization=tabledata": "votable", "votable/td": "votable",
    "csv": "csv", "text/csv": "csv", "text/csv;header=present": "csv",
}  # fmt: skip


def tap_sync(svc: VOService, params: dict) -> Response:
    cfg = svc.config
    request = params.get("REQUEST", "doQuery")
    if request.lower() != "doquery":
        raise VOError(f"REQUEST={request[:40]!r} is not supported (only doQuery)")
    lang = params.get("LANG", "ADQL")
    if lang.upper() not in ("ADQL", "ADQL-2.0", "ADQL-2.1"):
        raise VOError(f"LANG={lang[:40]!r} is not supported (only ADQL)")
    if "UPLOAD" in params:
        raise VOError("UPLOAD is not supported")
    fmt_in = (params.get("RESPONSEFORMAT") or params.get("FORMAT") or "votable").strip()
    fmt = FORMATS.get(fmt_in.lower().replace(" ", ""))
    if fmt is None:
        raise VOError(f"output format {fmt_in[:60]!r} is not supported (votable, csv)")
    maxrec = _int(params, "MAXREC", cfg.default_maxrec, 0, cfg.hard_maxrec)
    adql = params.get("QUERY")
    if adql is None:
        raise VOError("missing parameter QUERY")
    try:
        tr = translate(adql)
    except ADQLError as exc:
        raise VOError(str(exc)) from None
    t0 = time.perf_counter()
    fields, rows, overflow = svc.run(tr.sql, None, maxrec)
    ms = (time.perf_counter() - t0) * 1e3
    if fmt == "csv":
        return Response(vt.csv_text(fields, rows), media_type="text/csv; charset=utf-8")
    after = (
        [vt.info("QUERY_STATUS", "OVERFLOW", f"truncated at MAXREC={maxrec}")] if overflow else []
    )
    body = vt.votable(
        fields,
        rows,
        infos_before=[
            vt.info("QUERY_STATUS", "OK"),
            vt.info("QUERY", adql),
            vt.info("query_ms", f"{ms:.1f}"),
            vt.info("request_date", datetime.now(UTC).isoformat(timespec="seconds")),
        ],
        infos_after=after,
    )
    return Response(body, media_type=vt.VOTABLE_CONTENT_TYPE)


# ------------------------------------------------------------------ routes


def _base_url(request: Request, suffix: str) -> str:
    return str(request.base_url).rstrip("/") + suffix


def vo_error(exc: ServiceError, *, scs: bool = False) -> Response:
    """A service error as the VOTable the standards ask for."""
    return Response(vt.error_votable(exc.message, scs=scs), status_code=exc.status,
                    media_type=vt.VOTABLE_CONTENT_TYPE)  # fmt: skip


def vo_routes(svc: VOService) -> list[Route]:
    """The SCS and TAP routes over ``svc``."""

    def guarded(handler, *, scs: bool = False):
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as exc:
                return vo_error(exc, scs=scs)
            except Exception:  # noqa: BLE001 - never a traceback to the client
                log.exception("VO request failed: %s", request.url.path)
                return vo_error(ServiceError("internal error", 500), scs=scs)

        return endpoint

    async def scs(request: Request) -> Response:
        table = request.path_params["table"]
        if table not in CONES:
            raise ServiceError(f"no cone search for {table[:40]!r}", 404)
        params = await _params(request, svc.config.max_body_bytes)
        body, status = await run_in_threadpool(scs_search, svc, table, params)
        return Response(body, status_code=status, media_type=vt.VOTABLE_CONTENT_TYPE)

    async def sync(request: Request) -> Response:
        params = await _params(request, svc.config.max_body_bytes)
        return await run_in_threadpool(tap_sync, svc, params)

    async def capabilities(request: Request) -> Response:
        cfg = svc.config
        xml = vt.capabilities(_base_url(request, "/tap"), default_limit=cfg.default_maxrec,
                              hard_limit=cfg.hard_maxrec,
                              timeout_s=int(math.ceil(cfg.statement_timeout_s)))  # fmt: skip
        return Response(xml, media_type="text/xml")

    async def availability(request: Request) -> Response:
        def probe() -> tuple[bool, str]:
            try:
                with svc.pool.connection() as conn:
                    conn.execute("SELECT 1").fetchone()
                    conn.rollback()
                return True, "service is accepting queries"
            except (ServiceError, psycopg.Error):
                return False, "the database is not reachable"

        ok, note = await run_in_threadpool(probe)
        xml = vt.availability(ok, svc.started.isoformat(timespec="seconds"), note)
        return Response(xml, media_type="text/xml")

    async def tables(request: Request) -> Response:
        ts = await run_in_threadpool(svc.tables)
        name = request.path_params.get("name")
        if name is not None:
            for t in ts:
                if t.table_name.lower() == name.lower():
                    return Response(vt.single_table(t), media_type="text/xml")
            raise ServiceError(f"no table {name[:80]!r}", 404)
        detail = request.query_params.get("detail", "max").lower() != "min"
        return Response(vt.tableset(ts, detail=detail), media_type="text/xml")

    async def index(request: Request) -> Response:
        return PlainTextResponse(
            "photdb TAP service (ADQL, synchronous)\n"
            "  sync:         /tap/sync?REQUEST=doQuery&LANG=ADQL&QUERY=...\n"
            "  capabilities: /tap/capabilities\n  tables:       /tap/tables\n"
            "cone search: /scs/objects?RA=&DEC=&SR=  /scs/galsources?RA=&DEC=&SR=\n"
        )

    return [
        Route("/scs/{table}", guarded(scs, scs=True), methods=["GET", "POST"]),
        Route("/tap/sync", guarded(sync), methods=["GET", "POST"]),
        Route("/tap/capabilities", guarded(capabilities), methods=["GET"]),
        Route("/tap/availability", guarded(availability), methods=["GET"]),
        Route("/tap/tables", guarded(tables), methods=["GET"]),
        Route("/tap/tables/{name}", guarded(tables), methods=["GET"]),
        Route("/tap", index, methods=["GET"]),
    ]
