"""Rollout engines (agents/engines/): the fast decoder draws today's tokens; the interface, with fake engines.

The fast engine's contract: for the same seeds, the same tokens as ``QwenVLPolicy.generate`` (float32 on CPU),
greedy identical, no work after every answer has stopped, and its sampling log-probs are the trainer's. What
``auto`` picks, on CPU and on CUDA. The vLLM adapter: tests/agents/test_vllm_engine.py; the engines on a GPU:
tests/agents/test_engines_cuda.py (scripts/gpu-check.sh).
"""

from __future__ import annotations

import types

import pytest
import torch

from agents.config import SetupError
from agents.engines import make_engine
from agents.engines.fast import FastEngine
from agents.engines.transformers_engine import TransformersEngine
from agents.policies.sampling import derive_seed
from agents.rollout import Rollout, Sampling

SEEDS = [11, 12]
SAMPLINGS = {
    "plain": Sampling(max_new_tokens=12),
    "warped": Sampling(max_new_tokens=12, temperature=0.7, top_k=5, top_p=0.9),
    "greedy": Sampling(max_new_tokens=12, do_sample=False),
}


def _same_answers(a: Rollout, b: Rollout) -> None:
    assert torch.equal(a.completion_ids, b.completion_ids)
    assert torch.equal(a.completion_mask, b.completion_mask)
    assert a.texts == b.texts
    assert torch.equal(a.obs_index, b.obs_index)


@pytest.mark.parametrize("static_shapes", [False, True], ids=["filled-slots", "static-shapes"])
@pytest.mark.parametrize("setting", list(SAMPLINGS))
def test_fast_engine_draws_the_tokens_of_the_transformers_path(policy, observations, setting, static_shapes):
    sampling = SAMPLINGS[setting]
    today = TransformersEngine(policy).generate(observations, 3, sampling, observation_seeds=SEEDS)
    fast = FastEngine(policy, static_shapes=static_shapes).generate(
        observations, 3, sampling, observation_seeds=SEEDS
    )
    _same_answers(fast, today)
    assert fast.num_samples == 3 and fast.num_completions == 6


def test_fast_engine_with_eager_attention_draws_the_same_tokens(tiny_model_dir, observations):
    from agents.policies.qwen_vl import QwenVLPolicy

    eager = QwenVLPolicy.from_pretrained(tiny_model_dir, dtype="float32", attn_implementation="eager")
    sampling = SAMPLINGS["warped"]
    today = TransformersEngine(eager).generate(observations, 2, sampling, observation_seeds=SEEDS)
    for static_shapes in (False, True):
        fast = FastEngine(eager, static_shapes=static_shapes)
        _same_answers(fast.generate(observations, 2, sampling, observation_seeds=SEEDS), today)


def test_cuda_graphs_asked_for_off_cuda_decode_eagerly(policy, observations):
    engine = FastEngine(policy, cuda_graphs=True)
    assert not engine.uses_cuda_graphs() and "eager" in engine.describe()
    sampling = SAMPLINGS["plain"]
    today = TransformersEngine(policy).generate(observations, 2, sampling, observation_seeds=SEEDS)
    _same_answers(engine.generate(observations, 2, sampling, observation_seeds=SEEDS), today)


@pytest.mark.parametrize("setting", list(SAMPLINGS))
def test_fast_engines_sampling_logprobs_are_the_trainers_on_policy(policy, observations, setting):
    """The log-probs the fast engine computed while sampling equal ``completion_logprobs`` at the sampling
    temperature (greedy: 1) under the same weights: what an importance-sampling correction compares."""
    sampling = SAMPLINGS[setting]
    rollout = FastEngine(policy).generate(observations, 3, sampling, observation_seeds=SEEDS)
    temperature = 1.0 if sampling.greedy else sampling.temperature
    with torch.no_grad():
        trainer = policy.completion_logprobs(rollout, temperature=temperature)
    sampled = rollout.sampling_logprobs
    assert sampled is not None and sampled.shape == rollout.completion_mask.shape
    assert torch.allclose(sampled, trainer, atol=1e-5, rtol=0), (sampled - trainer).abs().max()
    assert (sampled[rollout.completion_mask.bool()] < 0).all() and (
        sampled[~rollout.completion_mask.bool()] == 0
    ).all()
    # a micro-batch keeps its rows' log-probs
    assert torch.equal(rollout.select([4, 1]).sampling_logprobs, sampled[[4, 1]])


@pytest.mark.parametrize("prefill_once", [True, False], ids=["prefill-once", "generate-repeats"])
@pytest.mark.parametrize("setting", list(SAMPLINGS))
def test_transformers_engines_sampling_logprobs_are_the_trainers_on_policy(
    policy, observations, setting, prefill_once, monkeypatch
):
    """As the fast engine's: the log-probs read off generate's decode steps equal ``completion_logprobs`` at the
    sampling temperature (greedy: 1) under the same weights, on both of QwenVLPolicy.generate's paths; the
    tokens are those generate draws without them; the model is left as it was."""
    sampling = SAMPLINGS[setting]
    monkeypatch.setattr(policy, "prefill_once", prefill_once)
    engine = TransformersEngine(policy)
    rollout = engine.generate(observations, 3, sampling, observation_seeds=SEEDS)
    assert "generate" not in vars(policy.model)  # the recording wrapper is gone
    _same_answers(rollout, policy.generate(observations, num_samples=3, observation_seeds=SEEDS,
                                           **sampling.generate_kwargs()))  # fmt: skip
    temperature = 1.0 if sampling.greedy else sampling.temperature
    with torch.no_grad():
        trainer = policy.completion_logprobs(rollout, temperature=temperature)
    sampled, mask = rollout.sampling_logprobs, rollout.completion_mask.bool()
    assert sampled is not None and sampled.shape == mask.shape
    assert torch.allclose(sampled, trainer, atol=1e-5, rtol=0), (sampled - trainer).abs().max()
    assert (sampled[mask] < 0).all() and (sampled[~mask] == 0).all()
    print(f"\nTRANSFORMERS ENGINE {setting} prefill_once={prefill_once}: max |sampling - trainer| "
          f"{float((sampled - trainer).abs().max()):.3g}")  # fmt: skip


def test_a_policy_without_a_model_generate_gives_no_logprobs(observations):
    """A Policy whose sampling does not go through ``model.generate``: nothing recorded, None, not a guess."""
    rollout = Rollout(
        prompt_ids=torch.zeros(1, 1, dtype=torch.long), prompt_mask=torch.ones(1, 1, dtype=torch.long),
        prompt_mm_token_type_ids=torch.zeros(1, 1, dtype=torch.long), pixel_values=torch.zeros(1, 1),
        image_grid_thw=torch.ones(1, 3, dtype=torch.long), completion_ids=torch.ones(1, 2, dtype=torch.long),
        completion_mask=torch.ones(1, 2, dtype=torch.long), obs_index=torch.zeros(1, dtype=torch.long),
        texts=["ab"], num_samples=1,
    )  # fmt: skip
    policy = types.SimpleNamespace(model=torch.nn.Linear(1, 1), generate=lambda *a, **k: rollout)
    assert (
        TransformersEngine(policy).generate(observations[:1], 1, SAMPLINGS["plain"]).sampling_logprobs is None
    )


def test_an_answer_does_not_depend_on_its_batch_mates(policy, observations):
    engine = FastEngine(policy)
    together = engine.generate(observations, 2, SAMPLINGS["plain"], observation_seeds=SEEDS)
    alone = engine.generate(observations[1:], 2, SAMPLINGS["plain"], observation_seeds=SEEDS[1:])
    assert together.texts[2:] == alone.texts


def test_reused_static_buffers_leave_nothing_of_the_previous_call(policy, observations):
    """The static-shape buffers (and, on CUDA, their graph) serve the next call of the same shapes."""
    sampling = SAMPLINGS["plain"]
    reused = FastEngine(policy, static_shapes=True)
    reused.generate(observations[::-1], 2, sampling, observation_seeds=[5, 6])  # other prompts, other seeds
    buffers = reused._buffers
    second = reused.generate(observations, 2, sampling, observation_seeds=SEEDS)
    assert reused._buffers is buffers  # the point of static shapes: nothing reallocated
    fresh = FastEngine(policy, static_shapes=True).generate(
        observations, 2, sampling, observation_seeds=SEEDS
    )
    _same_answers(second, fresh)


def test_decoding_stops_when_every_answer_has_stopped(policy, observations, monkeypatch):
    greedy = SAMPLINGS["greedy"]
    first = TransformersEngine(policy).generate(observations, 1, Sampling(max_new_tokens=1, do_sample=False))
    # every answer's first greedy token now ends it: one decode step must do
    monkeypatch.setattr(policy, "stop_token_ids", sorted(set(first.completion_ids[:, 0].tolist())))
    engine = FastEngine(policy)
    steps = []
    forward = engine._forward
    monkeypatch.setattr(engine, "_forward", lambda buffers: steps.append(1) or forward(buffers))
    rollout = engine.generate(observations, 2, greedy)
    assert len(steps) == 1
    assert rollout.completion_mask.sum(1).tolist() == [1, 1, 1, 1]
    _same_answers(rollout, TransformersEngine(policy).generate(observations, 2, greedy))


def test_fast_engine_samples_the_weights_the_model_has_now(policy, observations):
    engine = FastEngine(policy, static_shapes=True)
    sampling = SAMPLINGS["plain"]
    before = engine.generate(observations, 2, sampling, observation_seeds=SEEDS)
    saved = {k: v.clone() for k, v in policy.model.state_dict().items()}
    try:
        with torch.no_grad():  # an optimiser step, in place: the engine shares the tensors
            policy.model.lm_head.weight.mul_(-3.0)
        engine.load_weights(policy.model.state_dict())  # a no-op for an engine that shares the weights
        after = engine.generate(observations, 2, sampling, observation_seeds=SEEDS)
        today = TransformersEngine(policy).generate(observations, 2, sampling, observation_seeds=SEEDS)
    finally:
        policy.model.load_state_dict(saved)
    _same_answers(after, today)
    assert after.texts != before.texts


def test_fast_engine_leaves_the_models_mode_and_the_global_random_state(policy, observations):
    policy.model.train()
    state = torch.random.get_rng_state()
    try:
        FastEngine(policy).generate(observations, 2, SAMPLINGS["plain"], observation_seeds=SEEDS)
        assert policy.model.training
        assert torch.equal(torch.random.get_rng_state(), state)
    finally:
        policy.model.eval()


# ------------------------------------------------------------------------------------------ choosing one


class _NotQwen:
    """A policy without the hooks the fast engine decodes through."""

    model = torch.nn.Linear(1, 1)


def test_make_engine_names_what_it_made_and_refuses_what_it_cannot(policy):
    assert make_engine("auto", policy).name == "fast"
    assert make_engine("transformers", policy).name == "transformers"
    assert make_engine("auto", _NotQwen()).name == "transformers"  # auto falls back
    with pytest.raises(SetupError, match="--rollout-engine fast: .*_NotQwen has no encode_prompts"):
        make_engine("fast", _NotQwen())
    with pytest.raises(SetupError, match="--rollout-engine must be one of auto, fast, transformers, vllm"):
        make_engine("vLLM", policy)


def test_auto_picks_on_cuda_only_what_has_passed_on_a_gpu(policy, monkeypatch):
    from agents import engines
    from agents.policies.qwen_vl import QwenVLPolicy

    assert engines.auto_engine(policy) == ("fast", "fast decodes this model")  # CPU: as before
    monkeypatch.setattr(QwenVLPolicy, "device", property(lambda self: torch.device("cuda", 0)))
    name, why = engines.auto_engine(policy)
    assert name == "transformers" and "fast not yet verified on a GPU (scripts/gpu-check.sh)" in why
    assert "fast" not in engines.VERIFIED_ON_CUDA  # until the GPU check's parity passes and says so here
    monkeypatch.setitem(engines.VERIFIED_ON_CUDA, "fast", "the GPU check passed")
    assert engines.auto_engine(policy) == ("fast", "verified on CUDA: the GPU check passed")


def test_fast_engine_refuses_an_attention_it_does_not_drive(policy, monkeypatch):
    monkeypatch.setattr(policy.model.config.get_text_config(), "_attn_implementation", "flash_attention_2")
    with pytest.raises(SetupError, match="sdpa or eager attention.*'flash_attention_2'"):
        FastEngine(policy)
    assert make_engine("auto", policy).name == "transformers"


@pytest.mark.parametrize(
    "settings, problem",
    [
        ({"temperature": float("nan")}, "temperature must be a finite number >= 0"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"top_k": -1}, "top_k must be >= 0"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
    ],
)
def test_sampling_settings_out_of_range_are_named(settings, problem):
    with pytest.raises(ValueError, match=problem):
        Sampling(**settings)


def test_rollout_engine_option_takes_only_known_engines(tiny_model_dir, tmp_path):
    from tests.agents.support import make_config

    assert make_config("grpo", tiny_model_dir, tmp_path).rollout_engine == "auto"
    with pytest.raises(ValueError, match="rollout_engine"):
        make_config("grpo", tiny_model_dir, tmp_path, rollout_engine="sglang")


# ------------------------------------------------------------------------------ the agent and its engine


class RecordingEngine:
    """A fake engine with its own weights: records what the agent asks and sends; samples with the policy."""

    name = "recording"
    shares_weights = False

    def __init__(self, policy):
        self.policy = policy
        self.calls: list[dict] = []
        self.loaded: list[dict[str, torch.Tensor]] = []

    def generate(self, observations, num_samples, sampling, observation_seeds=None):
        self.calls.append({"num_samples": num_samples, "sampling": sampling, "seeds": observation_seeds})
        return TransformersEngine(self.policy).generate(
            observations, num_samples, sampling, observation_seeds
        )

    def load_weights(self, state_dict):
        self.loaded.append({k: v.detach().clone() for k, v in state_dict.items()})


def test_the_agent_samples_through_its_engine_and_sends_it_each_update(tiny_model_dir, tmp_path):
    from tests.agents.support import make_trainer

    trainer = make_trainer("grpo", tiny_model_dir, tmp_path, total_steps=1, rollout_engine="transformers")
    agent = trainer.agent
    engine = agent.engine = RecordingEngine(agent.policy)
    batch = trainer.collect(0)
    c = agent.config
    (call,) = engine.calls
    assert call["num_samples"] == c.group_size == batch.rollout.num_samples
    assert call["seeds"] == [derive_seed(c.seed, 0, 1, p) for p in range(c.prompts_per_step)]
    assert call["sampling"] == Sampling(
        temperature=c.temperature, top_p=c.top_p, top_k=c.top_k, max_new_tokens=c.max_new_tokens
    )
    assert engine.loaded == []
    agent.update(batch)
    (sent,) = engine.loaded  # once per update, after the optimiser step: the new weights
    assert sent.keys() == agent.policy.model.state_dict().keys()
    assert all(torch.equal(sent[k], v) for k, v in agent.policy.model.state_dict().items())
    answers = agent.act_greedy([batch.groups[0].observation], max_new_tokens=2)
    assert len(answers) == 1 and engine.calls[-1]["sampling"] == Sampling(max_new_tokens=2, do_sample=False)


def test_an_engine_with_its_own_weights_is_refused_under_fsdp(tiny_model_dir, tmp_path):
    from tests.agents.support import make_trainer

    agent = make_trainer("grpo", tiny_model_dir, tmp_path, rollout_engine="transformers").agent
    agent.engine = RecordingEngine(agent.policy)
    with pytest.raises(SetupError, match="--rollout-engine recording keeps its own copy.*--parallel fsdp"):
        agent.distribute(types.SimpleNamespace(shards_parameters=True))


def test_buffers_made_under_inference_mode_are_not_reused_outside_it(policy, observations):
    """torch refuses in-place writes to inference tensors outside inference mode: new buffers then."""
    engine = FastEngine(policy, static_shapes=True)
    with torch.inference_mode():
        inside = engine.generate(observations, 2, SAMPLINGS["plain"], observation_seeds=SEEDS)
    outside = engine.generate(observations, 2, SAMPLINGS["plain"], observation_seeds=SEEDS)
    _same_answers(outside, inside)
