"""INC pieces with hand-checkable answers: the minibatch OT coupling, early stopping on a held-out loss, the
memorisation check of the corrector, and the inversion that keeps only images whose round trip is exact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pgraft.finetune.early_stopping import EarlyStopping
from pgraft.finetune.flow_objective import FlowMatchingObjective, couple
from pgraft.finetune.loop import train
from pgraft.finetune.ot_coupling import ot_permutation


def test_ot_permutation_two_points_beats_greedy_nearest_neighbour():
    """1-d: source {0, 1}, target {5, 1.1}. Greedy nearest neighbour would pair 1 -> 1.1 (0.01) and 0 -> 5 (25),
    total 25.01; the optimal plan pairs 0 -> 1.1 (1.21) and 1 -> 5 (16), total 17.21: perm = [1, 0]."""
    src, tgt = torch.tensor([[0.0], [1.0]]), torch.tensor([[5.0], [1.1]])
    assert ot_permutation(src, tgt).tolist() == [1, 0]


def test_ot_permutation_three_points_in_the_plane():
    """Each source has one close target (distance ~1) and the other pairings cost ~100 or more: perm [2, 0, 1]."""
    src = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    tgt = torch.tensor([[10.0, 1.0], [1.0, 10.0], [1.0, 0.0]])
    assert ot_permutation(src, tgt).tolist() == [2, 0, 1]


def test_ot_permutation_rejects_unequal_sizes():
    with pytest.raises(ValueError, match="equal minibatch sizes"):
        ot_permutation(torch.zeros(2, 1), torch.zeros(3, 1))


def test_ot_coupling_lowers_the_pairing_cost():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(64, 4, generator=g) + 3.0, torch.randn(64, 4, generator=g)
    independent = ((couple(x0, eps, "independent") - eps) ** 2).sum()
    ot = ((couple(x0, eps, "ot") - eps) ** 2).sum()
    assert ot < independent
    assert sorted(couple(x0, eps, "ot").sum(1).tolist()) == sorted(x0.sum(1).tolist())  # a permutation of x0
    with pytest.raises(ValueError, match="coupling"):
        FlowMatchingObjective(x0, "sinkhorn")


class Scalar(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        return x * self.w


def test_early_stopping_keeps_and_restores_the_best_state():
    """Held-out losses 3, 2, 1, 1.5, 1.7, 1.8 with patience 3: stop at the 6th evaluation, restore the 3rd state."""
    model, stopper = Scalar(), EarlyStopping(lambda m: 0.0, every=1, patience=3)
    stops = []
    for step, loss in enumerate([3.0, 2.0, 1.0, 1.5, 1.7, 1.8], start=1):
        with torch.no_grad():
            model.w.fill_(float(step))  # the state at step s has w = s
        stops.append(stopper.observe(step, loss, model))
    assert stops == [False] * 5 + [True]
    assert stopper.best_step == 3 and stopper.best_loss == 1.0 and stopper.stopped_at == 6
    stopper.finish(6, model)
    assert model.w.item() == 3.0


def test_monitor_only_records_the_best_step_but_keeps_the_last_state():
    model, stopper = Scalar(), EarlyStopping(lambda m: 0.0, every=1, patience=1, monitor_only=True)
    for step, loss in enumerate([3.0, 1.0, 2.0, 2.5], start=1):
        with torch.no_grad():
            model.w.fill_(float(step))
        assert not stopper.observe(step, loss, model)
    stopper.finish(4, model)
    assert stopper.best_step == 2 and stopper.stopped_at is None and model.w.item() == 4.0


def test_early_stopping_ends_a_training_run():
    """A held-out loss that never improves after the first evaluation stops train() after 1 + patience evaluations
    and hands back the first evaluated state."""
    class Objective:
        def batch(self, size, generator):
            x = torch.randn(size, 1, generator=generator)
            return x, torch.zeros(size), 2.0 * x

    model = Scalar()
    seen = []

    def held_loss(m):
        seen.append(float(m.w))
        return 1.0 if len(seen) == 1 else 2.0

    stopper = EarlyStopping(held_loss, every=5, patience=2)
    losses = train(model, Objective(), 1000, 0.05, 8, torch.Generator().manual_seed(1), on_step=stopper)
    assert len(losses) == 15 and stopper.stopped_at == 15 and stopper.best_step == 5
    stopper.finish(len(losses), model)
    assert model.w.item() == pytest.approx(seen[0])


def test_memorisation_ratio_separates_copies_from_fresh_draws():
    from pgraft.metrics.memorisation import memorisation

    g = torch.Generator().manual_seed(2)
    train_set, held = torch.randn(900, 8, generator=g), torch.randn(100, 8, generator=g)
    fresh = memorisation(torch.randn(100, 8, generator=g), train_set, held)
    copies = memorisation(train_set[:100] + 1e-3, train_set, held)
    assert 0.85 < fresh["nn_ratio"] < 1.15
    assert copies["nn_ratio"] < 0.01


def test_corrector_params_are_validated():
    from pydantic import ValidationError

    from pgraft.config import CorrectorParams, IncParams

    assert CorrectorParams().coupling == "ot" and IncParams().num_inverted is None
    for bad in ({"coupling": "sinkhorn"}, {"heldout_fraction": 0.9}, {"eval_every": 0}, {"patience": 0},
                {"stop_on": "fid"}):
        with pytest.raises(ValidationError):
            CorrectorParams(**bad)
    with pytest.raises(ValidationError):
        IncParams(roundtrip_threshold=0.0)


def test_unet_corrector_is_a_quarter_of_the_digits_base_and_checks_its_shape():
    from pydantic import ValidationError

    from pgraft.config import CorrectorParams
    from pgraft.errors import ConfigError
    from pgraft.models import corrector
    from pgraft.models.flow_unet import build_unet

    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    unet = corrector.build(CorrectorParams(architecture="unet"), (1, 8, 8))
    assert 0.2 < count(unet) / count(build_unet(8, 1, [32, 64], 1)) < 0.3
    z, t = torch.randn(3, 1, 8, 8), torch.full((3,), 0.4)
    rebuilt = corrector.from_config(unet.config)
    rebuilt.load_state_dict(unet.state_dict())
    assert torch.equal(rebuilt(z, t), unet(z, t)) and unet(z, t).shape == z.shape
    with pytest.raises(ConfigError, match=r"inc.corrector.unet_channels \[8, 16, 32\].*divisible by 4"):
        corrector.build(CorrectorParams(architecture="unet", unet_channels=[8, 16, 32]), (1, 6, 6))
    with pytest.raises(ConfigError, match="square images"):
        corrector.build(CorrectorParams(architecture="unet"), (64,))
    with pytest.raises(ValidationError, match="group norm"):
        CorrectorParams(unet_channels=[12, 20])


class RowLipschitz(nn.Module):
    """v = c·x with c = 30 for rows whose first coordinate is above 5 and c = 1 elsewhere: at n = 2 (η = 1/2) the
    fixed point contracts (η·c = 0.5) on the second kind of row and expands (η·c = 15) on the first."""

    def forward(self, x, t):
        c = torch.where(x[:, :1] > 5.0, 30.0, 1.0)
        return c * x


def test_inversion_flags_only_the_rows_that_do_not_converge_and_converged_rows_round_trip():
    import warnings

    from pgraft.samplers.flow import InversionWarning, euler_invert, euler_sample

    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(6, 3, generator=g, dtype=torch.float64)
    x0[:2, 0] = 8.0  # rows 0 and 1 sit where the velocity is steep
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always", InversionWarning)
        inv = euler_invert(RowLipschitz(), x0, 2, iterations=100, tol=1e-10)
    assert any("2 of 6 rows" in str(w.message) for w in rec)
    ok = inv.row_residuals <= 1e-10
    assert ok.tolist() == [False, False, True, True, True, True] and not inv.converged
    assert len(inv.step_residuals) == 2 and inv.residual == max(inv.step_residuals)
    # a converged row round-trips through the forward sampler (exactly: x_1 = x_0 / (1 - 1/2)^2 for c = 1)
    back = euler_sample(RowLipschitz(), inv.noise[ok], 2)
    assert torch.allclose(back, x0[ok], atol=1e-8)
    assert torch.allclose(inv.noise[ok], x0[ok] * 4.0, atol=1e-8)


def test_inc_table_prints_the_real_data_floor():
    import pandas as pd

    from pgraft.report import tables
    from pgraft.report.summary import COLUMNS

    rows = [{"kind": "inc", "domain": "toy", "rule": rule, "seed": seed, "k": 0, "budget": 0, "metric": m,
             "x": float(n), "value": v}
            for seed in (0, 1) for rule, n in (("base", 5), ("base", 10), ("inc", 5))
            for m, v in (("fid", 10.0 + seed + n), ("kid", 0.01 * n + 0.001 * seed), ("flops_per_image", float(n)))]
    floor = pd.DataFrame([{"kind": "inc_floor", "domain": "toy", "rule": None, "seed": s, "k": None, "budget": None,
                           "metric": m, "x": None, "value": v} for s in (0, 1)
                          for m, v in (("fid", 3.0), ("kid", 0.001))], columns=COLUMNS)
    md = tables.inc_markdown(pd.DataFrame(rows, columns=COLUMNS), "toy", floor)
    assert "Floor (real training vs real held-out images" in md and "FID 3" in md and "KID 0.001" in md
    assert "Floor" not in tables.inc_markdown(pd.DataFrame(rows, columns=COLUMNS), "toy")
