"""The report figures on small synthetic summary frames: titles name domain, reward and distance, axes carry
units, one series per budget or k with error bars, log axes keep values <= 0; the loss history they draw."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402

from pgraft.finetune.loop import loss_history  # noqa: E402
from pgraft.report import axes, curves, galleries, plots, tables  # noqa: E402
from pgraft.report.labels import Words  # noqa: E402

COLUMNS = ["kind", "domain", "rule", "seed", "k", "budget", "metric", "x", "value"]
W = Words("toy", "QED reward", "0 to 1, invalid −1", "energy distance", "energy")
KS, BUDGETS, SEEDS = (0, 2, 4), (10, 50), (0, 1, 2)


def rows(kind, seed, k, budget, metric, value, x=float("nan")) -> dict:
    return {"kind": kind, "domain": "toy", "rule": "top_k", "seed": seed, "k": k, "budget": budget,
            "metric": metric, "x": x, "value": value}


def summary(negative_distance_at=None) -> pd.DataFrame:
    """evaluate rows for every (seed, k, budget), the base (k = 0) the same at every budget, and reference rows;
    dist_target is below 0 for every seed at (k, budget) = negative_distance_at."""
    out = []
    for s in SEEDS:
        for k in KS:
            for b in BUDGETS:
                step = 0 if k == 0 else b
                out.append(rows("evaluate", s, k, b, "reward_mean", 0.1 * k + 0.001 * step + 0.01 * s))
                d = -0.002 if (k, b) == negative_distance_at else 1.0 / (1 + k) + 0.01 * s
                out.append(rows("evaluate", s, k, b, "dist_target", d))
                out.append(rows("evaluate", s, k, b, "dist_base", -0.001 if k == 0 else 0.5))
                out.append(rows("evaluate", s, k, b, "diversity", 2.0 - 0.1 * k))
            out += [rows("reference", s, k, None, "target_reward_mean", 0.9),
                    rows("reference", s, k, None, "base_reward_mean", 0.0)]
    return pd.DataFrame(out, columns=COLUMNS)


def losses() -> pd.DataFrame:
    return pd.DataFrame([rows("train_loss", s, k, None, "train_loss", 1.0 / step + 0.01 * s, x=step)
                         for s in SEEDS for k in KS[1:] for step in (10, 20, 30, 40, 50)], columns=COLUMNS)


def split(t: pd.DataFrame):
    return t[t["kind"] == "evaluate"], t[t["kind"] == "reference"]


def series(ax) -> list[ErrorbarContainer]:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_domain_table_has_one_base_row_and_the_energy_note():
    ev, ref = split(summary())
    md = tables.domain_markdown(ev, ref, "toy").splitlines()
    table = [line for line in md[:md.index("## Paired comparison against GRAFT (k = 4) at the same budget")]
             if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in table[1:]] == ["| 0 (base)", "| 2", "| 2", "| 4 (GRAFT)", "| 4 (GRAFT)"]
    assert table[1].startswith("| 0 (base) | – | ")  # the base has no budget
    assert "-0.001 [-0.001, -0.001] |" in table[1]  # a negative energy distance is shown as it is ...
    assert any("can be slightly negative" in line for line in md)  # ... with the note that explains it
    no_note = tables.domain_markdown(ev, ref, "toy", distance="sliced_wasserstein")
    assert "slightly negative" not in no_note and "sliced 1-Wasserstein distance" in no_note


def test_reward_vs_k_names_domain_reward_units_and_draws_each_budget_once_with_the_base_once():
    ev, ref = split(summary())
    fig = plots.reward_vs_k(ev, ref, W)
    ax = fig.axes[0]
    title = fig._suptitle.get_text()
    assert "toy" in title and "QED reward" in title and "3 seeds" in title
    assert "(0 to 1, invalid −1)" in ax.get_ylabel().replace("\n", " ") and "sampler steps" in ax.get_xlabel()
    bars = series(ax)
    assert len(bars) == len(BUDGETS) + 1  # one series per budget and the base model once
    labels = [c.get_label() for c in bars]
    assert labels == ["budget 10 steps", "budget 50 steps", "base model (k = 0, not fine-tuned)"]
    x10, x50 = (bars[i].lines[0].get_xdata() for i in range(2))
    assert np.all(x10 < x50) and np.allclose((x10 + x50) / 2, [2, 4])  # budgets drawn apart around each k
    assert all(c.has_yerr for c in bars)


def test_log_distance_axis_keeps_a_negative_mean_on_a_marked_floor():
    ev, _ = split(summary(negative_distance_at=(4, 50)))
    fig = plots.distance_vs_k(ev, W)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert "energy distance" in ax.get_ylabel() and "units of x" in ax.get_ylabel().replace("\n", " ")
    points = [(x, y) for c in series(ax) for x, y in zip(c.lines[0].get_xdata(), c.lines[0].get_ydata())]
    assert len(points) == len(BUDGETS) * (len(KS) - 1) + 1  # every mean drawn, the negative one included
    clipped = [c for c in series(ax) if c.lines[0].get_marker() == axes.CLIPPED]
    floor = axes.log_floor(tables.stats(ev, "dist_target")["mean"])
    assert len(clipped) == 1 and clipped[0].lines[0].get_ydata()[0] == pytest.approx(floor) and floor > 0
    assert any("drawn at that floor" in t.get_text() for t in ax.get_legend().get_texts())
    assert "slightly negative" in fig._supxlabel.get_text().replace("\n", " ")  # the footnote says why


def test_tradeoff_colours_k_marks_budgets_with_error_bars_on_both_axes():
    ev, _ = split(summary())
    fig = plots.tradeoff(ev, W)
    left, right = fig.axes[:2]
    assert left.get_xscale() == "log" and "energy distance" in left.get_xlabel() and "units of x" in right.get_xlabel()
    per_k = len(KS) - 1
    for ax in (left, right):
        bars = series(ax)
        assert len(bars) == per_k * len(BUDGETS) + 1  # each (k, budget) once, the base once
        assert all(c.has_xerr and c.has_yerr for c in bars)
        assert {c.lines[0].get_marker() for c in bars[:-1]} == {axes.marker(0), axes.marker(1)}
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:2] == ["k = 2", "k = 4 (GRAFT)"] and "budget 50 steps" in legend
    assert not left.texts  # no budget labels written over the points


def test_learning_curves_one_line_and_band_per_k_and_reward_per_budget():
    ev, ref = split(summary())
    fig = curves.learning_curves(losses(), ev, ref, W)
    loss_ax, reward_ax = fig.axes[:2]
    assert [line.get_label() for line in loss_ax.get_lines()] == ["k = 2", "k = 4 (GRAFT)"]
    assert len(loss_ax.collections) == 2  # a ± std band per k
    assert "fine-tuning step" in loss_ax.get_xlabel() and "loss" in loss_ax.get_ylabel()
    bars = series(reward_ax)
    assert [c.get_label() for c in bars] == ["k = 2", "k = 4 (GRAFT)"]
    assert all(len(c.lines[0].get_xdata()) == len(BUDGETS) and c.has_yerr for c in bars)
    assert "toy" in fig._suptitle.get_text() and "QED reward" in fig._suptitle.get_text()
    s = curves.loss_stats(losses()).set_index(["k", "step"])
    assert s.loc[(2, 10), "mean"] == pytest.approx(0.1 + 0.01) and s.loc[(2, 10), "count"] == 3


def test_learning_curves_without_a_loss_history_say_so():
    ev, ref = split(summary())
    fig = curves.learning_curves(losses().iloc[:0], ev, ref, W)
    assert "no loss history" in fig.axes[0].texts[0].get_text()


def test_loss_history_means_every_window_and_ends_at_the_last_step():
    assert loss_history([1.0, 3.0, 5.0, 7.0, 9.0], every=2) == [[2, 2.0], [4, 6.0], [5, 8.0]]
    assert loss_history([2.0] * 20, every=10) == [[10, 2.0], [20, 2.0]]
    assert loss_history([], every=10) == []


class Cells:
    """A stand-in domain drawing n square cells in one row, each panel with its own legend."""

    name = "cells"

    def draw(self, ax, x, cond=None):
        ax.imshow(np.zeros((10, 10 * len(x))))
        ax.plot([], [], label="a")
        ax.legend()


def test_gallery_fills_the_width_with_one_legend():
    methods = ["k0", "k2", "k4"]
    data = {f"cells__{m}__x": np.zeros((4, 2)) for m in methods}
    fig = galleries.samples_figure(Cells(), data, methods, ["base", "P-GRAFT k=2", "GRAFT"], "cells: samples")
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["base", "P-GRAFT k=2", "GRAFT"]
    assert galleries.columns(5, 1.0) == 3 and galleries.columns(5, 1 / 12) == 1  # squares side by side, strips stacked
    assert galleries.columns(4, 1.0) == 4  # one full row rather than 3 + 1


def test_same_gallery_as_another_domain_is_explained():
    t = summary()
    twin = t.assign(domain="twin")
    twin.loc[(twin["seed"] == 1) & (twin["metric"] == "reward_mean"), "value"] += 1
    table = pd.concat([t, twin, pd.DataFrame([rows("filter", 0, None, None, "accepted", 8.0)], columns=COLUMNS),
                       pd.DataFrame([rows("filter", 0, None, None, "accepted", 8.0)], columns=COLUMNS)
                       .assign(domain="twin")])
    x = {"k0": np.ones((2, 2))}
    note = galleries.same_samples_note("twin", {"toy": x, "twin": dict(x)}, table, 0)
    assert note.startswith("The same samples as toy_samples.png: on seed 0 both kept the same training samples")
    assert "seed 1 differs" in note
    assert galleries.same_samples_note("twin", {"toy": {"k0": np.zeros((2, 2))}, "twin": x}, table, 0) is None


def test_stage_records_with_a_loss_curve_are_spooled(tmp_path, monkeypatch, real_params):
    """What finetune and evaluate return (a `_curves` entry, a nested list) is spooled, never a crash."""
    from pgraft.config import parse_params
    from pgraft.tracking import spool as tracking

    from pipeline_helpers import shrink

    monkeypatch.setenv("PGRAFT_STATE_DIR", str(tmp_path))
    raw = shrink(real_params)
    raw["tracking"].update(enabled=True, live=False)
    params = parse_params(raw)
    history = loss_history([1.0, 0.5, 0.25, 0.125], every=2)
    finetune = {"accepted": 3, "loss_b4": 0.2, "_curves": {"train_loss": history}}
    evaluate = {"b4": {"reward_mean": 1.0}, "loss_history": {"train_loss": history}}
    for stage, metrics in (("finetune", finetune), ("evaluate", evaluate)):
        path = tracking.record(params, "params.yaml", stage=stage, options={"domain": "gaussian", "seed": 0, "k": 2},
                               metrics=metrics, wall_s=0.0)
        assert path is not None, stage
        rec = json.loads(path.read_text())
        assert all(isinstance(v, float) for v in rec["metrics"].values())
    assert rec["metrics"] == {"b4.reward_mean": 1.0}


def test_finetune_returns_the_loss_history_of_the_same_training_run():
    """The history is read off the losses after training: the run, its checkpoints and losses are unchanged."""
    import copy
    from types import SimpleNamespace

    import torch

    from pgraft.finetune import train
    from pgraft.workflows.finetuning import finetune_once

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x, t):
            return self.lin(x)

    class Objective:
        def batch(self, size, generator):
            x = torch.randn((size, 2), generator=generator)
            return x, torch.zeros(size), 2 * x

    torch.manual_seed(0)
    base = Net()
    ft = SimpleNamespace(budgets=[5, 25], learning_rate=0.01, batch_size=8, warmup_steps=0)
    saved = {}
    metrics, history = finetune_once(base, Objective(), ft, torch.Generator().manual_seed(3),
                                     lambda name, m: saved.update({name: copy.deepcopy(m.state_dict())}), None)
    plain = copy.deepcopy(base).requires_grad_(True)
    losses = train(plain, Objective(), 25, 0.01, 8, torch.Generator().manual_seed(3))
    assert history == loss_history(losses) and [s for s, _ in history] == [10, 20, 25]
    assert metrics["loss_b25"] == pytest.approx(np.mean(losses[5:25]))
    assert all(torch.equal(saved["b25"][k], v) for k, v in plain.state_dict().items())
