"""Split a file of SQL statements (such as the seed queries) into statements."""

from __future__ import annotations


def split_sql(text: str) -> list[str]:
    """Return the statements of ``text``, comments removed, in order.

    Statements end with ``;`` at the end of a line; ``--`` comment lines are dropped.
    """
    out, cur = [], []
    for line in text.splitlines():
        if line.strip().startswith("--") or not line.strip():
            continue
        cur.append(line)
        if line.rstrip().endswith(";"):
            out.append("\n".join(cur).rstrip().rstrip(";"))
            cur = []
    if cur:
        out.append("\n".join(cur))
    return out
