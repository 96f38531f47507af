"""RL for vision-language models on a laptop CPU: one GRPO step, taken apart, then a short training run.

    python examples/tutorial.py            # a few minutes; ends: held-out greedy accuracy ... 35% -> 48% (seed 0)
    python examples/tutorial.py --quick    # under a minute: every section, 20 + 3 steps (no learning yet)

Read it top to bottom: every number printed comes from the project's real code (the same env,
policy, advantages and loss that train Qwen2-VL-2B), only the model is tiny and random so that it
runs offline on a CPU. The paper behind it: Perception-R1 (Yu et al., 2025).

Next: `perception-r1 demo --task counting | grounding | detection | ocr` runs each task's recipe (a warm
start stopped on a validation band, then GRPO); benchmarks/RESULTS.md has their learning curves, GRPO
against more supervised training for the same CPU time (benchmarks/figures/learning-TASK.png).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import gymnasium as gym
import torch

import perception_env  # noqa: F401  (registers PerceptionR1/* envs)
from agents.grpo.advantages import group_advantages
from agents.grpo.agent import GRPOAgent
from agents.grpo.config import GRPOConfig
from agents.grpo.loss import grpo_loss
from agents.losses import masked_mean
from agents.policies.qwen_vl import QwenVLPolicy
from agents.policies.tiny_model import build_tiny_model
from agents.rloo.agent import leave_one_out_advantages
from agents.sft import supervised_warm_start
from agents.trainer import Trainer, evaluate, score_group

# "How many objects are in the image?", answered with a number
ENV_KWARGS = {"difficulty": {"base": "easy", "count_query": "all"}, "answer_format": "number"}


def section(title: str) -> None:
    print(f"\n=== {title} " + "=" * max(0, 70 - len(title)))


def show(answer: str, width: int = 12) -> str:
    """An answer as a fixed-width repr, for the tables."""
    text = repr(answer)
    return (text if len(text) <= width else text[: width - 2] + "..").ljust(width)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sft-steps", type=int, default=350, help="supervised warm-start steps")
    parser.add_argument("--grpo-steps", type=int, default=300, help="GRPO steps of the final run")
    parser.add_argument("--group-size", type=int, default=8, help="G answers per image")
    parser.add_argument("--out", default=None, help="folder for the model and run (default: temporary)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20 warm-start and 3 GRPO steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.sft_steps, args.grpo_steps = 20, 3
    torch.set_num_threads(1)  # tiny matrices: more threads only add overhead
    torch.manual_seed(args.seed)
    out = Path(args.out or tempfile.mkdtemp(prefix="tutorial-"))

    # ---------------------------------------------------------------------------------------------
    section("1. The environment: one image, one question, one answer, one reward")
    # A perception task is a one-step Gymnasium env. reset() draws an image and a prompt; step(answer)
    # parses the text answer, scores it against the hidden targets, and ends the episode.
    env = gym.make("PerceptionR1/Counting-v0", **ENV_KWARGS)
    observation, info = env.reset(options={"index": 0})
    truth = env.unwrapped.oracle_answer()
    print(f"observation['image'] : {observation['image'].shape} {observation['image'].dtype} (H, W, RGB)")
    print(f"observation['prompt']: {observation['prompt']!r}")
    print(f"the oracle's answer  : {truth!r}")
    for answer in [truth, "2", "lots"]:
        env.reset(options={"index": 0})  # one answer per episode: the same image again
        _, reward, terminated, _, step_info = env.step(answer)
        print(
            f"  step({answer!r:7}) -> reward {reward:.2f}, terminated={terminated},"
            f" reason: {step_info['reason']}"
        )

    # ---------------------------------------------------------------------------------------------
    section("2. The policy: a (tiny) Qwen2-VL")
    # The real architecture (vision tower + M-RoPE language model), built from a config with random
    # weights and a small tokenizer. A random model cannot follow the answer format, and RL needs some
    # answers to be right to learn anything, so it first imitates the oracle for a few steps (the
    # paper also starts RL from a model that already follows instructions).
    # rope_theta 1e6 (Qwen2-VL's own): counting every object needs no positions, which a smaller base
    # would mix into the image tokens (docs/learning-on-a-cpu.md)
    model_dir = build_tiny_model(out / "tiny-model", preset="tiny", seed=args.seed, rope_theta=1e6)
    policy = QwenVLPolicy.from_pretrained(str(model_dir))
    print(f"{policy.num_parameters():,} parameters; the chat the model reads:")
    print("  " + policy.chat_text(observation["prompt"]).replace("\n", "\n  "))
    print(f"supervised warm start: {args.sft_steps} steps of cross-entropy on oracle answers ...")
    # 350 steps leave seed 0 at ~37% held-out: it perceives, but answers badly often enough for GRPO's
    # groups to disagree (a few more steps of supervision and it jumps to ~80%)
    losses = supervised_warm_start(policy, env, steps=args.sft_steps, learning_rate=1e-3, seed=args.seed)
    print(f"  loss {losses[0]:.3f} -> {losses[-1]:.3f}")

    # ---------------------------------------------------------------------------------------------
    section(f"3. G = {args.group_size} sampled answers to the same image")
    # GRPO's idea: no value network. Sample a *group* of answers to one prompt and judge each answer
    # against its siblings. Sampling at temperature 1 makes them differ.
    G = args.group_size
    rollout = policy.generate(
        [observation], num_samples=G, temperature=1.0, max_new_tokens=4, generator_seed=args.seed
    )
    print(f"completion tokens {tuple(rollout.completion_ids.shape)} = [G, T]; mask says which are real")

    # ---------------------------------------------------------------------------------------------
    section("4. Rewards: the env scores each answer")
    group = score_group(env, 0, rollout.texts)  # reset to image 0 once, score each answer (env.score)
    rewards = torch.tensor([group.rewards])  # [B=1, G]
    for answer, reward in zip(group.answers, group.rewards):
        print(f"  {show(answer)} -> {reward:.3f}")
    if rewards.std() == 0:
        print("  (all equal: this group carries no learning signal; GRPO's advantages below are all 0)")

    # ---------------------------------------------------------------------------------------------
    section("5. Advantages: how much better than its siblings is each answer?")
    # GRPO: A_i = (r_i - mean(r)) / (std(r) + 1e-4).   RLOO: A_i = r_i - mean of the other G-1 rewards.
    grpo_adv = group_advantages(rewards)[0]
    rloo_adv = leave_one_out_advantages(rewards)[0]
    print(f"  mean reward {rewards.mean():.3f}, std {rewards.std():.3f}")
    print("  answer         reward   GRPO adv   RLOO adv")
    for answer, r, a, b in zip(group.answers, group.rewards, grpo_adv.tolist(), rloo_adv.tolist()):
        print(f"  {show(answer)}   {r:6.3f}   {a:+8.3f}   {b:+8.3f}")

    # ---------------------------------------------------------------------------------------------
    section("6. Log-probabilities and the loss")
    # log pi(token | image, prompt, earlier tokens) for every answer token, differentiable.
    policy.model.train()
    logp = policy.completion_logprobs(rollout)  # [G, T]
    mask = rollout.completion_mask.float()  # [G, T]
    seq_logp = (logp * mask).sum(dim=1).detach()  # log pi(whole answer)
    print("  log pi(answer):", " ".join(f"{v:.2f}" for v in seq_logp.tolist()))
    # Loss per token: -exp(logp - logp.detach()) * A  (+ beta * KL to a frozen copy; 0 here). The
    # ratio is 1, so the value is -mean(A) ~ 0, but the gradient is -A * grad log pi: push up the
    # answers with A > 0, down those with A < 0.
    config = GRPOConfig(beta=0.0, max_new_tokens=4)
    loss, metrics = grpo_loss(logp, logp.detach(), grpo_adv, mask, config.loss_settings())
    objective_before = float((grpo_adv * masked_mean(logp.detach(), mask, dim=1)).mean())
    print(f"  loss {loss.item():+.5f}; metrics {{{', '.join(f'{k}: {v:.3f}' for k, v in metrics.items())}}}")

    # ---------------------------------------------------------------------------------------------
    section("7. One gradient step: better answers become more likely")
    # Plain gradient descent, so the step follows the gradient (Adam's first step is sign-like).
    # Answers share parameters, so not every answer moves the way its own advantage says; what a small
    # step must raise is the objective itself, mean_i A_i * (mean over answer i's tokens of log pi).
    optimizer = torch.optim.SGD(policy.model.parameters(), lr=0.05)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    with torch.no_grad():
        new_logp = policy.completion_logprobs(rollout)
        after = (new_logp * mask).sum(dim=1)
    print("  answer         advantage   change of log pi(answer)")
    for answer, a, d in zip(group.answers, grpo_adv.tolist(), (after - seq_logp).tolist()):
        print(f"  {show(answer)}   {a:+8.3f}    {d:+.4f}")
    objective = (grpo_adv * masked_mean(new_logp, mask, dim=1)).mean()
    print(f"  objective mean_i A_i * mean_t log pi: {objective_before:+.4f} -> {objective.item():+.4f}")

    # ---------------------------------------------------------------------------------------------
    section(f"8. The same, in a loop: {args.grpo_steps} GRPO steps with the Trainer")
    # The Trainer does steps 3-7 for a batch of images per step, logs to TensorBoard and checkpoints.
    # What to expect (seed 0, measured): held-out accuracy 35% -> 48%; `perception-r1 demo` runs the
    # same task with a warm start stopped on a validation band, for any seed.
    config = GRPOConfig(
        env_id="PerceptionR1/Counting-v0",
        env_kwargs=ENV_KWARGS,
        model=str(model_dir),
        output_dir=str(out),
        run_name="grpo",
        seed=args.seed,
        total_steps=args.grpo_steps,
        prompts_per_step=8,
        group_size=G,
        max_new_tokens=4,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        learning_rate=3e-4,
        lr_scheduler="cosine",  # to 0 at the end: a constant rate wobbles once the task is solved
        beta=0.0,
        save_every=max(1, args.grpo_steps),
        log_samples_every=0,
    )
    agent = GRPOAgent(policy, config)
    test_env = gym.make(config.env_id, **config.env_kwargs, split="test")
    before = evaluate(agent, test_env, 200, max_new_tokens=4)
    history = Trainer(agent, config, out / "grpo", env=env, progress=False).train()
    for step, row in enumerate(history, 1):
        if step == 1 or step % max(1, len(history) // 6) == 0 or step == len(history):
            print(
                f"  step {step:3d}: reward {row['reward/mean']:.3f}  groups without signal"
                f" {row['train/frac_reward_zero_std']:.2f}  entropy {row['train/entropy']:.3f}"
            )
    after_eval = evaluate(agent, test_env, 200, max_new_tokens=4)
    print(
        f"held-out greedy accuracy (200 test images): {before['success']:.0%} -> {after_eval['success']:.0%}"
    )
    print(f"TensorBoard: tensorboard --logdir {out / 'grpo'}")
    print("next: perception-r1 demo --task grounding (or detection, ocr); curves in benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
