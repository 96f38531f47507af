"""GRPO training on the tiny model: a step learns, metrics are finite, resume is exact, the CLI runs."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import perception_env  # noqa: F401
from agents.checkpoints import latest_checkpoint, read_state
from agents.cli import main, train
from agents.grpo.agent import GRPOAgent
from agents.grpo.config import GRPOConfig
from agents.policies.qwen_vl import QwenVLPolicy
from agents.trainer import DataOrder, Trainer
from tests.agents.support import ENV_KWARGS, AnswerLengthBonus, make_config, params, train_args


def _config(model, tmp_path, **overrides):
    """GRPO, 4 steps of 2 prompts x 4 answers, a checkpoint and sample images every 2 steps."""
    run = dict(
        total_steps=4, group_size=4, save_every=2, log_every=1, log_samples_every=2, lr_scheduler="constant"
    )
    return make_config("grpo", model, tmp_path, **{**run, **overrides})


def _env():
    return AnswerLengthBonus(gym.make("PerceptionR1/Counting-v0", **ENV_KWARGS))


def test_data_order_covers_each_epoch_once_and_is_seeded():
    order = DataOrder(10, seed=3)
    seen = [i for step in range(5) for i in order.indices(step, 2)]
    assert sorted(seen) == list(range(10))
    assert order.indices(7, 3) == DataOrder(10, seed=3).indices(7, 3)
    assert order.indices(0, 10) != DataOrder(10, seed=4).indices(0, 10)


def test_one_grpo_step_changes_parameters_and_gives_finite_metrics(tiny_model_dir, tmp_path):
    config = _config(tiny_model_dir, tmp_path, total_steps=1)
    policy = QwenVLPolicy.from_pretrained(tiny_model_dir)
    before = params(policy.model)
    agent = GRPOAgent(policy, config)
    trainer = Trainer(agent, config, tmp_path / "run", env=_env(), progress=False)
    batch = trainer.collect(0)
    assert (batch.rewards.std(dim=1) > 0).any()
    metrics = agent.update(batch)
    after = params(policy.model)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert {"loss", "kl", "clip_fraction", "entropy", "grad_norm", "frac_reward_zero_std"} <= set(metrics)
    # the reference model stays frozen at the start
    ref = dict(agent.reference.named_parameters())
    assert all(torch.equal(before[k], ref[k]) for k in ref if k in before)
    texts = batch.rollout.texts
    assert not any("<|image_pad|>" in t or "<|vision_start|>" in t for t in texts)


def test_beta_zero_loads_no_reference(tiny_model_dir, tmp_path):
    agent = GRPOAgent(
        QwenVLPolicy.from_pretrained(tiny_model_dir), _config(tiny_model_dir, tmp_path, beta=0.0)
    )
    assert agent.reference is None


@pytest.mark.parametrize("micro_batch_size", [0, 3])
def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tiny_model_dir, tmp_path, micro_batch_size):
    # a decaying schedule, so a scheduler that was not restored would show
    straight = _config(
        tiny_model_dir, tmp_path / "a", micro_batch_size=micro_batch_size, lr_scheduler="linear"
    )
    train(straight, progress=False, env=_env())
    # interrupted: stop after 2 of 4 steps (as if killed after the step-2 checkpoint), then resume
    interrupted = _config(
        tiny_model_dir, tmp_path / "b", micro_batch_size=micro_batch_size, lr_scheduler="linear"
    )
    train(interrupted, progress=False, env=_env(), stop_at=2)
    state = read_state(latest_checkpoint(tmp_path / "b" / "run"))
    assert state["step"] == 2 and state["data_position"] == 4
    resumed = _config(
        tiny_model_dir, tmp_path / "b", micro_batch_size=micro_batch_size, lr_scheduler="linear"
    )
    train(resumed, resume=str(tmp_path / "b" / "run"), progress=False, env=_env())

    a = QwenVLPolicy.from_pretrained(str(latest_checkpoint(tmp_path / "a" / "run") / "policy")).model
    b = QwenVLPolicy.from_pretrained(str(latest_checkpoint(tmp_path / "b" / "run") / "policy")).model
    base = params(QwenVLPolicy.from_pretrained(tiny_model_dir).model)
    pa, pb = params(a), params(b)
    assert any(not torch.equal(pa[k], base[k]) for k in pa), "training did not move the parameters"
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], rtol=0, atol=0, msg=k)


def test_tensorboard_logs_are_written(tiny_model_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = train(
        _config(tiny_model_dir, tmp_path, total_steps=2, eval_every=2, eval_samples=4), progress=False
    )
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {
        "reward/mean",
        "reward/std",
        "reward/frac_reward_zero_std" if False else "train/frac_reward_zero_std",
        "train/kl",
        "train/entropy",
        "completions/mean_length",
        "perf/samples_per_s",
        "train/learning_rate",
        "train/clip_fraction",
    } <= scalars
    assert any(tag.startswith("reward/") and tag not in ("reward/mean", "reward/std") for tag in scalars)
    assert "samples/best_answer" in events.Tags()["images"]
    assert {
        "eval/success",
        "eval/accuracy",
        "eval/mae",
    } <= scalars  # the paper's counting metrics, periodically
    assert json.loads((run_dir / "config.json").read_text())["group_size"] == 4


def test_a_new_run_in_an_old_run_folder_shows_only_its_own_steps(tiny_model_dir, tmp_path):
    """Running again into the same folder (the demo's runs/demo) starts TensorBoard's record over: the
    steps read back are 1, 2 once, not 1, 2, 1, 2 out of order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from agents.checkpoints import CheckpointWarning

    config = _config(tiny_model_dir, tmp_path, total_steps=2, log_samples_every=0)
    run_dir = train(config, progress=False, env=_env())
    with pytest.warns(CheckpointWarning, match="already holds checkpoints"):
        assert train(config, progress=False, env=_env()) == run_dir
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    assert [event.step for event in events.Scalars("reward/mean")] == [1, 2]


def _scalars(run_dir, tag: str) -> list[tuple[int, float]]:
    """``(step, value)`` of each ``tag`` event, read as TensorBoard reads them (purged events dropped)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0}).Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def test_a_resumed_run_keeps_every_step_in_tensorboard(tiny_model_dir, tmp_path):
    """Train 4 steps, resume to 6: each of steps 1..6 once (before, step 4, logged just before its checkpoint,
    was purged by the resumed writer: [1, 2, 3, 5, 6])."""
    args = train_args(tiny_model_dir, tmp_path, "run", "--log-every", "1", "--save-every", "2")
    main([*args, "--total-steps", "4"])
    main(["train", "--resume", str(tmp_path / "run"), "--total-steps", "6"])
    assert [step for step, _ in _scalars(tmp_path / "run", "reward/mean")] == [1, 2, 3, 4, 5, 6]


def test_a_run_killed_after_its_checkpoint_shows_the_resumed_steps_once(tiny_model_dir, tmp_path):
    """Killed after logging step 5 with its last checkpoint at step 4: step 5 is logged again on resume, and
    TensorBoard shows the resumed run's step 5 only (the killed run's is purged), steps 1..4 as they were."""
    config = _config(tiny_model_dir, tmp_path, total_steps=6, log_samples_every=0)
    run_dir = train(config, progress=False, env=_env(), stop_at=5)  # checkpoints 2 and 4; steps 1..5 logged
    killed = _scalars(run_dir, "perf/time_update")  # a timing: it differs between two runs of a step
    assert [step for step, _ in killed] == [1, 2, 3, 4, 5]
    assert latest_checkpoint(run_dir).name == "step-000004"
    train(config, resume=str(run_dir), progress=False, env=_env(), history=(resumed := []))
    shown = _scalars(run_dir, "perf/time_update")
    assert [step for step, _ in shown] == [1, 2, 3, 4, 5, 6]
    assert shown[:4] == killed[:4]
    assert [value for _, value in shown[4:]] == pytest.approx(
        [row["perf/time_update"] for row in resumed], abs=1e-6
    )


def test_periodic_evaluation_shows_its_progress(tiny_model_dir, tmp_path, monkeypatch):
    """A bar per evaluation (``--eval-every``), counted to the samples it answers."""
    import contextlib

    shown = []

    @contextlib.contextmanager
    def recording_bar(total, description, enabled=True, leave=True):
        calls = []
        shown.append((description, total, enabled, calls))
        yield lambda done, n: calls.append((done, n))

    monkeypatch.setattr("agents.trainer.progress_bar", recording_bar)
    config = _config(
        tiny_model_dir, tmp_path, total_steps=2, eval_every=1, eval_samples=4, log_samples_every=0
    )
    train(config, progress=True, env=_env(), history=(rows := []))
    assert [(d, total, enabled, calls[-1]) for d, total, enabled, calls in shown] == [
        ("eval at step 1", 4, True, (4, 4)),
        ("eval at step 2", 4, True, (4, 4)),
    ]
    assert all("eval/success" in row for row in rows)


def test_cli_train_and_resume_flags(tiny_model_dir, tmp_path, capsys):
    main(train_args(tiny_model_dir, tmp_path, "cli", "--total-steps", "1", "--scale-rewards", "none"))
    assert (tmp_path / "cli" / "checkpoints" / "step-000001" / "policy").is_dir()
    # flags given with --resume (here the run's own values) override the run's options
    main(
        [
            "train", "--resume", str(tmp_path / "cli"),
            "--total-steps", "2", *train_args(tiny_model_dir, tmp_path, "cli")[3:],
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "resumed from" in out and (tmp_path / "cli" / "checkpoints" / "step-000002").is_dir()


def test_cli_config_file_and_unknown_option(tmp_path):
    from agents.config import TrainConfig

    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 0.5\ngroup_size: 3\n")
    config = GRPOConfig.from_file(path)
    assert config.learning_rate == 0.5 and config.group_size == 3 and config.beta == 0.04
    path.write_text("learning_rat: 0.5\n")
    with pytest.raises(ValueError, match="learning_rat"):
        TrainConfig.from_file(path)


def test_make_env_scoring_of_groups_matches_the_env(tiny_model_dir):
    from agents.trainer import score_group

    env = gym.make("PerceptionR1/Counting-v0", **ENV_KWARGS)
    env.reset(options={"index": 4})
    truth = env.unwrapped.oracle_answer()
    group = score_group(env, 4, [truth, "no idea", truth])
    assert group.rewards == [1.0, 0.0, 1.0] and group.index == 4


def test_a_wrapped_env_scores_each_answer_as_an_episode_of_its_own():
    """Through a wrapper (reward shaping, statistics) each of the G answers is reset-then-step: before, the
    trainer stepped G times after one reset and RecordEpisodeStatistics reported r = 1, 2, 3 and l = 1, 2, 3."""
    from gymnasium.wrappers import RecordEpisodeStatistics

    from agents.trainer import score_group

    env = RecordEpisodeStatistics(gym.make("PerceptionR1/Counting-v0", **ENV_KWARGS))
    env.reset(options={"index": 4})
    truth = env.unwrapped.oracle_answer()
    group = score_group(env, 4, [truth, "no idea", truth])
    assert group.rewards == [1.0, 0.0, 1.0]
    assert [(info["episode"]["r"], info["episode"]["l"]) for info in group.infos] == [(1, 1), (0, 1), (1, 1)]
    assert [info["index"] for info in group.infos] == [4, 4, 4] and env.unwrapped.sample.sample_id == (
        env.unwrapped.dataset[4].sample_id
    )


def test_cli_rloo_with_lora_trains_and_resumes(tiny_model_dir, tmp_path, capsys):
    common = [
        "--agent",
        "rloo",
        "--env",
        "PerceptionR1/Counting-v0",
        "--env-kwargs",
        json.dumps(ENV_KWARGS),
        "--model",
        tiny_model_dir,
        "--output-dir",
        str(tmp_path),
        "--run-name",
        "lora",
        "--prompts-per-step",
        "1",
        "--group-size",
        "2",
        "--max-new-tokens",
        "2",
        "--lora-r",
        "4",
        "--activation-checkpointing",
        "all",
    ]
    main(["train", *common, "--total-steps", "1"])
    policy_dir = tmp_path / "lora" / "checkpoints" / "step-000001" / "policy"
    assert (policy_dir / "adapter_config.json").is_file()  # adapters only, not the whole model
    main(["train", *common, "--total-steps", "2", "--resume", str(tmp_path / "lora")])
    assert "resumed from" in capsys.readouterr().out
    assert (tmp_path / "lora" / "checkpoints" / "step-000002" / "policy" / "adapter_config.json").is_file()
    config = json.loads((tmp_path / "lora" / "config.json").read_text())
    assert config["lora_r"] == 4 and "normalize_advantages" in config
    assert config["activation_checkpointing"] == "all"


def test_the_trainers_evaluation_is_perception_r1_evals_to_the_last_digit():
    """One evaluation path: from the same answers the trainer's evaluation and ``perception-r1 eval`` give
    the same metrics, from the full-precision parse (the step infos' boxes are rounded to 0.01 px)."""
    from types import SimpleNamespace

    from agents.distributed import Parallel
    from agents.trainer import evaluate
    from perception_env.evaluation import run_evaluation

    answer = '[{"bbox_2d": [10.3333, 12.6667, 97.1234, 88.4321], "label": "thing"}]'  # overlaps every target
    agent = SimpleNamespace(
        parallel=Parallel.single(),
        policy=SimpleNamespace(model=torch.nn.Linear(1, 1)),
        act_greedy=lambda observations, max_new_tokens=None: [answer] * len(observations),
    )
    env = gym.make("PerceptionR1/Grounding-v0", answer_format="qwen2.5-vl", split="test", difficulty="easy")
    trainer = evaluate(agent, env, 8, batch_size=3)
    runner = run_evaluation(env, lambda env, indices, observations: [answer] * len(indices), limit=8)
    assert 0 < trainer["metrics"]["mean_iou"] < 1
    assert trainer["metrics"] == runner.metrics
    assert trainer["infos"] == runner.infos and [i["index"] for i in trainer["infos"]] == list(range(8))


def test_each_observation_is_reset_once_per_step(tiny_model_dir, tmp_path):
    """A step of B prompts resets the env B times, to the step's indices (before: 2B, collect then
    score_group), and its rewards are those of scoring with a reset of its own."""
    from agents.trainer import score_group

    config = _config(tiny_model_dir, tmp_path, total_steps=2, log_samples_every=0)
    env = gym.make(config.env_id, **ENV_KWARGS)
    resets = []
    reset = env.unwrapped.reset

    def counted_reset(*, seed=None, options=None):
        resets.append(options["index"])
        return reset(seed=seed, options=options)

    env.unwrapped.reset = counted_reset
    trainer = Trainer(
        GRPOAgent(QwenVLPolicy.from_pretrained(tiny_model_dir), config), config, tmp_path, env=env
    )
    for step in range(2):
        resets.clear()
        batch = trainer.collect(step)
        assert (
            resets == trainer.order.indices(step, config.prompts_per_step) == [g.index for g in batch.groups]
        )
        fresh = gym.make(config.env_id, **ENV_KWARGS)
        for group in batch.groups:
            again = score_group(fresh, group.index, group.answers)
            assert group.rewards == again.rewards and group.infos == again.infos
            assert group.observation["prompt"] == again.observation["prompt"]
            assert np.array_equal(group.observation["image"], again.observation["image"])


def test_the_sample_renderer_is_built_once(tiny_model_dir, tmp_path, monkeypatch):
    """Sample images every step for 3 steps: one env built to draw them (before: one per logged step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = _config(tiny_model_dir, tmp_path, total_steps=3, log_samples_every=1, save_every=3)
    env = _env()
    trainer = Trainer(
        GRPOAgent(QwenVLPolicy.from_pretrained(tiny_model_dir), config), config, tmp_path, env=env
    )
    made = []
    make = gym.make
    monkeypatch.setattr(gym, "make", lambda *a, **kw: (made.append(kw.get("render_mode")), make(*a, **kw))[1])
    trainer.train()
    assert made == ["rgb_array"]
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0}).Reload()
    assert [event.step for event in events.Images("samples/best_answer")] == [1, 2, 3]
    assert "samples/render_error" not in events.Tags()["tensors"]
