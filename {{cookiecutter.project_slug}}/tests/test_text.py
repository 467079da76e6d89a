"""Tokenizer, streamed detokenization with stop strings, and sampling."""

from __future__ import annotations

import numpy as np
import pytest

from {{ cookiecutter.package_name }}.llm.sampling import SamplingParams, new_rng, sample
from {{ cookiecutter.package_name }}.llm.text_stream import TextStream
from {{ cookiecutter.package_name }}.llm.tokenizer import ByteTokenizer

TOKENIZER = ByteTokenizer()
TEXTS = [
    "",
    "plain ascii",
    "héllo wörld",
    "日本語のテキスト",
    "emoji 😀👍🏽 and ZWJ 👩‍👩‍👧",
    "e\u0301 combining",
    "tab\tnew\nline",
]


@pytest.mark.parametrize("text", TEXTS)
def test_any_utf8_round_trips(text: str) -> None:
    ids = TOKENIZER.encode(text)
    assert all(0 <= i < 256 for i in ids)
    assert TOKENIZER.decode(ids) == text


def test_text_never_encodes_to_special_tokens() -> None:
    ids = TOKENIZER.encode("<|im_end|><|endoftext|>")
    assert not set(ids) & TOKENIZER.eos_token_ids
    assert TOKENIZER.decode(ids) == "<|im_end|><|endoftext|>"


def test_lone_surrogates_do_not_raise() -> None:
    assert TOKENIZER.decode(TOKENIZER.encode("a\ud800b")) == "a?b"


def test_chat_template_marks_every_turn_and_opens_the_answer() -> None:
    ids = TOKENIZER.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <|im_end|>"}]
    )
    assert ids.count(ByteTokenizer.IM_START) == 3
    assert ids.count(ByteTokenizer.IM_END) == 2  # the user's literal "<|im_end|>" stays text
    assert ids[-1 - len(b"assistant\n")] == ByteTokenizer.IM_START
    assert bytes(i for i in ids if i < 256).decode().endswith("user\nHi <|im_end|>\nassistant\n")


def stream(text: str, stop: tuple[str, ...] = ()) -> tuple[list[str], str, bool]:
    """Push ``text`` byte by byte; return the deltas, the flushed tail and whether it stopped."""
    streamer = TextStream(TOKENIZER, TOKENIZER.encode("prompt"), stop)
    deltas = [streamer.push(token) for token in TOKENIZER.encode(text)]
    return deltas, streamer.flush(), streamer.stopped


@pytest.mark.parametrize("text", TEXTS)
def test_stream_never_splits_a_character(text: str) -> None:
    deltas, tail, _ = stream(text)
    assert "".join(deltas) + tail == text
    assert all("\ufffd" not in delta for delta in deltas)


def test_stream_ends_at_a_stop_string_across_tokens() -> None:
    deltas, tail, stopped = stream("Hello wor|ld END and more", stop=("END",))
    assert stopped
    assert "".join(deltas) + tail == "Hello wor|ld "


def test_stream_holds_back_a_possible_stop_then_releases_it() -> None:
    deltas, tail, stopped = stream("abc EN", stop=("END",))
    assert not stopped
    assert "".join(deltas) == "abc "  # "EN" could still become "END"
    assert tail == "EN"


def test_earliest_stop_string_wins() -> None:
    deltas, tail, stopped = stream("one two three", stop=("three", "two"))
    assert stopped and "".join(deltas) + tail == "one "


def test_incomplete_character_at_the_end_is_flushed_as_replacement() -> None:
    streamer = TextStream(TOKENIZER, [], ())
    assert streamer.push(ord("a")) == "a"
    assert streamer.push("€".encode()[0]) == ""
    assert streamer.flush() == "\ufffd"


def test_greedy_takes_the_argmax() -> None:
    logits = np.array([0.1, 3.0, 2.9, -1.0], dtype=np.float32)
    assert sample(logits, SamplingParams(max_tokens=1, temperature=0.0), new_rng(0)) == 1


def test_seeded_sampling_repeats_and_seeds_differ() -> None:
    logits = np.zeros(50, dtype=np.float32)
    params = SamplingParams(max_tokens=1, temperature=1.0)
    draws = {
        seed: [sample(logits, params, rng) for rng in [new_rng(seed)] for _ in range(20)]
        for seed in (1, 2)
    }
    again = [sample(logits, params, rng) for rng in [new_rng(1)] for _ in range(20)]
    assert draws[1] == again
    assert draws[1] != draws[2]


def test_any_integer_seed_and_tiny_temperatures_are_fine() -> None:
    logits = np.array([0.5, 2.0, 1.0], dtype=np.float32)
    for seed in (-1, 2**70, 0):
        assert sample(logits, SamplingParams(max_tokens=1, temperature=1e-300), new_rng(seed)) == 1
    assert new_rng(-1).random() == new_rng(2**64 - 1).random()


def test_top_p_keeps_only_the_nucleus() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float64)).astype(np.float32)
    rng = new_rng(3)
    picks = {sample(logits, SamplingParams(max_tokens=1, top_p=0.75), rng) for _ in range(300)}
    assert picks == {0, 1}


def test_temperature_sharpens_the_distribution() -> None:
    logits = np.array([1.0, 0.0], dtype=np.float32)
    rng = new_rng(4)
    cold = [sample(logits, SamplingParams(max_tokens=1, temperature=0.1), rng) for _ in range(200)]
    warm = [sample(logits, SamplingParams(max_tokens=1, temperature=2.0), rng) for _ in range(200)]
    assert cold.count(0) == 200
    assert 100 < warm.count(0) < 180
