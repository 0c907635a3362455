"""Deterministic train/validation(/test) splits of `Examples`, stratified by class when possible."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from tfbert.data.examples import Examples


def train_validation_split(
    examples: Examples,
    validation_fraction: float,
    seed: int,
    stratify: bool = True,
) -> tuple[Examples, Examples]:
    """Splits examples into training and validation sets, deterministically for a seed.

    Single-label classification examples (all labels strings) are split per class when
    `stratify`: every class with at least 2 examples lands in both sets, and the set sizes
    are within the number of classes of the requested fraction. Regression, multi-label or
    unlabelled examples get a plain shuffled split. Both sets are shuffled.

    Args:
        examples: the examples to split.
        validation_fraction: share of examples for validation, in (0, 1).
        seed: seed of the numpy random Generator.
        stratify: keep class proportions for single-label classification.

    Returns:
        ``(train, validation)``; `skipped` stays with the input `examples`.

    Raises:
        ValueError: the fraction is not in (0, 1) or there are fewer than 2 examples.

    Example:
        train, validation = train_validation_split(examples, 0.1, seed=0)
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), found {validation_fraction!r}")
    train, validation = _split(examples, (1.0 - validation_fraction, validation_fraction),
                               seed, stratify)
    return train, validation


def train_validation_test_split(
    examples: Examples,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    stratify: bool = True,
) -> tuple[Examples, Examples, Examples]:
    """Splits examples into training, validation and test sets; see `train_validation_split`.

    Args:
        examples: the examples to split.
        fractions: shares of (train, validation, test); non-negative, summing to 1, with a
            positive train share. A zero share gives an empty set.
        seed: seed of the numpy random Generator.
        stratify: keep class proportions for single-label classification; classes too
            small for every set go to train first, then validation.

    Returns:
        ``(train, validation, test)``.

    Raises:
        ValueError: invalid fractions or too few examples for the non-empty sets.
    """
    if len(fractions) != 3:
        raise ValueError(f"fractions must be (train, validation, test), found {fractions!r}")
    train, validation, test = _split(examples, tuple(float(f) for f in fractions), seed, stratify)
    return train, validation, test


def _split(examples: Examples, fractions: tuple[float, ...], seed: int,
           stratify: bool) -> tuple[Examples, ...]:
    if any(not math.isfinite(f) or f < 0 for f in fractions) or fractions[0] <= 0:
        raise ValueError(f"split fractions must be non-negative with a positive train share, "
                         f"found {fractions}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, found {fractions} (sum {sum(fractions)})")
    n = len(examples)
    wanted = sum(1 for f in fractions if f > 0)
    if n < wanted:
        raise ValueError(f"cannot split {n} examples into {wanted} non-empty sets")
    rng = np.random.default_rng(seed)
    targets = _allocate(n, fractions, minimum=1)
    single_label = (bool(examples.labels)
                    and all(isinstance(label, str) for label in examples.labels))
    if stratify and single_label:
        parts = _stratified_parts(examples.labels, fractions, targets, rng)
    else:
        order = rng.permutation(n)
        bounds = np.cumsum([0] + targets)
        parts = [order[bounds[j]:bounds[j + 1]] for j in range(len(fractions))]
    return tuple(examples.select(rng.permutation(np.asarray(part, np.int64))) for part in parts)


def _allocate(count: int, fractions: Sequence[float], minimum: int) -> list[int]:
    """Largest-remainder rounding of count * fractions, giving each positive share `minimum`.

    The minimum is granted in split order, as far as `count` allows, taking from the share
    that is most over its exact value.
    """
    exact = [count * f for f in fractions]
    sizes = [int(math.floor(x)) for x in exact]
    for j in sorted(range(len(exact)), key=lambda j: (-(exact[j] - sizes[j]), j)):
        if sum(sizes) >= count:
            break
        sizes[j] += 1
    for j, fraction in enumerate(fractions):
        if fraction <= 0 or sizes[j] >= minimum:
            continue
        donors = [k for k in range(len(sizes)) if sizes[k] > minimum]
        if not donors:
            break  # Too few for every share: earlier shares keep theirs.
        donor = max(donors, key=lambda k: (sizes[k] - exact[k], sizes[k], -k))
        sizes[donor] -= 1
        sizes[j] += 1
    return sizes


def _stratified_parts(labels: list[str], fractions: tuple[float, ...], targets: list[int],
                      rng: np.random.Generator) -> list[list[int]]:
    """Per-class allocation whose column sums match `targets` as closely as minimums allow."""
    by_class: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    classes = sorted(by_class)
    m = len(fractions)
    # Floors (with a per-class minimum of one example per positive share where counts allow).
    counts = {c: len(by_class[c]) for c in classes}
    alloc = {c: _class_floor(counts[c], fractions) for c in classes}
    # Hand out the remaining examples of each class by largest remainder, preferring sets
    # still below their target; ties broken at random (deterministic for the seed).
    deficit = [targets[j] - sum(alloc[c][j] for c in classes) for j in range(m)]
    candidates = []
    for c in classes:
        for j in range(m):
            if fractions[j] > 0:
                candidates.append((-(counts[c] * fractions[j] - alloc[c][j]), rng.random(), c, j))
    candidates.sort()
    left = {c: counts[c] - sum(alloc[c]) for c in classes}
    for _, _, c, j in candidates:
        if left[c] > 0 and deficit[j] > 0:
            alloc[c][j] += 1
            left[c] -= 1
            deficit[j] -= 1
    for c in classes:  # Whatever the remainders did not place goes where room is left.
        while left[c] > 0:
            j = max((j for j in range(m) if fractions[j] > 0), key=lambda j: (deficit[j], -j))
            alloc[c][j] += 1
            left[c] -= 1
            deficit[j] -= 1
    parts: list[list[int]] = [[] for _ in range(m)]
    for c in classes:
        members = rng.permutation(np.asarray(by_class[c], np.int64)).tolist()
        start = 0
        for j in range(m):
            parts[j].extend(members[start:start + alloc[c][j]])
            start += alloc[c][j]
    return parts


def _class_floor(count: int, fractions: tuple[float, ...]) -> list[int]:
    """Floor of count * fractions, raised so that each positive share gets one example
    when the class has enough (at least 2) examples; earlier shares first."""
    exact = [count * f for f in fractions]
    sizes = [int(math.floor(x)) for x in exact]
    if count < 2:
        return sizes
    for j, fraction in enumerate(fractions):
        if fraction <= 0 or sizes[j] >= 1:
            continue
        if sum(sizes) < count:
            sizes[j] = 1
            continue
        donors = [k for k in range(len(sizes)) if sizes[k] > 1]
        if not donors:
            break
        donor = max(donors, key=lambda k: (sizes[k] - exact[k], sizes[k], -k))
        sizes[donor] -= 1
        sizes[j] = 1
    return sizes
