# %% [markdown]
# # 4. Plug in your own agent and your own reward
#
# **An algorithm** is an `Agent` subclass: its options (a `TrainConfig` subclass), `advantages(rewards)`
# and `loss(...)`. The Trainer collects and scores the answers, the base class runs the update
# (micro-batches, optimiser step, metrics) and checkpoints; anything the agent must remember across steps
# goes in `state_dict`, so that `--resume` restores it.
#
# **A reward** is the env's: reshape it with a Gymnasium wrapper. The Trainer notices a wrapper that may
# change what `step` returns and then scores every answer through the whole wrapper stack (`reset` to the
# sample, then `step`), so any wrapper plugs in unchanged.
#
# The agent below is `examples/custom_agent.py`'s, cell by cell (`tests/test_notebooks.py` checks they
# stay the same); from a shell the same class trains with
# `perception-r1 train --agent examples/custom_agent.py:ReinforceAgent ...`.
#
# Built from `examples/notebooks/04_plug_in.py` by `scripts/build_notebooks.py`; run by `tests/test_notebooks.py`.

# %%
import warnings

# huggingface_hub imports tqdm.auto, which warns in a notebook without ipywidgets: there are no progress bars here
warnings.filterwarnings("ignore", message="IProgress not found")

# %%
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
import torch
from transformers.utils import logging as hf_logging

import perception_env  # noqa: F401  (registers the envs)
from agents.base import Agent
from agents.config import TrainConfig, opt
from agents.policies.qwen_vl import QwenVLPolicy
from agents.policies.tiny_model import build_tiny_model
from agents.trainer import Trainer, latest_checkpoint, score_group

started = time.perf_counter()
torch.set_num_threads(1)
hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()
out = Path(tempfile.mkdtemp(prefix="plug-in-"))

# %% [markdown]
# ## Your own agent: REINFORCE with a running-mean baseline
#
# `loss = -(r - b) * log pi(answer)`, where `b` is a running mean of past rewards (not of this group, as
# GRPO and RLOO use). Its one option, `baseline_momentum`, becomes a `--baseline-momentum` flag and a
# YAML key by being a field of the config.


# %%
@dataclass
class ReinforceConfig(TrainConfig):
    baseline_momentum: float = opt(0.9, "Running-mean baseline: b <- m * b + (1 - m) * mean reward.")


class ReinforceAgent(Agent):
    """loss = -(r - b) * log pi(answer), b a running mean of past rewards (not of this group)."""

    config_class = ReinforceConfig  # what `perception-r1 train --agent file.py:ReinforceAgent` builds

    def __init__(self, policy, config: ReinforceConfig):
        super().__init__(policy, config)
        self.baseline = 0.0

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:  # [B, G] -> [B, G]
        advantages = rewards - self.baseline
        m = self.config.baseline_momentum
        self.baseline = m * self.baseline + (1 - m) * float(rewards.mean())
        return advantages

    def loss(self, logp, advantages, mask, old_logp, ref_logp):  # logp, mask [n, T], advantages [n]
        loss = -(advantages.unsqueeze(1) * logp * mask).sum(dim=1).mean()  # -A * log pi(answer)
        return loss, {"loss": float(loss.detach()), "baseline": self.baseline}

    def state_dict(self):
        return {**super().state_dict(), "baseline": self.baseline}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.baseline = state["baseline"]


class AnswerLengthBonus(gym.Wrapper):
    """+0.1 per character, so a random tiny model's answers differ in reward and there is a signal."""

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        return observation, reward + 0.1 * len(action), terminated, truncated, info


# %% [markdown]
# ## Train it with the shared Trainer
#
# A randomly initialised tiny Qwen2-VL on counting, 8 steps of 2 images x 4 answers. A random model
# rarely writes the right count, so `AnswerLengthBonus` (a `gym.Wrapper`: it needs the answer, which a
# `RewardWrapper` does not see) gives its answers different rewards: the loop, not perception, is shown.

# %%
model = build_tiny_model(out / "tiny-model", arch="qwen2-vl", preset="tiny", seed=0)
run = {"total_steps": 8, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 4}
options = {"learning_rate": 1e-3, "log_samples_every": 0, "save_every": 4, "model": str(model)}
config = ReinforceConfig(
    **run, **options, baseline_momentum=0.5, env_kwargs={"difficulty": "easy", "answer_format": "number"}
)
env = AnswerLengthBonus(gym.make(config.env_id, **config.env_kwargs))
agent = ReinforceAgent(QwenVLPolicy.from_pretrained(str(model)), config)
history = Trainer(agent, config, out / "run", env=env, progress=False).train()
for step, row in enumerate(history, 1):
    print(
        f"step {step}: reward {row['reward/mean']:.3f} baseline {row['train/baseline']:.3f}"
        f" loss {row['train/loss']:+.3f}"
    )

fig, ax = plt.subplots(figsize=(7, 3.5))
steps = np.arange(1, len(history) + 1)
ax.plot(steps, [row["reward/mean"] for row in history], marker="o", label="mean reward of the step")
ax.plot(steps, [row["train/baseline"] for row in history], marker="s", label="baseline b after the step")
ax.set_xlabel("step")
ax.set_ylabel("reward (with the length bonus)")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# The checkpoint holds the baseline: a resumed run starts from it, not from 0.

# %%
checkpoint = latest_checkpoint(out / "run")
resumed = ReinforceAgent(QwenVLPolicy.from_pretrained(str(checkpoint / "policy")), config)
resumer = Trainer(resumed, config, out / "run", env=env, progress=False)
resumer.load_state(checkpoint)
print(f"{checkpoint.name}: baseline {resumed.baseline:.4f} (the trained agent's: {agent.baseline:.4f})")

# %% [markdown]
# ## Your own reward: a `gymnasium.RewardWrapper`
#
# A `RewardWrapper` maps the env's reward to yours and sees nothing else (to read the answer or
# `info["reward_components"]`, subclass `gym.Wrapper` as `AnswerLengthBonus` above, or see
# `examples/custom_reward_wrapper.py`). Here: grounding's reward made sharper, `IoU -> IoU ** 2`, so that a
# nearly right box earns much more than a roughly right one. The env has this as an option too
# (`reward_config={"power": 2}`, its default, as the paper): the wrapper on the `power=1` env must agree
# with it, answer for answer.


# %%
class Squared(gym.RewardWrapper):
    """reward -> reward ** 2 (rewards in [0, 1] stay there)."""

    def reward(self, reward: float) -> float:
        return reward**2


wrapped = Squared(gym.make("PerceptionR1/Grounding-v0", reward_config={"power": 1.0}))
builtin = gym.make("PerceptionR1/Grounding-v0")  # power 2: IoU squared
builtin.reset(options={"index": 0})
u = builtin.unwrapped
box = np.asarray(u.sample.boxes[:1], dtype=float)  # the target, [1, 4] pixels
shifts = np.arange(0, 61, 5)  # px to the right
answers = [
    u.answer_format.write(frame=u.frame, boxes=box + [s, 0, s, 0], labels=[u.sample.query]) for s in shifts
]

# score_group is how the Trainer scores a group: through the wrapper (reset, then step) for each answer
by_wrapper = score_group(wrapped, 0, answers).rewards
by_option = score_group(builtin, 0, answers).rewards
plain = [u.score(a).info["reward_components"]["iou"] for a in answers]
print("shift px  IoU    wrapper  env option power=2")
for s, iou, w, o in zip(shifts, plain, by_wrapper, by_option):
    print(f"{s:7d}  {iou:.3f}  {w:.3f}    {o:.3f}")
print(f"the wrapper and the env option agree on every answer: {np.allclose(by_wrapper, by_option)}")

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(shifts, plain, marker="o", label="IoU (power 1)")
ax.plot(shifts, by_wrapper, marker="s", label="Squared(RewardWrapper) = IoU ** 2")
ax.set_xlabel("box shifted right by (px)")
ax.set_ylabel("reward")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## Wrappers under the Trainer
#
# Nothing to register: give the Trainer the wrapped env; wrappers stack as Gymnasium's always do. Here
# the counting env of the agent above, with the length bonus and then `Squared` on top: every reward
# the Trainer collects must be `(task reward + 0.1 * len(answer)) ** 2`, checked by hand below.

# %%
task_env = gym.make(config.env_id, **config.env_kwargs)
stacked = Squared(AnswerLengthBonus(task_env))
trainer = Trainer(ReinforceAgent(agent.policy, config), config, out / "stacked", env=stacked, progress=False)
batch = trainer.collect(step=0)
for group in batch.groups:
    by_hand = [
        (task_env.unwrapped.score(a, index=group.index).reward + 0.1 * len(a)) ** 2 for a in group.answers
    ]
    print(f"image {group.index}: answers {group.answers}")
    print(f"    Trainer's rewards {np.round(group.rewards, 4).tolist()}")
    print(f"    by hand           {np.round(by_hand, 4).tolist()}")
    assert np.allclose(group.rewards, by_hand)
rows = trainer.train(stop_at=2)
print(f"2 steps on the stacked wrappers: mean rewards {[round(r['reward/mean'], 3) for r in rows]}")
print(
    f"notebook ran in {time.perf_counter() - started:.0f} s, {time.process_time():.0f} s of CPU (this kernel)"
)
