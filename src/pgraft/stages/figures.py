"""Stage figures: the paper-style figures and markdown table, from the tidy summary table only."""

from __future__ import annotations

from pgraft.stages.common import parser, run_stage

DOC = ("Read results/summary.csv and results/galleries.npz (aggregate's outputs, nothing else) and write "
       "to the output directory: reward vs k, distance-to-target vs k, the trade-off plot (reward vs "
       "distance-to-target and vs diversity, one curve per k across budgets), the acceptance-law check, "
       "per-domain tables, sample galleries, and for domains with DDPO the method comparison table and "
       "reward vs reward evaluations.")


def body(args, params) -> dict:
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    from pgraft.io import atomic_dir, read_npz, read_table
    from pgraft.report import plots, tables

    table = read_table(args.summary, columns=("kind", "domain", "seed", "k", "budget", "metric", "value"))
    galleries = read_npz(args.galleries)
    with atomic_dir(args.out) as tmp:  # the figure set appears whole or not at all
        out, written = Path(tmp), []
        for domain in tables.domains_of(table, "evaluate"):
            ev, ref = tables.rows_of(table, "evaluate", domain), tables.rows_of(table, "reference", domain)
            written += _save(plots.vs_k(ev, ref, "reward_mean", "mean reward"), out / f"{domain}_reward_vs_k")
            written += _save(plots.vs_k(ev, None, "dist_target", "distance to exact tilted target"),
                             out / f"{domain}_distance_vs_k")
            written += _save(plots.tradeoff(ev), out / f"{domain}_tradeoff")
            written += _write(out / f"{domain}_table.md", tables.domain_markdown(ev, ref, domain, _extra(domain)))
        written += _save(plots.acceptance(table), out / "acceptance_law")
        for domain in tables.domains_of(table, "inc"):
            inc = tables.rows_of(table, "inc", domain)
            written += _save(plots.fid_vs_flops(inc, domain), out / f"{domain}_fid_vs_flops")
            written += _write(out / f"{domain}_inc_table.md", tables.inc_markdown(inc, domain))
        written += _galleries(galleries, params, out, plots)
        for domain in tables.domains_of(table, "ddpo"):
            rows = table[table["domain"] == domain]
            c = tables.comparison(rows, params.sampler.num_steps)
            written += _write(out / f"{domain}_comparison.md", tables.comparison_markdown(c, domain))
            written += _save(plots.reward_vs_evaluations(c, rows, domain), out / f"{domain}_reward_vs_evaluations")
    return {"figures": len(written)}


def _galleries(galleries: dict, params, out, plots) -> list:
    """<domain>_samples.png: one row per method (first seed, largest budget)."""
    from pgraft import domains
    from pgraft.samplers.stitched import method_label

    written = []
    for name in sorted({key.split("__")[0] for key in galleries}):
        if name not in params.domains:
            continue
        methods = [f"k{k}" for k in params.truncation_grid] + (["ddpo"] if name in params.ddpo.domains else [])
        methods = [m for m in methods if f"{name}__{m}__x" in galleries]
        labels = ["DDPO" if m == "ddpo" else method_label(int(m[1:]), params.sampler.num_steps) for m in methods]
        fig = plots.samples_figure(domains.build(name, params), galleries, methods, labels,
                                   f"{name}: samples per method (seed {params.seeds[0]}, largest budget)")
        written += _save(fig, out / f"{name}_samples", formats=("png",))
    return written


def _extra(domain: str) -> tuple[str, ...]:
    """The domain's own metrics for its table (none for a domain no longer registered)."""
    from pgraft import domains

    return domains.REGISTRY.get(domain).table_metrics if domain in domains.REGISTRY.names() else ()


def _write(path, text: str) -> list:
    path.write_text(text)
    return [path]


def _save(fig, stem, formats=("png", "pdf")) -> list:
    import matplotlib.pyplot as plt

    paths = []
    for ext in formats:
        path = stem.with_suffix(f".{ext}")
        fig.savefig(path, format=ext, dpi=130, metadata={"CreationDate": None} if ext == "pdf" else {"Software": None})
        paths.append(path)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = parser("figures", DOC, domain=False)
    p.add_argument("--summary", required=True, help="tidy table from aggregate (results/summary.csv)")
    p.add_argument("--galleries", required=True, help="gallery samples from aggregate (results/galleries.npz)")
    p.add_argument("--out", required=True, help="output directory (results/figures)")
    return run_stage("figures", p, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
