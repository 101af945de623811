"""Jobs that run on the mapreduce framework: one short module each."""
