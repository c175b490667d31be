# Per-domain, per-seed and per-truncation-point stages: pretrain -> sample -> reward -> filter
# -> finetune -> evaluate. Resources (GPUs, walltime, memory) live in workflow/profiles, not here.


rule pretrain:
    output:
        model=directory("results/{domain}/base"),
        metrics="results/metrics/{domain}/pretrain.json",
    wildcard_constraints:
        domain="|".join(DOMAINS),
    log:
        "logs/pretrain/{domain}.log",
    shell:
        "python -m pgraft.stages.pretrain --domain {wildcards.domain}"
        " --out {output.model} --metrics {output.metrics} > {log} 2>&1"


rule sample:
    input:
        model="results/{domain}/base",
    output:
        samples="results/{domain}/seed{seed}/samples.npz",
        reference="results/{domain}/seed{seed}/reference.npz",
        metrics="results/metrics/{domain}/seed{seed}/sample.json",
    log:
        "logs/sample/{domain}-{seed}.log",
    shell:
        "python -m pgraft.stages.sample --domain {wildcards.domain} --seed {wildcards.seed}"
        " --model {input.model} --out {output.samples} --reference {output.reference}"
        " --metrics {output.metrics} > {log} 2>&1"


rule reward:
    input:
        model="results/{domain}/base",
        samples="results/{domain}/seed{seed}/samples.npz",
        reference="results/{domain}/seed{seed}/reference.npz",
    output:
        rewards="results/{domain}/seed{seed}/rewards.parquet",
    log:
        "logs/reward/{domain}-{seed}.log",
    shell:
        "python -m pgraft.stages.reward --domain {wildcards.domain} --seed {wildcards.seed}"
        " --model {input.model} --samples {input.samples} --reference {input.reference} --out {output.rewards} > {log} 2>&1"


rule filter:
    input:
        samples="results/{domain}/seed{seed}/samples.npz",
        rewards="results/{domain}/seed{seed}/rewards.parquet",
    output:
        selection="results/{domain}/seed{seed}/selection.parquet",
        acceptance="results/metrics/{domain}/seed{seed}/acceptance.csv",
        metrics="results/metrics/{domain}/seed{seed}/filter.json",
    log:
        "logs/filter/{domain}-{seed}.log",
    shell:
        "python -m pgraft.stages.filter --domain {wildcards.domain} --seed {wildcards.seed}"
        " --samples {input.samples} --rewards {input.rewards} --out {output.selection}"
        " --acceptance {output.acceptance} --metrics {output.metrics} > {log} 2>&1"


rule finetune:
    input:
        model="results/{domain}/base",
        samples="results/{domain}/seed{seed}/samples.npz",
        selection="results/{domain}/seed{seed}/selection.parquet",
    output:
        finetuned=directory("results/{domain}/seed{seed}/k{k}/finetuned"),
    log:
        "logs/finetune/{domain}-{seed}-{k}.log",
    shell:
        "python -m pgraft.stages.finetune --domain {wildcards.domain} --seed {wildcards.seed} --k {wildcards.k}"
        " --model {input.model} --samples {input.samples} --selection {input.selection}"
        " --out {output.finetuned} > {log} 2>&1"


rule evaluate:
    input:
        model="results/{domain}/base",
        finetuned="results/{domain}/seed{seed}/k{k}/finetuned",
        reference="results/{domain}/seed{seed}/reference.npz",
        rewards="results/{domain}/seed{seed}/rewards.parquet",
    output:
        metrics="results/metrics/{domain}/seed{seed}/k{k}/evaluate.json",
        gallery="results/metrics/{domain}/seed{seed}/k{k}/gallery.npz",
    log:
        "logs/evaluate/{domain}-{seed}-{k}.log",
    shell:
        "python -m pgraft.stages.evaluate --domain {wildcards.domain} --seed {wildcards.seed} --k {wildcards.k}"
        " --model {input.model} --finetuned {input.finetuned} --reference {input.reference}"
        " --rewards {input.rewards} --out {output.metrics} --gallery {output.gallery} > {log} 2>&1"


# The policy-gradient baseline (params 'ddpo'): online sampling and PPO, then the same evaluate command
# with the fine-tuned model used for all N steps.


rule ddpo:
    input:
        model="results/{domain}/base",
    output:
        finetuned=directory("results/{domain}/seed{seed}/ddpo/finetuned"),
        metrics="results/metrics/{domain}/seed{seed}/ddpo/train.json",
    wildcard_constraints:
        domain="|".join(DDPO_DOMAINS) or "^$",
    log:
        "logs/ddpo/{domain}-{seed}.log",
    shell:
        "python -m pgraft.stages.ddpo --domain {wildcards.domain} --seed {wildcards.seed}"
        " --model {input.model} --out {output.finetuned} --metrics {output.metrics} > {log} 2>&1"


rule evaluate_ddpo:
    input:
        model="results/{domain}/base",
        finetuned="results/{domain}/seed{seed}/ddpo/finetuned",
        reference="results/{domain}/seed{seed}/reference.npz",
        rewards="results/{domain}/seed{seed}/rewards.parquet",
    output:
        metrics="results/metrics/{domain}/seed{seed}/ddpo/evaluate.json",
        gallery="results/metrics/{domain}/seed{seed}/ddpo/gallery.npz",
    params:
        k=PARAMS.sampler.num_steps,
    log:
        "logs/evaluate_ddpo/{domain}-{seed}.log",
    shell:
        "python -m pgraft.stages.evaluate --domain {wildcards.domain} --seed {wildcards.seed} --k {params.k}"
        " --model {input.model} --finetuned {input.finetuned} --reference {input.reference}"
        " --rewards {input.rewards} --out {output.metrics} --gallery {output.gallery} > {log} 2>&1"


# Inverse noise correction (flow domains, params 'inc'): pretrain_flow -> invert -> correct -> evaluate_flow.


rule pretrain_flow:
    output:
        model=directory("results/{domain}/base"),
        features=directory("results/{domain}/features"),
        metrics="results/metrics/{domain}/pretrain.json",
    wildcard_constraints:
        domain="|".join(INC_DOMAINS) or "^$",
    log:
        "logs/pretrain_flow/{domain}.log",
    shell:
        "python -m pgraft.stages.pretrain --domain {wildcards.domain}"
        " --out {output.model} --metrics {output.metrics} --features {output.features} > {log} 2>&1"


rule invert:
    input:
        model="results/{domain}/base",
    output:
        inverted="results/{domain}/inc/n{n}/inverted.npz",
        metrics="results/metrics/{domain}/inc/n{n}/invert.json",
    log:
        "logs/invert/{domain}-{n}.log",
    shell:
        "python -m pgraft.stages.invert --domain {wildcards.domain} --n {wildcards.n}"
        " --model {input.model} --out {output.inverted} --metrics {output.metrics} > {log} 2>&1"


rule correct:
    input:
        inverted="results/{domain}/inc/n{n}/inverted.npz",
    output:
        corrector=directory("results/{domain}/seed{seed}/inc/n{n}/corrector"),
    log:
        "logs/correct/{domain}-{n}-{seed}.log",
    shell:
        "python -m pgraft.stages.correct --domain {wildcards.domain} --seed {wildcards.seed} --n {wildcards.n}"
        " --inverted {input.inverted} --out {output.corrector} > {log} 2>&1"


rule evaluate_flow:
    input:
        model="results/{domain}/base",
        features="results/{domain}/features",
        correctors=lambda w: expand("results/{domain}/seed{seed}/inc/n{n}/corrector", domain=w.domain,
                                    seed=w.seed, n=PARAMS.inc.corrected_steps),
    output:
        metrics="results/metrics/{domain}/seed{seed}/inc.json",
    params:
        correctors_dir="results/{domain}/seed{seed}/inc",
    log:
        "logs/evaluate_flow/{domain}-{seed}.log",
    shell:
        "python -m pgraft.stages.evaluate_flow --domain {wildcards.domain} --seed {wildcards.seed}"
        " --model {input.model} --features {input.features}"
        " --correctors-dir {params.correctors_dir} --out {output.metrics} > {log} 2>&1"
