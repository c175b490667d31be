"""best_of_n: keep the arg-max of each group of n (docs/METHOD.md §1, row "best_of_n")."""

from __future__ import annotations

from .base import Rule, check_int, top_k_mask


class BestOfN(Rule):
    """Keep the single highest-reward sample of each group of ``n`` (ties: lowest index).

    g(u) = u**(n-1) with u = F(r): the other n-1 draws must all lie below it.
    Accepted law p̄·n·F(r)**(n-1), i.e. r̂ = log F(r), α = 1/(n-1).
    """

    name = "best_of_n"
    law_argument = "cdf"
    PARAMS = ("n",)
    EXAMPLE = {"n": 4}  # parameters of the acceptance-law check (rewards ~ N(0, 1))

    def _validate(self, n):
        self.n = check_int(self.name, "n", n, minimum=1)
        return {"n": self.n}

    @property
    def group_size(self) -> int:
        return self.n

    def expected_acceptance(self) -> float:
        # one kept out of n
        return 1.0 / self.n

    def _select(self, rewards, groups, generator, keys):
        return top_k_mask(rewards, groups, 1)

    def _g(self, u):
        # docs/METHOD.md §1: g = F(r)^(N-1)
        return u ** (self.n - 1)
