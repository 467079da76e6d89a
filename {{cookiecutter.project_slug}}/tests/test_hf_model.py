"""MODEL_PATH may name a local Hugging Face causal-LM folder (torch backend, the ``hf`` extra).

The tests build a tiny GPT-2 and a byte-level tokenizer with ``save_pretrained``
into a temporary folder: no hub, no network.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openai
import pytest
import torch
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import model as model_module
from {{ cookiecutter.package_name }}.llm.prefix_cache import BLOCK_TOKENS, PrefixCache
from {{ cookiecutter.package_name }}.main import create_app
from {{ cookiecutter.package_name }}.model import Model
from {{ cookiecutter.package_name }}.serving.errors import StartupFailed

from .conftest import live_server, make_settings

transformers = pytest.importorskip("transformers", reason="the hf extra is not installed")
tokenizers = pytest.importorskip("tokenizers")

# a Jinja chat template, spelled with <% %> and [[ ]] so that no template engine
# touches it before it reaches the tokenizer
CHAT_TEMPLATE = (
    "<% for m in messages %>[[ m.role ]]: [[ m.content ]]\n<% endfor %>"
    "<% if add_generation_prompt %>assistant: <% endif %>"
).translate(str.maketrans("<>[]", "{}{}"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer GPT-2 with a byte-level BPE tokenizer (any UTF-8), saved as Hugging Face does."""
    path = tmp_path_factory.mktemp("hf-model")
    alphabet = sorted(tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tokenizer = tokenizers.Tokenizer(
        tokenizers.models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[])
    )
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tokenizers.decoders.ByteLevel()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|endoftext|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    config = transformers.GPT2Config(
        vocab_size=len(fast),
        n_positions=128,
        n_embd=64,
        n_layer=2,
        n_head=4,
        bos_token_id=fast.eos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module", autouse=True)
def declared(folder: Path) -> Iterator[None]:
    """model.py's contract set to the folder's values, as a team serving it would edit it."""
    config = json.loads((folder / "config.json").read_text())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model_module, "VOCAB_SIZE", config["vocab_size"])
        patch.setattr(model_module, "CONTEXT_LENGTH", config["n_positions"])
        yield


@pytest.fixture(scope="module")
def model(folder: Path) -> Model:
    loaded = Model(make_settings(folder))
    loaded.load()
    return loaded


def reference_greedy(folder: Path, prompt: list[int], count: int) -> list[int]:
    """What transformers' own generate() produces, stopping at end of text like the service."""
    net = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    output = net.generate(torch.tensor([prompt]), max_new_tokens=count, do_sample=False)
    return output[0, len(prompt) :].tolist()


def test_loads_the_folder_with_its_tokenizer_and_limits(model: Model) -> None:
    assert model.context_length == 128
    assert model.tokenizer.vocab_size == 257
    text = "héllo 😀 wörld"
    assert model.tokenizer.decode(model.tokenizer.encode(text)) == text
    assert model.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}]
    ) == model.tokenizer.encode("user: hi\nassistant: ")


def test_cached_greedy_decoding_matches_transformers_generate(model: Model, folder: Path) -> None:
    prompt = model.tokenizer.encode("The same tokens as generate()")
    logits, caches = model.prefill([prompt])
    ours: list[int] = []
    for _ in range(10):
        token = int(logits[0].argmax())
        ours.append(token)
        if token in model.tokenizer.eos_token_ids:
            break
        logits, caches = model.decode([token], caches)
    reference = reference_greedy(folder, prompt, 10)
    assert ours == reference[: len(ours)]


def test_left_padded_batches_match_single_sequences(model: Model) -> None:
    prompts = [model.tokenizer.encode(t) for t in ("a", "a longer prompt", "mid one")]
    logits, caches = model.prefill(prompts)
    tokens = [int(row.argmax()) for row in logits]
    stepped, _ = model.decode(tokens, caches)
    for i, prompt in enumerate(prompts):
        alone, cache = model.prefill([prompt])
        np.testing.assert_allclose(logits[i], alone[0], atol=1e-4, rtol=1e-4)
        alone_step, _ = model.decode([tokens[i]], cache)
        np.testing.assert_allclose(stepped[i], alone_step[0], atol=1e-4, rtol=1e-4)


def test_extend_after_a_cached_prefix_matches_whole_prefills(model: Model) -> None:
    """Prefix caching on a folder: transformers' cache and mask after a left-padded past."""
    cache = PrefixCache(2**24)
    shared = "A system prompt that many requests share, " * 2
    prompts = [model.tokenizer.encode(shared + t) for t in ("one", "a longer second one", "3")]
    whole, caches = model.prefill(prompts)
    cache.store(prompts[1], caches[1])
    hits = [cache.lookup(p) for p in prompts]
    assert all(h.length >= BLOCK_TOKENS for h in hits)
    rest = [p[h.length :] for p, h in zip(prompts, hits, strict=True)]
    extended, grown = model.extend(rest, [h.cache for h in hits])
    np.testing.assert_allclose(extended, whole, atol=1e-4, rtol=1e-4)
    tokens = [int(row.argmax()) for row in whole]
    after_whole, _ = model.decode(tokens, caches)
    after_extend, _ = model.decode(tokens, grown)
    np.testing.assert_allclose(after_extend, after_whole, atol=1e-4, rtol=1e-4)


def test_serves_the_openai_api(folder: Path) -> None:
    settings = make_settings(folder, max_running_sequences=4)
    with live_server(create_app(settings)) as address:
        client = openai.OpenAI(
            base_url=f"http://{address}/v1", api_key="unused", max_retries=0, timeout=60
        )
        name = settings.model_name

        def complete(prompt: str) -> str:
            response = client.completions.create(
                model=name, prompt=prompt, max_tokens=8, temperature=0
            )
            return response.choices[0].text

        prompts = [f"prompt {i} {'!' * i}" for i in range(6)]
        alone = [complete(p) for p in prompts]
        with ThreadPoolExecutor(max_workers=6) as pool:
            assert list(pool.map(complete, prompts)) == alone
        reply = client.chat.completions.create(
            model=name, messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0
        )
        assert reply.usage.prompt_tokens == len(b"user: hi\nassistant: ")
        with pytest.raises(openai.BadRequestError, match="128 tokens"):
            client.completions.create(model=name, prompt="x" * 200)
        # structured output through the folder's own tokenizer, as llguidance reads it
        schema = {
            "type": "object",
            "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer", "maximum": 9}},
            "required": ["ok", "n"],
            "additionalProperties": False,
        }
        structured = client.chat.completions.create(
            model=name,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=60,
            seed=0,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "flag", "schema": schema},
            },
        )
        value = json.loads(structured.choices[0].message.content)
        assert isinstance(value["ok"], bool) and value["n"] <= 9 and set(value) == {"ok", "n"}


def test_a_folder_without_tokenizer_files_names_the_fix(folder: Path, tmp_path: Path) -> None:
    for item in folder.iterdir():
        if item.name.endswith("config.json") and not item.name.startswith("tokenizer"):
            (tmp_path / item.name).write_bytes(item.read_bytes())
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    app = create_app(make_settings(tmp_path))
    fix = r"no tokenizer files .*tokenizer\.save_pretrained"
    with pytest.raises(StartupFailed, match=fix), TestClient(app):
        pass


def test_a_declared_vocabulary_the_folder_does_not_have(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_module, "VOCAB_SIZE", 259)
    with pytest.raises(ValueError, match="declares VOCAB_SIZE = 259: set VOCAB_SIZE = 257"):
        Model(make_settings(folder)).load()


def test_pickled_weights_are_refused(folder: Path, tmp_path: Path) -> None:
    for item in folder.iterdir():
        if item.name != "model.safetensors":
            (tmp_path / item.name).write_bytes(item.read_bytes())
    net = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    torch.save(net.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(OSError):
        Model(make_settings(tmp_path)).load()


def test_remote_code_is_never_run(folder: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="evil",
        auto_map={"AutoModelForCausalLM": "evil.EvilModel", "AutoConfig": "evil.Cfg"},
    )
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises((ValueError, OSError, KeyError)):
        Model(make_settings(tmp_path)).load()
    assert not marker.exists()
