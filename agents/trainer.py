"""The training loop every agent shares: collect grouped episodes, score, update, log, checkpoint.

Reproducibility contract: the data order and the sampling seed of step ``s``
are pure functions of ``(config.seed, s)``; a checkpoint holds the policy,
the optimiser, the schedule and the RNG states. So ``--resume`` after an
interruption gives the same parameters as an uninterrupted run, and no
sample is lost or repeated. The trainer state is tensors and JSON (agents/trainer_state.py): resuming from
a checkpoint someone else wrote runs none of their code.

Checkpoints (their files, the newest, their checks): ``agents/checkpoints.py``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker

from agents.base import Agent, EpisodeGroup, RolloutBatch, derive_seed
from agents.checkpoints import (
    CHECKPOINT_PREFIX,
    RUN_FILE,
    STATE_FILE,
    latest_checkpoint,  # noqa: F401  (examples/notebooks/04_plug_in.py imports it here)
    non_finite_weights,
    point_latest,
    prune_checkpoints,
    read_run_file,
    read_state,
    replace_folder,
    state_file,
    warn_if_branching,
    warn_if_run_has_checkpoints,
    write_atomic,
)
from agents.config import SetupError, TrainConfig
from agents.dynamic_sampling import (
    TooManyGenerationBatches,
    concat_batches,
    extra_indices,
    informative_groups,
    keep_groups,
)
from agents.eval_outputs import write_training_evaluation
from agents.progress import progress_bar
from agents.trainer_state import (
    rng_states,
    set_rng_states,
    write_state,
)
from perception_env.core import Scored
from perception_env.data import Sample


class DataOrder:
    """Dataset indices for each step: a fresh seeded permutation per epoch, consumed in order."""

    def __init__(self, dataset_size: int, seed: int):
        self.size = dataset_size
        self.seed = seed

    def _epoch(self, epoch: int) -> np.ndarray:
        return np.random.default_rng(derive_seed(self.seed, epoch, 2)).permutation(self.size)

    def indices(self, step: int, batch: int) -> list[int]:
        """The ``batch`` indices used at ``step`` (positions ``step*batch ... step*batch+batch-1``)."""
        out = []
        for position in range(step * batch, (step + 1) * batch):
            epoch, offset = divmod(position, self.size)
            out.append(int(self._epoch(epoch)[offset]))
        return out


def check_same_frame(env: gym.Env, policy: Any) -> None:
    """Fail unless ``env`` resizes images as the policy's processor does.

    Qwen2.5-VL answers in pixels of the *resized* image: an env with other ``min_pixels`` /
    ``max_pixels`` than the processor would score every answer in a frame the model never saw.
    """
    u = env.unwrapped
    env_bounds = (getattr(u, "min_pixels", None), getattr(u, "max_pixels", None))
    if None in env_bounds or not hasattr(policy, "pixel_bounds"):
        return  # an env or a policy without a resized-pixel frame
    if env_bounds != tuple(policy.pixel_bounds):
        raise ValueError(
            f"the env resizes images to {env_bounds[0]}..{env_bounds[1]} pixels but the policy's processor to "
            f"{policy.pixel_bounds[0]}..{policy.pixel_bounds[1]}: set both with --min-pixels / --max-pixels"
        )


def success_rate(infos: list[dict[str, Any]]) -> float:
    """The fraction of ``infos`` whose ``is_success`` is true; 0 for none."""
    return float(np.mean([bool(i.get("is_success", False)) for i in infos])) if infos else 0.0


# Gymnasium's own wrappers that leave step's reward and info as the env returns them (gym.make adds both)
_NEUTRAL_WRAPPERS = (OrderEnforcing, PassiveEnvChecker)


def answer_scorer(
    env: gym.Env, index: int, sample: Sample | None = None
) -> Callable[[str], tuple[float, dict[str, Any]]]:
    """How the Trainer scores an answer to sample ``index`` of ``env``: ``(reward, info)``.

    The env's own :meth:`~perception_env.core.PerceptionEnv.score` (the env does not move): against
    ``sample`` (sample ``index`` as a reset to it loaded it) where given, else against the sample the env
    stands on. Unless a
    wrapper may change what ``step`` returns (a reward-shaping ``gym.Wrapper``, as
    examples/custom_reward_wrapper.py, or ``RecordEpisodeStatistics``): then each answer is an episode of its
    own through the whole wrapper stack, ``reset`` to the sample then ``step``, so that the shaping applies and
    the wrappers see what Gymnasium promises them (one step after each reset: episode length 1).
    """
    layer = env
    while isinstance(layer, gym.Wrapper):
        if type(layer) not in _NEUTRAL_WRAPPERS:
            return lambda answer: _episode(env, index, answer)
        layer = layer.env
    if sample is None:
        return lambda answer: _scored(layer.score(answer))
    return lambda answer: _scored(layer.score_sample(answer, sample, index=index))


def _episode(env: gym.Env, index: int, answer: str) -> tuple[float, dict[str, Any]]:
    env.reset(options={"index": index})
    _, reward, _, _, info = env.step(answer)
    return float(reward), info


def _scored(scored: Scored) -> tuple[float, dict[str, Any]]:
    return scored.reward, scored.info


def score_group(
    env: gym.Env,
    index: int,
    answers: list[str],
    observation: dict[str, Any] | None = None,
    sample: Sample | None = None,
) -> EpisodeGroup:
    """Each answer scored against sample ``index`` (:func:`answer_scorer`).

    ``observation``, ``sample``: what the caller's own reset to ``index`` gave (the observation, and
    ``env.unwrapped.sample`` then), so that the env is not reset again: the Trainer resets each observation
    once per step, before sampling. Without them the env is reset here, and left on that sample."""
    if (observation is None) != (sample is None):
        raise ValueError("score_group: give both the observation and the sample of a reset, or neither")
    if observation is None:
        observation, _ = env.reset(options={"index": index})
        sample = env.unwrapped.sample
    score = answer_scorer(env, index, sample)
    rewards, infos = [], []
    for answer in answers:
        reward, info = score(answer)
        rewards.append(reward)
        infos.append(info)
    return EpisodeGroup(index, observation, list(answers), rewards, infos)


def evaluate(
    agent: Agent,
    env: gym.Env,
    num_samples: int,
    batch_size: int = 16,
    max_new_tokens: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Greedy answers on samples ``0 .. num_samples-1`` of ``env``, through the evaluation of
    ``perception-r1 eval`` (:mod:`perception_env.evaluation.runner`): mean reward, success rate, the step
    infos and the task's paper metrics (``metrics``: COCO AP, Acc@IoU, count accuracy/MAE, OCR ...),
    computed from the full-precision parses.

    In a data-parallel run each rank answers an equal share (padded with repeats, which are dropped) and
    every rank returns the figures of the whole set. ``progress(done, total)``: after each batch (this rank's).
    """
    from perception_env.evaluation.runner import answer_and_score, summarise

    parallel = agent.parallel
    n = min(num_samples, len(env.unwrapped.dataset))
    mine = list(range(parallel.rank, n, parallel.world_size))
    per_rank = -(-n // parallel.world_size)
    # equal call counts on every rank (FSDP2 sampling is collective); the padding is not kept
    padded = mine + [mine[-1] if mine else 0] * (per_rank - len(mine))

    def answer(env: gym.Env, indices: list[int], observations: list[dict]) -> list[str]:
        return agent.act_greedy(list(observations), max_new_tokens=max_new_tokens)

    was_training = agent.policy.model.training
    agent.policy.model.eval()
    try:
        episodes, _ = answer_and_score(env, answer, padded, batch_size=batch_size, progress=progress)
    finally:
        agent.policy.model.train(was_training)
    episodes = sorted(parallel.gather_objects(episodes[: len(mine)]), key=lambda e: e.index)
    result = summarise(env, episodes)
    return {
        "reward": result.metrics["reward"],
        "success": result.metrics["success"],
        "n": n,
        "infos": result.infos,
        "metrics": result.metrics,
        "records": result.records,  # the predictions.jsonl lines (Trainer writes them with report.html)
        "notes": result.notes,
    }


class Trainer:
    """Runs an :class:`Agent` on an env for ``config.total_steps`` steps."""

    def __init__(
        self,
        agent: Agent,
        config: TrainConfig,
        run_dir: str | Path,
        env: gym.Env | None = None,
        eval_env: gym.Env | None = None,
        progress: bool = True,
    ):
        self.agent = agent
        self.config = config
        self.run_dir = Path(run_dir)
        self.env = env if env is not None else gym.make(config.env_id, **config.env_make_kwargs())
        if eval_env is None and config.eval_every:
            eval_env = gym.make(config.env_id, **config.env_make_kwargs(split=config.eval_split))
        self.eval_env = eval_env
        for e in (self.env, self.eval_env):
            if e is not None:
                check_same_frame(e, agent.policy)
        self.order = DataOrder(len(self.env.unwrapped.dataset), config.seed)
        self.parallel = agent.parallel
        self.parallel.shard(config.prompts_per_step)  # fail now if the batch does not split over the ranks
        if config.filter_groups and self.parallel.world_size > 1:
            raise SetupError(
                "filter_groups (--filter-groups) runs in a single process: each rank would keep a different "
                "number of groups"
            )
        self.sampling_stats: dict[str, float] = {}  # the last step's dynamic-sampling counts (filter_groups)
        # completions sampled by the run's filtered steps, kept or not (checkpointed: a resume counts on)
        self.rollouts_spent = 0
        self.step = 0
        self.progress = progress
        self._writer = None
        self._render_env: gym.Env | None = None  # render_env(): built at the first logged sample
        self.history: list[dict[str, float]] = []
        # the checkpoints this run descends from, oldest first (recorded in each checkpoint's run.json)
        self.resumed_from: list[dict[str, Any]] = []

    # -------------------------------------------------------------- collect
    def collect(self, step: int) -> RolloutBatch:
        """This rank's share of step ``step``'s groups: sampled, scored (rewards ``[b, G]``).

        With ``filter_groups``, only groups whose rewards differ, refilled from further generation batches
        (:meth:`collect_filtered`)."""
        c = self.config
        if c.filter_groups:
            return self.collect_filtered(step)
        positions = self.parallel.shard(c.prompts_per_step)
        global_indices = self.order.indices(step, c.prompts_per_step)
        return self._generation_batch(step, [global_indices[p] for p in positions], positions)

    def collect_filtered(self, step: int) -> RolloutBatch:
        """verl's DAPO loop (agents/dynamic_sampling.py): generation batch 0 is the step's data order, batch
        ``r >= 1`` draws from ``(seed, step, r)`` and samples with positions ``r*B + b``; the informative groups
        of each are kept in order until B are, and the excess of the last batch is cut. The step's counts go
        to :attr:`sampling_stats` (logged under ``dynamic_sampling/``)."""
        c = self.config
        b = c.prompts_per_step
        kept: list[RolloutBatch] = []
        num_kept = dropped = rollouts = rounds = 0
        while num_kept < b:
            if c.max_num_gen_batches and rounds >= c.max_num_gen_batches:
                raise TooManyGenerationBatches(
                    f"step {step}: {rounds} generation batches (max_num_gen_batches, --max-num-gen-batches) "
                    f"gave {num_kept} of {b} groups whose rewards differ; the data may be too hard or too easy "
                    "for the policy. Resume with a larger --max-num-gen-batches (0 = no limit)."
                )
            indices = (
                self.order.indices(step, b)
                if rounds == 0
                else extra_indices(self.order.size, c.seed, step, rounds, b)
            )
            batch = self._generation_batch(step, indices, [rounds * b + p for p in range(b)])
            keep = [k for k, ok in enumerate(informative_groups(batch.rewards)) if ok]
            rollouts += batch.rollout.num_completions
            dropped += b - len(keep)
            rounds += 1
            if keep:
                kept.append(keep_groups(batch, keep[: b - num_kept]))
                num_kept += len(kept[-1].groups)
        self.rollouts_spent += rollouts
        self.sampling_stats = {
            "dynamic_sampling/rollouts_total": float(self.rollouts_spent),
            "dynamic_sampling/groups_dropped": float(dropped),
            "dynamic_sampling/extra_rounds": float(rounds - 1),
            "dynamic_sampling/rollouts_per_kept_group": rollouts / b,
        }
        return concat_batches(kept, getattr(self.agent.policy, "pad_token_id", 0))

    def _generation_batch(self, step: int, indices: list[int], positions: list[int]) -> RolloutBatch:
        """The groups of dataset ``indices``, sampled with the seeds of ``positions`` of ``step``, scored."""
        t0 = time.perf_counter()
        observations, samples = [], []
        for i in indices:  # one reset per observation: scoring reuses it
            observations.append(self.env.reset(options={"index": i})[0])
            samples.append(self.env.unwrapped.sample)
        rollout = self.agent.sample(observations, step=step, positions=positions)
        t1 = time.perf_counter()
        texts = list(rollout.texts)
        g = rollout.num_samples  # G: the rollout's answers per observation, observation-major
        groups = [
            score_group(self.env, i, texts[b * g : (b + 1) * g], observations[b], samples[b])
            for b, i in enumerate(indices)
        ]
        t2 = time.perf_counter()
        rewards = torch.tensor([grp.rewards for grp in groups], dtype=torch.float32)  # [b, G]
        return RolloutBatch(step, groups, rollout, rewards, {"generate": t1 - t0, "score": t2 - t1})

    # ---------------------------------------------------------------- train
    def train(self, stop_at: int | None = None) -> list[dict[str, float]]:
        """Train to ``config.total_steps`` (or stop early after step ``stop_at``, as an interruption would)."""
        c = self.config
        last = c.total_steps if stop_at is None else min(stop_at, c.total_steps)
        if self.parallel.is_main:
            self._start_run()
        bar = self._progress_bar()
        while self.step < last:
            step = self.step
            batch = self.collect(step)
            t0 = time.perf_counter()
            metrics = self.parallel.mean_metrics(self.agent.update(batch))
            batch.timings["update"] = time.perf_counter() - t0
            self.step = step + 1
            row = self._log(batch, metrics)
            if c.eval_every and self.step % c.eval_every == 0 and self.eval_env is not None:
                row.update(self._evaluate())
            self.history.append(row)
            if bar is not None:
                _show_step(bar, row)
            if self.step % c.save_every == 0 or self.step == c.total_steps:
                self.save_checkpoint()
        self._finish(bar)
        return self.history

    def _start_run(self) -> None:
        """The run folder with the options (config.json) and the TensorBoard writer, before the first step."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.step == 0:
            warn_if_run_has_checkpoints(self.run_dir)
        write_atomic(self.run_dir / "config.json", json.dumps(self.config.to_dict(), indent=2, default=str))
        self.open_writer()  # now, before the first step moves the counter

    def _progress_bar(self):
        """A tqdm bar of the steps (on the main rank, with ``progress``), else None."""
        if not (self.progress and self.parallel.is_main):
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=self.config.total_steps,
            initial=self.step,
            desc=f"{self.agent.spec} {self.config.env_id}",
            dynamic_ncols=True,
            mininterval=2.0,  # seconds: a readable log when stdout is a file
        )

    def _finish(self, bar) -> None:
        """The bar closed, the logs flushed, the render env closed: the end of :meth:`train`."""
        if bar is not None:
            bar.close()
        if self._writer is not None:
            self._writer.flush()
        if self._render_env is not None:
            self._render_env.close()
            self._render_env = None

    def _evaluate(self) -> dict[str, float]:
        shown = self.progress and self.parallel.is_main
        with progress_bar(self.config.eval_samples, f"eval at step {self.step}", shown, leave=False) as bar:
            result = evaluate(
                self.agent,
                self.eval_env,
                self.config.eval_samples,
                max_new_tokens=self.config.max_new_tokens,
                progress=bar,
            )
        out = {"eval/reward": result["reward"], "eval/success": result["success"]}
        out.update(
            {
                f"eval/{k}": float(v)
                for k, v in result["metrics"].items()
                if isinstance(v, (int, float)) and v is not None and k not in ("reward", "success", "n")
            }
        )
        if self.parallel.is_main:
            for key, value in out.items():
                self.writer.add_scalar(key, value, self.step)
            self._write_evaluation(result)
        return out

    def _write_evaluation(self, result: dict[str, Any]) -> None:
        """This evaluation as ``perception-r1 eval`` writes one (report.html included), in
        ``RUN/eval/step-NNNNNN``: ``perception-r1 report RUN/eval/step-000200 --compare RUN/eval/step-000100``
        shows what training changed, sample by sample."""
        folder = self.run_dir / "eval" / f"{CHECKPOINT_PREFIX}{self.step:06d}"
        write_training_evaluation(folder, self.eval_env, result, f"step {self.step}", step=self.step)

    # ------------------------------------------------------------------ log
    @property
    def writer(self):
        return self._writer if self._writer is not None else self.open_writer()

    def open_writer(self):
        """The TensorBoard writer, with the options this run trains with logged at the step it starts from
        (0, or a resumed run's step, where its overrides show)."""
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops the events written at or after it. Step k's figures are logged before checkpoint k
        # is written, so a run resumed from checkpoint k keeps them and drops those after k (logged by a run
        # killed later, or by the branch's old run); a new run (step 0) drops all of an earlier run in this
        # folder, which would interleave with ours
        self._writer = SummaryWriter(str(self.run_dir), purge_step=self.step + 1 if self.step else 0)
        rows = "\n".join(f"|{k}|{v}|" for k, v in self.config.to_dict().items())
        self._writer.add_text("hyperparameters", "|option|value|\n|-|-|\n" + rows, self.step)
        return self._writer

    def _log(self, batch: RolloutBatch, metrics: dict[str, float]) -> dict[str, float]:
        """The step's figures over the global batch (every rank computes them; rank 0 writes them)."""
        c = self.config
        parallel = self.parallel
        rewards = parallel.all_gather_rows(batch.rewards)  # [B, G]
        lengths = parallel.all_gather_rows(batch.rollout.completion_mask.sum(dim=1).float().cpu())  # [B*G]
        infos = [info for grp in batch.groups for info in grp.infos]
        elapsed = max(sum(batch.timings.values()), 1e-9)  # seconds of this rank, which ran in parallel
        row = {
            "reward/mean": float(rewards.mean()),
            "reward/std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
            "completions/mean_length": float(lengths.mean()),
            "completions/max_length": float(lengths.max()),
            "perf/samples_per_s": rewards.numel() / elapsed,
            "perf/tokens_per_s": float(lengths.sum()) / elapsed,
            **{f"perf/time_{k}": v for k, v in batch.timings.items()},
            **{f"train/{k}": v for k, v in metrics.items()},
            **self.sampling_stats,
        }
        components: dict[str, list[float]] = {}
        for info in infos:
            for key, value in (info.get("reward_components") or {}).items():
                if isinstance(value, (int, float)):
                    components.setdefault(key, []).append(float(value))
        shard_means = {"reward/success": success_rate(infos)}
        shard_means.update({f"reward/{k}": float(np.mean(v)) for k, v in components.items()})
        row.update(parallel.mean_metrics(shard_means))  # equal shards: the mean of means is the mean
        if parallel.is_main and c.log_every and self.step % c.log_every == 0:
            for key, value in row.items():
                self.writer.add_scalar(key, value, self.step)
        if parallel.is_main and c.log_samples_every and self.step % c.log_samples_every == 0:
            self._log_samples(batch)
        return row

    def _log_samples(self, batch: RolloutBatch) -> None:
        group = batch.groups[0]
        lines = [f"**prompt**: {group.observation['prompt']}", ""]
        lines += [f"- `{a!r}` → {r:.3f}" for a, r in zip(group.answers, group.rewards)]
        self.writer.add_text("samples", "\n".join(lines), self.step)
        try:
            env = self.render_env()
            env.reset(options={"index": group.index})
            best = int(np.argmax(group.rewards))
            env.step(group.answers[best])
            self.writer.add_image("samples/best_answer", env.render(), self.step, dataformats="HWC")
        except Exception as error:  # a picture must never stop training; say why it is missing
            self.writer.add_text("samples/render_error", repr(error), self.step)

    def render_env(self) -> gym.Env:
        """The env that draws the logged samples (``rgb_array``), built at the first one and kept: building
        it reads the data again (on COCO the annotations and the image headers)."""
        if self._render_env is None:
            self._render_env = gym.make(
                self.config.env_id, **self.config.env_make_kwargs(render_mode="rgb_array")
            )
        return self._render_env

    # --------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step-NNNNNN`` durably and atomically: under a temporary name, every file and
        folder flushed to disk, then renamed (a crash at any point leaves the earlier checkpoints intact).

        Full, unsharded tensors, written by rank 0 once (every rank takes part in gathering them). Refuses
        (:class:`FloatingPointError`, on every rank) to write weights holding NaN or inf. Then points
        ``latest_checkpoint.json`` at it and deletes the earliest written beyond ``save_total_limit``."""
        root = self.run_dir / "checkpoints"
        final = root / f"{CHECKPOINT_PREFIX}{self.step:06d}"
        tmp = root / f".tmp-{self.step:06d}"
        parallel = self.parallel
        self.check_weights_finite(final)
        weights = parallel.full_model_state(self.agent.trainable)  # FSDP2 only; collective
        agent_state = self.agent.state_dict()  # collective under FSDP2
        if parallel.is_main:
            if self._writer is not None:
                self._writer.flush()  # checkpoint k on disk => step k's figures too (a resume keeps them)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            self.agent.policy.save_pretrained(tmp / "policy", state_dict=weights)
            state = {
                "step": self.step,
                "data_position": self.step * self.config.prompts_per_step,
                "world_size": parallel.world_size,
                "agent_name": self.agent.spec,  # what --resume rebuilds
                "config": json.loads(json.dumps(self.config.to_dict(), default=str)),  # as run.json has it
                "agent": agent_state,
                "rng": rng_states(),
                "rollouts_spent": self.rollouts_spent,
            }
            write_state(state, tmp / STATE_FILE)
            # what --resume needs before building anything, without loading the optimiser state
            run = {
                "agent_name": state["agent_name"],
                "config": state["config"],
                "step": self.step,
                "saved_at": time.time(),
                "resumed_from": self.resumed_from,
            }
            (tmp / RUN_FILE).write_text(json.dumps(run, indent=2, default=str))
            replace_folder(tmp, final)
            point_latest(self.run_dir, final)
            prune_checkpoints(root, self.config.save_total_limit, keep=final)
        parallel.barrier()  # no rank goes on (or exits) before the checkpoint exists
        return final

    def check_weights_finite(self, target: Path) -> None:
        """Raise :class:`FloatingPointError` naming the step, on every rank, if trained weights hold NaN/inf."""
        bad = non_finite_weights(self.agent.policy.model)
        if int(self.parallel.all_sum(torch.tensor(len(bad)))) == 0:  # FSDP2: each rank sees its shards
            return
        shown = ", ".join(bad[:3]) + (" ..." if len(bad) > 3 else "")
        raise FloatingPointError(
            f"step {self.step}: trained weights hold NaN or inf ({len(bad)} tensors on this rank: {shown}); "
            f"{target} was not written, so every checkpoint of the run stays finite. Resume from the latest "
            "one with a lower --learning-rate."
        )

    def load_state(self, checkpoint: str | Path) -> None:
        """Restore optimiser, schedule, RNGs and step (the policy was loaded from ``checkpoint/policy``).

        A checkpoint of this run's folder becomes the one ``--resume RUN`` continues (a branch, if it is not
        the newest); errors name the file."""
        checkpoint = Path(checkpoint)
        path = state_file(checkpoint)
        state = read_state(checkpoint)
        try:
            self.agent.load_state_dict(state["agent"])
        except (KeyError, ValueError, RuntimeError) as error:
            raise SetupError(
                f"{path}: its optimiser state does not fit this run ({error}); options that change which "
                "weights train (--lora-r, --lora-train-vision) must stay as the run had them"
            ) from error
        set_rng_states(state["rng"])
        self.step = int(state["step"])
        self.rollouts_spent = int(state.get("rollouts_spent", 0))  # absent from checkpoints before it was
        self.resumed_from = [
            *read_run_file(checkpoint).get("resumed_from", []),
            {"checkpoint": str(checkpoint.resolve()), "step": self.step},
        ]
        if self.parallel.is_main and checkpoint.resolve().parent.parent == self.run_dir.resolve():
            warn_if_branching(self.run_dir, checkpoint, self.step)
            point_latest(self.run_dir, checkpoint)


def _show_step(bar, row: dict[str, float]) -> None:
    """One step more on the progress bar, with the step's reward, KL and held-out success where logged."""
    bar.update(1)
    shown = {"reward": row["reward/mean"]}
    if "train/kl" in row:
        shown["kl"] = row["train/kl"]
    if "eval/success" in row:
        shown["eval"] = row["eval/success"]
    bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items()}, refresh=False)
