"""A VQA-style reward for prompt-conditioned digit canvases: the probability that a judge answers "yes"
to "does this image show <prompt>".

Canvases are 8x16 pixels: a single digit sits in the centre slot (columns 4-11), a composition "a A to the
left of a B" has A in the left slot (columns 0-7) and B in the right slot (columns 8-15). The judge is a
classifier over one 8x8 slot with 20 classes, class 2·d + b for digit d and bold flag b (ink mass above
the digit's median). Its answer to a prompt is one decision per slot, multiplied:
    "a handwritten d"          P(digit = d | centre)
    "a bold d" / "a thin d"    P(digit = d, bold = 1 | centre) / P(digit = d, bold = 0 | centre)
    "a A to the left of a B"   P(digit = A | left) · P(digit = B | right)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

SLOTS = {"centre": slice(4, 12), "left": slice(0, 8), "right": slice(8, 16)}
VOCABULARY = ["<pad>", "a", "handwritten", "bold", "thin", "to", "the", "left", "of", *map(str, range(10))]
MAX_TOKENS = 8


@dataclass(frozen=True)
class Prompt:
    kind: str                 # "digit" | "attribute" | "composition"
    digits: tuple[int, ...]   # one digit, or (left, right)
    attribute: str | None = None  # "bold" | "thin" for attribute prompts

    @property
    def text(self) -> str:
        if self.kind == "digit":
            return f"a handwritten {self.digits[0]}"
        if self.kind == "attribute":
            return f"a {self.attribute} {self.digits[0]}"
        return f"a {self.digits[0]} to the left of a {self.digits[1]}"


def all_prompts() -> list[Prompt]:
    """10 digit prompts, 20 attribute prompts, 90 compositions of two different digits."""
    out = [Prompt("digit", (d,)) for d in range(10)]
    out += [Prompt("attribute", (d,), a) for d in range(10) for a in ("bold", "thin")]
    out += [Prompt("composition", (a, b)) for a in range(10) for b in range(10) if a != b]
    return out


def parse(text: str) -> Prompt:
    words = text.split()
    if len(words) == 3 and words[0] == "a" and words[2].isdigit() and words[1] in ("handwritten", "bold", "thin"):
        d = int(words[2])
        return Prompt("digit", (d,)) if words[1] == "handwritten" else Prompt("attribute", (d,), words[1])
    if len(words) == 8 and words[2:6] == ["to", "the", "left", "of"] and words[0] == words[6] == "a" \
            and words[1].isdigit() and words[7].isdigit():
        return Prompt("composition", (int(words[1]), int(words[7])))
    raise ValueError(f"prompt {text!r}: expected 'a handwritten D', 'a bold D', 'a thin D' or "
                     "'a A to the left of a B' (digits 0-9)")


def tokens(texts: list[str]) -> np.ndarray:
    index = {w: i for i, w in enumerate(VOCABULARY)}
    out = np.zeros((len(texts), MAX_TOKENS), dtype=np.int64)
    for row, text in enumerate(texts):
        words = text.split()
        if len(words) > MAX_TOKENS or any(w not in index for w in words):
            raise ValueError(f"prompt {text!r}: words outside the vocabulary {VOCABULARY[1:]} or longer than "
                             f"{MAX_TOKENS} tokens")
        out[row, :len(words)] = [index[w] for w in words]
    return out


def slot_images(x: np.ndarray, slot: str) -> np.ndarray:
    """(n, 1, 8, 16) canvases -> (n, 1, 8, 8) crops of one slot."""
    return x[..., SLOTS[slot]]


def answer(judge: Callable[[np.ndarray], np.ndarray], x: np.ndarray, prompts: list[str]) -> np.ndarray:
    """P(yes) of each (canvas, prompt) pair; `judge` maps (m, 1, 8, 8) crops to (m, 20) class probabilities."""
    parsed = [parse(p) for p in prompts]
    x = np.asarray(x, dtype=np.float32)
    out = np.zeros(len(x), dtype=np.float64)
    centre, left, right = (judge(slot_images(x, s)) for s in ("centre", "left", "right"))
    for i, p in enumerate(parsed):
        if p.kind == "digit":
            d = p.digits[0]
            out[i] = centre[i, 2 * d] + centre[i, 2 * d + 1]
        elif p.kind == "attribute":
            out[i] = centre[i, 2 * p.digits[0] + (p.attribute == "bold")]
        else:
            a, b = p.digits
            out[i] = (left[i, 2 * a] + left[i, 2 * a + 1]) * (right[i, 2 * b] + right[i, 2 * b + 1])
    return out
