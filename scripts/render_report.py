#!/usr/bin/env python3
"""Render a saved run dict (JSON, the schema in ``mapreduce/html_report.py``) as the HTML report.

    scripts/render_report.py RUN.json OUT.html

Exit 2 for a bad command line, 1 when the run cannot be read or rendered; one line either way.
A picture of the page (the viewport only; the tests' ``Browser`` takes the full page):

    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,2400 \
        --screenshot=OUT.png file://$PWD/OUT.html
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mapreduce.html_report import write_report_html  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render a saved run dict as an HTML report.")
    parser.add_argument("run", help="the run dict, a JSON file")
    parser.add_argument("out", help="the HTML file to write")
    args = parser.parse_args(argv)
    try:
        with open(args.run, "rb") as f:
            run = json.load(f)
        write_report_html(args.out, run)
    except OSError as exc:
        print(f"render_report: {exc.filename or args.run}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # bad JSON, or a field the renderer names
        print(f"render_report: {args.run}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except (TypeError, KeyError, AttributeError, IndexError) as exc:
        print(f"render_report: {args.run}: not a run dict of the documented shape "
              f"({type(exc).__name__}: {exc})"[:300], file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({os.path.getsize(args.out):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
