"""One training run assembled from its options: the env, the policy, the agent, the Trainer.

``perception-r1 train``, ``examples/custom_agent.py``, ``benchmarks/grpo_step.py`` and the tests build a run
here, so that what they time or test is the run users train. Everything that can be checked without a model
is checked first (the checkpoint's files, the model folder, the run folder, the env and its data), so a wrong
option fails in seconds, not after the model has loaded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.base import Agent, class_spec
from agents.checkpoints import latest_checkpoint, verify_checkpoint
from agents.config import SetupError, TrainConfig, check_output_folder
from agents.console import make_env, set_threads
from agents.distributed import Parallel
from agents.lora import apply_lora, is_lora, load_lora_policy, lora_reference
from agents.model_folder import check_model
from agents.policies.qwen_vl import QwenVLPolicy
from agents.registry import agent_label, make_agent, spec_for_config
from agents.rollout import Policy
from agents.trainer import Trainer
from agents.trainer_state import seed_global_rngs

# --activation-checkpointing (agents.config.ACTIVATION_CHECKPOINTING) -> QwenVLPolicy.from_pretrained's
# activation_checkpointing
CHECKPOINTING = {"none": False, "vision": "vision", "all": True}


@dataclass
class Run:
    """A run ready to train: ``trainer.train()``; then ``parallel.close()`` (a data-parallel run's group)."""

    policy: Policy
    agent: Agent
    trainer: Trainer
    env: Any  # the gymnasium env the trainer collects from
    parallel: Parallel
    checkpoint: Path | None = None  # the checkpoint it resumes from

    @property
    def run_dir(self) -> Path:
        return self.trainer.run_dir


def run_directory(config: TrainConfig, agent: str) -> Path:
    """``output_dir/run_name``; by default ``{env}__{agent}__{seed}__{time}`` (``agent``: the agent's spec)."""
    name = config.run_name or "__".join(
        [
            config.env_id.replace("/", "-"),
            agent_label(agent),
            str(config.seed),
            time.strftime("%Y%m%d-%H%M%S"),
        ]
    )
    return Path(config.output_dir) / name


def build_run(
    config: TrainConfig,
    *,
    agent: str | type[Agent] | None = None,
    resume: str | Path | None = None,
    env: Any = None,
    eval_env: Any = None,
    policy: Policy | None = None,
    run_dir: str | Path | None = None,
    progress: bool = True,
    threads: int | str = "auto",
    trainer_class: type[Trainer] = Trainer,
) -> Run:
    """The run ``config`` describes, resumed from ``resume``'s latest checkpoint if given.

    ``agent``: a registered name, ``module:Class`` / ``file.py:Class``, or an Agent class (default: the
    registered agent whose options ``config`` holds). ``env`` / ``eval_env``: made from the config when
    not given. ``policy``: an already loaded policy (tests, benchmarks) instead of ``config.model``'s.
    ``run_dir``: default ``output_dir/run_name`` (:func:`run_directory`), or the checkpoint's run.
    ``threads``: torch's CPU threads (``auto``: :func:`agents.console.set_threads`). ``trainer_class``: the
    Trainer or a subclass (the demo's records each step's rewards and its training time).
    Local paths in the config (``model``, data folders) are stored absolute, so that ``--resume`` works
    from any folder."""
    agent = agent or spec_for_config(config)
    spec = class_spec(agent) if isinstance(agent, type) else agent
    config = config.with_absolute_paths()
    checkpoint = None
    if resume:
        checkpoint = latest_checkpoint(resume)
        verify_checkpoint(checkpoint)
    lora_checkpoint = checkpoint is not None and (checkpoint / "policy" / "adapter_config.json").is_file()
    if policy is None:
        if not config.model:
            raise SetupError(
                "--model is required (a hub id or a local folder; `perception-r1 make-tiny-model DIR` builds one)"
            )
        if checkpoint is None or lora_checkpoint or config.uses_reference:
            check_model(config.model)  # the starting model: the policy, the LoRA base or the KL reference
    parallel = Parallel.from_environment(config.device, config.parallel)
    if run_dir is None:
        # a checkpoint's own run; else one name for every rank (their clocks may read different seconds)
        run_dir = checkpoint.parent.parent if checkpoint else parallel.broadcast(run_directory(config, spec))
    check_output_folder(run_dir, "--output-dir / --run-name")
    if config.lora_r and parallel.shards_parameters:
        raise SetupError(
            "LoRA runs data-parallel with --parallel ddp (the adapters are small; nothing to shard)"
        )
    # the env (and its data) before the model: a wrong env id or data folder fails in seconds
    env = env if env is not None else make_env(config.env_id, config.env_make_kwargs())
    seed_global_rngs(config.seed)  # LoRA's adapters and any new weights start the same for a seed
    load = _load_options(config, parallel)
    if policy is None:
        policy = _load_policy(config, checkpoint, lora_checkpoint, load)
    set_threads(threads, policy.model)
    reference = _reference_model(config, policy, checkpoint, load)
    if isinstance(agent, type):
        learner = agent(policy, config, **({} if reference is None else {"reference_model": reference}))
        learner.spec = spec
    else:
        learner = make_agent(policy, config, reference_model=reference, spec=spec)
    learner.distribute(parallel)
    trainer = trainer_class(learner, config, Path(run_dir), env=env, eval_env=eval_env, progress=progress)
    if checkpoint is not None:
        trainer.load_state(checkpoint)
    return Run(policy, learner, trainer, env, parallel, checkpoint)


def _load_options(config: TrainConfig, parallel: Parallel) -> dict[str, Any]:
    """``QwenVLPolicy.from_pretrained``'s options from the run's: device, dtype, image bounds, checkpointing."""
    if config.activation_checkpointing not in CHECKPOINTING:
        raise SetupError(
            f"--activation-checkpointing must be one of {', '.join(CHECKPOINTING)}, "
            f"got {config.activation_checkpointing!r}"
        )
    return dict(
        device=parallel.device(config.device),
        dtype=config.dtype,
        min_pixels=config.min_pixels,
        max_pixels=config.max_pixels,
        activation_checkpointing=CHECKPOINTING[config.activation_checkpointing],
    )


def _load_policy(config: TrainConfig, checkpoint: Path | None, lora_checkpoint: bool, load: dict) -> Policy:
    """The checkpoint's policy (a LoRA checkpoint's adapters trainable again on the base model), else
    ``config.model``, with new LoRA adapters when ``lora_r`` asks for them."""
    if lora_checkpoint:
        return load_lora_policy(checkpoint / "policy", config.model, **load)
    policy = QwenVLPolicy.from_pretrained(str(checkpoint / "policy") if checkpoint else config.model, **load)
    if config.lora_r:
        apply_lora(
            policy,
            r=config.lora_r,
            alpha=config.lora_alpha,
            dropout=config.lora_dropout,
            freeze_vision=not config.lora_train_vision,
        )
    return policy


def _reference_model(config: TrainConfig, policy: Policy, checkpoint: Path | None, load: dict) -> Any:
    """The frozen model of a KL term, when the algorithm's options ask for one (``config.uses_reference``):
    LoRA's base weights (shared, not copied), a resumed run's STARTING model, else None (the agent copies
    the policy it starts from)."""
    if not config.uses_reference:
        return None
    if is_lora(policy.model):
        return lora_reference(policy)
    if checkpoint is not None:
        return QwenVLPolicy.from_pretrained(config.model, **load).model
    return None
