"""``python -m mapreduce``: the same as the ``mapreduce`` command."""
import sys

from mapreduce.cli import main

sys.exit(main())
