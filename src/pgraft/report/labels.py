"""What the figures and tables call things: each domain's reward, the evaluation distance, their units."""

from __future__ import annotations

from dataclasses import dataclass

#: the rewards by params `<domain>.reward.name` (a domain with a single reward, by its own name): what it
#: measures and its unit (docs/METHOD.md §1; the rewards live in src/pgraft/rewards/ and the domains)
REWARDS: dict[str, tuple[str, str]] = {
    "linear": ("linear reward ⟨x, d⟩", "data units"),
    "mode_preference": ("mode-preference reward", "log weight"),
    "validity": ("validity reward", "1 valid, −1 invalid"),
    "qed": ("QED reward", "0 to 1, invalid −1"),
    "sa": ("SA reward (10 − SA)/9", "0 to 1, invalid −1"),
    "weighted": ("weighted molecule reward", "invalid −1"),
    "alignment": ("−alignment reward", "unitless, ≤ 0"),
    "overlap": ("−overlap reward", "unitless, ≤ 0"),
    "combined": ("−(alignment + overlap) reward", "unitless, ≤ 0"),
    "digits_t2i": ("judge reward P(yes | image, prompt)", "probability"),
    "vqascore": ("VQAScore reward P(yes | image, prompt)", "probability"),
    "subprocess": ("external reward", "the command's scale"),
    "brightness": ("brightness reward", "mean pixel value"),
}
#: the evaluation distances by params `evaluate.distance` (src/pgraft/metrics/distances.py)
DISTANCES: dict[str, str] = {"energy": "energy distance", "sliced_wasserstein": "sliced 1-Wasserstein distance"}
#: the unit of every distance between sample sets here: Euclidean distance between flattened samples x
X_UNITS = "units of x"
#: why an energy distance can be below 0 (tables and figures say it where such values may appear)
ENERGY_NOTE = ("The energy distance 2E|X−Y| − E|X−X′| − E|Y−Y′| is estimated without bias, so near 0 an "
               "estimate can be slightly negative (e.g. the base model against its own reference pool).")


@dataclass(frozen=True)
class Words:
    """How one domain's figures name their quantities."""

    domain: str
    reward: str = "reward"  # what the reward measures, e.g. "QED reward"
    reward_unit: str = "domain units"
    distance: str = "energy distance"  # the evaluation distance's name
    distance_key: str = "energy"  # params evaluate.distance

    @property
    def reward_axis(self) -> str:
        return f"mean {self.reward} ({self.reward_unit})"

    @property
    def target_axis(self) -> str:
        return f"{self.distance} to exact tilted target ({X_UNITS})"

    @property
    def diversity_axis(self) -> str:
        return f"diversity: mean pairwise distance ({X_UNITS})"

    @property
    def energy(self) -> bool:
        return self.distance_key == "energy"


def words(params, domain: str) -> Words:
    """The Words of `domain` under `params` (an unknown reward falls back to the domain's name)."""
    section = params.section(domain)
    name = domain
    if section is not None and "reward" in type(section).model_fields:
        name = section.reward.name
    reward, unit = REWARDS.get(name, (f"{domain} reward", "domain units"))
    key = params.evaluate.distance
    return Words(domain, reward, unit, DISTANCES.get(key, key), key)
