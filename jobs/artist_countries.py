"""The top 10 countries of each artist over 28 days: the listens joined with a song-to-artist file.

    mapreduce run jobs.artist_countries:ArtistCountries --logs LOGS --out OUT --artists FILE.csv
    ──▶ OUT/artist_countries_28days_D.txt: artist_id|FR:n,DE:n,... (artists as integers)

``--artists``: one ``sng_id,artist_id`` line per song; a listen of a song not in it is counted as
``unknown_song`` and left out. The file is an input of the cached per-day step, so a changed
file recomputes every day (its identity is in each day's manifest).
"""
import functools
import os

import numpy as np

from mapreduce import Option
from mapreduce.aggregate import sum_by_key
from jobs.song_countries import SongCountries


@functools.lru_cache(maxsize=2)  # read once per worker process and version of the file
def song_artists(path: str, mtime_ns: int) -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(path, delimiter=",", dtype=np.uint64, ndmin=2)
    table = table[np.argsort(table[:, 0])]
    return table[:, 0], table[:, 1]


class ArtistCountries(SongCountries):
    name, channels, keys = "countries", ("artist",), ("artist", "country")
    options = (*SongCountries.options,
               Option("artists", os.path.abspath, None, "CSV of sng_id,artist_id", per_input=True))

    def __init__(self, **params):
        super().__init__(**params)
        if not (self.artists and os.path.isfile(self.artists)):
            raise ValueError(f"--artists must name a file of sng_id,artist_id lines: "
                             f"{self.artists}")

    def map_block(self, block, offset):  # the block's (song, country) counts, then the join
        tables, stats = super().map_block(block, offset)
        plays = tables["song"]
        songs, artists = song_artists(self.artists, os.stat(self.artists).st_mtime_ns)
        at = np.minimum(np.searchsorted(songs, plays["song"]), len(songs) - 1)  # sorted: fast
        known = songs[at] == plays["song"]
        stats["unknown_song"] = int(plays["count"][~known].sum())
        pairs = {"artist": artists[at[known]], "country": plays["country"][known],
                 "count": plays["count"][known]}
        return {"artist": sum_by_key([pairs], self.keys)}, stats
