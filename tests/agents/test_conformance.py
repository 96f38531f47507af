"""Every registered agent honours the Agent contract on the tiny model (one suite, parametrised).

Collect -> update moves the parameters with finite metrics; a checkpoint restores the
optimiser exactly; the same seed gives the same parameters.
"""

import dataclasses

import numpy as np
import pytest
import torch

import perception_env  # noqa: F401
from agents.base import Agent
from agents.config import TrainConfig
from agents.policies.qwen_vl import QwenVLPolicy
from agents.registry import AGENTS
from tests.agents.support import make_trainer, params


@pytest.fixture(params=sorted(AGENTS))
def name(request):
    return request.param


def test_the_registry_key_is_the_agents_one_name(name):
    from agents.registry import agent_label, agent_spec, resolve_agent

    agent_cls = AGENTS[name]
    assert issubclass(agent_cls, Agent) and issubclass(agent_cls.config_class, TrainConfig)
    assert resolve_agent(name) is agent_cls and agent_spec(agent_cls) == name == agent_label(name)
    # one source: the class declares its name, the registry is built from the classes, the options hold none
    assert vars(agent_cls)["name"] == name and not hasattr(agent_cls.config_class(), "agent_name")


def test_a_subclass_of_a_registered_agent_is_another_algorithm(name):
    """It inherits the maths, not the name: its checkpoints must not resume as the registered agent."""
    from agents.registry import agent_spec

    subclass = type("Mine", (AGENTS[name],), {"__module__": "my_package.agents"})
    assert agent_spec(subclass) == "my_package.agents:Mine"


def test_an_agent_built_directly_is_named_by_the_registry(name, tiny_model_dir, tmp_path):
    trainer = make_trainer(name, tiny_model_dir, tmp_path)
    assert trainer.agent.spec == name  # what its checkpoints record for --resume
    trainer.agent.spec = "my_package.agents:Mine"  # as make_agent records a module:Class spec
    assert trainer.agent.spec == "my_package.agents:Mine"


def test_update_changes_parameters_with_finite_metrics(name, tiny_model_dir, tmp_path):
    trainer = make_trainer(name, tiny_model_dir, tmp_path)
    before = params(trainer.agent.policy.model)
    batch = trainer.collect(0)
    assert batch.rewards.shape == (2, 3) and (batch.rewards.std(dim=1) > 0).all()
    metrics = trainer.agent.update(batch)
    after = params(trainer.agent.policy.model)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert metrics and all(isinstance(v, float) and np.isfinite(v) for v in metrics.values()), metrics
    assert {"loss", "kl", "entropy", "grad_norm", "learning_rate", "frac_reward_zero_std"} <= set(metrics)


def test_checkpoint_round_trip_restores_optimizer_and_policy(name, tiny_model_dir, tmp_path):
    trainer = make_trainer(name, tiny_model_dir, tmp_path)
    trainer.train(stop_at=1)
    checkpoint = trainer.save_checkpoint()
    fresh = make_trainer(
        name, tiny_model_dir, tmp_path, policy=QwenVLPolicy.from_pretrained(str(checkpoint / "policy"))
    )
    fresh.load_state(checkpoint)
    assert fresh.step == 1
    saved, loaded = trainer.agent.state_dict(), fresh.agent.state_dict()
    assert saved["scheduler"] == loaded["scheduler"]
    assert saved["optimizer"]["param_groups"] == loaded["optimizer"]["param_groups"]
    assert saved["optimizer"]["state"].keys() == loaded["optimizer"]["state"].keys()
    for key, state in saved["optimizer"]["state"].items():
        for field, value in state.items():
            assert torch.equal(value, loaded["optimizer"]["state"][key][field]), (key, field)
    a, b = params(trainer.agent.policy.model), params(fresh.agent.policy.model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_gives_same_parameters(name, tiny_model_dir, tmp_path):
    runs = []
    for run in ("a", "b"):
        trainer = make_trainer(name, tiny_model_dir, tmp_path / run, seed=7)
        trainer.train()
        runs.append(params(trainer.agent.policy.model))
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k]), k


# ------------------------------------------------------------------------------------- training maths
def spy_on_loss(agent):
    """Record the tensors each call of ``agent.loss`` receives, by the names of the Agent contract."""
    real, calls = agent.loss, []

    def spy(logp, advantages, mask, old_logp, ref_logp):
        given = dict(logp=logp, advantages=advantages, mask=mask, old_logp=old_logp, ref_logp=ref_logp)
        calls.append({k: v.detach().clone() for k, v in given.items() if v is not None})
        return real(logp, advantages, mask, old_logp, ref_logp)

    agent.loss = spy
    return calls


def several_iterations(name) -> dict:
    """Options for more than one update per rollout batch (old log-probs kept), where the agent has them."""
    fields = {f.name for f in dataclasses.fields(AGENTS[name].config_class)}
    return {"num_iterations": 2} if "num_iterations" in fields else {}


def tempered_logprobs(policy, rollout, temperature):
    """log softmax(logits / T)[sampled token]: the logits read off the vocabulary projection itself."""
    logits = []
    hook = policy.model.lm_head.register_forward_hook(lambda module, inputs, out: logits.append(out.detach()))
    with torch.no_grad():
        policy.completion_logprobs(rollout)
    hook.remove()
    n, t = rollout.completion_ids.shape
    logits = torch.cat(logits).float().view(n, t, -1)
    tempered = torch.log_softmax(logits / temperature, dim=-1)  # [N, T, V]
    picked = tempered.gather(-1, rollout.completion_ids[..., None])[..., 0]
    return picked * rollout.completion_mask


def test_log_probs_are_those_of_the_sampling_distribution(name, tiny_model_dir, tmp_path):
    """At temperature 0.7 the trained, old and reference log-probs are log softmax(logits / 0.7), as TRL's."""
    extra = several_iterations(name)
    trainer = make_trainer(name, tiny_model_dir, tmp_path, temperature=0.7, top_p=1.0, top_k=0, **extra)
    batch = trainer.collect(0)
    expected = tempered_logprobs(trainer.agent.policy, batch.rollout, 0.7)  # before any update: policy = ref
    assert not torch.allclose(expected, tempered_logprobs(trainer.agent.policy, batch.rollout, 1.0))
    calls = spy_on_loss(trainer.agent)
    trainer.agent.update(batch)
    first = calls[0]  # the first chunk of the first iteration: nothing stepped yet
    assert {"logp", "old_logp", "ref_logp"} <= set(first)  # a reference (beta 0.04); old: kept or logp's
    for key in ("logp", "old_logp", "ref_logp"):
        torch.testing.assert_close(first[key], expected, rtol=1e-5, atol=1e-5)


def perturbed_copy(model, scale=0.05, seed=0):
    import copy

    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return other.eval().requires_grad_(False)


def metrics_with_micro_batches(name, model, out, size):
    """One update's metrics on the same batch (answers of 1-3 tokens, a reference and, for GRPO, old
    log-probs that differ from the policy's), with the optimiser step replaced by nothing."""
    extra = several_iterations(name)
    trainer = make_trainer(name, model, out, micro_batch_size=size, **extra)
    agent = trainer.agent
    agent.reference = perturbed_copy(agent.policy.model)
    agent.clip_and_step = lambda **kwargs: 0.0  # every iteration and chunking sees the same parameters
    batch = trainer.collect(0)
    mask = batch.rollout.completion_mask
    for i in range(mask.shape[0]):
        mask[i, (1, 3, 2, 3, 3, 1)[i] :] = 0  # chunks of 1 or 3 answers hold unequal shares of the tokens
    if extra:
        offset = 0.4 * torch.randn(mask.shape, generator=torch.Generator().manual_seed(1))
        real = agent._logprobs_no_grad

        def shifted_old(rollout, chunks, reference=False):  # old log-probs off the policy's: ratios != 1
            return real(rollout, chunks, reference) + (0 if reference else offset)

        agent._logprobs_no_grad = shifted_old
    return agent.update(batch)


def test_metrics_do_not_depend_on_the_micro_batch_size(name, tiny_model_dir, tmp_path):
    runs = {
        size: metrics_with_micro_batches(name, tiny_model_dir, tmp_path / f"m{size}", size)
        for size in (0, 1, 3)
    }
    keys = ("loss", "kl", "entropy") + tuple(k for k in ("clip_fraction", "ratio_mean") if k in runs[0])
    assert runs[0]["kl"] > 1e-3
    if several_iterations(name):  # old log-probs off the policy's: some ratios clipped, not all
        assert 0 < runs[0]["clip_fraction"] < 1
    for size in (1, 3):
        for key in keys:
            assert runs[size][key] == pytest.approx(runs[0][key], rel=1e-5, abs=1e-7), (size, key)


def weights_equal(before, after):
    return all(torch.equal(before[k].nan_to_num(), after[k].nan_to_num()) for k in before)


def test_an_infinite_learning_rate_is_refused_before_any_weight_moves(name, tiny_model_dir, tmp_path):
    """The config refuses --learning-rate inf; a rate set in code (or a schedule) reaches the step itself."""
    trainer = make_trainer(name, tiny_model_dir, tmp_path)
    for group in trainer.agent.optimizer.param_groups:
        group["lr"] = float("inf")
    before = params(trainer.agent.policy.model)
    with pytest.raises(FloatingPointError, match=r"step 1 of 2: the learning rate is inf;.*--learning-rate"):
        trainer.agent.update(trainer.collect(0))
    assert weights_equal(before, params(trainer.agent.policy.model))


def test_a_non_finite_loss_is_refused(name, tiny_model_dir, tmp_path):
    trainer = make_trainer(name, tiny_model_dir, tmp_path)
    batch = trainer.collect(1)
    model = trainer.agent.policy.model
    with torch.no_grad():
        model.lm_head.weight[0, 0] = float("nan")  # every log-softmax, hence the loss, is NaN
    before = params(model)
    with pytest.raises(FloatingPointError, match=r"step 2 of 2: the loss is nan; .*Likely cause"):
        trainer.agent.update(batch)
    assert weights_equal(before, params(model)) and not trainer.agent.optimizer.state
    assert trainer.agent.scheduler.last_epoch == 0
    assert all(p.grad is None for p in model.parameters())


def test_a_non_finite_gradient_is_refused(name, tiny_model_dir, tmp_path):
    trainer = make_trainer(name, tiny_model_dir, tmp_path)
    model = trainer.agent.policy.model
    model.lm_head.weight.register_hook(lambda grad: grad * float("inf"))  # finite loss, infinite gradient
    before = params(model)
    with pytest.raises(FloatingPointError, match=r"step 1 of 2: the gradient norm is (inf|nan) \(loss .*\);"):
        trainer.agent.update(trainer.collect(0))
    assert weights_equal(before, params(model)) and not trainer.agent.optimizer.state
