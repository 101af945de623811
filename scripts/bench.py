#!/usr/bin/env python3
"""Benchmark the top-50 job against DuckDB (issue 4); the same as ``mapreduce bench``."""
import sys

from mapreduce.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
