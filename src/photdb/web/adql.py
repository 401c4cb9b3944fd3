"""ADQL to PostgreSQL for the TAP service: queryparser plus the checks it does not make.

:func:`translate` is the whole front end. In order:

1. size and character checks (no NUL/control characters, at most
   :data:`MAX_QUERY_CHARS`);
2. the ADQL lexer with an error listener: queryparser's own translator only
   listens to the *parser*, so characters the lexer cannot tokenise (``$``,
   ``\\``, ...) would otherwise be dropped silently (``$$x$$`` becomes ``x``);
3. one statement only: a ``;`` anywhere but at the end is refused (queryparser
   would silently translate the first statement and drop the rest);
4. the parse (queryparser raises ``QuerySyntaxError`` for anything that is not
   an ADQL ``SELECT``: ``DELETE``, ``DROP``, ``INSERT``, ``SELECT ... INTO``,
   ``FOR UPDATE``, casts with ``::``, ``E''`` strings, scalar subqueries, ...);
5. a walk of the parse tree: every table name must be a published one
   (:func:`photdb.web.metadata.adql_table_names`); user-defined functions are
   refused (ADQL's grammar lets *any* identifier be called as a function, so
   ``pg_sleep(100)``, ``pg_read_file(...)``, ``set_config(...)``,
   ``lo_import(...)``, ``dblink(...)``, ``current_setting(...)``... all parse);
   geometry arguments must be numbers or column names and the frame ICRS
   (:func:`_check_geometry`: queryparser pastes POLYGON arguments into a quoted
   literal, so a string argument was SQL injection);
6. translation with queryparser's visitors, with its ``eval`` of geometry
   arguments replaced by a literal-arithmetic evaluator (see
   :func:`_geometry_eval`: queryparser 0.8.0 runs Python ``eval()`` on the text
   of every POINT/CIRCLE/BOX/POLYGON/DISTANCE argument, so an ADQL query was
   remote code execution in the web server);
7. cone rewrites: ``CONTAINS(POINT(ra, dec), CIRCLE(a, b, r)) = 1`` and
   ``DISTANCE(POINT(ra, dec), POINT(a, b)) < r`` on a q3c table become
   ``q3c_join(a, b, ra, dec, r)`` (small cones) or ``q3c_radial_query`` (large);
8. a final scan of the SQL outside quotes for ``--``, ``/*``, ``;`` and ``$``:
   queryparser glues geometry arguments without spaces, so ``ra - -1`` becomes
   ``ra--1``, a comment in PostgreSQL.

Kept in one file (~460 lines) on purpose: every check above relies on the same
queryparser internals (pinned to 0.8.0), and reviewing the front end's safety means
reading them together.
"""

from __future__ import annotations

import ast
import functools
import math
import re
from dataclasses import dataclass, field

import antlr4
from antlr4.error.ErrorListener import ErrorListener
from queryparser.adql import adqltranslator as _qp
from queryparser.adql.ADQLLexer import ADQLLexer
from queryparser.adql.ADQLParser import ADQLParser
from queryparser.exceptions import QueryError, QuerySyntaxError

from photdb.web.metadata import PUBLISHED, adql_table_names

MAX_QUERY_CHARS = 20_000
#: radius (deg) from which a q3c cone is written as q3c_radial_query instead of q3c_join
#: (measured: benchmarks/tap_cone.py; q3c_join is faster for small cones, radial for large)
RADIAL_FROM_DEG = 0.01


#: ADQL functions the grammar sees as user-defined, served by SQL shims
#: (photdb.web.metadata.SHIMS); every other function call is refused
ALLOWED_FUNCTIONS = frozenset({"coord1", "coord2"})


class ADQLError(ValueError):
    """A query the service refuses; the message is safe to show to the user."""


# ------------------------------------------------------------------ queryparser's eval()


_ARITH_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Add, ast.Sub,
                ast.Mult, ast.Div, ast.USub, ast.UAdd)  # fmt: skip


def _geometry_eval(text, *args, **kwargs):
    """Stand-in for the builtin ``eval`` inside queryparser's translator module.

    queryparser calls ``float(eval(arg))`` on the text of geometry arguments and
    treats NameError/SyntaxError/ValueError/AttributeError as "a column name,
    copy it verbatim". Here only literal arithmetic (numbers, + - * /, unary
    signs) is evaluated; everything else raises NameError, i.e. is copied as
    SQL text, which the final scan and PostgreSQL then judge.
    """
    if args or kwargs or not isinstance(text, str) or len(text) > 200:
        raise NameError("not evaluated")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise NameError("not evaluated") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ARITH_NODES):
            raise NameError("not evaluated")
        if isinstance(node, ast.Constant) and (
            isinstance(node.value, bool) or not isinstance(node.value, int | float)
        ):
            raise NameError("not evaluated")
    try:
        value = float(eval(compile(tree, "<adql>", "eval"), {"__builtins__": {}}, {}))  # noqa: S307
    except (ArithmeticError, ValueError, OverflowError):
        raise ValueError("bad number") from None
    if not math.isfinite(value):
        raise ValueError("bad number")
    return value


# Module globals shadow builtins: queryparser's `eval(i)` now calls _geometry_eval.
_qp.eval = _geometry_eval


# ------------------------------------------------------------------ lexing and parsing


class _Collect(ErrorListener):
    def __init__(self):
        super().__init__()
        self.errors: list[str] = []

    def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):  # noqa: N802
        self.errors.append(f"line {line}, column {column + 1}: {msg}")


def _tokens(adql: str) -> list:
    lexer = ADQLLexer(antlr4.InputStream(adql))
    errors = _Collect()
    lexer.removeErrorListeners()
    lexer.addErrorListener(errors)
    tokens = lexer.getAllTokens()
    if errors.errors:
        raise ADQLError("ADQL lexical error, " + errors.errors[0])
    return tokens


def _walk(node, cls):
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, cls):
            yield n
        for i in range(n.getChildCount() - 1, -1, -1):
            stack.append(n.getChild(i))


def _ident(text: str) -> str:
    """Normalise an ADQL (possibly quoted, qualified) name to lower case without quotes."""
    return ".".join(p.strip('"').lower() for p in text.split("."))


# ------------------------------------------------------------------ geometry arguments

_COLREF = re.compile(r'^(?:[A-Za-z][A-Za-z0-9_]*|"[^"]+")(?:\.(?:[A-Za-z][A-Za-z0-9_]*|"[^"]+"))*$')
_GEOMETRY = (
    ADQLParser.PointContext,
    ADQLParser.CircleContext,
    ADQLParser.BoxContext,
    ADQLParser.PolygonContext,
    ADQLParser.DistanceContext,
)


def _check_geometry(tree) -> None:
    """Geometry arguments must be numbers or column names, and the frame ICRS.

    queryparser pastes the *text* of these arguments into its SQL: into a quoted
    literal for POLYGON (``spoly('{(..d,..d)}')``, so a string argument breaks
    out of the literal: ``POLYGON(..., ' || pg_sleep(5) || ')`` ran pg_sleep),
    and through Python ``eval`` for all of them. It also ignores the coordinate
    system, so CIRCLE('GALACTIC', l, b, r) would silently be taken as ICRS.
    """
    for node in _walk(tree, _GEOMETRY):
        numeric_only = isinstance(node, ADQLParser.BoxContext | ADQLParser.PolygonContext)
        for child in node.children or []:
            if isinstance(child, antlr4.TerminalNode):
                continue
            if isinstance(child, ADQLParser.Coord_sysContext):
                frame = child.getText().strip("'").strip().upper()
                if frame not in ("", "ICRS"):
                    raise ADQLError(f"coordinate system {child.getText()} is not supported (ICRS)")
                continue
            if any(True for _ in _walk(child, _GEOMETRY)):
                continue  # a nested POINT/CIRCLE: checked on its own
            for piece in child.getText().split(","):
                if _number(piece) is not None:
                    continue
                if not numeric_only and _COLREF.match(piece):
                    continue
                what = "a number" if numeric_only else "a number or a column name"
                raise ADQLError(f"geometry argument {piece[:60]!r} must be {what}")


# ------------------------------------------------------------------ cone rewrites


@dataclass
class Translation:
    """Result of :func:`translate`."""

    sql: str
    tables: set[str] = field(default_factory=set)
    rewrites: list[str] = field(default_factory=list)


def _aliases(tree) -> dict[str, str]:
    """Correlation name or table name (lower case) -> published table name."""
    known = adql_table_names()
    out: dict[str, str] = {}
    for ref in _walk(tree, ADQLParser.Table_referenceContext):
        names = [c for c in (ref.children or []) if isinstance(c, ADQLParser.Table_nameContext)]
        if not names:
            continue
        table = known.get(_ident(names[0].getText()))
        if table is None:
            continue
        out[table[1]] = table[1]
        out[_ident(names[0].getText())] = table[1]
        for spec in ref.children:
            if isinstance(spec, ADQLParser.Correlation_specificationContext):
                corr = [c for c in _walk(spec, ADQLParser.Correlation_nameContext)]
                if corr:
                    out[_ident(corr[0].getText())] = table[1]
    return out


def _q3c_columns(colx: str, coly: str, aliases: dict[str, str], single: str | None):
    """If colx/coly are the ra/dec columns of one q3c table, return (ra, dec) as SQL."""
    qx, _, nx = _ident(colx).rpartition(".")
    qy, _, ny = _ident(coly).rpartition(".")
    if qx != qy:
        return None
    table = aliases.get(qx) if qx else single
    pub = PUBLISHED.get(table or "")
    if not pub or not pub.position or pub.position[0] != "q3c":
        return None
    if (nx, ny) != pub.position[1:]:
        return None
    return colx, coly


def _cone_sql(ra: str, dec: str, a: float, b: float, r: float) -> str:
    if r >= RADIAL_FROM_DEG:
        return f"q3c_radial_query({ra}, {dec}, {a!r}, {b!r}, {r!r})"
    return f"q3c_join({a!r}, {b!r}, {ra}, {dec}, {r!r})"


def _point_args(point) -> list[str] | None:
    coords = [c for c in point.children if isinstance(c, ADQLParser.CoordinatesContext)]
    if not coords:
        return None
    parts = coords[0].getText().split(",")
    return parts if len(parts) == 2 else None


def _number(text: str) -> float | None:
    try:
        return _geometry_eval(text)
    except (NameError, ValueError):
        return None


def _plan_rewrites(tree, aliases, single) -> dict:
    """Contains/Distance predicates on q3c tables -> their q3c SQL, keyed by parse node."""
    plan = {}
    for pred in _walk(tree, ADQLParser.Contains_predicateContext):
        kids = pred.children or []
        texts = [k.getText() for k in kids]
        if len(kids) != 3 or texts[1] != "=" or "1" not in (texts[0], texts[2]):
            continue
        contains = kids[2] if texts[0] == "1" else kids[0]
        args = [c for c in contains.children or [] if not isinstance(c, antlr4.TerminalNode)]
        if len(args) != 2:
            continue
        points = list(_walk(args[0], ADQLParser.PointContext))
        circles = list(_walk(args[1], ADQLParser.CircleContext))
        if len(points) != 1 or len(circles) != 1:
            continue
        pargs = _point_args(points[0])
        circle = circles[0]
        centre = [c for c in circle.children if isinstance(c, ADQLParser.Circle_centerContext)]
        radius = [c for c in circle.children if isinstance(c, ADQLParser.RadiusContext)]
        if not pargs or not centre or not radius:
            continue
        inner = list(_walk(centre[0], ADQLParser.PointContext))
        cparts = (_point_args(inner[0]) or []) if inner else centre[0].getText().split(",")
        nums = [_number(x) for x in (*cparts, radius[0].getText())] if len(cparts) == 2 else []
        if len(nums) != 3 or any(v is None for v in nums):
            continue
        cols = _q3c_columns(pargs[0], pargs[1], aliases, single)
        if cols:
            plan[pred] = _cone_sql(*cols, *nums)
    for pred in _walk(tree, ADQLParser.Comparison_predicateContext):
        kids = pred.children or []
        if len(kids) != 3 or kids[1].getText() not in ("<", "<="):
            continue
        dist = list(_walk(kids[0], ADQLParser.DistanceContext))
        r = _number(kids[2].getText())
        if len(dist) != 1 or r is None or kids[0].getText() != dist[0].getText():
            continue
        anc = pred.parentCtx
        while anc is not None and not isinstance(
            anc, ADQLParser.Where_clauseContext | ADQLParser.Join_conditionContext
        ):
            anc = anc.parentCtx
        if anc is None:
            continue
        d = dist[0]
        points = list(_walk(d, ADQLParser.PointContext))
        if len(points) == 2:
            p1, p2 = _point_args(points[0]), _point_args(points[1])
        else:  # DISTANCE(ra, dec, a, b)
            args = [c.getText() for c in d.children if not isinstance(c, antlr4.TerminalNode)]
            p1, p2 = (args[0:2], args[2:4]) if len(args) == 4 else (None, None)
        if not p1 or not p2:
            continue
        for cols_txt, cen_txt in ((p1, p2), (p2, p1)):
            cen = [_number(x) for x in cen_txt]
            cols = _q3c_columns(cols_txt[0], cols_txt[1], aliases, single)
            if cols and all(v is not None for v in cen):
                plan[d] = _cone_sql(*cols, *cen, r)
                break
    return plan


# ------------------------------------------------------------------ the final scan


def _scan_sql(text: str) -> None:
    """Refuse comments, extra statements and dollar quotes outside literals."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            j = i + 1
            while j < n:
                if text[j] == ch:
                    if j + 1 < n and text[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            if j >= n:
                raise ADQLError("unterminated quoted string or identifier")
            i = j + 1
            continue
        two = text[i : i + 2]
        if two in ("--", "/*"):
            raise ADQLError("comments are not allowed (check for '- -' in a geometry argument)")
        if ch == ";" and text[i + 1 :].strip():
            raise ADQLError("only one statement is allowed")
        if ch in "$\\":
            raise ADQLError(f"character {ch!r} is not allowed outside strings")
        i += 1


# ------------------------------------------------------------------ output formatting


def _outside_literals(text: str, fn) -> str:
    """Apply ``fn`` to the parts of ``text`` outside '...' and "..." (doubled quotes kept)."""
    out, buf, i, n = [], [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            out.append(fn("".join(buf)))
            buf = []
            j = i + 1
            while j < n and not (text[j] == ch and not (j + 1 < n and text[j + 1] == ch)):
                j += 2 if text[j] == ch else 1
            out.append(text[i : j + 1])
            i = j + 1
            continue
        buf.append(ch)
        i += 1
    out.append(fn("".join(buf)))
    return "".join(out)


def _tidy(part: str) -> str:
    # queryparser's FormatListener.format_query, but never inside string literals
    # (it turns 'a_ b . c' into 'ab.c')
    for a, b in (("_ ", ""), (" . ", "."), (" , ", ", "), ("( ", "("), (" )", ")")):
        part = part.replace(a, b)
    return part


def _format(tr, visitor) -> str:
    """queryparser's ADQLQueryTranslator.translate with literal-safe formatting."""
    limits = _qp.SelectQueryListener()
    tr.walker.walk(limits, tr.tree)
    fmt = _qp.FormatListener(tr.parser, visitor.contexts, limits.limit_contexts)
    tr.walker.walk(fmt, tr.tree)
    return _outside_literals(" ".join(fmt.nodes).rstrip(";"), _tidy).strip()


# ------------------------------------------------------------------ translate


@functools.lru_cache(maxsize=256)
def translate(adql: str) -> Translation:
    """Check and translate one ADQL query to PostgreSQL (see the module docstring).

    Cached by query text: the pure-Python ANTLR parse costs ~0.1-0.3 s for a
    query with geometry, which dominates a small TAP query (TOPCAT and pyvo
    repeat their TAP_SCHEMA queries verbatim).

    Raises
    ------
    ADQLError
        With a message fit for the user.
    """
    if not isinstance(adql, str) or not adql.strip():
        raise ADQLError("QUERY is empty")
    if len(adql) > MAX_QUERY_CHARS:
        raise ADQLError(f"QUERY is longer than {MAX_QUERY_CHARS} characters")
    if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", adql):
        raise ADQLError("QUERY contains control characters")
    tokens = _tokens(adql)
    visible = [t.text for t in tokens if t.channel == 0 and t.text.strip()]
    if ";" in visible[:-1]:
        raise ADQLError("only one statement is allowed")
    try:
        tr = _qp.ADQLQueryTranslator(adql)
    except QuerySyntaxError as exc:
        line, col, tok = (exc.syntax_errors or [(0, 0, "?")])[0]
        raise ADQLError(
            f"ADQL syntax error at line {line}, column {col + 1} near {tok!r}"
        ) from None
    except QueryError as exc:
        raise ADQLError(f"ADQL not supported: {exc.messages}") from None
    tree = tr.tree

    known = adql_table_names()
    tables: set[str] = set()
    for node in _walk(tree, ADQLParser.Table_nameContext):
        name = _ident(node.getText())
        if name not in known:
            raise ADQLError(f"table {node.getText()!r} is not published here (see /tap/tables)")
        tables.add(".".join(known[name]))
    for node in _walk(tree, ADQLParser.User_defined_functionContext):
        fname = node.getChild(0).getText() if node.getChildCount() else "?"
        if fname.lower() not in ALLOWED_FUNCTIONS:
            raise ADQLError(f"function {fname!r} is not supported by this service")
    if any(True for _ in _walk(tree, ADQLParser.With_queryContext)):
        raise ADQLError("WITH is not supported")
    _check_geometry(tree)

    aliases = _aliases(tree)
    single = next(iter(tables)).split(".")[-1] if len(tables) == 1 else None
    rewrites = _plan_rewrites(tree, aliases, single)
    try:
        geo = _qp.ADQLGeometryTranslationVisitor(output_sql="postgresql")
        geo.visit(tree)
        fun = _qp.ADQLFunctionsTranslationVisitor(geo.contexts, output_sql="postgresql")
        fun.visit(tree)
        for node, text in rewrites.items():
            fun.contexts[node] = text
        out = _format(tr, fun)
    except QueryError as exc:
        raise ADQLError(f"ADQL not supported: {exc.messages}") from None
    except QuerySyntaxError:
        raise ADQLError("ADQL syntax error") from None
    except Exception as exc:  # noqa: BLE001 - queryparser raises TypeError/IndexError on odd input
        raise ADQLError(f"cannot translate this query ({type(exc).__name__})") from None
    out = out.strip().rstrip(";").strip()
    _scan_sql(out)
    return Translation(out, tables, sorted(rewrites.values()))
