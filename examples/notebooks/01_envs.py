# %% [markdown]
# # 1. The environments: one image, one question, one answer, one reward
#
# Each perception task of Perception-R1 is a one-step Gymnasium environment. `reset()` draws an image and a
# question; `step(answer)` reads the model's text answer, scores it against the hidden targets and ends
# the episode. Nothing here needs torch or a model: the answers below are written by hand.
#
# This notebook: make the four envs, look at what a model sees, draw answers with `render()`, and see why
# the detection reward matches predicted objects to targets (Hungarian matching) instead of pairing them
# in the order they are listed.
#
# Built from `examples/notebooks/01_envs.py` by `scripts/build_notebooks.py`; run by `tests/test_notebooks.py`.

# %%
import time

import gymnasium as gym
import matplotlib.pyplot as plt
import numpy as np

import perception_env
from perception_env.rewards.matching import box_iou

started = time.perf_counter()
print(perception_env.ENV_IDS)

# %% [markdown]
# ## What the model sees
#
# An observation is `{"image": uint8 [H, W, 3], "prompt": str}`. `options={"index": i}` replays sample
# `i` of the split exactly; the built-in data are synthetic shapes and rendered words, made offline.
# `render_mode="rgb_array"` lets `render()` draw the targets and the last answer.

# %%
envs = {env_id: gym.make(env_id, render_mode="rgb_array") for env_id in perception_env.ENV_IDS}
INDEX = {"PerceptionR1/Counting-v0": 7}  # sample 0 of counting asks for a shape that is not there
observations = {}
for env_id, env in envs.items():
    observation, info = env.reset(options={"index": INDEX.get(env_id, 0)})
    observations[env_id] = observation
    print(f"{env_id}: image {observation['image'].shape}, answer format {info['answer_format']!r}")
    print(f"    prompt: {observation['prompt']!r}")

fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
for ax, (env_id, observation) in zip(axes, observations.items()):
    ax.imshow(observation["image"])
    ax.set_title(f"{env_id.split('/')[1]}\n{observation['prompt'][:48]}", fontsize=9)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Answers, rewards and renders
#
# `env.unwrapped.oracle_answer()` writes the perfect answer in the env's format. For each task we step
# once with it and once with a worse answer (written from the targets with one thing wrong), and draw each
# with `render()`: targets, matched predictions and unmatched predictions in their colours, the answer and
# the reward in the band below. One answer per episode, so the env is reset to the same sample in between.


# %%
def worse_answer(env) -> str:
    """The oracle's answer with one mistake, in the env's own format."""
    u = env.unwrapped
    sample = u.sample
    if u.task == "ocr":
        return sample.text.replace(sample.text.split()[0], "frg", 1)  # one word misspelt
    boxes = np.asarray(sample.boxes, dtype=float)
    if u.task == "grounding":
        return u.answer_format.write(frame=u.frame, boxes=boxes[:1] + 15, labels=[sample.query])
    if u.task == "counting":  # one object missed
        return u.answer_format.write(frame=u.frame, boxes=boxes[1:], labels=[sample.query] * (len(boxes) - 1))
    shifted = boxes.copy()
    shifted[0] += 25  # detection: one box off by 25 px, one object missed
    return u.answer_format.write(frame=u.frame, boxes=shifted[:-1], labels=list(sample.labels[:-1]))


frames, titles = [], []
for env_id, env in envs.items():
    for kind in ("oracle", "worse"):
        env.reset(options={"index": INDEX.get(env_id, 0)})
        answer = env.unwrapped.oracle_answer() if kind == "oracle" else worse_answer(env)
        _, reward, terminated, _, info = env.step(answer)
        frames.append(env.render())
        titles.append(f"{env_id.split('/')[1]}, {kind}: reward {reward:.2f} of {info['max_reward']:g}")
        print(f"{titles[-1]}\n    answer {answer[:90]!r}{'...' if len(answer) > 90 else ''}")
        print(f"    components { ({k: round(v, 3) for k, v in info['reward_components'].items()}) }")

fig, axes = plt.subplots(2, 4, figsize=(16, 9))
for k, (frame, title) in enumerate(zip(frames, titles)):
    ax = axes[k % 2, k // 2]
    ax.imshow(frame)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Why Hungarian matching
#
# A detection answer is a *set* of objects written as a list. The model may list them in any order:
# left to right, by size, by class. A reward that pairs the i-th predicted box with the i-th target
# (order-sensitive) punishes a perfect answer for its order; RL would then spend its signal teaching an
# arbitrary listing convention instead of perception. The env's reward first matches predictions to
# targets one-to-one at minimum cost (Hungarian matching, `perception_env/rewards/matching.py`), so every
# ordering of the same objects earns the same reward.
#
# Below: the oracle's objects of one detection image, listed in random orders. For each ordering, the
# env's reward (as a fraction of its maximum) and an order-sensitive score built here from the project's
# IoU function: the mean IoU of prediction i with target i.

# %%
env = envs["PerceptionR1/Detection-v0"]
env.reset(options={"index": 0})
u = env.unwrapped
targets = np.asarray(u.sample.boxes, dtype=float)  # [M, 4] x1 y1 x2 y2, original pixels
labels = list(u.sample.labels)
print(f"{len(targets)} objects: {labels}")


def in_order_score(predicted: np.ndarray, targets: np.ndarray) -> float:
    """Mean IoU of the i-th predicted box with the i-th target (a missing box scores 0)."""
    iou = box_iou(predicted, targets)  # [N, M]
    n = min(len(predicted), len(targets))
    return float(np.trace(iou[:n, :n])) / max(len(predicted), len(targets))


rng = np.random.default_rng(0)
rows = []  # (objects out of place, env reward / max, in-order score)
for trial in range(60):
    order = np.arange(len(targets)) if trial == 0 else rng.permutation(len(targets))
    answer = u.answer_format.write(frame=u.frame, boxes=targets[order], labels=[labels[i] for i in order])
    scored = u.score(answer)  # scores without stepping: the env stays on this sample
    predicted = np.asarray(scored.result.parsed.boxes, dtype=float)  # as the env read them, in pixels
    rows.append(
        (
            int((order != np.arange(len(order))).sum()),
            scored.reward / scored.result.max_reward,
            in_order_score(predicted, targets),
        )
    )
rows = np.array(rows)
print("objects out of place -> env reward (Hungarian) | in-order mean IoU")
for moved in np.unique(rows[:, 0]):
    chosen = rows[rows[:, 0] == moved]
    print(
        f"    {int(moved)}: {chosen[:, 1].mean():.3f} | {chosen[:, 2].mean():.3f}   ({len(chosen)} orderings)"
    )
print(f"the env's matching for the last ordering (prediction -> target): {scored.info['matching'][:3]} ...")

# %%
fig, ax = plt.subplots(figsize=(8, 4.5))
jitter = rng.uniform(-0.12, 0.12, len(rows))
ax.scatter(rows[:, 0] + jitter, rows[:, 1], label="env reward / max (Hungarian matching)", color="#0072B2")
ax.scatter(
    rows[:, 0] - jitter, rows[:, 2], label="in-order mean IoU (i-th box vs i-th target)", color="#D55E00"
)
ax.set_xlabel("objects listed out of their original place (the same objects every time)")
ax.set_ylabel("score (1 = perfect)")
ax.set_ylim(-0.05, 1.1)
ax.set_title("The same perfect answer, listed in 60 orders")
ax.legend(loc="lower left")
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# The Hungarian reward is 1.0 for every ordering (the oracle's integer coordinates lose nothing here); the
# in-order score falls with every object moved, although the answer describes exactly the same objects.
#
# The same holds for the other matching tasks: counting matches predicted points to objects, and grounding
# scores the first box only, since a referring expression names one object.

# %%
print(
    f"notebook ran in {time.perf_counter() - started:.0f} s, {time.process_time():.0f} s of CPU (this kernel)"
)
