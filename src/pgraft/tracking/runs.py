"""How spooled records become MLflow runs: a parent per pipeline, a run per (domain, seed, k), curves by step.

The runs of one pipeline id (docs/TRACKING.md "Compare in MLflow"):

- parent `pipeline <id>`: params domains, seeds, truncation_grid, the sampler; aggregate's tidy table averaged
  over seeds as metrics `<domain>/k<k>/<metric>` (step = fine-tuning budget), `<domain>/ddpo/<metric>` (step =
  reward evaluations), `<domain>/base|inc/<metric>` (step = Euler steps n), `<domain>/filter/<metric>`; the
  per-domain records: pretrain (`<domain>/pretrain/<metric>`; the base model as a LoggedModel) and invert (step =
  n); artifacts: summary.csv, the plot CSVs, the figures and tables.
- `<domain>/k<k>/seed<s>` per (domain, seed, truncation point k): params k, seed, domain, method, budgets and the
  domain's effective settings (its section; the sampler, sample, filter, finetune and evaluate values that apply
  to it: `filter.params.k` is Top-K's K, not the truncation point); evaluate's metrics unprefixed with step =
  budget, a stage's `_curves` (finetune's train_loss) with their own steps, other stages' metrics as
  `<stage>/<metric>`; sample, reward and filter run per (domain, seed) and go to every k's run. Inputs: the
  samples file (dataset, training), the reference pool (dataset, evaluation) and the base LoggedModel.
- `<domain>/ddpo/seed<s>`: the DDPO baseline (method ddpo, no k; step = reward evaluations);
  `<domain>/inc/seed<s>`: a flow domain's correctors and FID (method inc, step = Euler steps n).

A run is FINISHED once its last stage's record is in (evaluate, evaluate_flow; aggregate for the parent), FAILED
when one of its stages failed (the parent: any stage of the pipeline), else RUNNING; start and end times are the
records'. A run is a function of its records: new ones are added, a replaced one (the stage reran under the same
pipeline id) rebuilds the run. Once the pipeline's aggregate has run, each job of its matrix that did not run
under this id (skipped by DVC as unchanged) is carried forward: the latest FINISHED record of that job that ended
before the pipeline's first record is copied into its spool with `carried_from`, so a `dvc exp run` that reran a
few stages still shows every run.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import (Dataset, DatasetInput, InputTag, LoggedModelInput, LoggedModelStatus, Metric, Param,
                              RunTag)

from pgraft.config import parse_params
from pgraft.errors import ConfigError
from pgraft.io import file_digest, write_json
from pgraft.pipeline.table import COMMANDS as STAGES, STAGES as TABLE, instances, lookup
from pgraft.tracking.spool import FORMAT, PIPELINE_FILE, REPORT_STAGES, flatten, record_name, warn

MAX_ARTIFACT_BYTES = 5_000_000  # larger files are not copied into MLflow (they stay in results/)


def _commands(keep) -> tuple[str, ...]:
    """The stage commands of the table's stages that `keep` selects, in table order."""
    return tuple(dict.fromkeys(s.module.rsplit(".", 1)[1] for s in TABLE if s.name != "validate" and keep(s)))


def _inc_chain(stage) -> bool:
    """A stage of the INC chain after inversion (its ports lie under a domain's inc/ directories)."""
    return any("/inc" in p.pattern for p in (*stage.inputs, *stage.outputs))


# the run families of a record, from the stage table's axes and chains
PARENT_STAGES = _commands(lambda s: "seed" not in s.axes)  # per domain (no seed) or per pipeline
#: per (domain, seed) of the reward chain: logged into the run of every k
FAN_OUT_STAGES = _commands(lambda s: s.domains == "reward" and "seed" in s.axes and "k" not in s.axes)
INC_STAGES = _commands(lambda s: s.domains == "inc" and "seed" in s.axes)
N_STAGES = _commands(_inc_chain)  # their step is the Euler step count n
RESULT_STAGES = ("evaluate", "evaluate_flow")  # their metrics are the results: no stage prefix in a child run
FINAL = {"parent": ("aggregate", None), "graft": ("evaluate", None), "ddpo": ("evaluate", "ddpo"),
         "inc": ("evaluate_flow", None)}  # the record that completes a run of each family
METHOD = {"graft": "graft", "ddpo": "ddpo", "inc": "inc"}  # the `method` param (graft: k=0 base ... k=N GRAFT)
TABLE_VARIANTS = {"evaluate_ddpo": "ddpo"}  # stage-table jobs that run another stage's module
# A metric-name component that is the step (fine-tuning budget or Euler steps n) rather than part of the name
STEP_IN_NAME = {
    "evaluate": re.compile(r"b(?P<step>\d+)"),                    # b100.reward_mean: budget 100
    "finetune": re.compile(r"(?P<name>.+)_b(?P<step>\d+)"),       # loss_b100: budget 100
    "evaluate_flow": re.compile(r"(?P<name>.+)_n(?P<step>\d+)"),  # base_n5.fid: n = 5 Euler steps
}
REPORT_OUTPUTS = {"aggregate": (("out", ""), ("plots_dir", "plots")), "figures": (("out", "figures"),)}
PARENT_PARAMS = ("domains", "seeds", "truncation_grid", "ddpo.domains", "inc.domains", "sampler.name",
                 "sampler.num_steps")
_DIGESTS: dict[tuple, str] = {}  # file digests of dataset inputs, by (path, size, mtime)


# ---- one pipeline ---------------------------------------------------------------------------------------------

@dataclass
class _Plan:
    """One MLflow run: its family (parent | graft | ddpo | inc), matrix point and records (file name -> record)."""

    family: str
    domain: str | None = None
    seed: int | None = None
    k: int | None = None
    records: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        if self.family == "parent":
            return "parent"
        mid = f"k{self.k}" if self.family == "graft" else self.family
        return f"{self.domain}/{mid}/seed{self.seed}"


class PipelineMirror:
    """Brings the runs of one spooled pipeline in line with its records."""

    def __init__(self, client, exp_id: str, pdir: Path, stats: dict):
        self.client, self.exp_id, self.pdir, self.stats, self.pid = client, exp_id, pdir, stats, pdir.name

    def sync(self, names: list[str]) -> list[str]:
        """Mirror the records of the spool files `names`; returns the names of the records carried forward."""
        meta = _read(self.pdir / PIPELINE_FILE)
        if meta is None or meta.get("format") != FORMAT:  # written by older code: left as it is
            self.stats["skipped"] += len(names)
            return []
        self.raw, self.commit = meta["params"], meta.get("git_commit", "unknown")
        self.params = _parse(self.raw)
        expected = _expected(self.raw)
        records = {name: rec for name in names if name != PIPELINE_FILE
                   for rec in [_read(self.pdir / name)] if rec and rec.get("format") == FORMAT}
        carried = _carry_forward(self.pdir, records, expected)
        self.stats["carried"] += len(carried)
        plans, inside = {"parent": _Plan("parent")}, []
        for name, rec in sorted(records.items()):
            self.stats["records"] += 1
            if name not in expected:  # not a job of this pipeline's matrix (e.g. a refused --k)
                self.stats["outside"] += 1
                continue
            inside.append(rec)
            for plan in _targets(rec, self.raw["truncation_grid"]):
                plans.setdefault(plan.key, plan).records[name] = rec
        failed = any(r["status"] == "FAILED" for r in inside)
        found = self.client.search_runs([self.exp_id], f"tags.`pgraft.pipeline_id` = '{self.pid}'", max_results=5000)
        runs = {r.data.tags.get("pgraft.key"): r for r in found}
        parent = self._run(plans.pop("parent"), runs.get("parent"), None, failed, inside)
        for key in sorted(plans):
            self._run(plans[key], runs.get(key), parent, False, None)
        return carried

    def _run(self, plan: _Plan, run, parent, failed: bool, all_records: list | None):
        """Create, extend or rebuild one run from its records, then set its status and end time."""
        c, digests = self.client, {name: rec["_digest"] for name, rec in plan.records.items()}
        logged = json.loads(run.data.tags.get("pgraft.records", "{}")) if run else {}
        if run is not None and any(digests.get(name) != d for name, d in logged.items()):
            self._delete(run)  # a record was replaced or removed: rebuild the run from its records
            run, logged = None, {}
        times = list(plan.records.values()) if all_records is None else all_records
        if run is None:
            if not times:
                return None
            start = min((r["start"] for r in times), default=time.time())
            tags = {"pgraft.pipeline_id": self.pid, "pgraft.key": plan.key, "mlflow.source.git.commit": self.commit}
            if parent is not None:
                tags["mlflow.parentRunId"] = parent.info.run_id
            name = f"pipeline {self.pid}" if plan.family == "parent" else plan.key
            run = c.create_run(self.exp_id, start_time=_ms(start), tags=tags, run_name=name)
            params = [Param(n, v[:6000]) for n, v in self._params(plan).items()]
            for i in range(0, len(params), 100):
                c.log_batch(run.info.run_id, params=params[i:i + 100])
        elif parent is not None and run.data.tags.get("mlflow.parentRunId") != parent.info.run_id:
            c.set_tag(run.info.run_id, "mlflow.parentRunId", parent.info.run_id)  # the parent was rebuilt
        tags, new, metrics = dict(run.data.tags), {}, []
        for name, rec in sorted(plan.records.items(), key=lambda item: item[1]["end"]):
            if name in logged:
                self.stats["skipped"] += 1
                continue
            new.update(self._log_record(run.info.run_id, plan, rec))
            metrics += _metrics(rec, plan.family == "parent")
            logged[name] = rec["_digest"]
            self.stats["logged"] += 1
        if new or metrics or logged != json.loads(tags.get("pgraft.records", "{}")):
            # the records tag rides with the last batch: if the sync dies before, the next one logs the same
            # metrics again, which the store keeps once (same key, step, timestamp and value)
            new["pgraft.records"] = json.dumps(logged, sort_keys=True)
            tags.update(new)
            for i in range(0, max(len(metrics), 1), 900):
                last = i + 900 >= len(metrics)
                c.log_batch(run.info.run_id, metrics=metrics[i:i + 900],
                            tags=[RunTag(key, value) for key, value in new.items()] if last else [])
        if parent is not None:
            self._link_base_model(run.info.run_id, plan, tags, parent)
        status = _status(plan, times, failed)
        end = _ms(max((r["end"] for r in times), default=time.time()))
        if status != run.info.status or (status != "RUNNING" and end != run.info.end_time):
            if status == "RUNNING":
                c.update_run(run.info.run_id, status="RUNNING")
            else:
                c.set_terminated(run.info.run_id, status, end_time=end)
        if plan.family == "parent":
            run = c.get_run(run.info.run_id)  # its base-model tags, for the children
        return run

    def _delete(self, run) -> None:
        for key, model_id in run.data.tags.items():
            if key.startswith("pgraft.base_model."):
                with contextlib.suppress(Exception):
                    self.client.delete_logged_model(model_id)
        self.client.delete_run(run.info.run_id)

    def _params(self, plan: _Plan) -> dict[str, str]:
        if plan.family == "parent":
            return {key: _text(lookup(self.raw, key)) for key in PARENT_PARAMS}
        out = {"domain": plan.domain, "seed": plan.seed, "method": METHOD[plan.family]}
        if plan.family == "graft":
            out["k"] = plan.k
        if self.params is not None:
            out.update(_domain_params(self.params, plan.domain, plan.family))
        return {key: _text(v) for key, v in out.items()}

    def _log_record(self, run_id: str, plan: _Plan, rec: dict) -> dict:
        """Attach a record's files and lineage to the run; returns tags to set with its metrics."""
        c, opts, tags = self.client, rec.get("options", {}), {}
        for path, folder in _artifacts(rec):
            c.log_artifact(run_id, str(path), artifact_path=folder or None)
        if rec["stage"] == "pretrain" and plan.family == "parent":
            model_id = self._base_model(run_id, rec)
            if model_id:
                tags[f"pgraft.base_model.{rec['domain']}"] = model_id
        contexts = {"finetune": ("samples", "training"), "evaluate": ("reference", "evaluation")}
        if rec["stage"] in contexts and opts.get(contexts[rec["stage"]][0]):
            option, context = contexts[rec["stage"]]
            dataset = _dataset(opts[option], f"{rec['domain']}/seed{rec['seed']}/{option}", context)
            if dataset is not None:
                c.log_inputs(run_id, datasets=[dataset])
        if rec.get("carried_from"):
            tags[f"pgraft.carried.{rec['stage']}"] = rec["carried_from"]
        return tags

    def _base_model(self, run_id: str, rec: dict) -> str | None:
        """The base model of a pretrain record as an MLflow LoggedModel: its config.json and where it lies."""
        base = Path(rec.get("options", {}).get("out", ""))
        if not (base / "config.json").is_file():
            return None
        weights = base / "model.safetensors"
        model = self.client.create_logged_model(
            self.exp_id, name=f"{rec['domain']}-base", source_run_id=run_id, model_type="base",
            tags={"pgraft.path": str(base.resolve()), "pgraft.pipeline_id": self.pid, "domain": rec["domain"],
                  "pgraft.weights_bytes": str(weights.stat().st_size if weights.is_file() else 0)})
        self.client.log_model_artifact(model.model_id, str(base / "config.json"))
        self.client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        return model.model_id

    def _link_base_model(self, run_id: str, plan: _Plan, tags: dict, parent) -> None:
        """Link the run to its domain's base model (the parent's LoggedModel), once per model."""
        model_id = parent.data.tags.get(f"pgraft.base_model.{plan.domain}")
        if model_id and tags.get("pgraft.base_model") != model_id:
            self.client.log_inputs(run_id, models=[LoggedModelInput(model_id)])
            self.client.set_tag(run_id, "pgraft.base_model", model_id)


# ---- records -> runs ------------------------------------------------------------------------------------------

def _targets(rec: dict, grid: list[int]) -> list[_Plan]:
    """The run(s) a record belongs to."""
    stage, d, s = rec["stage"], rec["domain"], rec["seed"]
    if stage in PARENT_STAGES:
        return [_Plan("parent")]
    if stage == "ddpo" or rec.get("variant") == "ddpo":
        return [_Plan("ddpo", d, s)]
    if stage in INC_STAGES:
        return [_Plan("inc", d, s)]
    return [_Plan("graft", d, s, k) for k in (grid if stage in FAN_OUT_STAGES else [rec["k"]])]


def _status(plan: _Plan, records, failed: bool) -> str:
    if failed or any(r["status"] == "FAILED" for r in records):
        return "FAILED"
    stage, variant = FINAL[plan.family]
    done = any(r["stage"] == stage and r.get("variant") == variant and r["status"] == "FINISHED" for r in records)
    return "FINISHED" if done else "RUNNING"


def _metrics(rec: dict, parent: bool) -> list:
    """A record's metrics, curves and wall time as MLflow metrics, each at its step."""
    stage, ts = rec["stage"], _ms(rec["end"])
    if parent:
        prefix = f"{rec['domain']}/{stage}/" if rec["domain"] else f"{stage}/"
    else:
        prefix = "" if stage in RESULT_STAGES else f"{stage}/"
    default_step = rec["n"] if rec.get("n") is not None else 0
    out = []
    for key, value in rec["metrics"].items():
        name, step = _split_step(stage, key)
        if stage in N_STAGES and name.rsplit(".", 1)[-1] == "n":  # n is the step itself
            continue
        out.append(Metric(prefix + name, value, ts, default_step if step is None else step))
    for name, points in rec.get("curves", {}).items():
        name = (prefix if parent else "") + (name if rec.get("n") is None else f"{name}.n{rec['n']}")
        out += [Metric(name, value, ts, step) for step, value in points]
    out.append(Metric((prefix or f"{stage}/") + "wall_s", rec["wall_s"], ts, default_step))
    if stage == "aggregate" and rec["status"] == "FINISHED" and rec.get("options", {}).get("out"):
        out += _summary_metrics(Path(rec["options"]["out"]), ts)
    return out


def _split_step(stage: str, key: str) -> tuple[str, int | None]:
    """`b100.reward_mean` -> (`reward_mean`, 100) for the stages whose metric names carry the step."""
    pattern = STEP_IN_NAME.get(stage)
    parts = key.split(".")
    for i, part in enumerate(parts if pattern else ()):
        m = pattern.fullmatch(part)
        if m:
            rest = [m["name"]] if m.groupdict().get("name") else []
            return ".".join(parts[:i] + rest + parts[i + 1:]), int(m["step"])
    return key, None


def _summary_metrics(path: Path, ts: int) -> list:
    """aggregate's tidy table, averaged over seeds: one metric per (domain, method, metric), step = budget or n."""
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            key = _summary_key(row)
            if key is not None:
                groups[key].append(float(row["value"]))
    return [Metric(name, sum(v) / len(v), ts, step) for (name, step), v in sorted(groups.items())]


def _summary_key(row: dict) -> tuple[str, int] | None:
    def num(column: str) -> int:
        return int(float(row[column])) if row.get(column) not in (None, "") else 0

    kind, d, m = row["kind"], row["domain"], row["metric"]
    names = {"evaluate": (f"{d}/k{num('k')}/{m}", num("budget")), "ddpo": (f"{d}/ddpo/{m}", num("budget")),
             "ddpo_train": (f"{d}/ddpo/train_{m}", num("budget")), "inc": (f"{d}/{row['rule']}/{m}", num("x")),
             "train_loss": (f"{d}/k{num('k')}/{m}", num("x")), "filter": (f"{d}/filter/{m}", 0),
             "reference": (f"{d}/{m}", 0), "ceiling": (f"{d}/k{num('k')}/{m}", 0),
             "variance": (f"{d}/k{num('k')}/{m}", 0), "inc_floor": (f"{d}/floor/{m}", 0)}
    return names.get(kind)  # pretrain and invert come from their own records; acceptance stays in the CSV


def _artifacts(rec: dict) -> list[tuple[Path, str]]:
    """(file, artifact folder) pairs of a record: its `_artifacts`, the base model's config, report outputs."""
    opts, stage = rec.get("options", {}), rec["stage"]
    found = []
    for option, folder in REPORT_OUTPUTS.get(stage, ()) if rec["status"] == "FINISHED" else ():
        path = Path(opts.get(option, ""))
        if path.is_dir() and opts.get(option):
            found += [(f, "/".join(p for p in (folder, *f.relative_to(path).parent.parts) if p))
                      for f in sorted(path.rglob("*")) if f.is_file()]
        elif path.is_file():
            found.append((path, folder))
    if stage == "pretrain" and opts.get("out"):
        found.append((Path(opts["out"]) / "config.json", f"base_models/{rec['domain']}"))
    found += [(Path(a), stage) for a in rec.get("artifacts", [])]
    seen, out = set(), []  # a report output listed in `_artifacts` too is kept once, under its report folder
    for path, folder in found:
        if path.is_file() and path.stat().st_size <= MAX_ARTIFACT_BYTES and path.resolve() not in seen:
            seen.add(path.resolve())
            out.append((path, folder))
    return out


def _dataset(path: str, name: str, context: str):
    """A dataset input naming a spooled file by path and content digest (what MLflow shows as lineage)."""
    p = Path(path)
    if not p.is_file():
        return None
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = file_digest(p)[:16]
    dataset = Dataset(name=name, digest=_DIGESTS[key], source_type="local",
                      source=json.dumps({"uri": str(p.resolve())}), profile=json.dumps({"bytes": st.st_size}))
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])


def _domain_params(params, domain: str, family: str) -> dict:
    """The settings that apply to one domain's runs: its section and the effective shared sections."""
    section = params.section(domain).model_dump(mode="json")
    section.pop("filter", None)  # the domain's own filter / finetune are the effective ones below
    section.pop("finetune", None)
    groups: dict = {}
    out: dict = {}
    if family == "graft":
        ft = params.finetune_for(domain).model_dump(mode="json")
        out["budgets"] = ft.pop("budgets")
        groups = {"sampler": params.sampler, "sample": params.sample, "filter": params.filter_for(domain),
                  "finetune": ft, "evaluate": params.evaluate}
    elif family == "ddpo":
        ddpo = params.ddpo.model_dump(mode="json")
        ddpo.pop("domains")
        out["budgets"] = ddpo.pop("checkpoints")
        groups = {"sampler": params.sampler, "ddpo": ddpo, "evaluate": params.evaluate}
    else:
        inc = params.inc.model_dump(mode="json")
        inc.pop("domains")
        groups = {"inc": inc}
    groups[domain] = section
    for prefix, values in groups.items():
        values = values if isinstance(values, dict) else values.model_dump(mode="json")
        out.update(flatten(values, prefix + "."))
    return out


def _expected(raw: dict) -> set[str]:
    """The record names of every job of the pipeline's matrix (from the stage table)."""
    names = set()
    for stage in TABLE:
        module_stage = stage.module.rsplit(".", 1)[1]
        if module_stage not in STAGES:  # validate spools no record
            continue
        for point in instances(stage, raw):
            point = {**point, **{axis: lookup(raw, key) for axis, key in stage.fixed.items()}}
            names.add(record_name(module_stage, TABLE_VARIANTS.get(stage.name), point.get("domain"),
                                  point.get("seed"), point.get("k"), point.get("n")))
    return names


def _carry_forward(pdir: Path, records: dict, expected: set[str]) -> list[str]:
    """Copy into a completed pipeline the latest earlier record of each job that did not run under its id."""
    own = [r for r in records.values() if not r.get("carried_from")]
    if not any(r["stage"] == "aggregate" for r in own):
        return []  # jobs may still run: carry only once aggregate (which follows every job) has run
    first = min(r["start"] for r in own)
    missing = sorted(n for n in expected - set(records) if not n.startswith(REPORT_STAGES))
    found: dict[str, dict] = {}
    for other in (p for p in pdir.parent.iterdir() if p.is_dir() and p != pdir):
        for name in missing:
            if not (other / name).is_file():
                continue
            rec = _read(other / name)
            if (rec and rec.get("format") == FORMAT and not rec.get("carried_from") and rec["status"] == "FINISHED"
                    and rec["end"] < first and rec["end"] > found.get(name, {}).get("end", float("-inf"))):
                found[name] = rec
    for name, rec in found.items():
        copy = {key: v for key, v in rec.items() if key != "_digest"}
        write_json(pdir / name, {**copy, "carried_from": rec["pipeline_id"], "pipeline_id": pdir.name})
        records[name] = _read(pdir / name)
    return sorted(found)


# ---- files ----------------------------------------------------------------------------------------------------

def _read(path: Path) -> dict | None:
    """A spooled JSON file with its content digest under `_digest` (None if unreadable)."""
    try:
        data = path.read_bytes()
        rec = json.loads(data)
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict):
        return None
    rec["_digest"] = hashlib.sha256(data).hexdigest()[:12]
    return rec


def _parse(raw: dict):
    """The pipeline's validated params (for the effective per-domain settings), None if they no longer validate."""
    try:
        return parse_params(raw)
    except ConfigError as err:
        warn(f"the pipeline's params no longer validate ({str(err).splitlines()[0]}): runs get k, seed, domain only")
        return None


def _text(v) -> str:
    """A param value as MLflow shows it: strings as they are, numbers as Python prints them, the rest as JSON."""
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    return json.dumps(v)


def _ms(t: float) -> int:
    return int(t * 1000)
