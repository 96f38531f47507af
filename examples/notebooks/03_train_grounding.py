# %% [markdown]
# # 3. Train grounding on the tiny model, and watch
#
# "Output the bounding box of the red circle": one object per image, in one of 16 grid cells, answered in
# Qwen2-VL's box tokens; the reward is IoU² plus 0.2 for a well-formed answer, the metric Acc@0.5 (IoU of
# the box ≥ 0.5, as RefCOCO). This is `perception-r1 demo --task grounding` (`agents/demo/`), cell by cell:
#
# 1. a randomly initialised tiny Qwen2-VL (0.26M parameters, the real architecture);
# 2. a supervised warm start on the env's oracle answers, stopped once the validation metric enters a band
#    *below* the ceiling (from random weights, sampling never finds a box and GRPO has nothing to learn from);
# 3. GRPO, watched: predictions on fixed test images before / during / after, every step's rewards, the
#    share of groups without a learning signal;
# 4. the control: a similar CPU time spent on more supervised steps from the same warm start.
#
# **Shortened to run in about a minute of CPU**: the demo's recipe with a warm-start batch of 8 (not 16) checked
# on 100 validation images (not 200), **96 GRPO steps (not 300)**, a 300-step control (not 1,000) and
# evaluations on 50 test images (not 200). The full run (`perception-r1 demo --task grounding`, about 3 minutes)
# takes seed 0 from 54% to 86.5%; its curves for three seeds are in `benchmarks/RESULTS.md`.
#
# Built from `examples/notebooks/03_train_grounding.py` by `scripts/build_notebooks.py`; run by
# `tests/test_notebooks.py`.

# %%
import warnings

# huggingface_hub imports tqdm.auto, which warns in a notebook without ipywidgets: there are no progress bars here
warnings.filterwarnings("ignore", message="IProgress not found")

# %%
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np
import torch
from transformers.utils import logging as hf_logging

from agents.demo import RECIPES, DemoTrainer, metric_value, sft_control, warm_start_to_band
from agents.grpo.agent import GRPOAgent
from agents.policies.qwen_vl import QwenVLPolicy
from agents.policies.tiny_model import build_tiny_model
from agents.trainer import evaluate

started = time.perf_counter()
torch.set_num_threads(1)  # a model this small: threads only wait on each other
hf_logging.disable_progress_bar()
hf_logging.set_verbosity_error()
SEED = 0
GRPO_STEPS, CONTROL_STEPS = 96, 300
recipe = replace(
    RECIPES["grounding"],
    sft_batch_size=8,
    sft_check_samples=100,
    sft_chunk=50,
    grpo_steps=GRPO_STEPS,
    eval_samples=50,
    control_sft_steps=CONTROL_STEPS,
)
torch.manual_seed(SEED)
out = Path(tempfile.mkdtemp(prefix="grounding-"))
print(recipe.env_id, recipe.env_kwargs)

# %% [markdown]
# ## 1-2. The tiny model and its warm start
#
# Supervised grounding learns in a sharp jump: near 0% for a few hundred steps, then most boxes right
# within a few dozen. The warm start checks the validation metric every 50 steps and stops once it lies
# in the band; a chunk that jumps past the band is replayed in halves.

# %%
model_dir = build_tiny_model(
    out / "tiny-model", arch="qwen2-vl", preset=recipe.preset, seed=SEED, rope_theta=recipe.rope_theta
)
policy = QwenVLPolicy.from_pretrained(str(model_dir))
train_env, val_env, test_env = (recipe.make_env(split) for split in ("train", "val", "test"))
agent = GRPOAgent(policy, recipe.grpo_config(str(model_dir), out, SEED))
lo, hi = recipe.sft_band
print(f"{policy.num_parameters():,} parameters; warm start until validation Acc@0.5 is in {lo:.0%}..{hi:.0%}")
warm = warm_start_to_band(agent, recipe, train_env, val_env, SEED)
print(f"warm start: {warm.steps} steps, {warm.cpu_s:.0f} s of CPU")

# %% [markdown]
# ## Fixed test images, drawn as the policy answers them
#
# Greedy answers (as evaluation takes them) to the same six test images, drawn by the env's `render()`:
# the target box in green, the predicted box scored in blue (red: a box that earned nothing), the answer and
# its reward in the band below; each title gives the IoU (Acc@0.5 counts IoU ≥ 0.5).

# %%
view = gym.make(recipe.env_id, **recipe.env_kwargs, split="test", render_mode="rgb_array")
FIXED = list(range(6))
drawn = {}  # stage -> [(frame, IoU)]


def draw(stage: str) -> None:
    observations = [view.reset(options={"index": i})[0] for i in FIXED]
    answers = agent.act_greedy(observations, max_new_tokens=recipe.max_new_tokens)
    drawn[stage] = []
    for i, answer in zip(FIXED, answers):
        view.reset(options={"index": i})
        _, reward, _, _, info = view.step(answer)
        drawn[stage].append((view.render(), info["reward_components"].get("iou", 0.0)))


def show(stages: list[str]) -> None:
    fig, axes = plt.subplots(
        len(stages), len(FIXED), figsize=(2.4 * len(FIXED), 2.9 * len(stages)), squeeze=False
    )
    for row, stage in zip(axes, stages):
        for ax, (frame, iou) in zip(row, drawn[stage]):
            ax.imshow(frame)
            ax.set_title(f"{stage}: IoU {iou:.2f}", fontsize=9)
            ax.axis("off")
    plt.tight_layout()
    plt.show()


draw("warm start")
before = evaluate(agent, test_env, recipe.eval_samples, max_new_tokens=recipe.max_new_tokens)
print(
    f"held-out Acc@0.5 before GRPO: {metric_value(before, recipe):.0%} ({recipe.eval_samples} test images, greedy)"
)
show(["warm start"])

# %% [markdown]
# ## 3. GRPO, half way, then to the end
#
# `DemoTrainer` is the Trainer recording every step's rewards `[B * G]` and the fraction of groups whose
# G rewards were all equal (`zero_std_fraction`), and the training CPU time at each evaluation (every 24
# steps, evaluation excluded from the time). `train(stop_at=...)` stops after a step, as an interruption
# would; calling `train()` again continues.

# %%
config = recipe.grpo_config(str(model_dir), out, SEED)
config.eval_every, config.eval_samples = 24, recipe.eval_samples
agent = GRPOAgent(policy, config)
trainer = DemoTrainer(agent, config, out / config.run_name, env=train_env, eval_env=test_env, progress=False)
print(
    f"GRPO: {config.prompts_per_step} images x G={config.group_size} answers per step, lr {config.learning_rate:g}"
)
trainer.train(stop_at=GRPO_STEPS // 2)
draw(f"step {GRPO_STEPS // 2}")
history = trainer.train()
draw(f"step {GRPO_STEPS}")
grpo_cpu, _ = trainer.clock.elapsed()
after = evaluate(agent, test_env, recipe.eval_samples, max_new_tokens=recipe.max_new_tokens)
print(
    f"held-out Acc@0.5 after {GRPO_STEPS} GRPO steps: {metric_value(after, recipe):.0%}"
    f" (from {metric_value(before, recipe):.0%}), {grpo_cpu:.0f} s of training CPU"
)
show(["warm start", f"step {GRPO_STEPS // 2}", f"step {GRPO_STEPS}"])

# %% [markdown]
# The learning rate matters more than anything else here: with `grpo_learning_rate=1e-3` instead of 3e-4
# (measured on this warm start), the policy collapsed within a dozen steps onto answers that earn nothing:
# Acc@0.5 0% at every evaluation and every group's rewards equal (zero-variance fraction 1.0).
#
# ## What GRPO saw, step by step
#
# Left: the distribution of the 64 rewards of each step (IoU² + 0.2 format, at most 1.2). Right: the
# fraction of groups whose 8 answers all earned the same reward: their advantages are all 0, so they
# teach nothing. Near 1 with rewards at 0, the warm start is too weak for sampling to find the object;
# near 1 with rewards at the maximum, the training images are solved; rising while the mean falls, the
# policy collapsed onto one answer.

# %%
rewards = np.array(trainer.step_rewards)  # [steps, B * G]
steps = np.arange(1, len(rewards) + 1)
fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4))
for (q_lo, q_hi), alpha in (((0, 100), 0.15), ((25, 75), 0.35)):
    left.fill_between(
        steps, *np.percentile(rewards, [q_lo, q_hi], axis=1), alpha=alpha, color="#0072B2", linewidth=0,
        label=f"{q_lo}-{q_hi}th percentile",
    )  # fmt: skip
left.plot(steps, rewards.mean(axis=1), color="#D55E00", label="mean")
left.plot(steps, np.median(rewards, axis=1), color="#0072B2", label="median")
left.set_xlabel("GRPO step")
left.set_ylabel("reward of an answer")
left.set_title("reward distribution per step")
left.legend(fontsize=8, loc="upper left")
right.plot(steps, trainer.zero_std, marker="o", markersize=3, color="#009E73")
right.set_ylim(-0.05, 1.05)
right.set_xlabel("GRPO step")
right.set_ylabel("fraction of the 8 groups")
right.set_title("zero-variance groups (no learning signal)")
for ax in (left, right):
    ax.grid(alpha=0.3)
plt.tight_layout()
plt.show()
print(
    f"zero-variance fraction: first step {trainer.zero_std[0]:.0%}, last step {trainer.zero_std[-1]:.0%};"
    f" mean reward {rewards[:4].mean():.3f} in the first 4 steps, {rewards[-4:].mean():.3f} in the last 4"
)

# %% [markdown]
# ## 4. The control: more supervised training for a similar CPU time
#
# From the same warm start (weights, optimiser state, data order), `sft_control` takes supervised steps on
# the oracle answers instead, evaluated every 100 steps. Both curves: held-out Acc@0.5 against training CPU
# seconds (evaluation excluded); both CPU times are printed.

# %%
control = sft_control(agent, recipe, warm, train_env, test_env, SEED, CONTROL_STEPS, eval_every=100)
m_before = metric_value(before, recipe)
grpo_curve = [(0.0, m_before)] + [
    (row["time/train_cpu_s"], row[f"eval/{recipe.metric}"]) for row in history if "time/train_cpu_s" in row
]
control_curve = [(cpu, m_before if value is None else value) for _, cpu, _, value in control["curve"]]
fig, ax = plt.subplots(figsize=(8, 4.5))
ax.plot(*zip(*grpo_curve), marker="o", color="#0072B2", label=f"GRPO, {GRPO_STEPS} steps")
ax.plot(
    *zip(*control_curve), marker="o", markerfacecolor="white", linestyle="--", color="#0072B2",
    label=f"more SFT (control), {CONTROL_STEPS} steps",
)  # fmt: skip
ax.set_ylim(0, 1.02)
ax.set_xlabel("training time, CPU seconds of one thread (evaluation excluded)")
ax.set_ylabel(f"held-out Acc@0.5 ({recipe.eval_samples} test images)")
ax.set_title("grounding from the same warm start")
ax.legend(loc="lower right")
ax.grid(alpha=0.3)
plt.show()
print(
    f"held-out Acc@0.5: warm start {m_before:.0%}, GRPO {metric_value(after, recipe):.0%} in {grpo_cpu:.0f} s of CPU,"
    f" SFT control {control['after']:.0%} in {control['cpu_s']:.0f} s of CPU"
)

# %% [markdown]
# With exact, noise-free demonstrations, imitating the oracle is usually the cheaper signal on this toy
# task: the full runs in `benchmarks/RESULTS.md` show the control as good or better at equal compute, while
# GRPO still lifts every task from its warm start. What RL adds is that it needs only a reward, not the
# answer: the same loop trains where no demonstration exists.

# %%
print(
    f"notebook ran in {time.perf_counter() - started:.0f} s, {time.process_time():.0f} s of CPU (this kernel)"
)
