"""The LLM generator with the real `openai` client against a scripted OpenAI-compatible server on loopback.

The server returns good code, code that imports os, code with a syntax error, code that loops forever and
code that breaks the contract; every answer goes through the real Enforce. The repair loop, the fallback
to the template generator, the budget and the prompt's content are shown end to end.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from poet_operator.poet.enforce import SandboxLimits
from poet_operator.poet.engine import PreviousVersion, run_poet
from poet_operator.poet.events import ListSink
from poet_operator.poet.generators.llm import (
    ChatClient,
    CheckResult,
    LLMBudget,
    LLMConfig,
    LLMConfigError,
    LLMGenerator,
    extract_code,
)
from poet_operator.poet.generators.prompt import PromptContext
from poet_operator.poet.generators.template import TemplatePlan, render
from poet_operator.poet.train.feedback import feedback_from_termination_message
from poet_operator.spec import MonitorSpec

from monitor_runtime.contract import write_version_dir
from tests.poet.llm_server import ScriptedChatServer

API_KEY = "sk-loopback-test"
# Legitimate code needs about two CPU seconds for every scenario; a runaway loop is stopped at four.
LIMITS = SandboxLimits(cpu_seconds=4, wall_seconds=30.0, memory_bytes=1 << 30)


@pytest.fixture
def server() -> Iterator[ScriptedChatServer]:
    with ScriptedChatServer(api_key=API_KEY) as running:
        yield running


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "openai-api-key"
    path.write_text(API_KEY + "\n")
    return path


def llm_spec(server: ScriptedChatServer, key_file: Path, **llm: Any) -> MonitorSpec:
    settings = {
        "baseUrl": server.base_url,
        "model": "scripted-model",
        "apiKeyFile": str(key_file),
        "timeoutSeconds": 20,
        "maxTokens": 2048,
        "maxRepairRounds": 2,
        **llm,
    }
    return MonitorSpec.from_mapping(
        {
            "model": "credit-risk",
            "features": [{"name": "income", "type": "continuous"}, {"name": "region", "type": "categorical"}],
            "generator": {"kind": "llm", "llm": settings},
        }
    )


def good_code(spec: MonitorSpec) -> str:
    code, _ = render(TemplatePlan(spec, spec.spec_hash()))
    return code


def imports_os(spec: MonitorSpec) -> str:
    return "import os\n" + good_code(spec).replace(
        "def detect_drift(self, current):", ("def detect_drift(self, current):\n        os.listdir('/')"), 1
    )


def syntax_error(spec: MonitorSpec) -> str:
    return good_code(spec).replace("def state(self):", "def state(self:", 1)


def loops_forever(spec: MonitorSpec) -> str:
    return good_code(spec).replace(
        "def update_reference_window(self, new_data):",
        "def update_reference_window(self, new_data):\n        while True:\n            new_data = new_data",
        1,
    )


def breaks_contract(spec: MonitorSpec) -> str:
    return good_code(spec).replace(
        "def detect_drift(self, current):",
        "def detect_drift(self, current):\n        return ['no', 'dict']",
        1,
    )


def manifest(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "manifest.json").read_text())


def test_repair_loop_sends_reasons_back_until_the_code_passes(server, key_file, tmp_path) -> None:
    spec = llm_spec(server, key_file)
    server.replies = [
        server.fenced(imports_os(spec)),
        server.fenced(syntax_error(spec)),
        server.fenced(good_code(spec)),
    ]
    sink = ListSink()
    result = run_poet(spec, tmp_path / "v1", monitor="credit-risk", sink=sink, limits=LIMITS)
    assert result.status == "written"
    assert len(server.requests) == 3
    assert server.auth_headers == [f"Bearer {API_KEY}"] * 3
    assert server.requests[0]["model"] == "scripted-model" and server.requests[0]["max_tokens"] == 2048
    # Each repair request carries the previous answer and the reasons it was rejected.
    second = server.requests[1]["messages"]
    assert second[-2]["role"] == "assistant" and "import os" in second[-2]["content"]
    assert "rejected" in second[-1]["content"] and "'os'" in second[-1]["content"]
    third = server.requests[2]["messages"][-1]["content"]
    assert "syntax" in third.lower()
    data = manifest(tmp_path / "v1")
    assert data["generator"] == {"kind": "llm", "model": "scripted-model", "baseUrl": server.base_url}
    attempts = data["poet"]["llm"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["rejected", "rejected", "accepted"]
    assert data["poet"]["llm"]["budget"]["calls"] == 3
    assert data["poet"]["llm"]["budget"]["total_tokens"] > 0
    assert data["enforce"]["passed"] is True
    assert (tmp_path / "v1" / "monitor.py").read_text() == good_code(spec)
    assert len(sink.of_type("poet.operate.llm_attempt")) == 3


def test_loop_and_contract_break_are_rejected_then_the_template_takes_over(
    server, key_file, tmp_path
) -> None:
    spec = llm_spec(server, key_file, maxRepairRounds=1)
    server.replies = [server.fenced(loops_forever(spec)), server.fenced(breaks_contract(spec))]
    sink = ListSink()
    result = run_poet(spec, tmp_path / "v1", monitor="credit-risk", sink=sink, limits=LIMITS)
    assert result.status == "written"
    assert len(server.requests) == 2
    attempts = result.operate.llm["attempts"]
    assert [a["outcome"] for a in attempts] == ["rejected", "rejected"]
    loop_reasons = " ".join(attempts[0]["reasons"]).lower()
    assert "cpu" in loop_reasons or "time" in loop_reasons or "limit" in loop_reasons
    assert "detect_drift" in " ".join(attempts[1]["reasons"])
    data = manifest(tmp_path / "v1")
    assert data["generator"]["kind"] == "template"
    assert data["generator"]["fallbackFrom"] == "llm"
    assert "no acceptable code after 2 round(s)" in data["generator"]["fallbackReason"]
    [fallback] = sink.of_type("poet.operate.fallback")
    assert fallback.details["to_generator"] == "template"
    assert data["enforce"]["passed"] is True


def test_prompt_carries_contract_spec_previous_version_and_feedback(server, key_file, tmp_path) -> None:
    spec = llm_spec(server, key_file)
    # Version 1 as an operator would have stored it (enforced elsewhere; here only its files matter).
    write_version_dir(
        tmp_path / "v1",
        code=good_code(spec),
        version=1,
        monitor="credit-risk",
        model="credit-risk",
        spec=spec.to_dict(),
        spec_hash=spec.spec_hash(),
        generator={"kind": "template"},
    )
    traceback_text = (
        "Traceback (most recent call last):\n"
        '  File "/code/monitor.py", line 97, in _prepare\n'
        "    column = FEATURE_TABLE[name]\n"
        "KeyError: 'device_fingerprint'\n"
    )
    record = {
        "kind": "poet.feedback/v1",
        "source": "crash",
        "signature": {"exception": "KeyError", "location": "monitor.py:97 in _prepare"},
        "message": "'device_fingerprint'",
        "traceback": traceback_text,
        "batch_profile": {
            "rows": 250,
            "n_columns": 3,
            "columns": {"device_fingerprint": {"dtype": "object"}},
        },
        "version": 1,
    }
    feedback = feedback_from_termination_message(json.dumps(record), exit_code=1)
    server.replies = [server.fenced(good_code(spec))]
    result = run_poet(
        spec,
        tmp_path / "v2",
        monitor="credit-risk",
        feedback=[feedback],
        previous=PreviousVersion.load(tmp_path / "v1"),
        limits=LIMITS,
    )
    assert result.status == "written"
    prompt = server.prompt_text(0)
    assert "KeyError: 'device_fingerprint'" in prompt  # the traceback
    assert "Termination message" in prompt and '"kind": "poet.feedback/v1"' in prompt
    assert "device_fingerprint" in prompt and '"rows": 250' in prompt  # the data profile
    assert "Signature: KeyError@monitor.py:_prepare" in prompt
    assert "The previous version (version 1)" in prompt and "SPEC_HASH =" in prompt
    assert "The monitor contract" in prompt and "CONTRACT = 1" in prompt
    assert '"model": "credit-risk"' in prompt  # the spec
    assert "dynamic_features" in prompt  # the remedy Perceive chose
    assert "Domain knowledge" in prompt and "false discovery rate" in prompt
    assert result.manifest.version == 2
    assert manifest(tmp_path / "v2")["answersFeedback"] == ["KeyError@monitor.py:_prepare"]


def test_budget_caps_calls_per_monitor_across_versions(server, key_file, tmp_path) -> None:
    spec = llm_spec(server, key_file, callBudget=2)
    server.replies = [
        server.fenced(imports_os(spec)),
        server.fenced(imports_os(spec)),
        server.fenced(good_code(spec)),
    ]
    first = run_poet(spec, tmp_path / "v1", monitor="credit-risk", limits=LIMITS)
    assert len(server.requests) == 2  # the third round was never asked for
    assert first.operate.generator["fallbackFrom"] == "llm"
    assert "call budget spent: 2/2" in first.operate.generator["fallbackReason"]
    # The next version of the same monitor starts from what was spent: no call at all.
    second = run_poet(
        spec,
        tmp_path / "v2",
        monitor="credit-risk",
        previous=PreviousVersion.load(tmp_path / "v1"),
        limits=LIMITS,
    )
    assert len(server.requests) == 2
    assert second.operate.llm["budget"]["calls"] == 2
    assert second.operate.generator["kind"] == "template"


def test_api_key_comes_from_the_secret_file_or_the_environment(server, key_file, monkeypatch) -> None:
    from_file = LLMConfig(model="m", base_url=server.base_url, api_key_file=str(key_file))
    server.replies = ["```python\nCONTRACT = 1\n```", "plain"]
    assert ChatClient(from_file).complete([{"role": "user", "content": "hi"}]).text.startswith("```python")
    monkeypatch.setenv("POET_TEST_KEY", API_KEY)
    from_env = LLMConfig(model="m", base_url=server.base_url, api_key_env="POET_TEST_KEY")
    reply = ChatClient(from_env).complete([{"role": "user", "content": "hi"}])
    assert reply.text == "plain" and reply.completion_tokens >= 1
    assert server.auth_headers == [f"Bearer {API_KEY}"] * 2
    # A key handed over by the operator (read from apiKeySecret) wins over file and environment.
    assert LLMConfig(api_key="sk-direct", api_key_file="/nonexistent").resolve_api_key() == "sk-direct"
    monkeypatch.delenv("POET_TEST_KEY")
    with pytest.raises(
        LLMConfigError, match=r"set the environment variable POET_TEST_KEY or generator\.llm\.apiKeyFile"
    ):
        from_env.resolve_api_key()
    with pytest.raises(LLMConfigError, match=r"apiKeyFile .*missing cannot be read"):
        LLMConfig(api_key_file=str(key_file.parent / "missing")).resolve_api_key()


def test_server_errors_end_the_attempt_without_checking(server, key_file) -> None:
    config = LLMConfig(model="m", base_url=server.base_url, api_key_file=str(key_file))
    server.replies = []  # the server answers 500 "script exhausted"

    def never(code: str) -> CheckResult:
        raise AssertionError("no code should reach the checker")

    outcome = LLMGenerator(config, LLMBudget(5, 10_000)).generate(PromptContext(spec={"model": "m"}), never)
    assert not outcome.accepted
    assert outcome.failure.startswith("LLM request failed: InternalServerError")
    assert [a.outcome for a in outcome.attempts] == ["error"]


def test_answers_without_a_code_block_are_sent_back(server, key_file) -> None:
    config = LLMConfig(model="m", base_url=server.base_url, api_key_file=str(key_file), max_repair_rounds=1)
    server.replies = ["I cannot help with that.", "```python\nCONTRACT = 1\n```"]
    seen: list[str] = []

    def check(code: str) -> CheckResult:
        seen.append(code)
        return CheckResult(True, [])

    outcome = LLMGenerator(config, LLMBudget(5, 10_000)).generate(PromptContext(spec={"model": "m"}), check)
    assert outcome.accepted and seen == ["CONTRACT = 1\n"]
    assert "no ```python code block" in server.requests[1]["messages"][-1]["content"]


def test_extract_code_prefers_the_python_block() -> None:
    text = "Plan:\n```text\nnot code\n```\nCode:\n```python\nx = 1\n```\n"
    assert extract_code(text) == "x = 1\n"
    assert extract_code("```\ny = 2\n```") == "y = 2\n"
    assert extract_code("no block here") is None


class NoUsageServer(ScriptedChatServer):
    """A compatible server that, like some self-hosted ones, reports no token usage."""

    async def _chat(self, request: web.Request) -> web.Response:
        response = await super()._chat(request)
        if response.status != 200:
            return response
        data = json.loads(response.text)
        data.pop("usage")
        return web.json_response(data)


def test_tokens_are_estimated_when_the_server_reports_no_usage(key_file) -> None:
    answer = "I would rather explain. " * 170  # about 4000 characters, no code block
    with NoUsageServer([answer] * 6, api_key=API_KEY) as server:
        config = LLMConfig(
            model="m", base_url=server.base_url, api_key_file=str(key_file), max_repair_rounds=5
        )
        budget = LLMBudget(max_calls=10, max_total_tokens=2000)
        outcome = LLMGenerator(config, budget).generate(PromptContext(spec={"model": "m"}), lambda code: None)
        first_prompt = "".join(str(m["content"]) for m in server.requests[0]["messages"])
    assert not outcome.accepted and outcome.failure.startswith("LLM token budget spent")
    assert len(server.requests) == 2  # the estimate reached the cap, so the third call was never made
    first = outcome.attempts[0]
    assert first.tokens_estimated and first.to_dict()["tokens_estimated"] is True
    assert first.prompt_tokens == -(-len(first_prompt) // 4)
    assert first.completion_tokens == -(-len(answer) // 4)
    assert budget.calls == 2 and budget.total_tokens >= 2000


def test_failed_requests_count_against_the_call_budget(server, key_file) -> None:
    config = LLMConfig(model="m", base_url=server.base_url, api_key_file=str(key_file))
    server.replies = []  # every request fails with 500
    budget = LLMBudget(max_calls=2, max_total_tokens=10_000)
    for _ in range(2):
        outcome = LLMGenerator(config, budget).generate(PromptContext(spec={"model": "m"}), lambda code: None)
        assert outcome.failure.startswith("LLM request failed: InternalServerError")
    assert budget.calls == 2 and budget.total_tokens == 0  # the server refused: no tokens were spent
    outcome = LLMGenerator(config, budget).generate(PromptContext(spec={"model": "m"}), lambda code: None)
    assert outcome.failure == "LLM call budget spent: 2/2 calls"
    assert len(server.requests) == 2


def test_timed_out_requests_count_as_a_call_and_their_prompt(key_file) -> None:
    release = threading.Event()

    def stall(body: dict[str, Any]) -> str:
        release.wait(20)  # held until the client has given up
        return "too late"

    with ScriptedChatServer([stall], api_key=API_KEY) as server:
        config = LLMConfig(
            model="m", base_url=server.base_url, api_key_file=str(key_file), timeout_seconds=0.5
        )
        budget = LLMBudget(max_calls=5, max_total_tokens=100_000)
        try:
            outcome = LLMGenerator(config, budget).generate(
                PromptContext(spec={"model": "m"}), lambda c: None
            )
        finally:
            release.set()
        prompt = "".join(str(m["content"]) for m in server.requests[0]["messages"])
    assert outcome.failure.startswith("LLM request failed: APITimeoutError")
    assert budget.calls == 1
    assert budget.prompt_tokens == -(-len(prompt) // 4) and budget.completion_tokens == 0
    assert outcome.attempts[0].tokens_estimated
