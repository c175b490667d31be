"""Bad params are rejected at load with one clear error naming the key, before any compute or write."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pgraft.config import ConfigError, load_params, parse_params
from pgraft.stages import pretrain

from pipeline_helpers import write_params


def test_real_params_are_valid(real_params):
    params = parse_params(real_params)
    assert params.truncation_grid[0] == 0 and params.truncation_grid[-1] == params.sampler.num_steps
    assert len(params.seeds) >= 3 and len(params.truncation_grid) >= 5 and len(params.finetune.budgets) >= 3


def _set(raw: dict, dotted: str, value):
    node = raw
    *parents, last = dotted.split(".")
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


_DELETE = object()

BAD = [
    # (key, value, words the message must contain)
    ("bogus_key", 1, ["bogus_key", "unknown key"]),
    ("sampler.stepz", 3, ["sampler.stepz", "unknown key", "num_steps"]),
    ("domains", ["gaussian", "nope"], ["domains", "nope", "gaussian"]),
    ("domains", [], ["domains"]),
    ("sampler.name", "euler_maruyama", ["sampler.name", "ddim"]),
    ("filter.name", "top_p", ["top_p", "best_of_n"]),
    ("filter.params", {"m": 4, "k": 8}, ["k", "8"]),
    ("filter.params", {"m": 16}, ["k"]),
    ("filter.params", {"m": 16, "k": 2, "tau": 1.0}, ["tau"]),
    ("truncation_grid", [0, 5, 25], ["truncation_grid", "25", "num_steps"]),
    ("truncation_grid", [], ["truncation_grid"]),
    ("truncation_grid", [5, 10, 20], ["truncation_grid", "0"]),
    ("truncation_grid", [0, 10, 5, 20], ["truncation_grid", "increasing"]),
    ("truncation_grid", [0, 10], ["truncation_grid", "N=20"]),
    ("finetune.learning_rate", -0.1, ["finetune.learning_rate", "-0.1", "greater than 0"]),
    ("finetune.learning_rate", 0, ["finetune.learning_rate", "greater than 0"]),
    ("finetune.learning_rate", "fast", ["finetune.learning_rate", "fast"]),
    ("finetune.budgets", [100, -5], ["finetune.budgets"]),
    ("finetune.budgets", [], ["finetune.budgets"]),
    ("finetune.target", "eps", ["finetune.target", "intermediate"]),
    ("finetune.rounds", 0, ["finetune.rounds"]),
    ("sampler.num_steps", 2.5, ["sampler.num_steps", "2.5"]),
    ("sampler.num_steps", "20", ["sampler.num_steps"]),
    ("sampler.eta", 1.5, ["sampler.eta", "1.5"]),
    ("seeds", [0, 0], ["seeds"]),
    ("seeds", [-1], ["seeds"]),
    ("sample.num_groups", 0, ["sample.num_groups"]),
    ("evaluate.distance", "kl", ["evaluate.distance", "energy"]),
    ("tracking.enabled", "yes", ["tracking.enabled"]),
    ("gaussian", _DELETE, ["gaussian"]),
    ("gaussian.reward.name", "nope", ["gaussian.reward.name", "linear"]),
    ("gaussian.mixture.std", -1.0, ["gaussian.mixture.std"]),
]


@pytest.mark.parametrize("key,value,words", BAD, ids=[f"{k}={v!r}"[:40] for k, v, _ in BAD])
def test_bad_params_name_the_key(real_params, key, value, words):
    raw = _set(copy.deepcopy(real_params), key, value)
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    msg = str(err.value)
    for w in words:
        assert w in msg, f"{w!r} not in error message:\n{msg}"


@pytest.mark.parametrize("key,value,words", BAD[:6] + BAD[9:16], ids=lambda v: str(v)[:30])
def test_stage_exits_nonzero_before_any_write(tmp_path, real_params, capsys, key, value, words):
    params = write_params(tmp_path / "params.yaml", _set(copy.deepcopy(real_params), key, value))
    out, metrics = tmp_path / "base", tmp_path / "m" / "pretrain.json"
    code = pretrain.main(["--params", str(params), "--domain", "gaussian", "--out", str(out),
                          "--metrics", str(metrics)])
    assert code == 2
    err = capsys.readouterr().err
    assert "error" in err and words[0] in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("seeds: [0, 1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_params(tmp_path / "list.yaml")


def test_schema_file_is_current():
    import json
    from pathlib import Path

    from pgraft.config import json_schema

    committed = json.loads((Path(__file__).parents[1] / "workflow/schemas/params.schema.json").read_text())
    assert committed == json_schema(), "run `pgraft schema > workflow/schemas/params.schema.json`"


@pytest.mark.parametrize("key,value,words", [
    ("ddpo.domains", ["gaussian"], ["ddpo.domains", "['gaussian']", "prompt-conditioned"]),
    ("inc.corrected_steps", [7], ["inc", "corrected_steps [7]", "base_steps"]),
    ("gaussian", _DELETE, ["gaussian", "no 'gaussian:' section"]),
])
def test_cross_field_errors_are_one_short_line(real_params, key, value, words):
    raw = _set(copy.deepcopy(real_params), key, value)
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    header, *lines = str(err.value).splitlines()
    assert len(lines) == 1 and len(lines[0]) < 300, str(err.value)  # never a dump of the params dict
    for w in words:
        assert w in lines[0], lines[0]


PLUGIN = '''
from pydantic import Field

from pgraft import domains
from pgraft.domains.gaussian import GaussianDomain
from pgraft.params_base import Strict


class ToyParams(Strict):
    scale: float = Field(1.0, gt=0.0)


class ToyDomain(GaussianDomain):
    name = "toy"
    Params = ToyParams


domains.register("toy", ToyDomain)
'''


def test_plugin_domain_registers_its_section(real_params, tmp_path, monkeypatch):
    from pgraft import domains

    monkeypatch.setattr(domains.REGISTRY, "_items", dict(domains.REGISTRY._items))  # registered for this test only
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "toy_plugin", raising=False)
    (tmp_path / "toy_plugin.py").write_text(PLUGIN)
    raw = {**copy.deepcopy(real_params), "plugins": ["toy_plugin"], "toy": {"scale": 2.0}}
    raw["domains"] = [*raw["domains"], "toy"]
    params = parse_params(raw)
    assert params.domain_params("toy").scale == 2.0 and params.gaussian is not None
    assert params.finetune_for("toy") == params.finetune and params.filter_for("toy") == params.filter
    raw["toy"] = {"scale": -1.0}
    with pytest.raises(ConfigError, match=r"toy\.scale \(given -1\.0\): .*greater than 0"):
        parse_params(raw)


def test_plugin_import_failure_is_one_line(real_params):
    raw = {**copy.deepcopy(real_params), "plugins": ["no_such_pgraft_plugin"]}
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    msg = str(err.value)
    assert "\n" not in msg and "plugins" in msg and "no_such_pgraft_plugin" in msg



# ---- one edit runs one domain: ddpo.domains and inc.domains follow `domains` unless set ----

@pytest.mark.parametrize("domain,ddpo,inc", [("gaussian", [], []), ("digits_t2i", ["digits_t2i"], []),
                                             ("digits_flow", [], ["digits_flow"])])
def test_one_domain_is_one_edit(real_params, domain, ddpo, inc):
    raw = {**copy.deepcopy(real_params), "domains": [domain]}
    params = parse_params(raw)
    assert params.ddpo.domains == ddpo and params.inc.domains == inc
    assert params.reward_domains == ([] if domain == "digits_flow" else [domain])
    assert params.run_domains == [domain] and params.domain_params(domain) is params.section(domain)


def test_domain_lists_default_to_the_kinds_of_domains(real_params):
    assert "domains" not in real_params["ddpo"] and "domains" not in real_params["inc"]  # params.yaml leaves them out
    params = parse_params(copy.deepcopy(real_params))
    assert "digits_flow" in params.domains and "digits_flow" not in params.reward_domains
    assert params.ddpo.domains == ["digits_t2i"] and params.inc.domains == ["digits_flow"]
    assert params.run_domains == params.domains
    again = parse_params(params.model_dump(mode="json"))  # the resolved settings validate as they are
    assert again.ddpo.domains == params.ddpo.domains and again.inc.domains == params.inc.domains
    raw = copy.deepcopy(real_params)
    raw["ddpo"]["domains"], raw["inc"]["domains"] = [], []  # explicit lists win: [] switches a chain off
    params = parse_params(raw)
    assert params.ddpo.domains == [] and params.inc.domains == [] and params.run_domains == params.reward_domains


@pytest.mark.parametrize("domains,key,value,valid", [
    (["gaussian"], "ddpo.domains", ["digits_t2i"], "[]"),  # not in domains
    (None, "ddpo.domains", ["gaussian"], "['digits_t2i']"),  # in domains, not prompt-conditioned
    (["gaussian", "digits_t2i"], "inc.domains", ["digits_flow"], "[]"),  # not in domains
    (None, "inc.domains", ["qm9"], "['digits_flow']"),  # not a flow domain
    (None, "ddpo.domains", ["digits_t2i", "digits_t2i"], "repeats"),
])
def test_bad_explicit_domain_list_is_one_line(real_params, domains, key, value, valid):
    raw = _set(copy.deepcopy(real_params), key, value)
    if domains is not None:
        raw["domains"] = domains
    with pytest.raises(ConfigError) as err:
        parse_params(raw, source="params.yaml")
    header, *lines = str(err.value).splitlines()
    assert header == "params.yaml: 1 invalid setting(s)" and len(lines) == 1, str(err.value)
    line = lines[0]
    assert key in line and str(value) in line and valid in line, line
    assert len(line) < 250 and "{" not in line and "truncation_grid" not in line, line  # no dump of the params


def test_no_error_repeats_a_large_value(real_params):
    raw = {**copy.deepcopy(real_params), "seeds": list(range(-1, 500))}
    raw["sampler"] = {**raw["sampler"], "num_steps": [{"a": 1}] * 100}
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert all(len(line) < 250 for line in str(err.value).splitlines()), str(err.value)


def test_pipeline_dvc_renders_one_domain(real_params, tmp_path, monkeypatch, capsys):
    import yaml

    from pgraft import cli

    root = Path(__file__).resolve().parents[1]
    params = write_params(tmp_path / "params.yaml", {**copy.deepcopy(real_params), "domains": ["gaussian"]})
    monkeypatch.chdir(root)  # the stage table's code dependencies are paths in the repository
    out = tmp_path / "dvc.yaml"
    assert cli.main(["pipeline", "dvc", "--params", str(params), "--out", str(out)]) == 0
    stages = yaml.safe_load(out.read_text())["stages"]
    per_domain = {name.split("-", 1)[1] for name in stages if "-" in name}
    assert per_domain == {"gaussian"}, sorted(stages)
    assert {"pretrain-gaussian", "sample-gaussian", "finetune-gaussian", "evaluate-gaussian"} <= set(stages)
    bad = write_params(tmp_path / "bad.yaml", _set(copy.deepcopy(real_params), "domains", ["gaussian"]) |
                       {"ddpo": {**real_params["ddpo"], "domains": ["digits_t2i"]}})
    capsys.readouterr()
    assert cli.main(["pipeline", "dvc", "--params", str(bad), "--out", str(tmp_path / "bad.yaml.out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "ddpo.domains ['digits_t2i']" in err[1], err
