"""Leaderboard intervals and ties: each row's image bootstrap over its jobs' per-image data, each
row's paired test against the best row of its section, and against its location-prior row (the
floor a method clears only by reading the image), each family Holm-corrected on its own."""

from __future__ import annotations

from pathlib import Path

from bench.metrics.bootstrap import LEVEL, RESAMPLES, SEED, Arm, BootstrapError, bootstrap, holm
from bench.per_image import PerImageError, read_per_image, seeds_arm
from bench.report.aggregate import Group, Section

#: the level of the tests against the best and the prior rows (after Holm's correction)
ALPHA = round(1 - LEVEL, 10)
#: the method whose row is the floor of the `vs prior` test (baselines/location_prior.py)
PRIOR_METHOD = "location-prior"


def _load(s: Section, out_dir: Path) -> None:
    """Read the per-image data of the section's ok records into ``s.per_image``; a file that
    cannot be read becomes a note (its row gets no interval)."""
    for g in s.ranked:
        for r in g.ok:
            if r.per_image and r.job_id not in s.per_image:
                try:
                    s.per_image[r.job_id] = read_per_image(out_dir / r.per_image)
                except PerImageError as e:
                    s.notes.append(f"No interval for **{g.label}**: {e}.")


def _arm(s: Section, g: Group) -> tuple[list[str], Arm] | None:
    """The group's per-image data as one arm (its seeds stacked, its images in id order), or
    None when a record has none, the records' images differ or they mix mIoU conventions."""
    data = [s.per_image.get(r.job_id) for r in g.ok]
    conventions = {r.miou_convention or "mmseg" for r in g.ok}
    if any(d is None for d in data) or len(conventions) > 1:
        return None
    ids = sorted(data[0].ids)
    if any(sorted(d.ids) != ids or d.num_classes != data[0].num_classes for d in data):
        return None
    return ids, seeds_arm([d.ordered(ids) for d in data], conventions.pop())


def _bootstrap_section(s: Section, resamples: int, seed: int) -> None:
    """Intervals for every group with per-image data; the best row against the others that
    share its images, and every row against the location-prior row where it shares its
    images, with Holm's correction over each of the two families of comparisons."""
    arms = {id(g): a for g in s.ranked if (a := _arm(s, g)) is not None}
    missing = [g.label for g in s.ranked if id(g) not in arms]
    if missing:
        s.notes.append("No interval (and no test against the best row) for " + ", ".join(f"**{m}**" for m in missing)
                       + ": per-image data missing for some of its records (records made before segbench kept "
                         "it, or a run with several mIoU conventions); `run --force` remakes them.")
    clusters: dict[tuple, list[Group]] = {}
    for g in s.ranked:
        if id(g) in arms:
            ids, arm = arms[id(g)]
            clusters.setdefault((tuple(ids), arm.num_classes), []).append(g)
    best = s.ranked[0]
    prior = next((g for g in s.ranked if g.method == PRIOR_METHOD), None)
    for groups in clusters.values():
        pairs = [(0, j) for j in range(1, len(groups))] if groups[0] is best else []
        k = next((i for i, g in enumerate(groups) if g is prior), None)
        prior_pairs = [] if k is None else [(j, k) for j in range(len(groups)) if j != k]
        try:
            result = bootstrap([arms[id(g)][1] for g in groups], pairs + prior_pairs, resamples=resamples,
                               seed=seed)
        except BootstrapError as e:
            s.notes.append(f"No interval for {', '.join(f'**{g.label}**' for g in groups)}: {e}.")
            continue
        s.bootstrap = s.bootstrap or result.settings()  # the first cluster holds the best row
        for g, est in zip(groups, result.arms):
            g.interval = est
        if pairs:
            best.vs_best = "best"
            for (_, j), raw, adjusted in _tests(result, pairs):
                g = groups[j]
                g.p_vs_best, g.p_vs_best_holm = raw, adjusted
                g.vs_best = "below" if adjusted < ALPHA else "tied"
        elif groups[0] is not best:
            s.notes.append("Not tested against the best row (scored on other images, or the best row has no "
                           "per-image data): " + ", ".join(f"**{g.label}**" for g in groups) + ".")
        if prior_pairs:
            prior.vs_prior = "prior"
            for (j, _), raw, adjusted in _tests(result, prior_pairs):
                g = groups[j]
                g.p_vs_prior, g.p_vs_prior_holm = raw, adjusted
                higher = result.differences[(j, k)].value["miou"] > 0
                g.vs_prior = "tied" if not adjusted < ALPHA else "above" if higher else "below"


def _tests(result, pairs: list[tuple[int, int]]) -> list[tuple[tuple[int, int], float, float]]:
    """Each pair's two-sided mIoU p-value, raw and Holm-adjusted over ``pairs``."""
    p = [result.differences[pair].p["miou"] for pair in pairs]
    return [(pair, raw, float(adjusted)) for pair, raw, adjusted in zip(pairs, p, holm(p))]


def add_intervals(sections: list[Section], out_dir: str | Path, resamples: int = RESAMPLES,
                  seed: int = SEED) -> None:
    """Read each section's per-image data and set every group's ``interval`` and ``vs_best``
    (see :mod:`bench.metrics.bootstrap`); rows without per-image data keep none."""
    for s in sections:
        if not s.ranked:
            continue
        _load(s, Path(out_dir))
        _bootstrap_section(s, resamples, seed)
