"""The `python -m bench` command line: run, list, report, evaluate, predict, models.

Every error is one line on stderr and a non-zero exit; set SEGBENCH_DEBUG=1 for tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench.errors import SegbenchError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(SegbenchError):
    """An error to report as one line."""


def _parse_hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 360x480, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return h, w


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes integers separated by commas, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    return seeds


def _check_device(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CliError(f"--device {device}: no CUDA device is available on this machine (use --device cpu)")
    elif device != "cpu":
        raise CliError(f"--device must be cpu or cuda[:N], not {device!r}")


# -- commands -----------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from bench.metrics import CONVENTIONS
    from bench.report import build_report, format_leaderboard_text
    from bench.run import Runner, plan_jobs

    executor = _check_executor(args)
    if executor == "local":
        _check_device(args.device)
    elif not (args.device == "cpu" or args.device.startswith("cuda")):  # GPUs are the Ray cluster's, not ours
        raise CliError(f"--device must be cpu or cuda[:N], not {args.device!r}")
    if args.miou_convention not in CONVENTIONS:
        raise CliError(f"--miou-convention must be one of {', '.join(CONVENTIONS)}")
    suite = _suite_to_run(args)
    only = [m.strip() for m in args.only.split(",")] if args.only else None
    jobs = plan_jobs(suite, args.dataset, args.data_root, args.eval_split, args.device, args.seeds, only,
                     args.miou_convention, skip_bad_samples=args.skip_bad_samples)
    out = Path(args.out)
    progress = not args.no_progress
    print(f"segbench: suite '{suite.name}' ({len(jobs)} jobs) on {jobs[0].dataset if jobs else '-'}"
          f"/{args.eval_split}, device {args.device}; records in {out / 'records'}", file=sys.stderr)
    runner = Runner(out, force=args.force, progress=progress, resume=not args.no_resume)
    if executor == "ray":
        from bench.run.executors import DEFAULT_MAX_RETRIES, DEFAULT_NUM_CPUS, run_with_ray

        counts = run_with_ray(runner, jobs, address=args.address,
                              max_retries=DEFAULT_MAX_RETRIES if args.max_retries is None else args.max_retries,
                              num_cpus=DEFAULT_NUM_CPUS if args.cpus_per_job is None else args.cpus_per_job)
    elif args.workers > 1:
        from bench.run.processes import run_with_workers

        counts = run_with_workers(runner, jobs, args.workers)
    else:
        counts = runner.run(jobs)
    paths = build_report(out)
    print(format_leaderboard_text(out))
    busy = f", {counts['busy']} run by another process (skipped)" if counts["busy"] else ""
    print(f"\n{counts['ok']} done, {counts['failed']} failed, {counts['skipped']} already done "
          f"(skipped; --force redoes them){busy}")
    print("leaderboard: " + ", ".join(str(p) for p in paths.values() if str(p).endswith((".md", ".csv", ".html"))))
    return 1 if counts["failed"] else 0


def _suite_to_run(args: argparse.Namespace):
    """The suite file of --suite, or the one job of --method NAME with its --settings JSON."""
    from bench.run.plan import COMMAND_LINE_SUITE
    from bench.suites import Suite, SuiteJob, load_suite

    if (args.suite is None) == (args.method is None):
        raise CliError("give one of --suite NAME (a suite file) or --method NAME (one method, no suite file)")
    if args.suite is not None:
        if args.settings is not None:
            raise CliError("--settings is only used with --method (a suite file holds its jobs' settings)")
        return load_suite(args.suite)
    if args.only:
        raise CliError("--only is only used with --suite")
    try:
        settings = json.loads(args.settings) if args.settings is not None else {}
    except json.JSONDecodeError as e:
        raise CliError(f"--settings is not valid JSON ({e.msg}, character {e.pos}): {args.settings}") from None
    if not isinstance(settings, dict):
        raise CliError(f"--settings must be a JSON object such as '{{\"epochs\": 2}}', not {args.settings}")
    return Suite(COMMAND_LINE_SUITE, f"--method {args.method}", None, [SuiteJob(args.method, settings, "--method")],
                 Path("."))


def _check_executor(args: argparse.Namespace) -> str:
    """The --executor name, checked (with its options) before any work."""
    from bench.run.executors import check_executor, import_ray

    check_executor(args.executor)
    if args.workers < 1:
        raise CliError(f"--workers must be 1 or more, not {args.workers}")
    if args.executor == "ray":
        if args.workers != 1:
            raise CliError("--workers: only used with the local executor (Ray places jobs itself: --cpus-per-job)")
        import_ray()  # Ray missing: one line saying how to install it, before any work
    else:
        given = [f for f, v in (("--address", args.address), ("--max-retries", args.max_retries),
                                ("--cpus-per-job", args.cpus_per_job)) if v is not None]
        if given:
            raise CliError(f"{', '.join(given)}: only used with --executor ray")
    return args.executor


def _loadable(names, load, broken: list[str]):
    """(name, class) of each name; one that cannot be loaded (a broken plugin) is printed with
    its error and added to ``broken``, and the listing goes on."""
    for name in names:
        try:
            yield name, load(name)
        except SegbenchError as e:
            broken.append(name)
            print(f"  {name:<18s} BROKEN: {e}")


def cmd_list(args: argparse.Namespace) -> int:
    from bench.datasets import DEFAULT_DATASET, dataset_class, dataset_names
    from bench.method import method_class, method_names
    from bench.suites import load_suite, suite_names

    broken: list[str] = []
    print("methods:")
    for name, cls in _loadable(method_names(), method_class, broken):
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"  {name:<18s} {cls.kind:<9s} {doc[0] if doc else ''}")
    print("datasets:")
    for name, cls in _loadable(dataset_names(), dataset_class, broken):
        doc = (cls.__doc__ or "").strip().splitlines()
        tag = " (default)" if name == DEFAULT_DATASET else (" (built in)" if cls.builtin else "")
        print(f"  {name:<18s} {(doc[0] if doc else '')}{tag}")
    print("suites:")
    for name in suite_names():
        s = load_suite(name)
        print(f"  {name:<18s} {len(s.jobs):>2d} jobs  {s.description}")
    if broken:
        raise CliError(f"{len(broken)} entry point(s) cannot be loaded: {', '.join(broken)} (see above)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import build_report, format_leaderboard_text
    from bench.store import RecordStore

    out = Path(args.out)
    store = RecordStore(out)
    if not store.records():
        raise CliError(f"{out}: no records to report (run `python -m bench run` first)")
    if store.records_dir.is_dir():  # bring the export up to date (a killed run leaves it behind)
        store.export()
    paths = build_report(out)
    print(format_leaderboard_text(out))
    print("\nwritten: " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from bench.evaluate import evaluate_folders, format_result

    result = evaluate_folders(args.pred, args.gt, args.num_classes, ignore_index=args.ignore_index,
                              convention=args.miou_convention, boundary=not args.no_boundary,
                              progress=not args.no_progress, ci=args.ci, resamples=args.resamples, seed=args.seed)
    print(format_result(result, args.format))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.compare import compare, format_comparison

    print(format_comparison(compare(args.out, args.a, args.b, resamples=args.resamples, seed=args.seed,
                                     out_dir_b=args.out_b), args.format))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from bench.predict import predict_folder

    _check_device(args.device)
    result = predict_folder(args.results, args.job, args.images, args.out, device=args.device, alpha=args.alpha,
                            progress=not args.no_progress)
    r = result.record
    print(f"{r.method} (job {r.job_id}, fitted on {r.dataset}): {len(result.masks)} masks and overlays "
          f"written to {args.out}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from bench.speed.model_table import format_table, model_table

    table = model_table(input_hw=args.input, num_classes=args.num_classes, width=args.width)
    print(format_table(table, args.format))
    return 0


def cmd_speed(args: argparse.Namespace) -> int:
    from bench.speed import classical_speed_on_dataset, format_speed, speed_table

    if (args.model is None) == (args.method is None):
        raise CliError("give one of --model NETWORK (a network, see `models`) or --method NAME (a classical method)")
    if args.method is not None:
        if args.threads is not None and args.threads < 1:
            raise CliError(f"--threads must be >= 1, got {args.threads}")
        processes = [int(n) for n in args.processes.split(",")] if args.processes else None
        res = classical_speed_on_dataset(args.method, args.dataset, args.data_root, args.input, args.images,
                                         processes, progress=not args.no_progress, threads=args.threads)
        print(format_speed(res, args.format))
        return 0
    _check_device(args.device)
    table = speed_table(
        args.model, device=args.device, width=args.width, input_hw=args.input,
        batch_sizes=args.batch_sizes, precisions=args.precisions, channels_last=args.channels_last,
        compile=args.compile, cuda_graphs=args.cuda_graphs, num_classes=args.num_classes,
        peak_tflops=args.peak_tflops, end_to_end=not args.no_e2e, num_workers=args.num_workers,
        warmup=args.warmup, iters=args.iters, min_time_s=args.min_time,
        on_row=_SpeedRows(args.out, args.format),
    )
    print(format_speed(table, args.format))
    return 0


class _SpeedRows:
    """After each measured row of `speed --model`: a line on stderr (the setting, its rate and
    the seconds since the last row, so a slow setting shows itself) and, with ``--out``, the
    table so far written to that file, so a sweep stopped by a time limit keeps its rows."""

    def __init__(self, out: str | None, fmt: str):
        self.out, self.fmt, self.last = out, fmt, time.perf_counter()

    def __call__(self, table) -> None:
        from bench.files import write_atomic
        from bench.formatting import is_finite_number
        from bench.speed import format_speed

        row, now = table.iloc[-1], time.perf_counter()
        rate = f"{row['images_per_s']:.4g} images/s" if is_finite_number(row["images_per_s"]) else "no rate"
        print(f"[speed] {row['model']} {row['precision']} batch {row['batch_size']} {row['layout']} {row['mode']}: "
              f"{row['status']}, {rate} ({now - self.last:.1f} s)", file=sys.stderr, flush=True)
        self.last = now
        if self.out:
            write_atomic(self.out, format_speed(table, self.fmt) + "\n", fsync=False)


def cmd_boundaries(args: argparse.Namespace) -> int:
    from bench.boundaries import format_boundary_table, run_boundary_benchmark
    from bench.metrics.boundary_matching import MATCHINGS

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods is not None else None
    if methods == []:
        raise CliError("--methods: no method given")
    if args.matching not in MATCHINGS:
        raise CliError(f"--matching must be one of {', '.join(MATCHINGS)}")
    if args.thresholds < 1 or (args.limit is not None and args.limit < 1):
        raise CliError("--thresholds and --limit must be >= 1")
    df = run_boundary_benchmark(args.data_root, args.split, methods, thresholds=args.thresholds, limit=args.limit,
                                progress=not args.no_progress, matching=args.matching)
    print(format_boundary_table(df, args.format))
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from bench.fetch import fetch

    result = fetch(args.dataset, args.root, url=args.url, sha256=args.sha256, progress=not args.no_progress)
    print(result.summary())
    return 0


# -- parser -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a suite of jobs (or one --method) and write the leaderboard")
    r.add_argument("--suite", help="suite name (see `list`) or path to a suite .yaml")
    r.add_argument("--method", help="instead of --suite: run one method, a registered name (see `list`) or an "
                   "import spec package.module:Class")
    r.add_argument("--settings", metavar="JSON", help="with --method: its settings as a JSON object, "
                   "e.g. '{\"epochs\": 2}' (default: the method's defaults)")
    r.add_argument("--dataset", help="dataset name (default: the suite's, else ccp-mini)")
    r.add_argument("--data-root", help="folder that holds the dataset (not needed for built-in data)")
    r.add_argument("--eval-split", default="val",
                   help="split to score on: val (default), test, or another split the dataset has, such as "
                        "camvid-holdout's 0006R0; checked against the dataset before any work")
    r.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    r.add_argument("--seeds", type=_parse_seeds, default=[0], help="comma-separated seeds, one job each (default 0)")
    r.add_argument("--only", help="comma-separated method names: run only these jobs of the suite")
    r.add_argument("--miou-convention", default="mmseg",
                   help="mmseg (default: absent classes left out), smp (absent = 1.0), per-image (Keras-style)")
    r.add_argument("--out", default="results", help="output folder (default results/)")
    r.add_argument("--force", action="store_true", help="redo jobs that already have a record")
    r.add_argument("--no-resume", action="store_true", help="start interrupted trainings over instead of "
                   "continuing them from the last checkpoint in their run folder")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--executor", default="local", metavar="{local,ray}",
                   help="local (default): jobs one after the other here; ray: each job a Ray task (needs "
                        "pip install \".[ray]\" and a shared file system; records are written here as tasks finish)")
    r.add_argument("--workers", type=int, default=1, metavar="N",
                   help="local executor: run N jobs at a time, each in a worker process with an even share of "
                        "the cores (default 1: one job at a time in this process, with every core). Records "
                        "say N; their images/s are then measured on a shared machine (bench speed times a "
                        "method alone)")
    r.add_argument("--address", default=None, metavar="ADDR",
                   help="Ray cluster to connect to, e.g. auto or ray://host:10001 (default: RAY_ADDRESS, else a "
                        "new local Ray instance); --executor ray only")
    r.add_argument("--max-retries", type=int, default=None, metavar="N",
                   help="times a job whose Ray worker died (killed, out of memory) is run again before it is "
                        "recorded as failed (default 2); --executor ray only")
    r.add_argument("--cpus-per-job", type=float, default=None, metavar="N",
                   help="CPUs Ray reserves for each job (default 1; GPU jobs also get 1 GPU); --executor ray only")
    r.add_argument("--skip-bad-samples", action="store_true",
                   help="leave out samples that cannot be read (corrupt file, bad labels) instead of failing the "
                        "job; each record and the leaderboard name what was left out")
    r.set_defaults(func=cmd_run)

    ls = sub.add_parser("list", help="list methods, datasets and suites")
    ls.set_defaults(func=cmd_list)

    rep = sub.add_parser("report", help="rebuild leaderboards and plots from the records")
    rep.add_argument("--out", default="results", help="the run's output folder (default results/)")
    rep.set_defaults(func=cmd_report)

    ev = sub.add_parser("evaluate", help="score a folder of predicted index PNGs against ground truth")
    ev.add_argument("--pred", required=True, help="folder of predicted index PNGs")
    ev.add_argument("--gt", required=True, help="folder of ground-truth index PNGs (same file names)")
    ev.add_argument("--num-classes", type=int, required=True)
    ev.add_argument("--ignore-index", type=int, default=None)
    ev.add_argument("--miou-convention", default="mmseg")
    ev.add_argument("--no-boundary", action="store_true", help="skip the boundary F1 score (faster)")
    ev.add_argument("--format", default="text", choices=["text", "md", "json"])
    ev.add_argument("--no-progress", action="store_true")
    ev.add_argument("--ci", action="store_true", help="95%% intervals by an image bootstrap (docs/UNCERTAINTY.md)")
    ev.add_argument("--resamples", type=int, default=2000, help="with --ci: bootstrap resamples (default 2000)")
    ev.add_argument("--seed", type=int, default=0, help="with --ci: the bootstrap's random seed (default 0)")
    ev.set_defaults(func=cmd_evaluate)

    cp = sub.add_parser("compare", help="paired bootstrap of two methods (or jobs) scored on the same images")
    cp.add_argument("a", help="a job id, or a method name (or leaderboard label) naming one leaderboard row")
    cp.add_argument("b", help="the same for the second one")
    cp.add_argument("--out", default="results", help="the results folder holding both (default results/)")
    cp.add_argument("--out-b", default=None, metavar="DIR",
                    help="the results folder holding B, when it is not --out's (two runs scored on the same images)")
    cp.add_argument("--format", default="md", choices=["md", "json"])
    cp.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    cp.add_argument("--seed", type=int, default=0, help="the bootstrap's random seed (default 0)")
    cp.set_defaults(func=cmd_compare)

    pr = sub.add_parser("predict", help="apply a fitted job's method to a folder of images: index PNGs and overlays")
    pr.add_argument("--results", required=True, help="the results folder the job ran into (`run --out`)")
    pr.add_argument("--job", required=True, help="job id (records/<job_id>.json), or a method name when the folder "
                    "holds one finished job of it")
    pr.add_argument("--images", required=True, help="folder of images (.png, .jpg, ...)")
    pr.add_argument("--out", required=True, help="output folder: <stem>.png class indices, <stem>_overlay.png colours")
    pr.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    pr.add_argument("--alpha", type=float, default=0.5, help="opacity of the class colours in the overlays (default 0.5)")
    pr.add_argument("--no-progress", action="store_true", help="no progress bar")
    pr.set_defaults(func=cmd_predict)

    mo = sub.add_parser("models", help="table of the networks: parameters, GFLOPs, output stride")
    mo.add_argument("--input", type=_parse_hw, default=(360, 480), help="HxW (default 360x480)")
    mo.add_argument("--num-classes", type=int, default=21)
    mo.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default 1.0)")
    mo.add_argument("--format", default="md", choices=["md", "csv"])
    mo.set_defaults(func=cmd_models)

    sp = sub.add_parser("speed", help="honest throughput of a network: warm-up, sync, batch and precision sweep")
    sp.add_argument("--model", help="network name (see `models`)")
    sp.add_argument("--method", help="a classical method instead (see `list`): fitted on --dataset, then "
                    "timed per image in one process and in N processes")
    sp.add_argument("--processes", help="with --method: comma-separated process counts (default 1 and the CPU count)")
    sp.add_argument("--dataset", default="ccp-mini", help="with --method: data to fit on and time (default ccp-mini)")
    sp.add_argument("--data-root", help="with --method: folder that holds the dataset")
    sp.add_argument("--images", type=int, default=16, help="with --method: images timed (default 16)")
    sp.add_argument("--threads", type=int, help="with --method: threads for the one-process row (1 = one core; "
                    "default: the libraries' own)")
    sp.add_argument("--no-progress", action="store_true", help="with --method: no progress bars while fitting")
    sp.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    sp.add_argument("--width", type=float, default=1.0)
    sp.add_argument("--input", type=_parse_hw, default=(360, 480), help="HxW (default 360x480)")
    sp.add_argument("--num-classes", type=int, default=21)
    sp.add_argument("--batch-sizes", default="1", help="comma-separated batch sizes, or auto (1 and the largest that fits)")
    sp.add_argument("--precisions", default="fp32", help="comma-separated: fp32,tf32,bf16,fp16")
    sp.add_argument("--channels-last", action="store_true")
    sp.add_argument("--compile", action="store_true", help="torch.compile the model")
    sp.add_argument("--cuda-graphs", action="store_true", help="replay the forward as a CUDA graph (GPU only)")
    sp.add_argument("--peak-tflops", type=float, default=None, help="device peak, overriding the built-in table")
    sp.add_argument("--warmup", type=int, default=None, help="warm-up iterations (default 10 on GPU, 2 on CPU)")
    sp.add_argument("--iters", type=int, default=None, help="timed iterations at least (default 50 GPU, 5 CPU)")
    sp.add_argument("--min-time", type=float, default=None, help="timed seconds at least (default 2 GPU, 1 CPU)")
    sp.add_argument("--num-workers", type=int, default=None, help="data-loading workers for the end-to-end figure")
    sp.add_argument("--no-e2e", action="store_true", help="skip the end-to-end (decode + preprocess) measurement")
    sp.add_argument("--format", default="md", choices=["md", "csv", "json"])
    sp.add_argument("--out", default=None, metavar="FILE",
                    help="with --model: also write the table to FILE after every row (a sweep stopped half-way "
                         "keeps the rows it measured)")
    sp.set_defaults(func=cmd_speed)

    bd = sub.add_parser("boundaries", help="BSDS500 boundary benchmark of the edge detectors: ODS, OIS, AP")
    bd.add_argument("--data-root", required=True, help="the BSDS500 folder (e.g. ../shared/datasets/bsds500)")
    bd.add_argument("--split", default="val", choices=["train", "val", "test"], help="default val")
    bd.add_argument("--methods", default=None,
                    help="comma-separated edge methods (default: every registered method with an edge map)")
    bd.add_argument("--thresholds", type=int, default=33, help="thresholds swept (default 33; the reference uses 99)")
    bd.add_argument("--limit", type=int, default=None, help="only the first N images")
    bd.add_argument("--matching", default="maximum",
                    help="one-to-one pixel matching: maximum (default: as many pairs as possible, like the "
                         "reference), greedy (by distance, fewer pairs), mincost (the reference's formulation, slow)")
    bd.add_argument("--format", default="md", choices=["md", "csv", "json"])
    bd.add_argument("--no-progress", action="store_true")
    bd.set_defaults(func=cmd_boundaries)

    fe = sub.add_parser("fetch", help="download a public data set into the layout its reader expects")
    fe.add_argument("dataset", metavar="DATASET", help="camvid, ccp, bsds500 or isbi2012")
    fe.add_argument("--root", required=True, help="the dataset folder to make (then: --data-root ROOT)")
    fe.add_argument("--url", help="download from here instead (a mirror, or file:///path/to/the/archive); "
                    "$SEGBENCH_FETCH_BASE replaces the folder of every source URL")
    fe.add_argument("--sha256", help="the archive's expected sha256 (none is published for these sources)")
    fe.add_argument("--no-progress", action="store_true", help="no progress bars or messages")
    fe.set_defaults(func=cmd_fetch)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `python -m bench list | head`: the reader has gone, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("\nsegbench: interrupted; finished jobs are saved in the records; run the same command "
              "again to finish the rest", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # one clear line, not a traceback
        if os.environ.get("SEGBENCH_DEBUG"):
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        if isinstance(e, (SegbenchError, FileNotFoundError, PermissionError)):
            print(f"segbench: error: {msg}", file=sys.stderr)
            return EXIT_USAGE
        print(f"segbench: error: {type(e).__name__}: {msg} (set SEGBENCH_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
