"""Text-to-image at laptop scale: prompt-conditioned 8x16 digit canvases, a VQA-style judge as reward.

Prompts (pgraft.rewards.digit_vqa): "a handwritten 7", attribute prompts "a bold 7" / "a thin 7" (ink mass
above / below the digit's median over the training part), and compositions "a 3 to the left of a 7". The
prompt set is split into training prompts (sampled and fine-tuned on) and held-out prompts (evaluation only).
scikit-learn's digits are split into disjoint train / judge / test parts with a fixed seed: the base model,
the reward judge and the FID feature network learn from the train part, the independent judge (a different
architecture) from the judge part, and FID compares generated slots with the test part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from pgraft.checkpoints import load_model, save_model
from pgraft.domains.base import Cond, DiffusionDomain, prompts_of
from pgraft.params_base import FeatureNetParams, FilterParams, FinetuneParams, PretrainParams, Strict
from pgraft.rewards import digit_vqa

GALLERY_REPEATS = 2  # samples per gallery prompt


class PromptMixParams(Strict):
    digit: float = Field(0.2, ge=0.0)
    attribute: float = Field(0.4, ge=0.0)
    composition: float = Field(0.4, ge=0.0)

    @model_validator(mode="after")
    def _some(self) -> "PromptMixParams":
        if self.digit + self.attribute + self.composition <= 0:
            raise ValueError("at least one prompt kind needs a positive weight")
        return self


class T2IDataParams(Strict):
    split_seed: int = Field(0, ge=0)
    judge_fraction: float = Field(0.25, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.25, gt=0.0, lt=0.5)
    heldout_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    mix: PromptMixParams = PromptMixParams()


class T2IModelParams(Strict):
    architecture: Literal["mlp", "unet"] = "mlp"
    text_dim: int = Field(64, ge=8)
    hidden: int = Field(256, ge=8)
    layers: int = Field(3, ge=1, le=16)
    block_out_channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=1)
    layers_per_block: int = Field(1, ge=1)


class JudgeParams(Strict):
    steps: int = Field(1500, ge=1)


class DigitsT2IParams(Strict):
    data: T2IDataParams = T2IDataParams()
    model: T2IModelParams = T2IModelParams()
    pretrain: PretrainParams = PretrainParams(steps=3000, batch_size=256, learning_rate=1e-3)
    judges: JudgeParams = JudgeParams()
    features: FeatureNetParams = FeatureNetParams()
    finetune: FinetuneParams | None = None
    filter: FilterParams | None = None


class DigitsT2IDomain(DiffusionDomain):
    name = "digits_t2i"
    Params = DigitsT2IParams
    conditional = True
    shape = (1, 8, 16)
    gallery_size = 1  # galleries are drawn per prompt (gallery_prompts)
    table_metrics = ("judge_score", "reward_mean_heldout", "judge_score_heldout", "fid", "diversity_within_prompt")

    def __init__(self, params):
        super().__init__(params)
        self._aux: dict = {}
        self._cache: dict = {}

    # --- data ---

    def _digits(self):
        if "digits" not in self._cache:
            from sklearn.datasets import load_digits

            d = load_digits()
            x = (d.images.astype(np.float32) / 16.0) * 2 - 1  # (n, 8, 8) in [-1, 1]
            y = d.target.astype(np.int64)
            order = np.random.default_rng(self.params.data.split_seed).permutation(len(x))
            n_test = int(round(self.params.data.test_fraction * len(x)))
            n_judge = int(round(self.params.data.judge_fraction * len(x)))
            parts = {"test": order[:n_test], "judge": order[n_test:n_test + n_judge],
                     "train": order[n_test + n_judge:]}
            ink = x.sum(axis=(1, 2))
            median = np.array([np.median(ink[parts["train"]][y[parts["train"]] == c]) for c in range(10)])
            bold = (ink > median[y]).astype(np.int64)
            self._cache["digits"] = {p: (x[i], y[i], bold[i]) for p, i in parts.items()}
        return self._cache["digits"]

    def part(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(images (n, 8, 8), digit labels, bold flags) of the train, judge or test part."""
        return self._digits()[name]

    def prompts(self, split: str) -> list[str]:
        if split not in ("train", "heldout"):
            raise ValueError(f"prompt split {split!r}: expected 'train' or 'heldout'")
        everything = digit_vqa.all_prompts()
        rng = np.random.default_rng(self.params.data.split_seed + 1)
        held: set[str] = set()
        for kind in ("attribute", "composition"):  # every digit prompt is a training prompt
            texts = [p.text for p in everything if p.kind == kind]
            n = int(round(self.params.data.heldout_fraction * len(texts)))
            held |= {texts[i] for i in rng.permutation(len(texts))[:n]}
        return [p.text for p in everything if (p.text in held) == (split == "heldout")]

    def tokens(self, prompts: list[str]) -> np.ndarray:
        return digit_vqa.tokens(prompts)

    def render(self, prompts: list[str], generator) -> np.ndarray:
        """Real canvases for the prompts, from the train part (digits drawn at random per prompt)."""
        import torch

        x, y, bold = self.part("train")
        by_class = {(c, b): np.flatnonzero((y == c) & (bold == b)) for c in range(10) for b in (0, 1)}
        by_digit = {c: np.flatnonzero(y == c) for c in range(10)}
        canvases = np.full((len(prompts), 1, 8, 16), -1.0, dtype=np.float32)
        u = torch.rand(len(prompts), 2, generator=generator).numpy()
        for i, text in enumerate(prompts):
            p = digit_vqa.parse(text)
            if p.kind == "composition":
                for j, (slot, d) in enumerate(zip(("left", "right"), p.digits)):
                    pool = by_digit[d]
                    canvases[i, 0, :, digit_vqa.SLOTS[slot]] = x[pool[int(u[i, j] * len(pool))]]
            else:
                pool = (by_digit[p.digits[0]] if p.kind == "digit"
                        else by_class[(p.digits[0], int(p.attribute == "bold"))])
                canvases[i, 0, :, digit_vqa.SLOTS["centre"]] = x[pool[int(u[i, 0] * len(pool))]]
        return canvases

    def sample_data(self, n: int, generator):
        """(canvases, prompts): prompt kinds mixed by data.mix, every prompt (train and held-out) seen."""
        import torch

        everything = digit_vqa.all_prompts()
        mix = self.params.data.mix
        weights = np.array([mix.digit, mix.attribute, mix.composition], dtype=np.float64)
        kinds = ["digit", "attribute", "composition"]
        kind_of = torch.multinomial(torch.as_tensor(weights / weights.sum()), n, replacement=True,
                                    generator=generator).numpy()
        pools = {k: [p.text for p in everything if p.kind == k] for k in kinds}
        pick = torch.rand(n, generator=generator).numpy()
        prompts = [pools[kinds[k]][int(u * len(pools[kinds[k]]))] for k, u in zip(kind_of, pick)]
        return torch.as_tensor(self.render(prompts, generator)), prompts

    # --- model ---

    def build_model(self):
        from pgraft.models.prompt_nets import ARCHITECTURES

        m = self.params.model
        common = {"shape": list(self.shape), "vocab_size": len(digit_vqa.VOCABULARY),
                  "max_tokens": digit_vqa.MAX_TOKENS, "text_dim": m.text_dim}
        if m.architecture == "mlp":
            return ARCHITECTURES.get("mlp")(**common, hidden=m.hidden, layers=m.layers)
        return ARCHITECTURES.get("unet")(**common, block_out_channels=m.block_out_channels,
                                         layers_per_block=m.layers_per_block)

    def model_from_config(self, config: dict):
        from pgraft.models.prompt_nets import from_config

        return from_config(config)

    # --- judges and the FID feature network ---

    def train_auxiliary(self, out_dir: Path, generator) -> dict[str, float]:
        import torch

        from pgraft.metrics.fid import save_extractor
        from pgraft.models.digit_features import (DigitClassifier, PixelMLPClassifier, fit_classifier,
                                                  train_digit_classifier)

        steps = self.params.judges.steps
        x, y, bold = self.part("train")
        xj, yj, boldj = self.part("judge")
        img = lambda a: torch.as_tensor(a[:, None])  # noqa: E731
        judge = fit_classifier(lambda: DigitClassifier(num_classes=20), img(x), torch.as_tensor(2 * y + bold),
                               steps, generator=generator)
        independent = fit_classifier(lambda: PixelMLPClassifier(num_classes=20), img(xj),
                                     torch.as_tensor(2 * yj + boldj),
                                     steps, generator=generator)
        features = train_digit_classifier(img(x), torch.as_tensor(y), steps=self.params.features.steps,
                                          generator=generator)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_model(out_dir / "judge", judge, self.name)
        save_model(out_dir / "independent_judge", independent, self.name)
        save_extractor(features, out_dir / "features")
        xt, yt, boldt = self.part("test")
        metrics = {}
        for name, net in (("judge", judge), ("independent_judge", independent)):
            with torch.no_grad():
                pred = net(img(xt)).argmax(1).numpy()
            metrics[f"{name}_digit_accuracy"] = float((pred // 2 == yt).mean())
            metrics[f"{name}_joint_accuracy"] = float((pred == 2 * yt + boldt).mean())
        return metrics

    def load_auxiliary(self, aux_dir: Path) -> None:
        from pgraft.models.digit_features import DigitClassifier, PixelMLPClassifier

        aux_dir = Path(aux_dir)
        self._aux = {
            "judge": load_model(aux_dir / "judge", self, build=lambda c: DigitClassifier(**c)),
            "independent_judge": load_model(aux_dir / "independent_judge", self,
                                            build=lambda c: PixelMLPClassifier(**c)),
            "features": aux_dir / "features",
        }

    def _judge(self, name: str):
        import torch

        if name not in self._aux:
            raise RuntimeError(f"{self.name}: the {name} is not loaded (load_auxiliary(<base>/auxiliary) first)")
        net = self._aux[name]

        def probabilities(crops: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return torch.softmax(net(torch.as_tensor(crops, dtype=torch.float32)), dim=1).double().numpy()

        return probabilities

    # --- reward and metrics ---

    def reward(self, x: np.ndarray, cond: Cond = None) -> np.ndarray:
        """P(the training judge answers yes to "does this image show <prompt>")."""
        return digit_vqa.answer(self._judge("judge"), x, prompts_of(self, x, cond))

    def extra_metrics(self, x: np.ndarray, cond: Cond = None) -> dict[str, float]:
        """Independent-judge score, reward-hacking gap, reward per prompt kind, within-prompt diversity, FID."""
        from pgraft.metrics.diversity import mean_pairwise_distance
        from pgraft.metrics.fid import fid, to_uint8

        prompts = prompts_of(self, x, cond)
        r = self.reward(x, prompts)
        independent = digit_vqa.answer(self._judge("independent_judge"), x, prompts)
        kinds = np.array([digit_vqa.parse(p).kind for p in prompts])
        out = {"judge_score": float(independent.mean()), "reward_hacking_gap": float(r.mean() - independent.mean())}
        for kind in ("digit", "attribute", "composition"):
            if (kinds == kind).any():
                out[f"reward_{kind}"] = float(r[kinds == kind].mean())
                out[f"judge_score_{kind}"] = float(independent[kinds == kind].mean())
        prompts_arr = np.asarray(prompts)
        within = [mean_pairwise_distance(x[prompts_arr == p].reshape(int((prompts_arr == p).sum()), -1))
                  for p in np.unique(prompts_arr) if (prompts_arr == p).sum() > 1]
        out["diversity_within_prompt"] = float(np.mean(within)) if within else 0.0
        slots = [digit_vqa.slot_images(x[kinds != "composition"], "centre"),
                 digit_vqa.slot_images(x[kinds == "composition"], "left"),
                 digit_vqa.slot_images(x[kinds == "composition"], "right")]
        fake = np.concatenate([s for s in slots if len(s)])
        real = self.part("test")[0][:, None]
        out["fid"] = fid(to_uint8(real), to_uint8(fake), self._aux["features"])
        return out

    # --- gallery ---

    def gallery_prompts(self) -> list[str]:
        """Two digit prompts, then one attribute and two composition prompts from each split, spread over digits."""
        train, held = self.prompts("train"), self.prompts("heldout")

        def spread(pool, kind, n):
            of_kind = [p for p in pool if digit_vqa.parse(p).kind == kind]
            return [of_kind[(2 * i + 1) * len(of_kind) // (2 * n)] for i in range(n)]

        chosen = spread(train, "digit", 2)
        for pool in (train, held):
            chosen += spread(pool, "attribute", 1) + spread(pool, "composition", 2)
        return [p for p in chosen for _ in range(GALLERY_REPEATS)]

    def draw(self, ax, x: np.ndarray, cond: Cond = None) -> None:
        """The canvases side by side (gap of one column), prompt under each pair."""
        n = len(x)
        sheet = np.full((8, n * 17 - 1), 1.0)
        for i in range(n):
            sheet[:, i * 17:i * 17 + 16] = x[i, 0]
        ax.imshow(-sheet, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_yticks([])
        if cond is not None:
            step = GALLERY_REPEATS
            ax.set_xticks([i * 17 + (17 * step - 1) / 2 - 0.5 for i in range(0, n, step)])
            ax.set_xticklabels([str(cond[i]).replace(" to the left of ", " | ") for i in range(0, n, step)],
                               fontsize=6, rotation=20)
        else:
            ax.set_xticks([])
