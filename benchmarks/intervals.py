"""Intervals for the learning figures: IQM over seeds, 95% bootstrap intervals over seeds and scenes.

    from benchmarks.intervals import bootstrap_intervals, scene_weights, score_matrix
    pairs = [(run["per_sample"]["scene"], run["per_sample"]["before"]) for run in runs]
    before, scenes = score_matrix(pairs)
    weights = scene_weights(pairs[0][0], scenes)            # images per scene
    bootstrap_intervals({"before": before}, weights)["before"]      # Interval(point, low, high)

The unit of evidence is a *scene*, not an image: the built-in splits are disjoint by content, so a split's
200 images may show far fewer distinct scenes (the rest repeat one with other pixel noise). A scene's score
is the mean of its images' per-sample metric; a seed's figure is the mean over scenes weighted by their
images (so it equals the figure the demo prints over all images; unweighted, each scene counts once);
the seeds are aggregated by the interquartile mean (IQM, the 25% trimmed mean), as rliable does
(Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice", ``metrics.aggregate_iqm``).

The interval is a two-level percentile bootstrap: each replicate draws the seeds (whole rows of the
``[seeds x scenes]`` matrix) and the scenes (whole columns) with replacement, independently, and
recomputes the statistic. Why not rliable's ``get_interval_estimates(..., task_bootstrap=True)``:

- its stratified bootstrap draws a run *per cell* (per task, independently); that is right where each
  task has its own training runs (Atari games), but here one training seed is evaluated on every scene,
  so a good seed is good on all of them. Drawing seeds per cell averages that away and narrows the
  interval: two seeds scoring 0 and 1 on every scene get [0.40, 0.60] with 50 scenes from per-cell
  draws, and [0, 1] from row draws (tests/benchmarks/test_intervals.py);
- its draws use NumPy's global generator (``np.random.choice``), so ``random_state`` does not fix them;
- rliable 1.2.0 requires arch < 8, and arch 7.2.0 (the newest below 8) fails to import with the pandas of
  requirements/lock.txt (3.1.1: ``deprecate_kwarg() missing 1 required positional argument``).

Scenes may be drawn within strata (``strata``: one label per scene, e.g. the true count), keeping each
stratum's number of scenes: where the generator fixes a class's share by design (counting draws the count
first, so the one empty image is a fifth of the images), drawing that scene 0 or 3 times would be noise
the test set does not have. Paired figures (before, after and their gain on the same seeds and scenes)
are given the same draws.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import trim_mean

CONFIDENCE = 0.95
REPLICATES = 2000


def iqm(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle half (rliable's ``aggregate_iqm``, scipy's
    ``trim_mean(..., 0.25)``: ``floor(n / 4)`` values cut from each end; 5 seeds -> the middle 3)."""
    return trim_mean(np.asarray(values, dtype=np.float64), proportiontocut=0.25, axis=axis)


def seed_iqm(matrix: np.ndarray, weights: np.ndarray | None = None) -> float:
    """``[seeds x scenes]`` -> each seed's mean over scenes (weighted by ``weights [scenes]``, e.g. their
    images, when given), then the IQM over seeds."""
    return float(iqm(np.average(np.asarray(matrix, dtype=np.float64), axis=1, weights=weights)))


def scene_scores(scenes: Sequence[str], values: Sequence[float]) -> dict[str, float]:
    """Each scene's score: the mean of the per-sample ``values`` of its samples."""
    if len(scenes) != len(values):
        raise ValueError(f"{len(scenes)} scene keys for {len(values)} per-sample values")
    totals: dict[str, list[float]] = {}
    for scene, value in zip(scenes, values):
        totals.setdefault(scene, []).append(float(value))
    return {scene: float(np.mean(v)) for scene, v in totals.items()}


def score_matrix(seeds: Sequence[tuple[Sequence[str], Sequence[float]]]) -> tuple[np.ndarray, list[str]]:
    """One ``(scene keys, per-sample values)`` pair per seed -> the ``[seeds x scenes]`` matrix of scene
    scores and the scene keys of its columns (sorted). Every seed must have been evaluated on the same
    scenes (the same test split), else a ValueError says which differ."""
    if not seeds:
        raise ValueError("no seeds to build a score matrix from")
    per_seed = [scene_scores(scenes, values) for scenes, values in seeds]
    keys = sorted(per_seed[0])
    for k, scores in enumerate(per_seed[1:], start=1):
        if sorted(scores) != keys:
            raise ValueError(
                f"seed {k} was evaluated on other scenes than seed 0 ({len(scores)} vs {len(keys)} scenes)"
            )
    return np.array([[scores[key] for key in keys] for scores in per_seed], dtype=np.float64), keys


def scene_weights(scenes: Sequence[str], keys: Sequence[str]) -> np.ndarray:
    """How many of the samples (``scenes``: one key each) show each scene of ``keys``: ``[scenes]``."""
    counts: dict[str, int] = {}
    for scene in scenes:
        counts[scene] = counts.get(scene, 0) + 1
    return np.array([counts.get(key, 0) for key in keys], dtype=np.float64)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap interval ``[low, high]``."""

    point: float
    low: float
    high: float

    def scaled(self, factor: float) -> Interval:
        return Interval(self.point * factor, self.low * factor, self.high * factor)

    def format(self, digits: int = 1, signed: bool = False) -> str:
        """``"41.0 [38.5, 44.0]"``; ``signed``: ``"+59.0 [+57.5, +60.0]"`` (gains)."""
        sign = "+" if signed else ""
        return f"{self.point:{sign}.{digits}f} [{self.low:{sign}.{digits}f}, {self.high:{sign}.{digits}f}]"


def _scene_draws(
    rng: np.random.Generator, n_scenes: int, replicates: int, strata: Sequence[Hashable] | None
) -> np.ndarray:
    """``[replicates, scenes]`` column indices: with replacement, each stratum's among its own columns."""
    if strata is None:
        return rng.integers(n_scenes, size=(replicates, n_scenes))
    if len(strata) != n_scenes:
        raise ValueError(f"{len(strata)} strata labels for {n_scenes} scenes")
    members: dict[Hashable, list[int]] = {}
    for column, label in enumerate(strata):
        members.setdefault(label, []).append(column)
    draws = [np.asarray(cs)[rng.integers(len(cs), size=(replicates, len(cs)))] for cs in members.values()]
    return np.concatenate(draws, axis=1)


def bootstrap_intervals(
    matrices: Mapping[str, np.ndarray],
    weights: Sequence[float] | np.ndarray | None = None,
    strata: Sequence[Hashable] | None = None,
    statistic: Callable[[np.ndarray, np.ndarray | None], float] = seed_iqm,
    replicates: int = REPLICATES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, Interval]:
    """``statistic(matrix, weights)`` of each ``[seeds x scenes]`` matrix and its percentile bootstrap
    interval; ``weights [scenes]`` (None: equal) travel with their scenes' columns; ``strata [scenes]``
    (None: one stratum): each stratum's columns are drawn among its own.

    Every replicate draws ``seeds`` row indices and ``scenes`` column indices with replacement (from
    ``np.random.default_rng(seed)``: the same intervals on every call) and applies them to every matrix,
    so matrices of one shape are resampled as pairs. Returns ``{name: Interval}``.
    """
    if not matrices:
        return {}
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if replicates < 1:
        raise ValueError(f"replicates must be >= 1, got {replicates}")
    arrays = {name: np.asarray(m, dtype=np.float64) for name, m in matrices.items()}
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2 or 0 in next(iter(shapes)):
        raise ValueError(
            f"the matrices must share one non-empty [seeds x scenes] shape, got {sorted(shapes)}"
        )
    if not all(np.isfinite(a).all() for a in arrays.values()):
        raise ValueError("a score matrix holds a non-finite value")
    n_seeds, n_scenes = next(iter(shapes))
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if w is not None and (w.shape != (n_scenes,) or (w < 0).any() or w.sum() <= 0):
        raise ValueError(f"weights must be {n_scenes} non-negative numbers, not all 0, got shape {w.shape}")
    rng = np.random.default_rng(seed)
    rows = rng.integers(n_seeds, size=(replicates, n_seeds))  # [R, S]
    cols = _scene_draws(rng, n_scenes, replicates, strata)  # [R, M]
    tail = 100.0 * (1.0 - confidence) / 2.0
    out = {}
    for name, matrix in arrays.items():
        stats = np.array(
            [statistic(matrix[r][:, c], None if w is None else w[c]) for r, c in zip(rows, cols)]
        )
        low, high = np.percentile(stats, [tail, 100.0 - tail])
        out[name] = Interval(float(statistic(matrix, w)), float(low), float(high))
    return out
