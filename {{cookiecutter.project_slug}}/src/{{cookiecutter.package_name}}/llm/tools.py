"""Tool calling: tools into the prompt, calls out of the text, and the grammar that forces them.

The format is Hermes's (Qwen2.5's chat templates and vLLM's ``hermes`` parser):
the model writes each call as ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>``
and reads each result as ``<tool_response>...</tool_response>``.

- Rendering: a Hugging Face tokenizer whose chat template handles tools gets
  the tools and the structured turns (assistant ``tool_calls``, ``tool``
  messages) as the template expects them. Any other tokenizer (the demo's
  ChatML ``ByteTokenizer``, templates without tools) gets the documented
  default: the tools listed in a system turn, calls and results written in
  the format above as plain text turns.
- Parsing: the answer's ``<tool_call>`` blocks whose JSON names one of the
  request's tools become ``tool_calls``; the rest is the message's content. A
  stream holds back text that may open a block and sends each call as one
  ``delta.tool_calls`` entry once its block closes.
- ``tool_choice`` ``required`` or a named function: the answer is constrained
  (``llm/grammar.py``) to one call, or with ``parallel_tool_calls`` up to
  ``MAX_TOOL_CALLS``, whose arguments follow the tool's ``parameters`` schema,
  so even a random model returns a valid call.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .grammar import JSON_OPTIONS
from .schemas import ChatMessage, Tool

OPEN, CLOSE = "<tool_call>", "</tool_call>"
MAX_TOOL_CALLS = 4  # in one answer, when parallel_tool_calls allows several
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
# Qwen2.5's wording: models tuned on the Hermes format know it
_PREAMBLE_HEAD = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
"""
_PREAMBLE_TAIL = """
</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call>"""


def render(messages: Sequence[ChatMessage], tools: Sequence[Tool] | None) -> list[dict[str, str]]:
    """The default format: plain role/content turns for any chat template (ChatML here)."""
    turns: list[dict[str, str]] = []
    for message in messages:
        if message.role == "tool":
            turns.append(
                {"role": "user", "content": f"<tool_response>\n{message.text}\n</tool_response>"}
            )
        elif message.tool_calls:
            calls = "".join(
                f"\n{OPEN}\n{_call_json(call.function.name, call.function.arguments)}\n{CLOSE}"
                for call in message.tool_calls
            )
            turns.append({"role": "assistant", "content": (message.text + calls).strip("\n")})
        else:
            turns.append({"role": message.role, "content": message.text})
    if tools:
        listing = "\n".join(json.dumps(tool.model_dump(exclude_none=True)) for tool in tools)
        preamble = _PREAMBLE_HEAD + listing + _PREAMBLE_TAIL
        if turns and turns[0]["role"] in ("system", "developer"):
            turns[0] = {"role": turns[0]["role"], "content": f"{turns[0]['content']}\n\n{preamble}"}
        else:
            turns.insert(0, {"role": "system", "content": preamble})
    return turns


def template_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """The turns as Hugging Face chat templates with tool support read them."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        turn: dict[str, Any] = {"role": message.role, "content": message.text}
        if message.tool_calls:
            turn["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.function.name,
                        "arguments": _arguments(call.function.arguments),
                    },
                }
                for call in message.tool_calls
            ]
        if message.tool_call_id:
            turn["tool_call_id"] = message.tool_call_id
        turns.append(turn)
    return turns


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _call_json(name: str, arguments: str) -> str:
    return json.dumps({"name": name, "arguments": _arguments(arguments)}, ensure_ascii=False)


def call_grammar(tools: Sequence[Tool], only: str | None, parallel: bool) -> str:
    """A Lark grammar (llguidance's dialect) for the calls ``required`` or a named choice forces."""
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": tool.function.name},
                "arguments": tool.function.parameters or {"type": "object", "properties": {}},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for tool in tools
        if only is None or tool.function.name == only
    ]
    schema = {"anyOf": options, "x-guidance": JSON_OPTIONS}
    more = MAX_TOOL_CALLS - 1
    repeat = '("\\n" call)' + "{0," + str(more) + "}" if parallel else ""
    return "\n".join(
        [
            f"start: call {repeat}",
            'call: "<tool_call>\\n" body "\\n</tool_call>"',
            f"body: %json {json.dumps(schema)}",
        ]
    )


def parse(text: str, tools: Sequence[Tool]) -> tuple[str | None, list[dict[str, Any]]]:
    """The content outside valid call blocks (None if nothing is left) and the calls found."""
    names = {tool.function.name for tool in tools}
    calls: list[dict[str, Any]] = []
    content: list[str] = []
    position = 0
    for match in _BLOCK.finditer(text):
        call = _call(match.group(1), names)
        if call is None:
            continue
        content.append(text[position : match.start()])
        position = match.end()
        calls.append(call)
    content.append(text[position:])
    rest = "".join(content)
    if calls:
        return rest.strip() or None, calls
    return rest, calls


def _call(body: str, names: set[str]) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("name") not in names:
        return None
    arguments = value.get("arguments", {})
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {
            "name": value["name"],
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
        },
    }


@dataclass
class CallStream:
    """One streamed choice: text deltas in, content deltas and finished calls out.

    Text that might open a ``<tool_call>`` block is held back until it cannot;
    inside a block, text is held until the block closes, then the call (or,
    when it is not valid, its text as content) goes out.
    """

    tools: Sequence[Tool]
    calls: int = 0
    _held: str = ""
    _inside: bool = False
    _names: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self._names = {tool.function.name for tool in self.tools}

    def push(self, text: str, final: bool = False) -> tuple[str, list[dict[str, Any]]]:
        self._held += text
        content, found = "", []
        while self._held:
            if self._inside:
                end = self._held.find(CLOSE)
                if end < 0:
                    if not final:
                        break
                    content += OPEN + self._held  # an unclosed block is text after all
                    self._held = ""
                    break
                body = self._held[:end]
                self._held = self._held[end + len(CLOSE) :]
                self._inside = False
                call = _call(body.strip(), self._names)
                if call is None:
                    content += OPEN + body + CLOSE
                else:
                    found.append({"index": self.calls, **call})
                    self.calls += 1
                continue
            start = self._held.find(OPEN)
            if start >= 0:
                content += self._held[:start]
                self._held = self._held[start + len(OPEN) :]
                self._inside = True
                continue
            keep = 0 if final else _partial_open(self._held)
            content += self._held[: len(self._held) - keep]
            self._held = self._held[len(self._held) - keep :]
            break
        return content, found


def _partial_open(text: str) -> int:
    """Length of the longest tail of ``text`` that begins ``<tool_call>``."""
    for length in range(min(len(text), len(OPEN) - 1), 0, -1):
        if OPEN.startswith(text[-length:]):
            return length
    return 0
