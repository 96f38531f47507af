"""LoRA on the tiny Qwen2-VL: only adapters train, the reference is the base model, save/load is exact."""

import pytest
import torch

from agents.grpo.agent import GRPOAgent
from agents.lora import apply_lora, is_lora, load_lora_policy, lora_reference, merge_lora
from agents.policies.qwen_vl import QwenVLPolicy
from tests.agents.support import make_trainer, params


def _trained_lora_trainer(tiny_model_dir, tmp_path, **lora):
    policy = apply_lora(QwenVLPolicy.from_pretrained(tiny_model_dir), r=4, alpha=8, **lora)
    trainer = make_trainer("grpo", tiny_model_dir, tmp_path, policy=policy)
    # the KL reference: the same network with adapters off, not a deep copy
    trainer.agent = GRPOAgent(policy, trainer.config, reference_model=lora_reference(policy))
    return trainer


def test_adapters_only_on_the_language_model_and_start_as_identity(tiny_model_dir, tmp_path):
    policy = QwenVLPolicy.from_pretrained(tiny_model_dir)
    trainer = make_trainer("grpo", tiny_model_dir, tmp_path, policy=policy)
    rollout = trainer.collect(0).rollout
    before = policy.completion_logprobs(rollout).detach()
    apply_lora(policy)
    assert is_lora(policy.model)
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    torch.testing.assert_close(policy.completion_logprobs(rollout).detach(), before)  # B = 0 at the start
    with pytest.raises(ValueError, match="already"):
        apply_lora(policy)
    with pytest.raises(ValueError, match="no module"):
        apply_lora(QwenVLPolicy.from_pretrained(tiny_model_dir), target_modules=["qkv"])


def test_unfrozen_vision_tower_trains_in_full(tiny_model_dir):
    policy = apply_lora(QwenVLPolicy.from_pretrained(tiny_model_dir), freeze_vision=False)
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert any(".visual." in n and "lora_" not in n for n in trainable)


def test_grpo_step_changes_only_adapter_parameters(tiny_model_dir, tmp_path):
    trainer = _trained_lora_trainer(tiny_model_dir, tmp_path)
    model = trainer.agent.policy.model
    # the reference shares the policy's base weight tensors: no second copy of the model
    storage = {p.data_ptr() for p in model.parameters()}
    assert not is_lora(trainer.agent.reference)
    assert all(p.data_ptr() in storage for p in trainer.agent.reference.parameters())
    before = params(model)
    batch = trainer.collect(0)
    metrics = trainer.agent.update(batch)
    after = params(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("lora_" in k for k in changed), sorted(changed)[:5]
    assert metrics["kl"] == 0.0  # the reference equals the policy before this first update
    # after the update the adapters make the policy differ from its reference, which stayed the base model
    ref = trainer.agent.policy.completion_logprobs(batch.rollout, model=trainer.agent.reference)
    base = QwenVLPolicy.from_pretrained(tiny_model_dir)
    torch.testing.assert_close(ref, base.completion_logprobs(batch.rollout).detach())
    assert not torch.allclose(ref, trainer.agent.policy.completion_logprobs(batch.rollout).detach())


def test_save_and_load_round_trip_gives_identical_logprobs(tiny_model_dir, tmp_path):
    trainer = _trained_lora_trainer(tiny_model_dir, tmp_path)
    trainer.train(stop_at=1)
    checkpoint = trainer.save_checkpoint()  # the Trainer's own checkpoint: adapters + processor
    assert (checkpoint / "policy" / "adapter_config.json").is_file()
    assert not (checkpoint / "policy" / "model.safetensors").exists()
    rollout = trainer.collect(1).rollout
    policy = trainer.agent.policy
    expected = policy.completion_logprobs(rollout).detach()
    loaded = load_lora_policy(checkpoint / "policy")
    assert torch.equal(loaded.completion_logprobs(rollout).detach(), expected)
    assert any(p.requires_grad for p in loaded.model.parameters())  # resumable
    frozen = load_lora_policy(checkpoint / "policy", tiny_model_dir, is_trainable=False)
    assert not any(p.requires_grad for p in frozen.model.parameters())
    merged = merge_lora(loaded)
    assert not is_lora(merged.model)
    torch.testing.assert_close(merged.completion_logprobs(rollout).detach(), expected, rtol=1e-5, atol=1e-5)


def test_lora_checkpoint_resumes_with_the_same_optimizer_state(tiny_model_dir, tmp_path):
    trainer = _trained_lora_trainer(tiny_model_dir, tmp_path)
    trainer.train(stop_at=1)
    checkpoint = trainer.save_checkpoint()
    policy = load_lora_policy(checkpoint / "policy")  # trainable adapters, as a resumed run needs
    fresh = make_trainer("grpo", tiny_model_dir, tmp_path, policy=policy)
    fresh.agent = GRPOAgent(policy, fresh.config, reference_model=lora_reference(policy))
    fresh.load_state(checkpoint)
    saved, loaded = trainer.agent.optimizer.state_dict(), fresh.agent.optimizer.state_dict()
    assert saved["state"].keys() == loaded["state"].keys() and saved["state"]
    for key, state in saved["state"].items():
        assert all(torch.equal(v, loaded["state"][key][f]) for f, v in state.items())


def test_a_peft_older_than_transformers_needs_names_both_versions(tiny_model_dir, monkeypatch):
    # what a fresh install met when transformers 5.24 (needs peft >= 0.22) came out before peft 0.22 did
    import transformers.integrations.peft as hf_peft

    monkeypatch.setattr(hf_peft, "MIN_PEFT_VERSION", "99.0.0")
    with pytest.raises(ImportError, match=r"needs peft >= 99\.0\.0.*peft \d+\.\d+.* is installed"):
        apply_lora(QwenVLPolicy.from_pretrained(tiny_model_dir))


def test_other_adapter_errors_are_not_disguised_as_a_target_mismatch(tiny_model_dir, monkeypatch):
    policy = QwenVLPolicy.from_pretrained(tiny_model_dir)

    def refuse(config):
        raise ValueError("some other cause")

    monkeypatch.setattr(policy.model, "add_adapter", refuse)
    with pytest.raises(ValueError, match="^some other cause$"):
        apply_lora(policy)


def test_one_seed_gives_bit_identical_lora_runs_and_another_seed_other_adapters(tiny_model_dir, tmp_path):
    """``train --seed 0 --lora-r 4`` twice: the same adapters after a step, whatever torch's global generator
    held before (before: it was never seeded and the adapters differed by up to 0.24); ``--seed 1``: others."""
    from safetensors.torch import load_file

    from agents.cli import main
    from tests.agents.support import train_args

    def adapters(name: str, seed: int, disturb: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(disturb)  # what ran before in the process must not matter
        main(
            [
                *train_args(tiny_model_dir, tmp_path, name, "--lora-r", "4", "--total-steps", "1"),
                "--seed",
                str(seed),
            ]
        )
        return load_file(
            tmp_path / name / "checkpoints" / "step-000001" / "policy" / "adapter_model.safetensors"
        )

    first, again, other = (
        adapters("a", 0, disturb=1),
        adapters("b", 0, disturb=2),
        adapters("c", 1, disturb=1),
    )
    assert first.keys() == again.keys() == other.keys() and any(".lora_A." in k for k in first)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert all(not torch.equal(first[k], other[k]) for k in first if ".lora_A." in k)  # A: drawn at random
