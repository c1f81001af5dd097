"""Command-line interface: `python -m bench COMMAND`.

Terms used in every command:
- profile: the size of a run (dataset, epochs, seeds, timing effort).
- cell: one (framework, strategy, dataset, model, seed) combination, run in its own process.
- record: the JSON file a cell leaves in the run directory.
- runtime: one inference path of a cell (torch-eager, tf-function, onnxruntime, ...).
- report: the tables built from records alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from bench.spec import DEFAULT_PROFILE, FRAMEWORKS, MODELS, PROFILES, STRATEGIES, resolve_profile

log = logging.getLogger("bench")

DEFAULT_RESULTS_DIR = Path("results")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    from bench.store import RunLockedError

    if not (args.command == "data" and getattr(args, "download", False)):
        # Only `data --download` may reach the network; everything else reads local files.
        from bench.safety import forbid_network

        forbid_network()
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, ImportError, RunLockedError) as error:
        log.error("%s", error)
        return 2
    except OSError as error:
        # Unwritable results directory, full disk: the message names the path; no traceback.
        log.error("%s", error.strerror if error.strerror and not error.filename else error)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


def configure_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    from bench.worker import quiet_library_loggers

    quiet_library_loggers()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="twinbench: the same network in PyTorch and TensorFlow, trained, exported to ONNX "
        "and measured by one harness.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run_all = commands.add_parser("all", help="run every cell of a profile and build the report")
    _add_run_options(run_all)
    run_all.set_defaults(handler=command_all)

    run_some = commands.add_parser("run", help="run the cells of one framework/strategy selection")
    _add_run_options(run_some)
    run_some.add_argument("--framework", choices=FRAMEWORKS, help="only this framework")
    run_some.add_argument("--strategy", help=f"only this strategy (one of: {', '.join(STRATEGIES)})")
    run_some.add_argument("--dataset", help="dataset instead of the profile's")
    run_some.set_defaults(handler=command_all)

    listing = commands.add_parser("list", help="list models, strategies, datasets, runtimes and profiles")
    listing.add_argument("--data-dir", type=Path, help="also look for datasets in this directory")
    listing.set_defaults(handler=command_list)

    report = commands.add_parser("report", help="rebuild results.csv and README.md from stored records")
    report.add_argument(
        "run_dir",
        nargs="?",
        type=Path,
        help="run directory (default: the runs named in RESULTS_DIR/results.json, else the latest run under "
        "RESULTS_DIR/runs that is not a claim run)",
    )
    report.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="where tables are written (default: the results directory that contains RUN_DIR, else results)",
    )
    report.add_argument(
        "--claim-run",
        action="append",
        type=Path,
        default=[],
        metavar="RUN_DIR",
        help="a further run (for example on the mnist-5k sample) whose records feed the claim check; repeatable",
    )
    report.add_argument(
        "--check",
        action="store_true",
        help="rebuild the report from the records in a scratch directory and exit with status 1 if any committed "
        "file differs (without RUN_DIR, the runs named in RESULTS_DIR/results.json)",
    )
    report.set_defaults(handler=command_report)

    compare = commands.add_parser(
        "compare",
        help="what changed between two runs: accuracy with a significance test, size, latency and throughput",
    )
    compare.add_argument("run_a", help="the earlier run: a run directory, or a run id under RESULTS_DIR/runs")
    compare.add_argument("run_b", help="the later run, given the same way")
    compare.add_argument(
        "--results-dir", type=Path, default=None, help="where run ids are looked up (default: results)"
    )
    compare.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit with status 1 when a change is significant and worse: lower accuracy, larger size, "
        "higher latency or lower throughput",
    )
    compare.add_argument("--json", action="store_true", help="print the whole comparison as JSON")
    compare.set_defaults(handler=command_compare)

    data = commands.add_parser("data", help="locate and verify datasets, or download one")
    data.add_argument("--dataset", help="one dataset (default: all)")
    data.add_argument(
        "--data-dir",
        type=Path,
        help="look here first; --download writes here (default: $TWINBENCH_DATA_DIR/NAME or ~/.cache/twinbench/NAME)",
    )
    data.add_argument("--download", action="store_true", help="download the dataset with checksum verification")
    data.set_defaults(handler=command_data)

    env = commands.add_parser(
        "env",
        help="print the environment and fairness manifest as JSON",
        description="Print the fairness manifest a run records, as JSON: machine, CPU flags, packages, git "
        "commit, compute peak (formula and measured SGEMM ceiling), the profile's timing and batch settings, "
        "the dataset's checksums, and each framework's thread, TF32, oneDNN and compiler settings, collected "
        "in one child process per installed framework.",
    )
    env.add_argument(
        "--profile",
        default=None,
        metavar="NAME_OR_FILE",
        help="profile whose timing, batch sizes, dataset and frameworks are shown: a built-in name "
        f"({', '.join(PROFILES)}) or a TOML/JSON profile file (default {DEFAULT_PROFILE})",
    )
    env.add_argument("--threads", type=int, help="threads per framework and ONNX Runtime (default: physical cores)")
    env.add_argument("--data-dir", type=Path, help="look for the profile's dataset here first")
    env.add_argument(
        "--no-frameworks",
        action="store_true",
        help="skip the framework child processes, so torch and tensorflow are not imported and their settings are left out",
    )
    env.set_defaults(handler=command_env)

    parity = commands.add_parser("parity", help="check that both backends compute and train the same network")
    parity.add_argument("--model", default="lenet5", choices=sorted(MODELS), help="model spec to check")
    parity.add_argument("--seed", type=int, default=0, help="seed of the canonical weights and the input batch")
    parity.add_argument("--batch-size", type=int, default=32, help="images in the random input batch")
    parity.add_argument("--json", action="store_true", help="print the whole parity report as JSON")
    parity.set_defaults(handler=command_parity)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        default=None,
        metavar="NAME_OR_FILE",
        help=f"run size: a built-in profile, {', '.join(f'{name} ({p.description})' for name, p in PROFILES.items())}; "
        f"or the path of a TOML or JSON profile file (see README.md, Profiles); default {DEFAULT_PROFILE}",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="root of runs and tables (default: results, or the results directory of RUN_DIR with --resume)",
    )
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue RUN_DIR with the profile in its run.json: cells with an ok or missing record are skipped, "
        "failed, crashed, timed-out and unrun cells run; only --cell-timeout and --cell-memory-limit may change",
    )
    parser.add_argument("--data-dir", type=Path, help="look for dataset files here first")
    parser.add_argument("--epochs", type=int, help="training epochs (overrides the profile)")
    parser.add_argument("--learning-rate", type=float, help="SGD learning rate (overrides the profile)")
    parser.add_argument("--seeds", type=_int_list, help="comma-separated seeds, e.g. 0,1,2 (overrides the profile)")
    parser.add_argument("--train-limit", type=int, help="use at most this many training images")
    parser.add_argument("--test-limit", type=int, help="use at most this many test images")
    parser.add_argument("--threads", type=int, help="threads per framework and ONNX Runtime (default: physical cores)")
    parser.add_argument(
        "--target-accuracy",
        type=float,
        help="test accuracy whose training time is reported as time to accuracy (overrides the profile)",
    )
    parser.add_argument(
        "--cell-timeout",
        type=float,
        metavar="SECONDS",
        help="stop a cell that runs longer and record it as timed out (overrides the profile; default 3600)",
    )
    parser.add_argument(
        "--cell-memory-limit",
        type=int,
        metavar="MIB",
        help="stop a cell whose processes use more resident memory, in MiB (at least 64), and record it as "
        "crashed with error OutOfMemory (overrides the profile; default: no limit, only the kernel's OOM killer)",
    )
    parser.add_argument("--frameworks", type=_name_list, help=f"comma-separated subset of {','.join(FRAMEWORKS)}")
    parser.add_argument(
        "--strategies",
        type=_name_list,
        help=f"comma-separated strategies (overrides the profile); valid: {','.join(STRATEGIES)}",
    )
    parser.add_argument("--no-report", action="store_true", help="write records only, skip the tables")
    parser.add_argument(
        "--no-parity",
        action="store_true",
        help="skip the parity checks that run once before the cells (about 40 s on 2 cores)",
    )


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,1,2, got {text!r}") from None


def _name_list(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(","))
    if not any(names) or not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names such as baseline,quantize, got {text!r}")
    return names


def command_all(args: argparse.Namespace) -> int:
    from bench.runner import run_profile
    from bench.store import create_run_dir

    # Each override: (the option as typed, the profile field, the value or None when not given).
    framework = getattr(args, "framework", None)
    strategy = getattr(args, "strategy", None)
    measured = [
        ("--epochs", "epochs", args.epochs),
        ("--learning-rate", "learning_rate", args.learning_rate),
        ("--seeds", "seeds", args.seeds),
        ("--train-limit", "train_limit", args.train_limit),
        ("--test-limit", "test_limit", args.test_limit),
        ("--threads", "threads", args.threads),
        ("--target-accuracy", "target_accuracy", args.target_accuracy),
        ("--framework" if framework else "--frameworks", "frameworks", (framework,) if framework else args.frameworks),
        ("--strategy" if strategy else "--strategies", "strategies", (strategy,) if strategy else args.strategies),
        ("--dataset", "dataset", getattr(args, "dataset", None)),
    ]
    # Limits on how a cell may run change no measurement, so a resumed run may raise them.
    limits = [
        ("--cell-timeout", "cell_timeout_s", args.cell_timeout),
        ("--cell-memory-limit", "cell_memory_limit_mb", args.cell_memory_limit),
    ]
    overrides = {field: value for _, field, value in measured + limits}
    if args.data_dir is not None and not args.data_dir.is_dir():
        raise FileNotFoundError(f"--data-dir {args.data_dir}: no such directory")

    if args.resume:
        run_dir, profile = _resumed_run(args, measured)
        profile = _with_options(profile, limits)
        results_dir = args.results_dir or run_dir.path.parent.parent
    else:
        profile = _with_options(resolve_profile(args.profile or DEFAULT_PROFILE), measured + limits)
        results_dir = args.results_dir or DEFAULT_RESULTS_DIR
        run_dir = create_run_dir(results_dir / "runs")
    log.info("run %s: profile %s, records in %s", run_dir.run_id, profile.name, run_dir.path)

    summary = run_profile(
        profile, run_dir, data_dir=args.data_dir, resume=bool(args.resume), parity=not args.no_parity
    )

    if summary.interrupted:
        # A partial matrix must not replace the tables of a finished run.
        log.warning("tables not rebuilt because the run is incomplete; `python -m bench report %s` builds them", run_dir.path)
    elif not args.no_report and (summary.statuses or summary.skipped):
        from bench.report import build_report

        paths = build_report(run_dir, results_dir)
        log.info("report: %s, %s", paths["markdown"], paths["csv"])
    _print_summary(summary)
    return summary.exit_code


def _with_options(profile, options: list[tuple[str, str, object]]):
    """Apply (option, profile field, value) overrides; an invalid value's error names its option."""
    from bench.spec import name_fields_as_keys

    given = {field: option for option, field, value in options if value is not None}
    try:
        return profile.with_overrides(**{field: value for _, field, value in options})
    except ValueError as error:
        raise ValueError(name_fields_as_keys(str(error), given)) from None


def _resumed_run(args: argparse.Namespace, measured: list[tuple[str, str, object]]):
    """Open the run to resume and its recorded profile; options that would change a measurement are rejected."""
    from bench.spec import Profile
    from bench.store import RunDir

    if not args.resume.is_dir():
        raise FileNotFoundError(f"--resume {args.resume}: no such run directory")
    run_dir = RunDir(args.resume)
    recorded = run_dir.read_run_info().get("profile")
    if not recorded:
        raise FileNotFoundError(f"--resume {args.resume}: no run.json with a profile; is it a twinbench run directory?")
    changed = [option for option, _, value in measured if value is not None]
    if args.profile:
        changed.insert(0, "--profile")
    if changed:
        raise ValueError(
            f"--resume continues {args.resume} with the profile recorded in its run.json; "
            f"drop {', '.join(changed)} or start a new run (only --cell-timeout and --cell-memory-limit may change)"
        )
    return run_dir, Profile.from_dict(recorded, source=str(run_dir.path / "run.json"))


def _print_summary(summary) -> None:
    counts: dict[str, int] = {}
    for status in summary.statuses.values():
        counts[status] = counts.get(status, 0) + 1
    parts = [f"{count} {status}" for status, count in sorted(counts.items())]
    if summary.skipped:
        parts.append(f"{len(summary.skipped)} skipped (already finished)")
    print(f"cells: {', '.join(parts) or 'none finished'}; records in {summary.run_dir}")
    for cell_id, status in summary.failures.items():
        print(f"  {status}: {cell_id} (see {summary.run_dir / 'records' / (cell_id + '.json')})")
    if summary.interrupted:
        stopped = f" ({summary.stopped_cell} was stopped and will run again)" if summary.stopped_cell else ""
        without = summary.planned - len(summary.statuses) - len(summary.skipped)
        print(
            f"interrupted by {summary.interrupted_by}{stopped}; {without} of {summary.planned} planned cells have "
            f"no record yet. Continue with: python -m bench all --resume {summary.run_dir}"
        )


def command_report(args: argparse.Namespace) -> int:
    from bench.report import build_report
    from bench.store import RunDir, latest_run_dir

    claim_runs = tuple(RunDir(path) for path in args.claim_run)
    for claim in claim_runs:
        if not claim.records_dir.is_dir():
            raise FileNotFoundError(f"--claim-run {claim.path}: no records directory; pass a run directory of `bench all`")
    if args.check:
        return _check_report(args, claim_runs)
    if args.run_dir:
        if not args.run_dir.is_dir():
            raise FileNotFoundError(f"run directory {args.run_dir} not found; pass a directory such as results/runs/RUN_ID")
        run_dir = RunDir(args.run_dir)
        results_dir = args.results_dir or args.run_dir.resolve().parent.parent
    else:
        from bench.report_check import report_sources

        results_dir = args.results_dir or DEFAULT_RESULTS_DIR
        if (results_dir / "results.json").exists():
            # Rebuild what is there: the runs the current tables were built from, claim runs included.
            run_dir, recorded_claims, _ = report_sources(results_dir)
            claim_runs = claim_runs or recorded_claims
        else:
            run_dir = latest_run_dir(results_dir / "runs")
    log.info("report of %s%s", run_dir.path, "".join(f", claim run {claim.path}" for claim in claim_runs))
    paths = build_report(run_dir, results_dir, claim_runs)
    print(paths["markdown"].read_text(encoding="utf-8"))
    log.info(
        "wrote %s, %s, %s, %s and %d figure(s)",
        paths["markdown"],
        paths["csv"],
        paths["json"],
        paths["html"],
        len(paths["figures"]),
    )
    if paths["problems"]:
        log.error(
            "%d file(s) of the run could not be read; they are listed under 'Cells without numbers' in %s",
            len(paths["problems"]),
            paths["markdown"],
        )
        return 1
    return 0


def _check_report(args: argparse.Namespace, claim_runs) -> int:
    from bench.report_check import check_report
    from bench.store import RunDir

    results_dir = args.results_dir or (args.run_dir.resolve().parent.parent if args.run_dir else DEFAULT_RESULTS_DIR)
    run_dir = RunDir(args.run_dir) if args.run_dir else None
    differences = check_report(results_dir, run_dir, claim_runs)
    for difference in differences:
        print(difference)
    if differences:
        log.error(
            "%d file(s) in %s differ from the report rebuilt from the records; run `python -m bench report` "
            "and commit the result",
            len(differences),
            results_dir,
        )
        return 1
    log.info("the report in %s matches its records", results_dir)
    return 0


def command_compare(args: argparse.Namespace) -> int:
    from bench.compare import compare_runs, format_comparison, load_run, resolve_run_dir

    runs_root = (args.results_dir or DEFAULT_RESULTS_DIR) / "runs"
    run_a = load_run(resolve_run_dir(args.run_a, runs_root))
    run_b = load_run(resolve_run_dir(args.run_b, runs_root))
    try:
        comparison = compare_runs(run_a, run_b)
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(
            f"cannot compare {run_a.run_dir.path} with {run_b.run_dir.path}: a record has a missing or "
            f"wrongly typed field ({type(error).__name__}: {error}); check the records with `python -m bench report`"
        ) from error
    print(json.dumps(comparison.to_dict(), indent=2, allow_nan=False) if args.json else format_comparison(comparison))
    if not comparison.keys:
        log.error(
            "the two runs have no framework, strategy, dataset, model and runtime in common, so nothing was "
            "compared; pick two runs of the same profile"
        )
        return 2

    regressions = comparison.regressions()
    if args.fail_on_regression and regressions:
        log.error(
            "%d regression(s): %s",
            len(regressions),
            "; ".join(f"{key.label()} {metric}" for key, metric in regressions),
        )
        return 1
    return 0


def command_list(args: argparse.Namespace) -> int:
    from bench.data import list_datasets

    print("models:")
    for name, factory in MODELS.items():
        spec = factory()
        print(f"  {name:<16} {spec.count_parameters():>8,} parameters  {spec.description}")
    print("strategies:")
    for name, strategy in STRATEGIES.items():
        print(f"  {name:<16} {strategy.description}")
    print("datasets:")
    for entry in list_datasets(args.data_dir):
        where = entry.get("location") or "not found"
        print(f"  {entry['name']:<16} {entry['description']} [{where}]")
    print("runtimes:")
    print("  torch-eager      PyTorch eager mode (framework torch)")
    print("  torch-compile    torch.compile: Inductor with freezing, one static-shape graph per batch size (torch)")
    print("  tf-eager         Keras model called eagerly (framework tf)")
    print("  tf-function      Keras model inside tf.function (framework tf)")
    print("  tf-xla           Keras model inside tf.function(jit_compile=True), XLA (framework tf)")
    print("  onnxruntime      ONNX Runtime CPU on the cell's own ONNX export (both frameworks)")
    print("  onnxruntime-int8 ONNX Runtime on the export quantized by quantize_static, QDQ int8 (int8 strategies)")
    print("  torch-int8-pt2e  PT2E int8 with torchao's x86 Inductor quantizer, compiled (torch, int8 strategies)")
    print("  tflite-int8      full-integer TensorFlow Lite in the LiteRT interpreter (tf, int8 strategies)")
    print("  GPU variants     torch-eager-cuda, torch-compile-cuda, tf-function-gpu, tf-xla-gpu, onnxruntime-cuda:")
    print("                   measured where a GPU is present, else recorded as skipped with the reason")
    print("profiles:")
    for name, profile in PROFILES.items():
        marker = " (default)" if name == DEFAULT_PROFILE else ""
        print(f"  {name:<16} {profile.description}{marker}")
    return 0


def command_data(args: argparse.Namespace) -> int:
    from bench.data import DATASETS, download_dataset, verify_dataset

    names = [args.dataset] if args.dataset else list(DATASETS)
    if args.download:
        if not args.dataset:
            raise ValueError("--download needs --dataset NAME")
        path = download_dataset(args.dataset, args.data_dir)
        log.info("downloaded %s to %s", args.dataset, path)
    status = 0
    for name in names:
        try:
            provenance = verify_dataset(name, args.data_dir)
        except (FileNotFoundError, ValueError) as error:
            print(f"{name}: NOT AVAILABLE\n  {str(error).replace(chr(10), chr(10) + '  ')}")
            status = 1 if args.dataset else status
            continue
        print(f"{name}: ok, {provenance['train_size']} train / {provenance['test_size']} test from {provenance['source']}")
        for entry in provenance.get("files", []):
            print(f"  {entry['sha256']}  {entry['bytes']:>10}  {entry['path']}")
    return status


def command_env(args: argparse.Namespace) -> int:
    """Print the fairness manifest of a run of the profile on this machine. Return 1 if a framework's settings failed."""
    from bench.data import DATA_DIR_ENV, verify_dataset
    from bench.manifest import collect_framework_entries, fairness_manifest, framework_entry, run_manifest
    from bench.measure import environment
    from bench.measure.peak import compute_peak
    from bench.runner import child_environment, resolve_threads

    profile = _with_options(resolve_profile(args.profile or DEFAULT_PROFILE), [("--threads", "threads", args.threads)])
    if args.data_dir is not None and not args.data_dir.is_dir():
        raise FileNotFoundError(f"--data-dir {args.data_dir}: no such directory")
    threads = resolve_threads(profile)
    cell_env = child_environment(threads)
    if args.data_dir is not None:
        cell_env[DATA_DIR_ENV] = str(args.data_dir)

    # A missing or corrupt dataset is reported in the manifest, not as a failure of the command.
    try:
        dataset = verify_dataset(profile.dataset, args.data_dir)
    except (FileNotFoundError, ValueError) as error:
        log.warning("dataset %s: %s", profile.dataset, str(error).splitlines()[0])
        dataset = {"name": profile.dataset, "error": str(error)}

    run_parts = run_manifest(profile, threads, environment(), dataset, compute_peak(threads), cell_env)
    if args.no_frameworks:
        reason = "not collected (--no-frameworks)"
        frameworks = {name: framework_entry("skipped", None, None, reason) for name in profile.frameworks}
    else:
        frameworks = collect_framework_entries(profile.frameworks, threads, cell_env)
    print(json.dumps(fairness_manifest(run_parts, frameworks), indent=2, default=str))
    failed = [name for name, entry in frameworks.items() if entry["status"] not in ("ok", "skipped")]
    return 1 if failed else 0


def command_parity(args: argparse.Namespace) -> int:
    from bench.parity import check_parity

    report = check_parity(args.model, args.seed, args.batch_size)
    print(json.dumps(report, indent=2) if args.json else format_parity(report))
    return 0 if report["passed"] else 1


def _diff(comparison: dict, name: str) -> str:
    value = comparison.get(f"{name}_weights_max_abs_diff", comparison.get(f"{name}_max_abs_diff"))
    return "missing" if value is None else f"{value:.2g}"


def _losses(comparison: dict) -> str:
    losses = comparison.get("distill_loss")
    return "missing" if not losses else " vs ".join(f"{value:.7g}" for value in losses)


def format_parity(report: dict) -> str:
    """Summarize a parity report in a few lines: one per framework, one per comparison, the verdict."""
    tolerances = report["tolerances"]
    lines = [f"parity of {report['model']} (fingerprint {report['fingerprint']}), seed {report['seed']}"]
    for name, result in report["frameworks"].items():
        lines.append(
            f"  {name}: {result['parameters']:,} parameters, ONNX vs native max |diff| "
            f"{result['onnx_max_abs_diff']:.2g} (tolerance {tolerances['onnx_vs_native_logits']:g})"
        )
    for comparison in report["comparisons"]:
        first, second = comparison["frameworks"]
        lines.append(
            f"  {first} vs {second}: logits max |diff| {comparison['logits_max_abs_diff']:.2g}, "
            f"trained weights {comparison['trained_weights_max_abs_diff']:.2g}, "
            f"pruned weights {comparison['pruned_weights_max_abs_diff']:.2g} "
            f"(tolerance {tolerances['trained_weights_across_frameworks']:g}), "
            f"masks {'identical' if comparison['pruning_masks_equal'] else 'DIFFERENT'}"
        )
        lines.append(
            f"  {first} vs {second}, training strategies: one L2 step {_diff(comparison, 'l2_step')}, "
            f"distillation epoch {_diff(comparison, 'distill_epoch')}, FGSM-training epoch "
            f"{_diff(comparison, 'adversarial_epoch')}, FGSM batch {_diff(comparison, 'fgsm_batch')}, "
            f"PGD batch {_diff(comparison, 'pgd_batch')}, distillation loss {_losses(comparison)}"
        )
    for name, result in report["frameworks"].items():
        peft = result.get("peft") or {}
        if peft:
            counts = ", ".join(f"{method} {entry['trainable']:,}" for method, entry in peft.items())
            start = max(entry["start_max_abs_diff"] for entry in peft.values())
            merged = peft.get("lora", {}).get("merged_onnx_vs_unmerged_max_abs_diff")
            lines.append(
                f"  {name} fine-tuning: trainable {counts}; zero-initialized start max |diff| {start:.2g}; "
                f"merged LoRA ONNX vs unmerged {'missing' if merged is None else f'{merged:.2g}'}"
            )
    for comparison in report["comparisons"]:
        differences = comparison.get("peft_logits_max_relative_diff") or {}
        if differences:
            worst = max((value for value in differences.values() if value is not None), default=None)
            first, second = comparison["frameworks"]
            lines.append(
                f"  {first} vs {second}, fine-tuning logits with random adapter and LoRA weights: max relative "
                f"|diff| {'missing' if worst is None else f'{worst:.2g}'}"
            )
    lines += [f"  problem: {problem}" for problem in report["problems"]]
    lines.append("passed" if report["passed"] else "FAILED")
    return "\n".join(lines)
