"""Helpers the benchmark scripts share: progress lines and the run-print-write ending.

Benchmarks are run as scripts (``python benchmarks/NAME.py``), so this module is
imported by its bare name from their own folder.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path


def log(msg: str) -> None:
    """Progress on stderr, with a timestamp."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_and_write(runner, output: Path, report: Callable[[dict], str]) -> int:
    """``runner.start()``, ``runner.run()`` (always ``runner.close()``), then print the
    report and write ``output`` (JSON, with ``config.wall_s``) and its ``.txt`` twin."""
    t0 = time.perf_counter()
    try:
        runner.start()
        res = runner.run()
    finally:
        runner.close()
    res["config"]["wall_s"] = time.perf_counter() - t0
    text = report(res)
    print(text)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(res, indent=1, default=float) + "\n")
    output.with_suffix(".txt").write_text(text + "\n")
    log(f"wrote {output} after {res['config']['wall_s']:.0f} s")
    return 0
