# %% [markdown]
# # 2. One GRPO step, taken apart (and the same step through RLOO)
#
# GRPO (Shao et al., 2024; Perception-R1 trains with it) needs no value network: it samples a *group* of
# G answers to one image and judges each answer against its siblings. One step:
#
# 1. sample G answers per image; 2. the env scores them; 3. group advantages
# `A_i = (r_i - mean(r)) / (std(r) + eps)`; 4. per token, the ratio `pi / pi_old` and PPO's clipped
# surrogate `-min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)`, plus `beta * KL(pi || pi_ref)`;
# 5. a gradient step.
#
# Every number below comes from the project's own functions (`agents/grpo/`, `agents/rloo/`,
# `agents/losses.py`, the Trainer), the ones that train Qwen2-VL-2B; only the model is a tiny, randomly
# initialised Qwen2-VL, so that the notebook runs offline on a CPU in well under a minute.
#
# Built from `examples/notebooks/02_grpo_step.py` by `scripts/build_notebooks.py`; run by
# `tests/test_notebooks.py`.

# %%
import warnings

# huggingface_hub imports tqdm.auto, which warns in a notebook without ipywidgets: there are no progress bars here
warnings.filterwarnings("ignore", message="IProgress not found")

# %%
import copy
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
import torch
from transformers.utils import logging as hf_logging

import perception_env  # noqa: F401  (registers the PerceptionR1/* envs)
from agents.grpo.advantages import group_advantages
from agents.grpo.agent import GRPOAgent
from agents.grpo.config import GRPOConfig
from agents.grpo.loss import grpo_loss
from agents.losses import kl_to_reference, masked_mean, zero_std_fraction
from agents.policies.qwen_vl import QwenVLPolicy
from agents.policies.tiny_model import build_tiny_model
from agents.rloo.agent import RLOOAgent, leave_one_out_advantages, rloo_loss
from agents.rloo.config import RLOOConfig
from agents.sft import supervised_warm_start
from agents.trainer import Trainer

started = time.perf_counter()
torch.set_num_threads(1)  # tiny matrices: more threads only wait on each other
torch.manual_seed(0)
hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()
out = Path(tempfile.mkdtemp(prefix="grpo-step-"))

# %% [markdown]
# ## The task and the policy
#
# Counting, answered with a number ("How many objects are in the image?"); the reward is 1 for the right
# count, else 0. A random model never writes a number, so every reward would be 0 and GRPO would have
# nothing to compare: 100 supervised steps on the env's oracle answers first teach it the answer's form
# (not yet the count), as the paper starts RL from a model that already follows instructions.

# %%
ENV_KWARGS = {"difficulty": {"base": "easy", "count_query": "all"}, "answer_format": "number"}
env = gym.make("PerceptionR1/Counting-v0", **ENV_KWARGS)
# rope_theta 1e6 (Qwen2-VL's own): counting needs no positions (docs/learning-on-a-cpu.md)
model_dir = build_tiny_model(out / "tiny-model", preset="tiny", seed=0, rope_theta=1e6)
policy = QwenVLPolicy.from_pretrained(str(model_dir))
losses = supervised_warm_start(policy, env, steps=100, learning_rate=1e-3, seed=0)
print(f"{policy.num_parameters():,} parameters; warm-start loss {losses[0]:.2f} -> {losses[-1]:.2f}")

B, G = 3, 8
config = GRPOConfig(
    env_id="PerceptionR1/Counting-v0",
    env_kwargs=ENV_KWARGS,
    model=str(model_dir),
    prompts_per_step=B,
    group_size=G,
    max_new_tokens=4,
    temperature=1.0,
    learning_rate=2e-3,  # large on purpose: one step must move the ratio past the clip range
    beta=0.04,  # the paper's KL weight: a frozen copy of this policy becomes the reference
    num_iterations=2,  # two updates on one batch: the second sees ratio != 1 and clipping
    log_samples_every=0,
)
agent = GRPOAgent(policy, config)
trainer = Trainer(agent, config, out / "run", env=env, progress=False)

# %% [markdown]
# ## 1-2. G answers per image, scored by the env
#
# `Trainer.collect(step)` takes the step's images, samples G answers each at temperature 1 (seeded by
# step and position: the same every run) and scores every answer with the env. Rewards are `[B, G]`.

# %%
batch = trainer.collect(step=0)
rollout = batch.rollout  # N = B * G completions, observation-major
for group in batch.groups:
    truth = len(group.infos[0]["target"]["points"])  # each answer's info carries the targets
    print(f"image {group.index} (true count {truth}): answers {group.answers}")
    print(f"    rewards {group.rewards}")
print(f"completion ids {tuple(rollout.completion_ids.shape)} = [N, T]; the mask marks real tokens")
print(f"groups whose G rewards are all equal (no signal): {zero_std_fraction(batch.rewards):.0%}")

# %% [markdown]
# ## 3. Group advantages
#
# Each answer's reward minus its group's mean, divided by the group's std: "better or worse than its
# siblings". A group of equal rewards (all wrong, or all right) gives advantages of exactly 0: it teaches
# nothing. RLOO's baseline is the mean of the *other* G-1 answers: `A_i = G/(G-1) * (r_i - mean)`, not
# divided by the std.

# %%
grpo_adv = group_advantages(batch.rewards)  # [B, G]
rloo_adv = leave_one_out_advantages(batch.rewards)  # [B, G]
assert torch.allclose(grpo_adv, agent.advantages(batch.rewards))  # what the agent uses

fig, axes = plt.subplots(1, B, figsize=(15, 3.8), sharey=True)
x = np.arange(G)
for b, ax in enumerate(axes):
    ax.bar(x - 0.2, grpo_adv[b].numpy(), 0.4, label="GRPO: (r - mean) / std", color="#0072B2")
    ax.bar(x + 0.2, rloo_adv[b].numpy(), 0.4, label="RLOO: r - mean of the others", color="#E69F00")
    ax.axhline(0, color="black", linewidth=0.8)
    answers = batch.groups[b].answers
    rewards = batch.groups[b].rewards
    ax.set_xticks(x, [f"{a!r}\nr={r:g}" for a, r in zip(answers, rewards)], fontsize=8)
    no_signal = " (all equal: no signal)" if len(set(rewards)) == 1 else ""
    ax.set_title(f"image {batch.groups[b].index}: mean reward {np.mean(rewards):.2f}{no_signal}", fontsize=10)
axes[0].set_ylabel("advantage")
fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=2)
plt.tight_layout(rect=(0, 0, 1, 0.9))
plt.show()

# %% [markdown]
# ## 4. Log-probabilities, the ratio, the clipped loss and the KL
#
# `agent.logprobs(rollout)` is `log pi(token | image, prompt, earlier tokens)` for every completion token,
# `[N, T]`, differentiable. `pi_old` is the policy that sampled; before any update it *is* the policy,
# so the ratio is exactly 1, clipping cannot act, the KL to the reference (the same weights) is 0, and the
# loss is `-mean(A)` (0 up to rounding). Its gradient is not 0: `-A * grad log pi`, which pushes up
# answers with `A > 0` and down those with `A < 0`.

# %%
snapshot = copy.deepcopy((policy.model.state_dict(), agent.state_dict()))  # weights, optimiser, schedule
mask = rollout.completion_mask.float()  # [N, T]
advantages = grpo_adv.flatten()  # [N]
policy.model.train()
logp = agent.logprobs(rollout)  # [N, T], with grad
old_logp = logp.detach()  # pi_old: kept for the second iteration
ref_logp = agent.reference_logprobs(rollout)  # [N, T] under the frozen reference
settings = config.loss_settings()
loss1, metrics1 = grpo_loss(logp, old_logp, advantages, mask, settings, ref_logp)
print(f"iteration 1: loss {loss1.item():+.6f}, -mean(A) {-advantages.mean().item():+.6f}")
print(
    f"    ratio mean {metrics1['ratio_mean']:.3f}, clipped {metrics1['clip_fraction']:.0%}, KL {metrics1['kl']:.4f}"
)
agent.optimizer.zero_grad(set_to_none=True)  # as agent.update does: the warm start left its gradients
loss1.backward()
grad_norm1 = agent.clip_and_step(step=0, loss=loss1.item(), advance_schedule=False)
print(
    f"    gradient norm {grad_norm1:.3f} (rescaled to {config.max_grad_norm:g} if above), optimiser stepped"
)

# %% [markdown]
# ## 5. The second update on the same answers: ratio != 1, clipping, KL > 0
#
# With `num_iterations=2` the batch is used twice. Now `pi` has moved: the ratio `pi / pi_old` of each
# token differs from 1. PPO's clip stops the push where the ratio already left `[1 - eps, 1 + eps]` in the
# direction of the advantage (a token whose probability already rose by more than 20% for a good answer
# gets no more gradient), and the KL term pulls back towards the reference.

# %%
logp2 = agent.logprobs(rollout)
ratio = torch.exp(logp2 - old_logp).detach()  # [N, T]
kl = kl_to_reference(logp2.detach(), ref_logp)  # [N, T], k3 estimator
loss2, metrics2 = grpo_loss(logp2, old_logp, advantages, mask, settings, ref_logp)
print(f"iteration 2: loss {loss2.item():+.6f}")
print(
    f"    ratio mean {metrics2['ratio_mean']:.3f}, clipped {metrics2['clip_fraction']:.0%}, KL {metrics2['kl']:.4f}"
)
loss2.backward()
grad_norm2 = agent.clip_and_step(step=0, loss=loss2.item(), advance_schedule=True)
with torch.no_grad():
    logp3 = agent.logprobs(rollout)


def objective(logp: torch.Tensor) -> float:
    """GRPO's surrogate at ratio 1, without KL: mean over answers of A_i x (mean log pi of its tokens)."""
    return (advantages * masked_mean(logp.detach(), mask, dim=1)).mean().item()


print(
    f"objective mean_i A_i * mean_t log pi: {objective(old_logp):+.4f} before,"
    f" {objective(logp2):+.4f} after update 1, {objective(logp3):+.4f} after update 2"
)

real = mask.bool()
token_adv = advantages.unsqueeze(1).expand_as(ratio)[real]
fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4))
colours = np.where(token_adv > 0, "#009E73", np.where(token_adv < 0, "#D55E00", "#999999"))
left.scatter(np.arange(int(real.sum())), ratio[real].numpy(), c=colours, s=18)
eps_low, eps_high = settings.epsilon_low, settings.epsilon_high
left.axhspan(1 - eps_low, 1 + eps_high, color="#0072B2", alpha=0.12, label="clip range [1 - eps, 1 + eps]")
left.set_xlabel("completion token (green: A > 0, red: A < 0, grey: A = 0)")
left.set_ylabel("ratio pi / pi_old")
left.set_title(f"after one update: {metrics2['clip_fraction']:.0%} of tokens clipped")
left.legend(fontsize=8)
seq_change = ((logp2.detach() - old_logp) * mask).sum(dim=1)  # change of log pi(whole answer)
right.scatter(advantages.numpy(), seq_change.numpy(), color="#0072B2")
right.axhline(0, color="black", linewidth=0.8)
right.axvline(0, color="black", linewidth=0.8)
right.set_xlabel("advantage of the answer")
right.set_ylabel("change of log pi(answer) after one update")
right.set_title(f"KL to the reference now {masked_mean(kl, mask).item():.4f} per token")
plt.tight_layout()
plt.show()

# %% [markdown]
# Answers share weights. This model barely looks at the image yet (100 warm-up steps), so an answer such as
# '4' is right for one image and wrong for another, and one step moves each answer by the sum of its pushes:
# not every answer moves as its own advantage says. What each step raises is the objective printed above.
#
# ## The same step in one call
#
# `agent.update(batch)` runs both iterations above (log-probs, loss, backward, clip, step) and returns
# the metrics the Trainer logs. Replayed from the same weights and optimiser state, it gives the same
# numbers (metrics averaged over the two iterations).

# %%
manual = {k: (metrics1[k] + metrics2[k]) / 2 for k in ("loss", "kl", "clip_fraction", "ratio_mean")}
after_manual = copy.deepcopy(policy.model.state_dict())
policy.model.load_state_dict(snapshot[0])
agent.load_state_dict(copy.deepcopy(snapshot[1]))
update = agent.update(batch)
for key, value in manual.items():
    print(f"    {key:14s} by hand {value:+.6f}   agent.update {update[key]:+.6f}")
gap = max((after_manual[k] - v).abs().max().item() for k, v in policy.model.state_dict().items())
print(f"largest weight difference between the two: {gap:.2e}")

# %% [markdown]
# ## The same step through RLOO
#
# REINFORCE with a leave-one-out baseline: `loss = -A_i * log pi(answer_i)` (+ `beta * KL`), one
# on-policy update per batch: no ratio, no clipping. Same batch, same starting weights. Its KL is 0 here:
# the one update scores the batch before the weights move, while the policy still equals its reference.

# %%
policy.model.load_state_dict(snapshot[0])
shared = (
    "env_id",
    "env_kwargs",
    "model",
    "prompts_per_step",
    "group_size",
    "max_new_tokens",
    "learning_rate",
)
rloo_config = RLOOConfig(**{k: getattr(config, k) for k in shared}, beta=0.04, log_samples_every=0)
rloo = RLOOAgent(policy, rloo_config)
assert torch.allclose(rloo.advantages(batch.rewards), rloo_adv)
logp = rloo.logprobs(rollout)
rloo_loss_value, rloo_metrics = rloo_loss(
    logp, rloo_adv.flatten(), mask, rloo_config.loss_type, rloo_config.beta, rloo.reference_logprobs(rollout)
)
print(
    f"RLOO loss by hand {rloo_loss_value.item():+.5f} (sum of each answer's -A * log pi, mean over answers)"
)
rloo_update = rloo.update(batch)  # the same, then the gradient step
print(
    f"rloo.update: loss {rloo_update['loss']:+.5f}, KL {rloo_update['kl']:.4f}, grad norm {rloo_update['grad_norm']:.3f}"
)
with torch.no_grad():
    rloo_change = ((rloo.logprobs(rollout) - old_logp) * mask).sum(dim=1)

fig, ax = plt.subplots(figsize=(7, 4))
grpo_change = ((logp3 - old_logp) * mask).sum(dim=1)
moved = rloo_adv.flatten() != 0
scale = advantages[moved] / rloo_adv.flatten()[moved]
print(f"GRPO's advantage / RLOO's, answer by answer: {scale.min().item():.3f} to {scale.max().item():.3f}")
print(
    f"change of log pi(answer) after one update: GRPO and RLOO differ by at most"
    f" {(seq_change - rloo_change).abs().max().item():.3f}, for changes up to {seq_change.abs().max().item():.3f}"
)
ax.scatter(advantages.numpy(), seq_change.numpy(), label="GRPO, after its first update", color="#56B4E9")
ax.scatter(advantages.numpy(), grpo_change.numpy(), label="GRPO, after both updates", color="#0072B2")
ax.scatter(
    rloo_adv.flatten().numpy(), rloo_change.numpy(), label="RLOO, 1 update", color="#E69F00", marker="x"
)
ax.axhline(0, color="black", linewidth=0.8)
ax.set_xlabel("the algorithm's advantage of the answer")
ax.set_ylabel("change of log pi(answer)")
ax.legend()
plt.show()

# %% [markdown]
# When GRPO's advantages are RLOO's times one constant (the first line printed above: one ratio for every
# answer, as when all groups with a signal have the same spread of rewards), their first updates are the
# same: AdamW's first step is `lr * sign(gradient)` for every weight, whatever the gradient's size. They part
# ways when groups differ in spread (GRPO divides each group by its own std, so a nearly unanimous group
# weighs as much as a split one) and over many steps, where Adam's running moments keep relative sizes.

# %%
print(
    f"notebook ran in {time.perf_counter() - started:.0f} s, {time.process_time():.0f} s of CPU (this kernel)"
)
