"""llm: a team's own language model, served by editing ``model.py``'s contract only.

- torch: a Hugging Face folder as ``save_pretrained`` writes it: a random
  2-layer Llama (grouped-query attention, 160 positions) with its own
  byte-level BPE tokenizer of 300 tokens, trained here on a few sentences,
  with a BOS token and a chat template. ``model.py`` gets the folder's
  ``VOCAB_SIZE`` and ``CONTEXT_LENGTH``.
- onnxruntime: a prefill + decode pair of ONNX graphs of another architecture
  than the demo's (2 layers of multi-head attention without MLPs, 2 key/value
  heads of 16, 128 positions, a vocabulary padded to 264 logits, logits named
  ``next_logits``), built here with ``onnx``. ``model.py`` gets those values.

The served check drives the service with the official ``openai`` client
(completions and chat, whole and streamed) and compares its greedy text with
the model's own answer computed outside the service.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from . import Swap

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A team serves its own model with the same service.",
    "Continuous batching keeps every sequence moving, one token at a time.",
    "user: hello there\nassistant: hello, how can I help?",
    "Tokens in, tokens out: the cache grows by one position per step.",
]
# A chat template of the team's own (not ChatML), as tokenizer_config.json carries it.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m.role }}|> {{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
HF_VOCAB = 300
HF_CONTEXT = 160

ONNX = {
    "VOCAB_SIZE": 264,  # the byte tokenizer's 259 ids, padded to a multiple of 8
    "CONTEXT_LENGTH": 128,
    "LAYERS": 2,
    "KV_HEADS": 2,
    "HEAD_DIM": 16,
    "LOGITS": '"next_logits"',
}


def model_file(project: Path) -> Path:
    return next((project / "src").glob("*/model.py"))


def set_constants(project: Path, values: dict[str, object]) -> None:
    """Plain text replacement of ``NAME = ...`` lines in model.py, as a team edits it."""
    path = model_file(project)
    text = path.read_text()
    for name, value in values.items():
        text, count = re.subn(rf"^{name} = .*$", f"{name} = {value}", text, flags=re.M)
        assert count == 1, f"model.py declares {name} {count} times"
    path.write_text(text)


# ---- torch: a Hugging Face folder -------------------------------------------------------------


def build_hf_folder(project: Path, out: Path) -> Path:
    import tokenizers
    import torch
    import transformers

    tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE())
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=HF_VOCAB,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(SENTENCES * 4, trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = tokenizers.processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos)]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>"
    )
    fast.chat_template = CHAT_TEMPLATE
    assert len(fast) == HF_VOCAB, len(fast)
    out.mkdir(parents=True)
    fast.save_pretrained(out)
    config = transformers.LlamaConfig(
        vocab_size=HF_VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=HF_CONTEXT,
        bos_token_id=bos,
        eos_token_id=fast.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(13)
    transformers.LlamaForCausalLM(config).save_pretrained(out)
    return out


def edit_for_hf(project: Path) -> None:
    set_constants(project, {"VOCAB_SIZE": HF_VOCAB, "CONTEXT_LENGTH": HF_CONTEXT})


def check_hf_served(project: Path, model_path: Path, base_url: str) -> None:
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    net = transformers.AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True)

    def reference(ids: list[int], count: int) -> str:
        output = net.generate(torch.tensor([ids]), max_new_tokens=count, do_sample=False)
        return tokenizer.decode(output[0, len(ids) :], skip_special_tokens=True)

    prompt = "The quick brown fox"
    messages = [{"role": "user", "content": "hello there"}]
    chat_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    chat_ids = tokenizer(chat_ids, add_special_tokens=False)["input_ids"]
    check_openai(
        base_url,
        prompt=prompt,
        prompt_tokens=len(tokenizer(prompt)["input_ids"]),
        completion=reference(tokenizer(prompt)["input_ids"], 8),
        messages=messages,
        chat_tokens=len(chat_ids),
        chat=reference(chat_ids, 8),
        context=HF_CONTEXT,
    )


# ---- onnxruntime: a prefill + decode pair of another architecture -------------------------------


def build_onnx_pair(project: Path, out: Path) -> Path:
    """Two graphs sharing one set of fixed-seed weights; the tensor names model.py declares."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    vocab, context, layers = ONNX["VOCAB_SIZE"], ONNX["CONTEXT_LENGTH"], ONNX["LAYERS"]
    heads, head_dim = ONNX["KV_HEADS"], ONNX["HEAD_DIM"]
    dim = heads * head_dim
    rng = np.random.default_rng(7)
    weights = {
        "embed": rng.standard_normal((vocab, dim)),
        "pos": rng.standard_normal((context, dim)),
    }
    for i in range(layers):
        for name in ("q", "k", "v", "o"):
            weights[f"l{i}.{name}"] = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    weights["head"] = rng.standard_normal((dim, vocab)) * 2 / np.sqrt(dim)
    bias = np.full(vocab, -3.0)
    bias[32:127] = 2.0  # printable ASCII, so the text is readable
    bias[256:] = -6.0  # special and padding ids: the model rarely ends on its own
    weights["head_bias"] = bias

    def graph(with_past: bool) -> onnx.ModelProto:
        nodes: list[onnx.NodeProto] = []
        consts = [numpy_helper.from_array(w.astype(np.float32), n) for n, w in weights.items()]
        count = [0]

        def op(kind: str, inputs: list[str], output: str | None = None, **attrs: object) -> str:
            count[0] += 1
            output = output or f"{kind.lower()}_{count[0]}"
            nodes.append(helper.make_node(kind, inputs, [output], **attrs))
            return output

        def const(value: object, dtype: type = np.int64) -> str:
            count[0] += 1
            name = f"c{count[0]}"
            consts.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
            return name

        x = op("Add", [op("Gather", ["embed", "input_ids"]), op("Gather", ["pos", "position_ids"])])
        total = op("Squeeze", [op("Shape", ["attention_mask"], start=1, end=2)])
        tokens = op("Squeeze", [op("Shape", ["input_ids"], start=1, end=2)])
        keys = op("Unsqueeze", [op("Range", [const(0), total, const(1)]), const([0])])
        queries = op("Add", [op("Range", [const(0), tokens, const(1)]), op("Sub", [total, tokens])])
        queries = op("Unsqueeze", [queries, const([1])])
        visible = op("Cast", ["attention_mask"], to=TensorProto.BOOL)
        visible = op("Unsqueeze", [visible, const([1, 2])])
        allowed = op("And", [op("LessOrEqual", [keys, queries]), visible])
        allowed = op("Or", [allowed, op("Equal", [keys, queries])])
        mask = op("Where", [allowed, const(0.0, np.float32), const(-1e9, np.float32)])
        split = const([0, 0, heads, head_dim])
        for i in range(layers):

            def project_heads(name: str, x: str = x, i: int = i) -> str:
                h = op("Reshape", [op("MatMul", [x, f"l{i}.{name}"]), split])
                return op("Transpose", [h], perm=[0, 2, 1, 3])

            q, k, v = project_heads("q"), project_heads("k"), project_heads("v")
            present = [f"present.{i}.key", f"present.{i}.value"]
            if with_past:
                k = op("Concat", [f"past_key_values.{i}.key", k], present[0], axis=2)
                v = op("Concat", [f"past_key_values.{i}.value", v], present[1], axis=2)
            else:
                k, v = op("Identity", [k], present[0]), op("Identity", [v], present[1])
            scores = op("MatMul", [q, op("Transpose", [k], perm=[0, 1, 3, 2])])
            scores = op("Add", [op("Mul", [scores, const(head_dim**-0.5, np.float32)]), mask])
            attended = op("MatMul", [op("Softmax", [scores], axis=-1), v])
            attended = op("Transpose", [attended], perm=[0, 2, 1, 3])
            attended = op("Reshape", [attended, const([0, 0, dim])])
            x = op("Add", [x, op("MatMul", [attended, f"l{i}.o"])])
        last = op("Gather", [x, const(-1)], axis=1)
        op("Add", [op("MatMul", [last, "head"]), "head_bias"], "next_logits")

        def info(name: str, dtype: int, shape: list[object]) -> onnx.ValueInfoProto:
            return helper.make_tensor_value_info(name, dtype, shape)

        inputs = [
            info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            info("attention_mask", TensorProto.INT64, ["batch", "total"]),
            info("position_ids", TensorProto.INT64, ["batch", "tokens"]),
        ]
        outputs = [info("next_logits", TensorProto.FLOAT, ["batch", vocab])]
        for i in range(layers):
            for kind in ("key", "value"):
                if with_past:
                    shape = ["batch", heads, "past", head_dim]
                    inputs.append(info(f"past_key_values.{i}.{kind}", TensorProto.FLOAT, shape))
                shape = ["batch", heads, "total", head_dim]
                outputs.append(info(f"present.{i}.{kind}", TensorProto.FLOAT, shape))
        model = helper.make_model(
            helper.make_graph(nodes, "team_lm", inputs, outputs, initializer=consts),
            opset_imports=[helper.make_opsetid("", 17)],
        )
        model.ir_version = 8
        helper.set_model_props(model, {"context_length": str(context)})
        onnx.checker.check_model(model, full_check=True)
        return model

    out.mkdir(parents=True)
    onnx.save(graph(with_past=False), out / "prefill.onnx")
    onnx.save(graph(with_past=True), out / "model.onnx")
    return out / "model.onnx"


def edit_for_onnx(project: Path) -> None:
    set_constants(project, ONNX)


def check_onnx_served(project: Path, model_path: Path, base_url: str) -> None:
    import onnxruntime as ort

    prefill = ort.InferenceSession(str(model_path.with_name("prefill.onnx")))

    def reference(ids: list[int], count: int) -> str:
        """Greedy, recomputing the whole sequence each step (no cache): the byte tokenizer."""
        sequence = list(ids)
        for _ in range(count):
            n = len(sequence)
            feed = {
                "input_ids": np.asarray([sequence], dtype=np.int64),
                "attention_mask": np.ones((1, n), dtype=np.int64),
                "position_ids": np.arange(n, dtype=np.int64)[None],
            }
            token = int(prefill.run(["next_logits"], feed)[0][0].argmax())
            sequence.append(token)
            if token in (256, 258):  # <|endoftext|>, <|im_end|>
                break
        return bytes(t for t in sequence[len(ids) :] if t < 256).decode(errors="replace")

    prompt = "The quick brown fox"
    messages = [{"role": "user", "content": "hello there"}]
    chat_ids = [257, *b"user\nhello there", 258, *b"\n", 257, *b"assistant\n"]  # ChatML
    check_openai(
        base_url,
        prompt=prompt,
        prompt_tokens=len(prompt.encode()),
        completion=reference(list(prompt.encode()), 8),
        messages=messages,
        chat_tokens=len(chat_ids),
        chat=reference(chat_ids, 8),
        context=ONNX["CONTEXT_LENGTH"],
    )


# ---- the served check, with the official client -------------------------------------------------


def check_openai(
    base_url: str,
    *,
    prompt: str,
    prompt_tokens: int,
    completion: str,
    messages: list[dict[str, str]],
    chat_tokens: int,
    chat: str,
    context: int,
) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="-", max_retries=0, timeout=60)
    model = client.models.list().data[0].id
    whole = client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0)
    assert whole.usage.prompt_tokens == prompt_tokens, whole.usage
    assert whole.choices[0].text == completion, (whole.choices[0].text, completion)
    streamed = client.completions.create(
        model=model, prompt=prompt, max_tokens=8, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == completion

    reply = client.chat.completions.create(
        model=model, messages=messages, max_tokens=8, temperature=0
    )
    assert reply.usage.prompt_tokens == chat_tokens, reply.usage
    assert reply.choices[0].message.content == chat, (reply.choices[0].message.content, chat)
    chunks = client.chat.completions.create(
        model=model, messages=messages, max_tokens=8, temperature=0, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == chat

    try:
        client.completions.create(model=model, prompt=[0] * context, max_tokens=1)
    except openai.BadRequestError as refused:
        assert f"{context} tokens" in str(refused), refused
    else:
        raise AssertionError(f"a prompt of {context} tokens was not refused")


SWAPS = [
    Swap(
        combination={"workload": "llm", "backend": "torch"},
        build_model=build_hf_folder,
        edit_model=edit_for_hf,
        check_served=check_hf_served,
    ),
    Swap(
        combination={"workload": "llm", "backend": "onnxruntime"},
        build_model=build_onnx_pair,
        edit_model=edit_for_onnx,
        check_served=check_onnx_served,
    ),
]
