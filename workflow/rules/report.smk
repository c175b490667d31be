# Sweep-wide stages: aggregate (one tidy table, MLflow mirror) and figures (from that table only).


rule aggregate:
    input:
        expand("results/metrics/{domain}/pretrain.json", domain=DOMAINS),
        expand("results/metrics/{domain}/seed{seed}/{name}", domain=DOMAINS, seed=SEEDS,
               name=["filter.json", "acceptance.csv", "sample.json"]),
        expand("results/metrics/{domain}/seed{seed}/k{k}/{name}", domain=DOMAINS, seed=SEEDS, k=GRID,
               name=["evaluate.json", "gallery.npz"]),
        expand("results/metrics/{domain}/seed{seed}/ddpo/{name}", domain=DDPO_DOMAINS, seed=SEEDS,
               name=["evaluate.json", "gallery.npz", "train.json"]),
        expand("results/metrics/{domain}/pretrain.json", domain=INC_DOMAINS),
        expand("results/metrics/{domain}/inc/n{n}/invert.json", domain=INC_DOMAINS, n=PARAMS.inc.corrected_steps),
        expand("results/metrics/{domain}/seed{seed}/inc.json", domain=INC_DOMAINS, seed=SEEDS),
    output:
        summary="results/summary.csv",
        plots=directory("results/plots"),
        galleries="results/galleries.npz",
    log:
        "logs/aggregate/aggregate.log",
    shell:
        "python -m pgraft.stages.aggregate --metrics-dir results/metrics --out {output.summary}"
        " --plots-dir {output.plots} --galleries {output.galleries} > {log} 2>&1"


rule figures:
    input:
        summary="results/summary.csv",
        galleries="results/galleries.npz",
    output:
        figures=directory("results/figures"),
    log:
        "logs/figures/figures.log",
    shell:
        "python -m pgraft.stages.figures --summary {input.summary} --galleries {input.galleries}"
        " --out {output.figures} > {log} 2>&1"
