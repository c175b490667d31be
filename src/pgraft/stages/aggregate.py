"""Stage aggregate: every stage's metrics into one tidy table (the only input of the figures)."""

from __future__ import annotations

from pgraft.runtime.runner import run_stage, stage_parser

DOC = ("Collect the metrics of every (domain, seed, k, budget) of the current params into one tidy CSV "
       "(columns kind, domain, rule, seed, k, budget, metric, x, value), with the variance stage's conditional "
       "reward variance and ceilings per k, add a Monte Carlo acceptance-law "
       "check of every registered GRS rule, write per-seed CSVs for `dvc plots show` and one seed-averaged "
       "metrics file per domain for `dvc exp show` (the runner mirrors the spooled stage records into MLflow after it, "
       "pgraft.tracking).")

METRICS_ROOT = "results/metrics"  # the table's metrics paths lie under it; --metrics-dir may move it


def body(args, params) -> dict:
    from pathlib import Path

    from pgraft.io import atomic_dir, write_json, write_npz, write_table
    from pgraft.report.summary import gallery_arrays, plot_tables, seed_summary, summary_table

    at = _locator(args.metrics_dir)
    table = summary_table(at, params)
    with atomic_dir(args.plots_dir) as tmp:
        for name, frame in plot_tables(table, params).items():
            write_table(Path(tmp) / name, frame)
    with atomic_dir(args.summary_dir) as tmp:
        for domain, entry in seed_summary(table, params).items():
            write_json(Path(tmp) / f"{domain}.json", entry)
    write_npz(args.galleries, **gallery_arrays(at, params))
    write_table(args.out, table)
    return {"rows": len(table), "_artifacts": [args.out]}


def _locator(metrics_dir):
    """Where the stage table puts one output, with results/metrics moved to `metrics_dir`."""
    from pathlib import Path

    from pgraft.pipeline import path

    def at(stage: str, option: str, **point) -> Path:
        return Path(metrics_dir) / Path(path(stage, option, **point)).relative_to(METRICS_ROOT)
    return at


def main(argv: list[str] | None = None) -> int:
    return run_stage("aggregate", stage_parser("aggregate", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
