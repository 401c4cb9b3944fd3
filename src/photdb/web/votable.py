"""VOTable 1.4 (TABLEDATA), CSV and the VOSI XML documents, written as plain text.

Nothing here talks to the database: callers pass field descriptions and rows.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from xml.sax.saxutils import escape, quoteattr

VOTABLE_NS = "http://www.ivoa.net/xml/VOTable/v1.3"
VOTABLE_MIME = "application/x-votable+xml"
VOTABLE_CONTENT_TYPE = VOTABLE_MIME
XSI = "http://www.w3.org/2001/XMLSchema-instance"


@dataclass
class Field:
    """A VOTable FIELD."""

    name: str
    datatype: str
    arraysize: str | None = None
    unit: str | None = None
    ucd: str | None = None
    xtype: str | None = None
    description: str | None = None
    utype: str | None = None

    def xml(self, used: set[str]) -> str:
        ident = _unique_id(self.name, used)
        attrs = [f"name={quoteattr(self.name)}", f"ID={quoteattr(ident)}",
                 f"datatype={quoteattr(self.datatype)}"]  # fmt: skip
        for key, val in (("arraysize", self.arraysize), ("unit", self.unit), ("ucd", self.ucd),
                         ("xtype", self.xtype), ("utype", self.utype)):  # fmt: skip
            if val:
                attrs.append(f"{key}={quoteattr(val)}")
        inner = f"<DESCRIPTION>{_text(self.description)}</DESCRIPTION>" if self.description else ""
        if self.datatype in ("short", "int", "long"):
            # TABLEDATA has no empty integer: declare the null value
            inner += '<VALUES null="{}"/>'.format(
                {"short": -32768, "int": -2147483648, "long": -9223372036854775808}[self.datatype]
            )
        return f"<FIELD {' '.join(attrs)}>{inner}</FIELD>"


_BAD_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: str) -> str:
    """Escape for XML character data, dropping characters XML 1.0 cannot carry."""
    return escape(_BAD_XML.sub("\ufffd", str(value)))


def _unique_id(name: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "col"
    if not (base[0].isalpha() or base[0] == "_"):
        base = "_" + base
    ident, k = base, 1
    while ident in used:
        k += 1
        ident = f"{base}_{k}"
    used.add(ident)
    return ident


def cell(value, f: Field) -> str:
    """One TD's text for ``value`` (already converted to Python/list) in field ``f``."""
    if value is None:
        if f.datatype == "short":
            return "-32768"
        if f.datatype == "int":
            return "-2147483648"
        if f.datatype == "long":
            return "-9223372036854775808"
        return ""
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        return (
            "NaN"
            if math.isnan(value)
            else ("+Inf" if value > 0 else "-Inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, Decimal):
        return str(float(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return " ".join(cell(v, f) for v in value)
    return _text(value)


_NULLS = {"short": "-32768", "int": "-2147483648", "long": "-9223372036854775808"}


def _float_cell(value) -> str:
    if value is None:
        return ""
    if type(value) is float:
        if value != value:
            return "NaN"
        if value in (math.inf, -math.inf):
            return "+Inf" if value > 0 else "-Inf"
        return repr(value)
    return str(float(value)) if isinstance(value, Decimal) else _text(value)


def _cell_writer(f: Field):
    """A fast TD writer for one field (the generic :func:`cell` for anything unusual)."""
    if f.arraysize is None and f.datatype in _NULLS:
        null = _NULLS[f.datatype]
        return lambda v: null if v is None else (str(v) if type(v) is int else cell(v, f))
    if f.arraysize is None and f.datatype in ("double", "float"):
        return lambda v: _float_cell(v) if v is None or type(v) is float else cell(v, f)
    return lambda v: cell(v, f)


def info(name: str, value: str, content: str | None = None) -> str:
    body = _text(content) if content is not None else ""
    value = quoteattr(_BAD_XML.sub("?", str(value)))
    return f"<INFO name={quoteattr(name)} value={value}>{body}</INFO>"


def votable(
    fields: Sequence[Field],
    rows: Iterable[Sequence],
    *,
    infos_before: Sequence[str] = (),
    infos_after: Sequence[str] = (),
    root_infos: Sequence[str] = (),
    description: str | None = None,
    resource_type: str = "results",
) -> str:
    """A VOTable document with one RESOURCE and one TABLE in TABLEDATA serialisation.

    ``infos_after`` go after the TABLE inside the RESOURCE (where DALI puts
    ``QUERY_STATUS=OVERFLOW``); ``root_infos`` directly under VOTABLE (where
    SCS 1.03 puts ``INFO name="Error"``).
    """
    out = io.StringIO()
    w = out.write
    w('<?xml version="1.0" encoding="UTF-8"?>\n')
    w(f'<VOTABLE version="1.4" xmlns="{VOTABLE_NS}" xmlns:xsi="{XSI}">\n')
    if description:
        w(f"<DESCRIPTION>{_text(description)}</DESCRIPTION>\n")
    for i in root_infos:
        w(i + "\n")
    w(f'<RESOURCE type="{resource_type}">\n')
    for i in infos_before:
        w(i + "\n")
    w("<TABLE>\n")
    used: set[str] = set()
    for f in fields:
        w(f.xml(used) + "\n")
    w("<DATA><TABLEDATA>\n")
    writers = [_cell_writer(f) for f in fields]
    for row in rows:
        w("<TR><TD>")
        w("</TD><TD>".join([wr(v) for wr, v in zip(writers, row, strict=True)]))
        w("</TD></TR>\n")
    w("</TABLEDATA></DATA>\n</TABLE>\n")
    for i in infos_after:
        w(i + "\n")
    w("</RESOURCE>\n</VOTABLE>\n")
    return out.getvalue()


def error_votable(message: str, *, scs: bool = False) -> str:
    """DALI/TAP error document (QUERY_STATUS=ERROR) or the SCS 1.03 one (INFO name=Error)."""
    head = '<?xml version="1.0" encoding="UTF-8"?>\n'
    head += f'<VOTABLE version="1.4" xmlns="{VOTABLE_NS}" xmlns:xsi="{XSI}">\n'
    if scs:
        # SCS 1.03 section 3: an INFO named "Error" directly under VOTABLE (pyvo looks there
        # first), and a DALI status inside the RESOURCE for newer clients
        return (
            head
            + info("Error", message)
            + '\n<RESOURCE type="results">\n'
            + info("QUERY_STATUS", "ERROR", message)
            + "\n</RESOURCE>\n</VOTABLE>\n"
        )
    return (
        head
        + '<RESOURCE type="results">\n'
        + info("QUERY_STATUS", "ERROR", message)
        + "\n</RESOURCE>\n</VOTABLE>\n"
    )


def csv_text(fields: Sequence[Field], rows: Iterable[Sequence]) -> str:
    """RFC 4180 CSV with a header line; arrays space-separated, NULL empty."""
    out = io.StringIO()
    wr = csv.writer(out, lineterminator="\r\n")
    wr.writerow([f.name for f in fields])
    for row in rows:
        wr.writerow(
            [
                ""
                if v is None
                else " ".join(map(str, v))
                if isinstance(v, list | tuple)
                else v.isoformat()
                if isinstance(v, datetime | date)
                else v
                for v in row
            ]
        )
    return out.getvalue()


# ------------------------------------------------------------------ VOSI documents

CAPABILITIES_NS = (
    'xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
    'xmlns:vr="http://www.ivoa.net/xml/VOResource/v1.0" '
    'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
    'xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0" '
    f'xmlns:xsi="{XSI}"'
)


def capabilities(base: str, *, default_limit: int, hard_limit: int, timeout_s: int) -> str:
    """VOSI capabilities of the TAP service at ``base`` (…/tap), TAPRegExt 1.0."""
    b = escape(base)
    geo = "".join(
        f"<feature><form>{f}</form></feature>"
        for f in ("POINT", "CIRCLE", "BOX", "POLYGON", "CONTAINS", "INTERSECTS", "DISTANCE", "AREA")
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<vosi:capabilities {CAPABILITIES_NS}>
 <capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">
  <interface xsi:type="vs:ParamHTTP" role="std" version="1.1">
   <accessURL use="base">{b}</accessURL>
  </interface>
  <language>
   <name>ADQL</name>
   <version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>
   <description>ADQL 2.0 translated by queryparser-python3 to PostgreSQL with pgSphere;
cones on q3c-indexed tables are rewritten to q3c. No user-defined functions.</description>
   <languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adqlgeo">{geo}</languageFeatures>
  </language>
  <outputFormat ivo-id="ivo://ivoa.net/std/TAPRegExt#output-votable-td">
   <mime>{VOTABLE_MIME}</mime><alias>votable</alias>
  </outputFormat>
  <outputFormat><mime>text/csv</mime><alias>csv</alias></outputFormat>
  <executionDuration><hard>{timeout_s}</hard></executionDuration>
  <outputLimit>
   <default unit="row">{default_limit}</default><hard unit="row">{hard_limit}</hard>
  </outputLimit>
 </capability>
 <capability standardID="ivo://ivoa.net/std/VOSI#capabilities">
  <interface xsi:type="vs:ParamHTTP"><accessURL use="full">{b}/capabilities</accessURL></interface>
 </capability>
 <capability standardID="ivo://ivoa.net/std/VOSI#availability">
  <interface xsi:type="vs:ParamHTTP"><accessURL use="full">{b}/availability</accessURL></interface>
 </capability>
 <capability standardID="ivo://ivoa.net/std/VOSI#tables-1.1">
  <interface xsi:type="vs:ParamHTTP" version="1.1">
   <accessURL use="full">{b}/tables</accessURL>
  </interface>
 </capability>
</vosi:capabilities>
"""


def availability(available: bool, up_since: str, note: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">
 <vosi:available>{"true" if available else "false"}</vosi:available>
 <vosi:upSince>{escape(up_since)}</vosi:upSince>
 <vosi:note>{_text(note)}</vosi:note>
</vosi:availability>
"""


def _column_xml(c) -> str:
    parts = [f"<name>{_text(c.column_name)}</name>"]
    if c.description:
        parts.append(f"<description>{_text(c.description)}</description>")
    if c.unit:
        parts.append(f"<unit>{_text(c.unit)}</unit>")
    if c.ucd:
        parts.append(f"<ucd>{_text(c.ucd)}</ucd>")
    attrs = f' arraysize="{c.arraysize}"' if c.arraysize else ""
    attrs += f' extendedType="{c.xtype}"' if c.xtype else ""
    parts.append(f'<dataType xsi:type="vs:VOTableType"{attrs}>{c.datatype}</dataType>')
    if c.indexed:
        parts.append("<flag>indexed</flag>")
    if c.principal:
        parts.append("<flag>principal</flag>")
    if c.std:
        parts.append("<flag>std</flag>")
    return "<column>" + "".join(parts) + "</column>"


def _table_xml(t, detail: bool) -> str:
    parts = [f'<table type="{t.table_type}">', f"<name>{_text(t.table_name)}</name>"]
    if t.description:
        parts.append(f"<description>{_text(t.description)}</description>")
    if detail:
        parts += [_column_xml(c) for c in t.columns]
        for fcol, target, tcol in t.foreign_keys:
            parts.append(
                f"<foreignKey><targetTable>{_text(target)}</targetTable><fkColumn>"
                f"<fromColumn>{_text(fcol)}</fromColumn><targetColumn>{_text(tcol)}"
                "</targetColumn></fkColumn></foreignKey>"
            )
    parts.append("</table>")
    return "".join(parts)


TABLES_NS = (
    'xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" '
    'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
    f'xmlns:xsi="{XSI}"'
)


def tableset(tables, *, detail: bool = True) -> str:
    """VOSI tables document (VODataService 1.1 tableset)."""
    by_schema: dict[str, list] = {}
    for t in tables:
        by_schema.setdefault(t.schema_name, []).append(t)
    body = []
    for schema, ts in by_schema.items():
        body.append(f"<schema><name>{_text(schema)}</name>")
        body += [_table_xml(t, detail) for t in ts]
        body.append("</schema>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<vosi:tableset {TABLES_NS}>\n" + "\n".join(body) + "\n</vosi:tableset>\n"
    )


def single_table(t) -> str:
    """VOSI 1.1 per-table document (root vosi:table)."""
    inner = _table_xml(t, True)
    inner = inner.replace(f'<table type="{t.table_type}">', "", 1)[: -len("</table>")]
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<vosi:table {TABLES_NS} type="{t.table_type}">' + inner + "</vosi:table>\n"
    )
