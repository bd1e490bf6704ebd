"""Download the public data sets into the layout their readers expect (`python -m bench fetch`)."""

from bench.fetch.fetcher import MARKER, FetchResult, check_layout, fetch
from bench.fetch.sources import BASE_ENV, SOURCES, FetchError, Source, get_source, source_url

__all__ = ["BASE_ENV", "MARKER", "SOURCES", "FetchError", "FetchResult", "Source", "check_layout", "fetch",
           "get_source", "source_url"]
