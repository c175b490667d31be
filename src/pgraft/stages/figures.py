"""Stage figures: the paper-style figures and markdown table, from the tidy summary table only."""

from __future__ import annotations

from pgraft.runtime.runner import run_stage, stage_parser

DOC = ("Read results/summary.csv and results/galleries.npz (aggregate's outputs, nothing else) and write "
       "to the output directory, per domain: reward vs k, distance-to-target vs k, the trade-off plot (reward vs "
       "distance-to-target and vs diversity), learning curves (training loss and reward vs fine-tuning step), "
       "the table and the sample gallery, the ceiling and learning gap per k (<domain>_ceiling_vs_k, "
       "<domain>_decomposition.md); the conditional reward variance of every domain (conditional_variance); "
       "the acceptance-law check; for domains with DDPO the method "
       "comparison table and reward vs reward evaluations; and REPORT.md, the headline tables of every domain.")


def body(args, params) -> dict:
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    from pgraft.io import atomic_dir, read_npz, read_table
    from pgraft.report import bias_variance, curves, decomposition, headline, plots, tables
    from pgraft.report.labels import words

    table = read_table(args.summary, columns=("kind", "domain", "seed", "k", "budget", "metric", "x", "value"))
    galleries = read_npz(args.galleries)
    with atomic_dir(args.out) as tmp:  # the figure set appears whole or not at all
        out, written = Path(tmp), []
        for domain in tables.domains_of(table, "evaluate"):
            ev, ref = tables.rows_of(table, "evaluate", domain), tables.rows_of(table, "reference", domain)
            w = words(params, domain)
            written += _save(plots.reward_vs_k(ev, ref, w), out / f"{domain}_reward_vs_k")
            written += _save(plots.distance_vs_k(ev, w), out / f"{domain}_distance_vs_k")
            written += _save(plots.tradeoff(ev, w), out / f"{domain}_tradeoff")
            written += _save(curves.learning_curves(tables.rows_of(table, "train_loss", domain), ev, ref, w),
                             out / f"{domain}_learning_curves")
            written += _write(out / f"{domain}_table.md",
                              tables.domain_markdown(ev, ref, domain, _extra(domain), params.evaluate.distance,
                                                     params.base_models))
            ceil, var = tables.rows_of(table, "ceiling", domain), tables.rows_of(table, "variance", domain)
            if len(ceil):  # the variance stage's rows (absent in summaries made before it existed)
                written += _save(bias_variance.ceiling_vs_k(ev, ceil, var, w), out / f"{domain}_ceiling_vs_k")
                written += _write(out / f"{domain}_decomposition.md", decomposition.markdown(ev, ceil, var, domain))
        if (table["kind"] == "variance").any():
            written += _save(bias_variance.variance_all_domains(table), out / "conditional_variance")
        written += _save(plots.acceptance(table), out / "acceptance_law")
        for domain in tables.domains_of(table, "inc"):
            inc = tables.rows_of(table, "inc", domain)
            written += _save(plots.fid_vs_flops(inc, domain), out / f"{domain}_fid_vs_flops")
            written += _write(out / f"{domain}_inc_table.md",
                              tables.inc_markdown(inc, domain, tables.rows_of(table, "inc_floor", domain)))
        written += _galleries(galleries, table, params, out)
        for domain in tables.domains_of(table, "ddpo"):
            rows = table[table["domain"] == domain]
            c = tables.comparison(rows, params.sampler.num_steps)
            written += _write(out / f"{domain}_comparison.md", tables.comparison_markdown(c, domain))
            written += _save(plots.reward_vs_evaluations(c, rows, words(params, domain)),
                             out / f"{domain}_reward_vs_evaluations")
        written += _write(out / "REPORT.md", headline.markdown(table, params))  # the headline tables, linked
    return {"figures": len(written)}


def _galleries(galleries: dict, table, params, out) -> list:
    """<domain>_samples.png: one panel per method (first seed, largest budget)."""
    from pgraft import domains
    from pgraft.report.galleries import same_samples_note, samples_figure
    from pgraft.report.labels import words
    from pgraft.samplers.stitched import method_label

    written, seed, drawn = [], params.seeds[0], {}
    for name in sorted({key.split("__")[0] for key in galleries}):
        if name not in params.domains:
            continue
        methods = [f"k{k}" for k in params.truncation_grid] + (["ddpo"] if name in params.ddpo.domains else [])
        methods = [m for m in methods if f"{name}__{m}__x" in galleries]
        labels = ["DDPO" if m == "ddpo" else method_label(int(m[1:]), params.sampler.num_steps) for m in methods]
        budget = max(params.finetune_for(name).budgets)
        title = (f"{name}: samples per method ({words(params, name).reward}; seed {seed}, {budget} fine-tuning steps"
                 + (f", DDPO after {max(params.ddpo.checkpoints)} reward evaluations)" if "ddpo" in methods else ")"))
        drawn[name] = {m: galleries[f"{name}__{m}__x"] for m in methods}
        fig = samples_figure(domains.build(name, params), galleries, methods, labels, title,
                             same_samples_note(name, drawn, table, seed))
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
    return run_stage("figures", stage_parser("figures", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
