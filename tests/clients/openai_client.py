"""The official `openai` Python package against `ethos serve`, unmodified: completions (echo +
logprobs, several prompts, streaming) and chat (logprobs, streaming). Asserts the shapes the
package parses, and prints one JSON object of what it got for the Rust test to compare with
the server's own answers.

    python tests/clients/openai_client.py BASE_URL MODEL
"""

import json
import sys

import openai

base, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
out = {"openai_version": openai.__version__}

r = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0)
out["completion"] = r.choices[0].text
assert r.usage.completion_tokens == 8, r.usage

r = client.completions.create(
    model=model, prompt=["The capital of France is", "Hong Kong is"], max_tokens=1, temperature=0,
    echo=True, logprobs=2,
)
assert [c.index for c in r.choices] == [0, 1]
lp = r.choices[0].logprobs
assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.text_offset) == len(lp.top_logprobs)
out["echo_token_logprobs"] = lp.token_logprobs
out["echo_text"] = r.choices[0].text

pieces = []
for chunk in client.completions.create(model=model, prompt="The capital of France is", max_tokens=8,
                                       temperature=0, stream=True):
    pieces.append(chunk.choices[0].text)
out["completion_streamed"] = "".join(pieces)

messages = [{"role": "user", "content": "Name a colour."}]
r = client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0,
                                   logprobs=True, top_logprobs=2)
out["chat"] = r.choices[0].message.content
assert r.choices[0].message.role == "assistant"
content = r.choices[0].logprobs.content
assert len(content) == r.usage.completion_tokens
assert all(len(c.top_logprobs) == 2 for c in content)
out["chat_logprobs"] = [c.logprob for c in content]

pieces = []
for chunk in client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0,
                                            stream=True):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
out["chat_streamed"] = "".join(pieces)

try:
    client.completions.create(model=model, prompt="a", logprobs=50)
    raise AssertionError("logprobs 50 was accepted")
except openai.BadRequestError as e:
    out["error_status"] = e.status_code
    out["error_param"] = e.body.get("param") if isinstance(e.body, dict) else None

try:
    client.completions.create(model="nope", prompt="a")
    raise AssertionError("an unknown model was accepted")
except openai.NotFoundError as e:
    out["not_found_status"] = e.status_code

print(json.dumps(out))
