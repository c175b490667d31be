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
    from pgraft.io import atomic_dir, read_table

    from pgraft.io import read_npz

    table = read_table(args.summary, columns=("kind", "domain", "seed", "k", "budget", "metric", "value"))
    galleries = read_npz(args.galleries)
    with atomic_dir(args.out) as tmp:  # the figure set appears whole or not at all
        written = _draw(table, Path(tmp), params)
        written += _galleries(galleries, params, Path(tmp))
        for domain in sorted(set(table.loc[table["kind"] == "ddpo", "domain"])):
            written += _comparison(table[table["domain"] == domain], domain, params, Path(tmp))
    return {"figures": len(written)}


def _draw(table, out, params):
    written = []
    for domain in sorted(set(table.loc[table["kind"] == "evaluate", "domain"])):
        ev = table[(table["kind"] == "evaluate") & (table["domain"] == domain)]
        ref = table[(table["kind"] == "reference") & (table["domain"] == domain)]
        written += _save(_vs_k(ev, ref, "reward_mean", "mean reward"), out / f"{domain}_reward_vs_k")
        written += _save(_vs_k(ev, None, "dist_target", "distance to exact tilted target"),
                         out / f"{domain}_distance_vs_k")
        written += _save(_tradeoff(ev), out / f"{domain}_tradeoff")
        md = out / f"{domain}_table.md"
        md.write_text(_markdown(ev, ref, domain, _table_metrics(domain, params)))
        written.append(md)
    written += _save(_acceptance(table), out / "acceptance_law")
    for domain in sorted(set(table.loc[table["kind"] == "inc", "domain"])):
        inc = table[(table["kind"] == "inc") & (table["domain"] == domain)]
        written += _save(_fid_vs_flops(inc, domain), out / f"{domain}_fid_vs_flops")
        md = out / f"{domain}_inc_table.md"
        md.write_text(_inc_markdown(inc, domain))
        written.append(md)
    return written


def _method_label(name: str, n_steps: int) -> str:
    if name == "ddpo":
        return "DDPO"
    from pgraft.samplers.stitched import method_label

    return method_label(int(name[1:]), n_steps)


def _galleries(galleries: dict, params, out) -> list:
    """<domain>_samples.png: one row per method (first seed, largest budget), drawn by the domain itself."""
    import matplotlib.pyplot as plt

    from pgraft import domains

    written = []
    names = sorted({key.split("__")[0] for key in galleries})
    for name in names:
        if name not in params.domains:
            continue
        domain = domains.build(name, params)
        methods = [f"k{k}" for k in params.truncation_grid] + (["ddpo"] if name in params.ddpo.domains else [])
        methods = [m for m in methods if f"{name}__{m}__x" in galleries]
        fig, axes = plt.subplots(len(methods), 1, figsize=(11, 1.3 * len(methods) + 0.6), squeeze=False)
        for ax, m in zip(axes[:, 0], methods):
            x = galleries[f"{name}__{m}__x"]
            domain.draw(ax, x, galleries.get(f"{name}__{m}__prompt"))
            # a label beside the row that shows even when the domain's drawing turns the axes off
            ax.text(-0.01, 0.5, _method_label(m, params.sampler.num_steps), transform=ax.transAxes, ha="right",
                    va="center", fontsize=8)
        fig.suptitle(f"{name}: samples per method (seed {params.seeds[0]}, largest budget)", fontsize=9)
        fig.tight_layout()
        written += _save(fig, out / f"{name}_samples", formats=("png",))
    return written


COMPARISON_METRICS = [("reward_mean", "reward (train prompts)"), ("judge_score", "independent judge"),
                      ("reward_mean_heldout", "reward (held-out prompts)"),
                      ("judge_score_heldout", "independent judge (held-out)"), ("fid", "FID ↓"),
                      ("diversity_within_prompt", "within-prompt diversity"),
                      ("reward_hacking_gap", "reward − judge")]


def _comparison(table, domain, params, out) -> list:
    """The paper-style table (base, DDPO, GRAFT, P-GRAFT at its best k; equal reward evaluations) and reward
    vs reward evaluations, from the summary only."""
    import matplotlib.pyplot as plt
    import numpy as np

    ev, dd = table[table["kind"] == "evaluate"], table[table["kind"] == "ddpo"]
    n = params.sampler.num_steps
    b = int(ev["budget"].max())
    last = int(dd["budget"].max())
    at_b = ev[ev["budget"] == b]
    partial = at_b[(at_b["metric"] == "reward_mean") & (at_b["k"] > 0) & (at_b["k"] < n)]
    best_k = int(partial.groupby("k")["value"].mean().idxmax()) if len(partial) else n
    rows = [("base (k = 0)", at_b[at_b["k"] == 0]), (f"DDPO ({last} reward evaluations)", dd[dd["budget"] == last]),
            (f"GRAFT (k = {n})", at_b[at_b["k"] == n]), (f"P-GRAFT (best k = {best_k})", at_b[at_b["k"] == best_k])]
    metrics = [(m, label) for m, label in COMPARISON_METRICS if m in set(ev["metric"])]
    base = {m: rows[0][1][rows[0][1]["metric"] == m]["value"].mean() for m, _ in metrics}
    evals = ev[(ev["metric"] == "reward_evaluations") & (ev["k"] == n)]["value"]
    flops = table[(table["kind"] == "pretrain") & (table["metric"] == "flops_per_sample")]["value"]
    lines = [f"# {domain}: base vs DDPO vs GRAFT vs P-GRAFT at equal reward evaluations", "",
             f"Mean ± std over {ev['seed'].nunique()} seeds; GRAFT / P-GRAFT after {b} fine-tuning steps on a pool of "
             f"{int(evals.mean()) if len(evals) else '?'} scored samples, DDPO after {last} reward evaluations"
             + (f" (sampler cost of the scored samples: {last * flops.mean():.3g} FLOPs for every method)"
                if len(flops) else "") + ". "
             "In brackets: change relative to the base, in %. P-GRAFT's k is the best by mean training reward.", "",
             "| method | " + " | ".join(label for _, label in metrics) + " |", "|---|" + "---|" * len(metrics)]
    for label, d in rows:
        cells = []
        for m, _ in metrics:
            v = d[d["metric"] == m]["value"]
            rel = (v.mean() - base[m]) / abs(base[m]) * 100 if base[m] and label[:4] != "base" else None
            cells.append(f"{v.mean():.4g} ± {v.std(ddof=1) if len(v) > 1 else 0:.2g}"
                         + (f" ({rel:+.1f} %)" if rel is not None and np.isfinite(rel) else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    (out / f"{domain}_comparison.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(5.8, 4))
    r = dd[dd["metric"] == "reward_mean"].groupby("budget")["value"].agg(["mean", "std"]).reset_index()
    ax.errorbar(r["budget"], r["mean"], yerr=r["std"].fillna(0), marker="o", capsize=3, label="DDPO")
    train = table[(table["kind"] == "ddpo_train") & (table["metric"] == "reward_mean")]
    if len(train):
        t = train.groupby("budget")["value"].mean()
        ax.plot(t.index, t.values, ":", color="C0", alpha=0.6, label="DDPO on-policy batches")
    x = float(evals.mean()) if len(evals) else last
    for i, (label, d) in enumerate(rows[2:]):
        v = d[d["metric"] == "reward_mean"]["value"]
        ax.errorbar([x], [v.mean()], yerr=[v.std(ddof=1) if len(v) > 1 else 0], marker="s", capsize=3,
                    color=f"C{i + 1}", label=f"{label}, {b} steps")
    ax.axhline(base["reward_mean"], ls="--", color="grey", label="base")
    ax.set(xlabel="reward evaluations", ylabel="mean reward (train prompts)",
           title=f"{domain}: reward vs reward evaluations")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return [out / f"{domain}_comparison.md", *_save(fig, out / f"{domain}_reward_vs_evaluations")]


def _inc_stats(inc):
    wide = inc.pivot_table(index=["rule", "x", "seed"], columns="metric", values="value").reset_index()
    return wide.groupby(["rule", "x"]).agg(fid_mean=("fid", "mean"), fid_std=("fid", "std"),
                                           flops=("flops_per_image", "mean"), seeds=("seed", "nunique")).reset_index()


def _fid_vs_flops(inc, domain):
    import matplotlib.pyplot as plt

    s = _inc_stats(inc)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for rule, label, style in (("base", "base flow", "o-"), ("inc", "base + corrector (INC)", "s--")):
        d = s[s["rule"] == rule].sort_values("flops")
        ax.errorbar(d["flops"], d["fid_mean"], yerr=d["fid_std"].fillna(0), fmt=style, capsize=3, label=label)
        for _, row in d.iterrows():
            ax.annotate(f"n={int(row['x'])}", (row["flops"], row["fid_mean"]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
    ax.set_xscale("log")
    ax.set(xlabel="FLOPs per image (counted)", ylabel="FID vs held-out real images",
           title=f"{domain}: FID vs FLOPs (mean ± std over {int(s['seeds'].max())} seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _inc_markdown(inc, domain) -> str:
    s = _inc_stats(inc)
    lines = [f"# {domain}: inverse noise correction", "",
             f"FID against held-out real images (mean ± std over {int(s['seeds'].max())} seeds) and counted FLOPs "
             "per image.", "", "| method | base steps n | FID | FLOPs / image |", "|---|---|---|---|"]
    for _, r in s.sort_values(["rule", "x"]).iterrows():
        name = "base" if r["rule"] == "base" else "base + INC"
        lines.append(f"| {name} | {int(r['x'])} | {r['fid_mean']:.3f} ± {r['fid_std']:.2f} | {r['flops']:.4g} |")
    base = s[s["rule"] == "base"].set_index("x")
    lines += ["", "| n | base FID | base + INC FID | change | base FID at 2n | INC FLOPs / base FLOPs at 2n |",
              "|---|---|---|---|---|---|"]
    for _, r in s[s["rule"] == "inc"].sort_values("x").iterrows():
        n = r["x"]
        b = base.loc[n]
        two = base.loc[2 * n] if 2 * n in base.index else None
        change = 100 * (r["fid_mean"] - b["fid_mean"]) / b["fid_mean"]
        lines.append(f"| {int(n)} | {b['fid_mean']:.3f} | {r['fid_mean']:.3f} | {change:+.1f} % | "
                     + (f"{two['fid_mean']:.3f} | {r['flops'] / two['flops']:.2f} |" if two is not None else "- | - |"))
    return "\n".join(lines) + "\n"


def _stats(ev, metric):
    d = ev[ev["metric"] == metric]
    return d.groupby(["k", "budget"])["value"].agg(["mean", "std", "count"]).reset_index()


def _vs_k(ev, ref, metric, label):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    s = _stats(ev, metric)
    for b, d in s.groupby("budget"):
        ax.errorbar(d["k"], d["mean"], yerr=d["std"].fillna(0), marker="o", capsize=3, label=f"budget {int(b)}")
    if ref is not None:
        for m, style, name in (("base_reward_mean", ":", "base (k=0) pool"), ("target_reward_mean", "--", "exact tilted target")):
            v = ref[ref["metric"] == m]["value"].mean()
            ax.axhline(v, ls=style, color="grey", label=name)
    n_seeds = ev["seed"].nunique()
    ax.set(xlabel="truncation point k (steps fine-tuned, from the noise end)", ylabel=label,
           title=f"{label} vs k (mean ± std over {n_seeds} seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _tradeoff(ev):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    r = _stats(ev, "reward_mean")
    for ax, metric, label in ((axes[0], "dist_target", "distance to exact tilted target"),
                              (axes[1], "diversity", "diversity (mean pairwise distance)")):
        d = _stats(ev, metric).merge(r, on=["k", "budget"], suffixes=("_x", "_r"))
        for k, g in d.groupby("k"):
            g = g.sort_values("budget")
            ax.plot(g["mean_x"], g["mean_r"], marker="o", label=f"k={int(k)}")
            for _, row in g.iterrows():
                ax.annotate(f"{int(row['budget'])}", (row["mean_x"], row["mean_r"]), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel=label, ylabel="mean reward", title=f"reward vs {metric} (labels: budget)")
        if metric == "dist_target":
            ax.set_xscale("log")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _acceptance(table):
    import matplotlib.pyplot as plt

    mc = table[table["kind"] == "acceptance_mc"]
    pipe = table[table["kind"] == "acceptance"]
    rules = sorted(set(mc["rule"]))
    fig, axes = plt.subplots(1, len(rules) + 1, figsize=(3.2 * (len(rules) + 1), 3.2), squeeze=False)
    for ax, rule in zip(axes[0], rules):
        d = mc[mc["rule"] == rule]
        for metric, style in (("closed_form", "-"), ("empirical", "o")):
            e = d[d["metric"] == metric]
            ax.plot(e["x"], e["value"], style, label=metric.replace("_", " "))
        ax.set(title=f"{rule} (Monte Carlo)", xlabel="u = F(r)", ylabel="P(kept)")
        ax.legend(fontsize=7)
    ax = axes[0][-1]
    for metric, style in (("closed_form", "-"), ("empirical", "o")):
        e = pipe[pipe["metric"] == metric].groupby("x")["value"].mean()
        ax.plot(e.index, e.values, style, label=metric.replace("_", " "))
    rule = pipe["rule"].iloc[0] if len(pipe) else "?"
    ax.set(title=f"pipeline filter: {rule}", xlabel="u = F̂(r) (reference pool)", ylabel="P(kept)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _table_metrics(domain: str, params) -> tuple[str, ...]:
    from pgraft import domains

    return domains.REGISTRY.get(domain).table_metrics if domain in domains.REGISTRY.names() else ()


def _markdown(ev, ref, domain, extra=()) -> str:
    import numpy as np

    metrics = [m for m in ("reward_mean", "dist_target", "dist_base", "diversity", *extra) if m in set(ev["metric"])]
    n_seeds = ev["seed"].nunique()
    kmax = ev["k"].max()
    lines = [f"# {domain}: metrics per truncation point k and fine-tuning budget",
             "", f"Mean ± std over {n_seeds} seeds. k = 0 is the base model, k = {int(kmax)} is GRAFT. "
             f"Exact tilted target reward: {ref[ref['metric'] == 'target_reward_mean']['value'].mean():.4g}; "
             f"base pool reward: {ref[ref['metric'] == 'base_reward_mean']['value'].mean():.4g}.", "",
             "| k | budget | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for (k, b), d in ev.groupby(["k", "budget"]):
        cells = []
        for m in metrics:
            v = d[d["metric"] == m]["value"]
            cells.append(f"{v.mean():.4g} ± {v.std(ddof=1) if len(v) > 1 else 0:.2g}")
        lines.append(f"| {int(k)} | {int(b)} | " + " | ".join(cells) + " |")
    lines += ["", f"## Paired comparison against GRAFT (k = {int(kmax)}) at the same budget",
              "", "Difference (k minus GRAFT) per seed, mean ± standard error over seeds.", "",
              "| k | budget | Δ reward_mean | Δ dist_target | Δ diversity |", "|---|---|---|---|---|"]
    for (k, b), d in ev.groupby(["k", "budget"]):
        if k == kmax:
            continue
        cells = []
        for m in ("reward_mean", "dist_target", "diversity"):
            mine = d[d["metric"] == m].set_index("seed")["value"]
            g = ev[(ev["k"] == kmax) & (ev["budget"] == b) & (ev["metric"] == m)].set_index("seed")["value"]
            diff = (mine - g).dropna()
            se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            cells.append(f"{diff.mean():+.4g} ± {se:.2g}")
        lines.append(f"| {int(k)} | {int(b)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _save(fig, stem, formats=("png", "pdf")):
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
