"""The command line: thin commands that call one library function and render what it returns.

A ``GanbenchError`` (a user's mistake or a missing resource) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ganbench.errors import GanbenchError, one_line_warning

console = Console()
err_console = Console(stderr=True)


def _friendly(fn):
    """Turn a GanbenchError into one line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GanbenchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


def _print_table(title: str, rows: list[dict], columns: list[str]) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*(_fmt(r.get(c, "")) for c in columns))
    console.print(table)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v))
    return str(v)


# Exit codes (README, "Exit codes"): 0 every run is a result; 1 a bug (with its traceback); 2 a user's
# mistake, one line; 3 some runs were left to another process that holds them, or failed while training.
EXIT_USAGE, EXIT_INCOMPLETE = 2, 3


class OneLineGroup(click.Group):
    """click's own usage errors (a bad option value, an unknown command) as one line and exit code 2, like
    every other mistake; ``--help`` is untouched."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        warnings.formatwarning = one_line_warning   # a warning (a broken plugin, emulated bf16): one line too
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            command = f"{exc.ctx.command_path}: " if exc.ctx is not None else ""
            click.echo(f"error: {command}{exc.format_message()}", err=True)
            sys.exit(EXIT_USAGE)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)


@click.group(cls=OneLineGroup)
@click.version_option(package_name="ganbench")
def main():
    """ganbench: train the DCGAN paper's network and its rule-breaking variants under one protocol,
    over seeds, and say rule by rule whether the evidence holds."""


# Options several commands share, declared once.
DEVICES = ("auto", "cpu", "cuda")


def device_option(default: str | None = None):
    return click.option("--device", default=default, show_default=default is not None, type=click.Choice(DEVICES),
                        help="the device to use" + ("" if default else " (default: the protocol's, auto)"))


def format_option(*choices: str, default: str | None = "table", help: str | None = None):
    return click.option("--format", "fmt", default=default, type=click.Choice(list(choices)), help=help)


def data_root_option():
    return click.option("--data-root", type=click.Path(file_okay=False),
                        help="where data sets live (default: $GANBENCH_DATA, else ~/.cache/ganbench/data)")


def alpha_option():
    return click.option("--alpha", default=0.05, show_default=True,
                        type=click.FloatRange(0, 1, min_open=True, max_open=True), help="two-sided significance level")


def at_step_option():
    return click.option("--at-step", type=click.IntRange(min=1), default=None, metavar="STEP",
                        help="judge every run as it stood after its evaluation at STEP (runs still training included "
                             "once they have evaluated there; runs without an evaluation at STEP are skipped, named)")


def protocol_options(fn):
    """--protocol and --set."""
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                      help="override a protocol key (repeatable; the value is TOML)")(fn)
    return click.option("--protocol", default="quick", show_default=True,
                        help="a preset name or a protocol TOML file")(fn)


# ---- list / show ------------------------------------------------------------------------------------


@main.command("list")
@click.argument("what", default="variants", type=click.Choice(["variants", "rules", "claims", "datasets", "metrics",
                                                                "protocols", "extractors", "plugins"]))
@format_option("table", "json")
@_friendly
def list_cmd(what: str, fmt: str):
    """List the registered variants, rules, claims, data sets, metrics, protocols, extractors or plugins
    (plugins: also when two of them register one name, which they show in their clashes column)."""
    from ganbench.plugins import catalog, loaded_catalog

    cat = loaded_catalog() if what == "plugins" else catalog()
    rows, columns = cat.rows(what)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        _print_table(what, rows, columns)
    for problem in [*map(str, cat.clashes), *cat.notes] if what == "plugins" else ():
        click.echo(f"warning: {problem}", err=True)


def describe_variant(name: str, resolution: int, width: int, channels: int, z_dim: int = 100) -> dict:
    """Layers, shapes, parameters, biases and FLOPs per image of a variant's G and D, and its ratios to dcgan
    (``ganbench.describe``)."""
    from ganbench.describe import describe_variant as describe

    return describe(name, resolution, width, channels, z_dim)


@main.command()
@click.argument("variant")
@click.option("--resolution", default=64, show_default=True, type=click.Choice(["16", "32", "64", "128"]))
@click.option("--width", default=128, show_default=True, type=click.IntRange(min=1), help="G's last / D's first stage channels")
@click.option("--channels", default=3, show_default=True, type=click.Choice(["1", "3"]))
@format_option("table", "json")
@_friendly
def show(variant: str, resolution: str, width: int, channels: str, fmt: str):
    """Show a variant's layers, output shapes, parameters and FLOPs per image."""
    info = describe_variant(variant, int(resolution), width, int(channels))
    if fmt == "json":
        click.echo(json.dumps(info, indent=2, default=str))
        return
    console.print(f"[bold]{info['variant']}[/] ({info['rule']}): {info['description']}")
    for net in ("G", "D"):
        table = Table(title=f"{net}: {info[net.lower() + '_params']:,} parameters, "
                            f"{info[net.lower() + '_flops'] / 1e6:,.1f} MFLOPs per image")
        for c in ("module", "type", "output", "params", "bias"):
            table.add_column(c, justify="right" if c == "params" else "left")
        for r in info["layers"][net]:
            table.add_row(r["module"], r["type"], " x ".join(map(str, r["output"])), f"{r['params']:,}",
                          {True: "yes", False: "no", None: ""}[r["bias"]])
        console.print(table)
    ratios, flagged = ", ".join(f"{k} {v:.3g}x" for k, v in info["ratios"].items()), info["confounded"]
    console.print(f"vs dcgan: {ratios}" + (f"; [bold red]confounded[/] (beyond {info['confound_ratio']}x either way): "
                                           f"{', '.join(flagged)}" if flagged else "")
                  + (f"; changed by design (the claim it tests): {', '.join(info['by_design'])}"
                     if info["by_design"] else ""))


# ---- run --------------------------------------------------------------------------------------------


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


USABLE_CORES = _usable_cores()


@main.command()
@click.option("--variant", "variants", multiple=True, help="a variant name, R1..R6 for a rule's variants, * for all (repeatable)")
@click.option("--suite", "suite_file", type=click.Path(dir_okay=False), help="a suite TOML file (variants, seeds, protocol)")
@protocol_options
@click.option("--seeds", type=click.IntRange(min=1), help="run seeds 0..N-1 (default: the protocol's)")
@click.option("--seed", "seed_list", multiple=True, type=click.IntRange(min=0), help="run this seed (repeatable)")
@click.option("--results", default="results", show_default=True, type=click.Path(file_okay=False))
@device_option()
@data_root_option()
@click.option("--jobs", default=USABLE_CORES, show_default="the usable cores", envvar="GANBENCH_JOBS",
              type=click.IntRange(min=1), help="runs at a time, each in a worker process with cores/jobs torch threads "
                                               "(1: one after another in this process; env GANBENCH_JOBS)")
@click.option("--together", default=1, show_default=True, metavar="K", type=click.IntRange(min=1),
              help="train up to K seeds of a variant as one batched computation (torch.func) in one process, each "
                   "keeping its own record: for a GPU, where one small run leaves it idle (1: each run on its own)")
@click.option("--executor", default="local", show_default=True,
              help="local (in-process, or a process pool with --jobs), or ray (one Ray task per run: pip install 'ganbench[ray]')")
@click.option("--address", help="with --executor ray: the Ray cluster's head, HOST:6379 or auto (default: $RAY_ADDRESS, "
                                 "else a local Ray instance of --jobs CPUs, or of every core)")
@click.option("--shared-results", is_flag=True, help="with --executor ray: the --results folder is reachable from every "
                                                    "worker at the same path, so runs train in place")
@_friendly
def run(variants, suite_file, protocol, overrides, seeds, seed_list, results, device, data_root, jobs, together,
        executor, address, shared_results):
    """Train variants over seeds under one protocol; complete runs are skipped, interrupted ones resume."""
    from ganbench.executors import make_executor
    from ganbench.progress import LineObserver, RichObserver
    from ganbench.suite import check_plan, load_suite, make_suite

    overrides = list(overrides) + ([f'device="{device}"'] if device else [])
    if suite_file:
        suite = load_suite(suite_file, overrides)
        if variants:
            from ganbench.suite import expand_variants
            suite = replace(suite, variants=expand_variants(variants))
    else:
        suite = make_suite(protocol, variants, None, overrides)
    if seed_list:
        suite = replace(suite, seeds=tuple(seed_list))
    elif seeds:
        suite = replace(suite, seeds=tuple(range(seeds)))
    specs = suite.plan(Path(results), data_root)
    check_plan(specs, here=executor != "ray")   # everything the runs need, before anything is written
    ex = make_executor(executor, min(jobs, len(specs)), address=address, shared_results=shared_results,
                       together=together)
    t0 = time.perf_counter()
    if err_console.is_terminal:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[stats]}"))
        with Progress(*columns, console=err_console, transient=False) as progress:
            outcomes = ex.run(specs, RichObserver(progress, len(specs)))
    else:                  # a log: plain lines
        outcomes = ex.run(specs, LineObserver(len(specs)))
    rows = [{"protocol": o.spec.protocol.name, "variant": o.spec.variant, "seed": o.spec.seed, "status": o.status, "seconds": round(o.wall_s, 1),
             "error": o.error} for o in outcomes]
    _print_table(f"{suite.name}: {len(specs)} runs in {time.perf_counter() - t0:.0f} s -> {results}",
                 rows, (["protocol"] if len(suite.protocols) > 1 else []) + ["variant", "seed", "status", "seconds", "error"])
    left = [o for o in outcomes if o.status in ("locked", "failed")]
    if left:
        click.echo(f"error: {len(left)} of {len(outcomes)} runs are not results: "
                   + ", ".join(f"{o.spec.variant} seed {o.spec.seed} {o.status}" for o in left[:5])
                   + (" ..." if len(left) > 5 else "") + "; run the suite again once they are free, or see their errors",
                   err=True)
        sys.exit(EXIT_INCOMPLETE)


@main.command()
@click.option("--variant", "variants", multiple=True, default=["dcgan"], show_default=True,
              help="a variant name, R1..R6, or * (repeatable)")
@protocol_options
@click.option("--steps", default=20, show_default=True, type=click.IntRange(min=1), help="timed training steps")
@device_option()
@data_root_option()
@format_option("table", "json")
@_friendly
def bench(variants, protocol, overrides, steps, device, data_root, fmt):
    """Throughput only: training and sampling images per second of each variant (nothing is written)."""
    from ganbench.suite import make_suite
    from ganbench.train import measure_throughput

    overrides = list(overrides) + ([f'device="{device}"'] if device else [])
    suite = make_suite(protocol, variants, [0], overrides)
    rows = [measure_throughput(spec, steps) for spec in suite.plan(Path("."), data_root)]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        _print_table(f"{suite.name}: throughput", rows, ["variant", "device", "batch_size", "train_ips", "sample_ips"])


# ---- a trained run: probe, sample, interpolate -----------------------------------------------------------


@main.command("probe")
@click.argument("run_dir")
@click.option("--labels-per-class", type=click.IntRange(min=0), help="labelled training images per class; 0: all "
              "(default: the run's protocol, else 100)")
@click.option("--draws", type=click.IntRange(min=1), help="draws of the labelled images (default: the protocol's, else 3)")
@click.option("--test", "n_test", type=click.IntRange(min=0), help="test images scored; 0: all (default: the protocol's, else 2000)")
@device_option("auto")
@data_root_option()
@format_option("table", "json")
@_friendly
def probe_cmd(run_dir, labels_per_class, draws, n_test, device, data_root, fmt):
    """The paper's Table 1 on a run: a linear SVM on its D's features, beside an untrained D and raw pixels;
    the result is added to RUN_DIR/probe.json."""
    from ganbench.metrics.probe import probe_run

    r = probe_run(run_dir, labels_per_class, draws, n_test, device, data_root)
    if fmt == "json":
        click.echo(json.dumps(r, indent=2, default=str))
        return
    rows = [{"features": {"trained": "trained D", "random": "untrained D", "pixels": "pixels"}[k], "accuracy": s["accuracy"],
             "std": s["std"], "per draw": [f"{a:.3f}" for a in s["accuracies"]], "C": s["chosen_c"], "dim": s["dim"]}
            for k, s in r["scores"].items()]
    st = r["settings"]
    _print_table(f"{r['variant']} seed {r['seed']} step {r['step']}: {st['labels_per_class'] or 'all'} labels per class x "
                 f"{st['draws']} draws, {r['n_test']} test images -> {r['path']}",
                 rows, ["features", "accuracy", "std", "per draw", "C", "dim"])


@main.command("sample")
@click.argument("run_dir")
@click.option("--n", default=64, show_default=True, type=click.IntRange(min=1), help="images in the grid")
@click.option("--seed", default=0, show_default=True, type=int, help="seed of the latent vectors")
@click.option("--out", type=click.Path(dir_okay=False), help="PNG to write (default: RUN_DIR/sample-seed-S.png)")
@device_option("auto")
@_friendly
def sample_cmd(run_dir, n, seed, out, device):
    """A grid of samples from a run's checkpoint, drawn as the trainer draws them."""
    from ganbench.generate import sample_run

    r = sample_run(run_dir, n, seed, out, device)
    console.print(f"{r['n']} samples ({r['rows']} x {r['cols']}) of {r['variant']} at step {r['step']} -> {r['path']}")


@main.command("interpolate")
@click.argument("run_dir")
@click.option("--pairs", default=8, show_default=True, type=click.IntRange(min=1), help="walks (rows)")
@click.option("--steps", default=10, show_default=True, type=click.IntRange(min=2), help="images per walk (columns)")
@click.option("--slerp", is_flag=True, help="spherical instead of linear interpolation")
@click.option("--seed", default=0, show_default=True, type=int, help="seed of the latent pairs")
@click.option("--out", type=click.Path(dir_okay=False), help="PNG to write (default: RUN_DIR/interpolation-seed-S.png)")
@device_option("auto")
@_friendly
def interpolate_cmd(run_dir, pairs, steps, slerp, seed, out, device):
    """Latent walks between random pairs of z from a run's checkpoint: rows are pairs, columns steps."""
    from ganbench.generate import interpolate_run

    r = interpolate_run(run_dir, pairs, steps, seed, slerp, out, device)
    console.print(f"{r['pairs']} walks x {r['steps']} steps ({'slerp' if r['slerp'] else 'linear'}) of {r['variant']} "
                  f"at step {r['step']} -> {r['path']}")


# ---- report -----------------------------------------------------------------------------------------


@main.command("report")
@click.option("--results", default="results", show_default=True, type=click.Path(file_okay=False),
              help="the results folder to read")
@click.option("--protocol", "protocols", multiple=True,
              help="report on this protocol only (repeatable; default: every protocol in the folder)")
@click.option("--baseline", default="dcgan", show_default=True, help="the variant every other one is compared with")
@format_option("table", "md", "csv", "html", "json", default=None,
               help="table (the terminal; the default), md, csv (the per-variant aggregates), html (one self-contained "
                    "page with plots) or json; with --out, the default comes from the file's suffix")
@click.option("--out", type=click.Path(dir_okay=False), help="write the report to this file instead of the terminal")
@alpha_option()
@click.option("--correction", default="holm", show_default=True, type=click.Choice(["holm", "bh", "none"]),
              help="multiplicity correction across the report's primary claims")
@click.option("--comparisons", type=click.IntRange(1), default=None,
              help="the primary comparisons the study's design corrects across, when the report holds only some of "
                   "them (the others count as never significant; default: as many as these records test)")
@at_step_option()
@_friendly
def report_cmd(results, protocols, baseline, fmt, out, alpha, correction, comparisons, at_step):
    """Aggregate the runs over seeds, compare each variant with the baseline, and say rule by rule whether
    the evidence supports the paper."""
    from ganbench import report as rep
    from ganbench.report.tables import as_of

    if out and fmt in (None, "table"):
        fmt = rep.format_for(out) if fmt is None else fmt
        if fmt == "table":
            raise GanbenchError(f"--out {out}: --format table is for the terminal; use md, csv, html or json")
    r = rep.build_report(results, baseline, protocols or None, alpha, correction, at_step=at_step, family=comparisons)
    for warning in r.warnings:
        click.echo(f"warning: {warning}", err=True)
    if out:
        path = rep.write_report(r, fmt, out)
        console.print(f"{fmt} report on {len(r.runs)} runs -> {path}", highlight=False)
    elif fmt in (None, "table"):
        if at_step is not None:
            console.print(f"{len(r.runs)} runs{as_of(r)}", highlight=False)
        for t in rep.display_tables(r, compact=True):
            _print_table(t.title, t.rows, t.columns)
        console.print("the reasons, every metric and the plots: --format md|html|json --out FILE", highlight=False)
    else:
        click.echo(rep.render(r, fmt), nl=False)


@main.command("plan")
@click.argument("results", type=click.Path(file_okay=False))
@click.option("--protocol", "protocols", multiple=True, help="only this protocol (repeatable)")
@click.option("--baseline", default="dcgan", show_default=True)
@click.option("--ratio", default=1.2, show_default=True, type=click.FloatRange(1, min_open=True),
              help="the change in FID a study should detect")
@alpha_option()
@click.option("--comparisons", type=click.IntRange(1), default=None,
              help="the primary comparisons the study corrects across (default: as many as these records test)")
@at_step_option()
@format_option("table", "json")
@_friendly
def plan_cmd(results, protocols, baseline, ratio, alpha, comparisons, at_step, fmt):
    """Size a study from a pilot: per primary claim, the effect with its 95% interval, the smallest effect the
    seeds used could detect (80% power), the seeds per arm needed for a RATIO change in FID, and those at which
    the observed effect on the claim's own endpoint would pass the correction."""
    from ganbench.report.plan import plan

    rows = plan(results, protocols or None, baseline, ratio, alpha, at_step, comparisons)
    if fmt == "json":
        click.echo(rows.to_json(orient="records", indent=2))
        return
    _print_table(f"{results}{f' at step {at_step:,}' if at_step else ''}: seeds per arm for a {ratio:g}x FID change at "
                 f"80% power, alpha {alpha:g} (two-sided)",
                 rows.to_dict(orient="records"),
                 (["protocol"] if rows["protocol"].nunique() > 1 else []) + ["claim", "variant", "endpoint", "effect",
                                                                           "n", "mde", "seeds_one_test",
                                                                           "seeds_corrected", "seeds_for_effect"])
    console.print(f"seeds_one_test: per arm, for one test at alpha {alpha:g}; seeds_corrected: at alpha / "
                  f"{comparisons or len(rows)}, the strictest step of Holm's correction across "
                  f"{'the study' if comparisons else 'these'} comparisons; seeds_for_effect: per arm, for the effect "
                  "observed on the claim's own endpoint at that level (optimistic: few seeds overstate effects)",
                  highlight=False)


if __name__ == "__main__":
    main()
