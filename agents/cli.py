"""``perception-r1``: the command line.

perception-r1 demo                     # the main job: tiny model -> warm start -> GRPO -> before/after
perception-r1 make-tiny-model DIR      # an offline, randomly initialised Qwen2-VL
perception-r1 sft   --env ID --model DIR --output DIR
perception-r1 train --env ID --model DIR [--config file.yaml] [--resume RUN_DIR] [--learning-rate ...]
perception-r1 tour                     # every env, oracle and random answers, renders saved
perception-r1 report RUN_DIR [--compare RUN_B]   # an evaluation's report.html, written again or side by side

Every command takes --quiet / --verbose (log level), --threads N|auto (torch CPU threads) and --debug (the
traceback of an error, which is otherwise one line).
"""

from __future__ import annotations

import argparse
import sys


def cmd_make_tiny_model(args: argparse.Namespace) -> None:
    """``perception-r1 make-tiny-model``: build and save a randomly initialised model with its processor."""
    from agents.config import check_output_folder
    from agents.policies.tiny_model import build_tiny_model

    check_output_folder(args.out_dir, "OUT_DIR")
    path = build_tiny_model(
        args.out_dir,
        arch=args.arch,
        preset=args.preset,
        seed=args.seed,
        rope_theta=args.rope_theta,
        image_mean=args.image_mean,
        image_std=args.image_std,
    )
    print(f"saved a randomly initialised {args.arch} ({args.preset}) with its processor to {path}")


def cmd_sft(args: argparse.Namespace) -> None:
    """``perception-r1 sft``: the supervised warm start on an env's oracle answers, saved as a model."""
    from agents.config import check_output_folder
    from agents.console import make_env, set_threads, show_progress
    from agents.model_folder import check_model

    check_output_folder(args.output, "--output")  # before the work whose result it would receive (and torch)
    check_model(args.model)
    env = make_env(args.env, args.env_kwargs)  # a wrong env id or data folder before the model loads
    from agents.checkpoints import non_finite_weights
    from agents.policies.qwen_vl import QwenVLPolicy
    from agents.sft import supervised_warm_start

    # the processor resizes images as the env does: answers in resized pixels mean the same to both
    u = env.unwrapped
    policy = QwenVLPolicy.from_pretrained(
        args.model, device=args.device, min_pixels=u.min_pixels, max_pixels=u.max_pixels
    )
    set_threads(args.threads, policy.model)
    losses = supervised_warm_start(
        policy,
        env,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        log_every=max(1, args.steps // 10),
        progress=show_progress(),
    )
    bad = non_finite_weights(policy.model)
    if bad:
        raise FloatingPointError(
            f"after {args.steps} sft steps {len(bad)} weight tensors hold NaN or inf "
            f"({bad[0]}, ...); {args.output} was not written: lower --learning-rate"
        )
    policy.save_pretrained(args.output)
    print(f"final loss {losses[-1]:.4f}; saved to {args.output}")


def build_train_parser(sub, agent: str | None = "grpo") -> None:
    """``train``'s flags are the chosen agent's config fields (``--agent rloo --help`` lists RLOO's).

    ``agent=None``: the command line is not ``train``; only its name and help are added, so that other
    commands (``eval --agent oracle``, ``tour``) never import the agents, and with them torch.
    """
    help_text = "RL training (GRPO by default) on a perception env"
    if agent is None:
        sub.add_parser("train", help=help_text, add_help=False)
        return
    from agents.config import add_arguments
    from agents.console import common_options
    from agents.registry import AGENTS, resolve_agent

    p = sub.add_parser(
        "train",
        help=help_text,
        description="Train a Qwen2-VL / Qwen2.5-VL policy with an RL agent. Flags override --config.",
        parents=[common_options()],
    )
    p.add_argument(
        "--agent",
        default=agent,
        help=f"training algorithm: {', '.join(sorted(AGENTS))}, or your own as module:Class or "
        "file.py:Class (its options follow); a resumed run keeps its own (one outside the package only when "
        "named again here: a checkpoint does not choose code to run)",
    )
    p.add_argument("--env", dest="env_id_alias", default=None, help="alias of --env-id")
    p.add_argument("--config", default=None, help="YAML file of options (flags override it)")
    p.add_argument(
        "--resume",
        default=None,
        help="run folder or checkpoint folder to continue from, with the run's own options "
        "(a --config file and flags given now override them, e.g. --total-steps to train longer); "
        "a run folder continues the checkpoint it saved or was resumed from last "
        "(latest_checkpoint.json), so a branch started from an earlier step goes on",
    )
    add_arguments(p, resolve_agent(agent).config_class)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> None:
    """``perception-r1 train``: the options from flags, ``--config`` and a resumed run; train; the summary."""
    from agents.config import config_from_args
    from agents.console import show_progress
    from agents.registry import resolve_agent

    if args.env_id_alias and not args.env_id:
        args.env_id = args.env_id_alias
    saved = saved_run(args.resume)[1] if args.resume else None  # flags given now override it
    config = config_from_args(resolve_agent(args.agent).config_class, args, args.config, base=saved)
    history: list[dict[str, float]] = []
    run_dir = train(
        config,
        resume=args.resume,
        agent=args.agent,
        threads=args.threads,
        progress=show_progress(),
        history=history,
    )
    from agents.distributed import env_world

    if env_world()[0] == 0:
        for line in training_summary(history):
            print(line)
        print(f"done. TensorBoard: tensorboard --logdir {run_dir}")


def training_summary(history: list[dict[str, float]], window: int = 10) -> list[str]:
    """What a run did, first -> last: the mean reward of its first and last ``window`` steps, and the
    held-out success of its first and last evaluations (``--eval-every``)."""
    if not history:
        return []
    n = min(window, len(history))
    first, last = (sum(row["reward/mean"] for row in rows) / n for rows in (history[:n], history[-n:]))
    lines = [f"reward (mean of {n} steps): {first:.3f} at the start -> {last:.3f} at the end"]
    evaluated = [(i, row["eval/success"]) for i, row in enumerate(history) if "eval/success" in row]
    if len(evaluated) >= 2:
        (i, before), (j, after) = evaluated[0], evaluated[-1]
        lines.append(f"held-out success: {before:.1%} (its step {i + 1}) -> {after:.1%} (its step {j + 1})")
    elif evaluated:
        lines.append(f"held-out success: {evaluated[0][1]:.1%}")
    return lines


def train(
    config,
    resume: str | None = None,
    progress: bool = True,
    env=None,
    eval_env=None,
    stop_at: int | None = None,
    agent: str | None = None,
    threads: int | str = "auto",
    history: list | None = None,
):
    """Build the run (:func:`agents.build.build_run`: policy, agent, trainer; resuming if asked) and train it;
    returns the run folder. ``agent``: a registered name or ``module:Class`` / ``file.py:Class``;
    ``threads``: torch's CPU threads; ``history``: a list that receives the steps' logged rows."""
    from agents.build import build_run

    run = build_run(
        config, agent=agent, resume=resume, env=env, eval_env=eval_env, progress=progress, threads=threads
    )
    if run.parallel.enabled and run.parallel.is_main:
        print(f"data-parallel: {run.parallel.describe(run.policy.model)}", flush=True)  # tests read it
    if run.checkpoint is not None and run.parallel.is_main:
        print(f"resumed from {run.checkpoint} at step {run.trainer.step}")
    try:
        rows = run.trainer.train(stop_at=stop_at)
    finally:
        run.parallel.close()
    if history is not None:
        history.extend(rows)
    return run.run_dir


def cmd_demo(args: argparse.Namespace) -> None:
    """``perception-r1 demo``: the offline demo on a tiny model (:func:`agents.demo.run_demo`)."""
    from transformers.utils import logging as hf_logging

    from agents.config import check_output_folder
    from agents.console import set_threads
    from agents.demo import run_demo

    check_output_folder(args.out, "--out")
    set_threads(
        1 if args.threads == "auto" else args.threads
    )  # a tiny model: threads only wait on each other
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    run_demo(out_dir=args.out, seed=args.seed, grpo_steps=args.grpo_steps, task=args.task)


def cmd_tour(args: argparse.Namespace) -> None:
    """``perception-r1 tour``: every env with an oracle and a random agent, renders saved."""
    from agents.config import SetupError, check_output_folder
    from perception_env.data import get_difficulty
    from perception_env.tour import tour

    check_output_folder(args.out, "--out")
    try:
        get_difficulty(args.difficulty)
    except ValueError as error:
        raise SetupError(f"--difficulty {args.difficulty}: {error}") from error
    tour(args.out, args.episodes, args.seed, args.difficulty)


def main(argv: list[str] | None = None) -> None:
    """``perception-r1``'s entry point: ``argv`` (default: the process's) run as one command."""
    from agents.console import run_command

    run_command(_run, sys.argv[1:] if argv is None else list(argv))


def _run(argv: list[str]) -> None:
    from agents.arguments import bounded, json_object
    from agents.console import Parser, check_train_model_early, common_options, configure_logging
    from agents.demo.recipes import RECIPES
    from agents.presets import ARCHS, PRESETS, presets_help

    parser = Parser(
        prog="perception-r1", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = [common_options()]

    p = sub.add_parser(
        "demo", help="offline GRPO demo on a tiny model (the README's main command)", parents=common
    )
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--task",
        default="counting",
        choices=list(RECIPES),  # agents/demo/recipes.py: importing it loads no torch
        help="the demo's task: counting (default), grounding (Acc@0.5), detection (COCO AP), ocr (edit "
        "distance), or many objects per image: counting-points (2-5 objects pointed at, count accuracy) and "
        "detection-multi (3-5 objects of 2 classes on a 3x3 grid, COCO AP; experimental: GRPO gained +2 to "
        "+7 points on seeds 0-2, short of +20, docs/learning-on-a-cpu.md)",
    )
    p.add_argument(
        "--grpo-steps",
        type=bounded(int, minimum=1),
        default=None,
        help="override the demo's number of GRPO steps",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "make-tiny-model", help="build a randomly initialised tiny Qwen2-VL offline", parents=common
    )
    p.add_argument("out_dir")
    p.add_argument("--arch", default="qwen2-vl", choices=ARCHS)
    p.add_argument(
        "--preset",
        default="tiny",
        choices=list(PRESETS),
        help=f"{presets_help()}; random weights",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--rope-theta",
        type=bounded(float, exclusive_minimum=1),  # a base of 1 or less gives every position one angle
        default=None,
        help="the text model's rotary base (default: the preset's; 1e6, Qwen2-VL's, for counting every "
        "object, where positions do not matter: the README's Training recipe)",
    )
    p.add_argument(
        "--image-mean",
        type=bounded(float),
        default=None,
        help="the processor's pixel mean, one value for R, G and B on the 0..1 scale (default: CLIP's); "
        "0.92 with --image-std 0.3 for light pages of text, as the OCR demo",
    )
    p.add_argument(
        "--image-std",
        type=bounded(float, exclusive_minimum=0),
        default=None,
        help="the processor's pixel standard deviation, one value for R, G and B (default: CLIP's)",
    )
    p.set_defaults(func=cmd_make_tiny_model)

    p = sub.add_parser("sft", help="supervised warm start on an env's oracle answers", parents=common)
    p.add_argument("--env", required=True)
    p.add_argument("--env-kwargs", type=json_object, default={}, metavar="JSON")
    p.add_argument("--model", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--steps", type=bounded(int, minimum=1), default=200)
    p.add_argument("--batch-size", type=bounded(int, minimum=1), default=16)
    p.add_argument("--learning-rate", type=bounded(float, exclusive_minimum=0), default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_sft)

    if argv[:1] == ["train"]:
        check_train_model_early(argv)  # before the train options import torch and transformers
    build_train_parser(sub, _chosen_agent(argv) if argv[:1] == ["train"] else None)

    from agents.evaluate import add_eval_parser, add_report_parser

    add_eval_parser(sub, parents=common)
    add_report_parser(sub, parents=common)

    p = sub.add_parser(
        "tour", help="every env with an oracle and a random agent; renders saved", parents=common
    )
    p.add_argument("--out", default="runs/tour")
    p.add_argument("--episodes", type=bounded(int, minimum=1), default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", default="easy")
    p.set_defaults(func=cmd_tour)

    args = parser.parse_args(argv)
    configure_logging(quiet=args.quiet, verbose=args.verbose)
    args.func(args)


def _chosen_agent(argv: list[str]) -> str:
    """The --agent given to ``train`` (its flags depend on it), before full parsing; a resumed run's own.

    A resumed run's agent is taken from its checkpoint only when it is one of the package's own
    (``AGENTS``): an agent named ``file.py:Class`` or ``module:Class`` is code outside the package, and a
    checkpoint folder from someone else could name code it ships. Such a run resumes only when the same
    ``--agent`` is given again, which says the user trusts that code.
    """
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--agent", default=None)
    peek.add_argument("--resume", default=None)
    known = peek.parse_known_args(argv)[0]
    if known.resume:
        saved = saved_run(known.resume)[0]
        if known.agent is None and ":" in saved:  # module:Class or file.py:Class, not a name of AGENTS
            from agents.config import SetupError

            raise SetupError(
                f"{known.resume} was trained with the agent {saved!r}, code outside perception-r1; resuming "
                f"runs it, so it is not loaded from the checkpoint: if you trust that code, add --agent {saved}"
            )
        if known.agent is None:
            return saved
    return known.agent or "grpo"


def saved_run(resume: str) -> tuple[str, dict]:
    """(agent name, config) of the run a ``--resume`` path points into (a small JSON beside the state)."""
    from agents.checkpoints import latest_checkpoint, read_run_file, read_state

    checkpoint = latest_checkpoint(resume)
    # a checkpoint written before run.json existed: the full state
    run = read_run_file(checkpoint) or read_state(checkpoint)
    return run.get("agent_name", "grpo"), run["config"]


if __name__ == "__main__":
    main(sys.argv[1:])
