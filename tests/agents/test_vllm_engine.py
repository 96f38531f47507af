"""The vLLM rollout engine (agents/engines/vllm_engine.py) against a fake of vLLM 0.33 (tests/agents/fake_vllm.py).

vLLM is not installed here (it needs a GPU). The fake behaves as vLLM 0.33.0's source does where the adapter can
go wrong: the stop token inside ``token_ids``, an encoder cache that serves stale vision features until it is
reset, a KV cache that must fit in memory, temperature > 2 refused, a rendezvous port that may be taken, sleep
mode. Each test below failed on the adapter before issue 23's fixes (commit message of that change).
"""

from __future__ import annotations

import os
import socket
import sys
import types
from pathlib import Path

import pytest
import torch

from agents.config import SetupError
from agents.engines import make_engine
from agents.policies.sampling import row_seeds
from agents.rollout import Sampling
from tests.agents.fake_vllm import RAW_LOGPROB, FakeLLM, fake_vllm_module

SEEDS = [11, 12]
WARPED = Sampling(max_new_tokens=12, temperature=0.7, top_k=5, top_p=0.9)
PLAIN = Sampling(max_new_tokens=12)  # temperature 1: vLLM's raw log-probs are the trainer's
GREEDY = Sampling(max_new_tokens=12, do_sample=False)
# the training options the agent hands the engine (TrainConfig's names): B = 2, G = 3
CONFIG = types.SimpleNamespace(max_new_tokens=12, temperature=1.0, prompts_per_step=2, group_size=3)


RENDEZVOUS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")  # what the adapter sets
ENVIRONMENT_BEFORE = {name: os.environ.get(name) for name in RENDEZVOUS}


@pytest.fixture
def vllm(monkeypatch, policy):
    """The fake ``vllm`` module, importable; its ``LLM`` a subclass of this test's own (tests set its attributes)."""

    def count_prompt_tokens(request) -> int:
        image = request["multi_modal_data"]["image"]
        return len(policy.processor(text=[request["prompt"]], images=[image])["input_ids"][0])

    module = fake_vllm_module()
    module.LLM = type("LLM", (FakeLLM,), {"count_prompt_tokens": staticmethod(count_prompt_tokens)})
    monkeypatch.setitem(sys.modules, "vllm", module)
    for name in RENDEZVOUS:
        # restored after the test, whatever the adapter sets: delenv alone records nothing for a variable that
        # is absent, so the adapter's MASTER_PORT outlived the test and later subprocesses (the README's TRL
        # snippet, through accelerate) tried to listen on it
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return module


def _words(policy, text: str) -> tuple[int, ...]:
    return tuple(policy.tokenizer.encode(text, add_special_tokens=False))


# ------------------------------------------------------------------------------------ what comes back


def test_answers_keep_vllms_stop_token_once_with_the_samplers_logprobs(policy, observations, vllm):
    """vLLM 0.33 puts the stop token inside ``token_ids`` (and reports its log-prob): nothing is appended."""
    vllm.LLM.answer = words = _words(policy, "3 5")
    engine = make_engine("vllm", policy, config=CONFIG)
    rollout = engine.generate(observations, 2, PLAIN, observation_seeds=SEEDS)
    stop = policy.stop_token_ids[0]
    assert rollout.completion_ids.tolist() == [[*words, stop]] * 4
    assert rollout.completion_mask.sum(1).tolist() == [len(words) + 1] * 4
    assert rollout.texts == ["3 5"] * 4
    # the sampler's log-prob of each answer token (stop token included), as vLLM reported them
    expected = torch.tensor([RAW_LOGPROB(i) for i in range(len(words) + 1)])
    assert rollout.sampling_logprobs is not None
    assert torch.equal(rollout.sampling_logprobs, expected.expand(4, -1))
    assert {p.logprobs for p in engine.llm.params} == {0}  # the sampled token's alone


def test_no_logprobs_where_vllms_differ_from_the_trainers(policy, observations, vllm):
    """vLLM's raw log-probs are those of temperature 1; at another temperature the trainer's differ: none."""
    vllm.LLM.answer = _words(policy, "7")
    rollout = make_engine("vllm", policy, config=CONFIG).generate(
        observations, 2, WARPED, observation_seeds=SEEDS
    )
    assert rollout.sampling_logprobs is None


def test_one_seeded_request_per_answer(policy, observations, vllm):
    from PIL import Image

    vllm.LLM.answer = _words(policy, "3 5")
    engine = make_engine("vllm", policy, config=CONFIG)
    assert engine.name == "vllm" and not engine.shares_weights
    llm = engine.llm
    assert len(llm.loaded) == 1 and llm.loaded[0].keys() == policy.model.state_dict().keys()
    rollout = engine.generate(observations, 2, WARPED, observation_seeds=SEEDS)
    assert len(llm.requests) == 4
    for i, request in enumerate(llm.requests):
        assert request["prompt"] == policy.chat_text(observations[i // 2]["prompt"])
        assert isinstance(request["multi_modal_data"]["image"], Image.Image)
    assert [p.seed for p in llm.params] == row_seeds(SEEDS, 2)
    assert {(p.temperature, p.top_k, p.top_p, p.max_tokens) for p in llm.params} == {(0.7, 5, 0.9, 12)}
    assert all(set(p.logit_bias) == set(policy.vision_token_ids) for p in llm.params)
    assert torch.equal(rollout.prompt_ids, policy.encode_prompts(observations)["input_ids"])


def test_greedy_asks_one_answer_per_observation(policy, observations, vllm):
    vllm.LLM.answer, vllm.LLM.stops = _words(policy, "7"), False  # runs to max_tokens: no stop token
    engine = make_engine("vllm", policy, config=CONFIG)
    rollout = engine.generate(observations, 3, Sampling(max_new_tokens=1, do_sample=False))
    assert len(engine.llm.requests) == 2
    assert {(p.temperature, p.seed, p.top_k) for p in engine.llm.params} == {(0.0, None, 0)}
    assert rollout.num_completions == 6 and rollout.texts == ["7"] * 6
    assert rollout.completion_mask.sum(1).tolist() == [1] * 6


# ------------------------------------------------------------------------------------- weights and caches


def test_new_weights_are_not_answered_from_the_old_weights_image_features(policy, observations, vllm):
    """vLLM caches vision features by image hash; after a weight load the same image must be encoded again."""
    vllm.LLM.answer = _words(policy, "2")
    engine = make_engine("vllm", policy, config=CONFIG)
    llm = engine.llm
    engine.generate(observations, 2, PLAIN, observation_seeds=SEEDS)
    engine.load_weights(policy.model.state_dict())  # after an update
    llm.served.clear()
    engine.generate(observations, 2, PLAIN, observation_seeds=SEEDS)  # the same images (another step, eval)
    assert len(llm.served) == 4
    assert all(features == weights for features, weights in llm.served), llm.served
    assert llm.prefix_cache_resets == 2  # the prefix cache too (its keys were computed with old weights)


def test_sleeps_through_the_update_and_wakes_to_sample(policy, observations, vllm):
    """With sleep mode vLLM's memory is released after sampling and taken back for the weights, then the cache."""
    vllm.LLM.answer = _words(policy, "2")
    engine = make_engine("vllm", policy, config=CONFIG, sleep_mode=True)
    llm = engine.llm
    assert llm.settings["enable_sleep_mode"] is True
    llm.calls.clear()
    engine.generate(observations, 2, PLAIN, observation_seeds=SEEDS)
    assert llm.calls == ["generate", "sleep1"] and llm.sleeping  # asleep through backward
    engine.load_weights(policy.model.state_dict())
    assert llm.calls[2:] == ["wake_up(weights)", "load", "reset_encoder_cache", "reset_prefix_cache"]
    engine.generate(observations, 1, GREEDY)
    assert llm.calls[6:] == ["wake_up(kv_cache)", "generate", "sleep1"]


def test_a_deep_sleep_drops_the_weights_and_sampling_sends_them_again(policy, observations, vllm):
    """sleep(level=2) frees the weights too: a call with no update since (an evaluation) sends the policy's."""
    vllm.LLM.answer = _words(policy, "2")
    engine = make_engine("vllm", policy, config=CONFIG, sleep_mode=True, sleep_level=2)
    llm = engine.llm
    llm.calls.clear()
    engine.generate(observations, 2, PLAIN, observation_seeds=SEEDS)
    engine.generate(observations, 1, GREEDY)  # no load_weights in between
    assert llm.calls == [
        *["generate", "sleep2"],
        *["wake_up(weights)", "load", "reset_encoder_cache", "reset_prefix_cache"],
        *["wake_up(kv_cache)", "generate", "sleep2"],
    ]
    assert len(llm.loaded) == 2 and all(
        torch.equal(llm.loaded[-1][k], v) for k, v in policy.model.state_dict().items()
    )
    with pytest.raises(ValueError, match="sleep_level must be 1 or 2, got 3"):
        make_engine("vllm", policy, config=CONFIG, sleep_mode=True, sleep_level=3)


def test_says_when_it_cannot_reach_vllms_model(policy, vllm):
    llm = vllm.LLM(policy.model.config._name_or_path)
    llm.llm_engine.model_executor.driver_worker = (
        types.SimpleNamespace()
    )  # a vLLM running its model elsewhere
    with pytest.raises(SetupError, match="VLLM_ENABLE_V1_MULTIPROCESSING=0"):
        make_engine("vllm", policy, llm=llm)


# ---------------------------------------------------------------------------------------- starting vLLM


def test_max_model_len_is_the_prompt_budget_plus_the_answer(policy, vllm):
    """The model's own maximum (4,096 for the tiny model) does not fit this device; the run's budget does."""
    text = policy.model.config.get_text_config()
    head_dim = text.hidden_size // text.num_attention_heads
    per_token = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * 4  # K and V, float32
    weights = sum(f.stat().st_size for f in Path(policy.model.config._name_or_path).glob("*.safetensors"))
    vllm.LLM.device_memory = int((weights + per_token * 3000) / 0.3)  # 3,000 tokens fit, 4,096 do not
    engine = make_engine("vllm", policy, config=CONFIG, dtype="float32")
    # 1,000,000 max pixels / (14 * 2)^2 pixels a vision token = 1,275 image tokens, + 512 of text, + 12 new
    assert policy.pixel_bounds[1] == 1_000_000
    assert engine.llm.settings["max_model_len"] == 1275 + 512 + 12


def test_a_prompt_beyond_the_budget_is_refused_by_name(policy, observations, vllm):
    engine = make_engine("vllm", policy, config=CONFIG, max_prompt_tokens=8)
    with pytest.raises(
        SetupError, match=r"prompt of \d+ tokens \+ 12 new tokens > max_model_len 20.*max_prompt_tokens"
    ):
        engine.generate(observations, 2, PLAIN, observation_seeds=SEEDS)


def test_a_second_run_on_the_node_takes_a_free_port(policy, vllm):
    with socket.socket() as other_run:  # another run's rendezvous on the port a fixed default would take
        try:
            other_run.bind(("127.0.0.1", 29517))
            other_run.listen()
        except OSError:  # taken already: the case in point
            pass
        engine = make_engine("vllm", policy, config=CONFIG)
    assert int(os.environ["MASTER_PORT"]) != 29517 and engine.llm.device == "cuda:0"


def test_on_cuda_bf16_the_policys_device_sleep_mode_and_trls_batch_limits(policy, vllm, monkeypatch):
    from agents.policies.qwen_vl import QwenVLPolicy

    monkeypatch.setattr(QwenVLPolicy, "device", property(lambda self: torch.device("cuda", 1)))
    engine = make_engine("vllm", policy, config=CONFIG)
    settings = engine.llm.settings
    assert settings["dtype"] == "bfloat16"
    assert engine.llm.device == "cuda:1"  # vLLM's external launcher puts itself on cuda:LOCAL_RANK
    assert settings["enable_sleep_mode"] is True
    assert settings["max_num_seqs"] == 2 * 3  # B x G answers a call, as TRL sizes it
    assert (
        settings["max_num_batched_tokens"] == 4096
    )  # TRL's: the default inflates profiling and graph capture
    assert settings["logprobs_mode"] == "raw_logprobs"
    assert make_engine("vllm", policy, config=CONFIG, dtype="float16").llm.settings["dtype"] == "float16"


@pytest.mark.parametrize("where", ["config", "sampling"])
def test_temperature_above_two_is_refused_by_our_checks(policy, observations, vllm, where):
    hot = types.SimpleNamespace(**{**vars(CONFIG), "temperature": 2.5})
    message = r"--rollout-engine vllm samples at temperature <= 2 \(vLLM's limit\); got 2.5"
    if where == "config":
        with pytest.raises(SetupError, match=message):
            make_engine("vllm", policy, config=hot)
    else:
        engine = make_engine("vllm", policy, config=CONFIG)
        with pytest.raises(SetupError, match=message):
            engine.generate(observations, 2, Sampling(max_new_tokens=4, temperature=2.5))


def test_the_agent_hands_its_options_to_the_engine_and_trains_through_it(tiny_model_dir, tmp_path, vllm):
    from tests.agents.support import make_trainer

    trainer = make_trainer("grpo", tiny_model_dir, tmp_path, rollout_engine="vllm", max_new_tokens=5)
    agent = trainer.agent
    llm = agent.engine.llm
    assert llm.settings["max_model_len"] == 1275 + 512 + 5 and llm.settings["max_num_seqs"] == 2 * 3
    batch = trainer.collect(0)
    assert batch.rollout.sampling_logprobs is not None  # temperature 1: vLLM's log-probs are the trainer's
    agent.update(batch)
    assert len(llm.loaded) == 2 and llm.calls[-3:] == ["load", "reset_encoder_cache", "reset_prefix_cache"]
    assert all(torch.equal(llm.loaded[-1][k], v) for k, v in agent.policy.model.state_dict().items())


@pytest.mark.skipif("vllm" in sys.modules, reason="vllm is importable here")
def test_without_vllm_it_says_what_to_do(policy, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError, installed or not
    with pytest.raises(SetupError, match="--rollout-engine vllm needs the vllm package.*pip install"):
        make_engine("vllm", policy)


# ------------------------------------------------------------------------------------ the extra and its lock

# vllm 0.33.0's requirements on what this project also pins (its wheel's METADATA, Requires-Dist)
VLLM_0_33_REQUIRES = {
    "transformers": ">=5.16.1,<5.21.0",
    "torch": "==2.14.0",
    "torchvision": "==0.29.0",
    "torchaudio": "==2.11.0",
    "tokenizers": ">=0.23.2",
    "pillow": ">=13.0.0",
    "huggingface-hub": ">=1.31.0",
}


def test_the_vllm_lock_satisfies_vllm_and_our_extras():
    """requirements/lock-vllm.txt pins versions that vllm 0.33.0 and setup.cfg's train + vllm extras all accept."""
    import configparser

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    root = Path(__file__).resolve().parents[2]
    setup = configparser.ConfigParser()
    setup.read(root / "setup.cfg")
    extras = setup["options.extras_require"]
    wanted = [
        Requirement(line) for name in ("train", "vllm") for line in extras[name].splitlines() if line.strip()
    ]
    wanted = [r for r in wanted if not r.name.startswith("#")]
    pins = {}
    for line in (root / "requirements" / "lock-vllm.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    assert pins["vllm"] == "0.33.0"
    for requirement in wanted:
        name = requirement.name.lower()
        version = pins.get(name) or _main_lock(root).get(name)
        assert version and version in requirement.specifier, (requirement, version)
    for name, specifier in VLLM_0_33_REQUIRES.items():
        version = pins.get(name) or _main_lock(root).get(name)
        assert version in SpecifierSet(specifier), (name, version, specifier)


def _main_lock(root: Path) -> dict[str, str]:
    lines = (root / "requirements" / "lock.txt").read_text().splitlines()
    return {
        line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
        for line in lines
        if "==" in line and not line.startswith("#")
    }


def test_the_adapters_rendezvous_variables_do_not_outlive_a_test():
    """Runs after the tests above (file order): the fixture gave back the environment it found."""
    assert {name: os.environ.get(name) for name in RENDEZVOUS} == ENVIRONMENT_BEFORE
