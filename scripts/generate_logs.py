#!/usr/bin/env python3
"""Write deterministic synthetic listen logs; the same as ``mapreduce generate``."""
import sys

from mapreduce.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
