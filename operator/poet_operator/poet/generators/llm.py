"""The LLM generator: the only module that talks to a language model.

It speaks the OpenAI chat-completions protocol through the `openai` client, so it works with OpenAI and any
compatible server (base URL, model, key, timeout and token limit are configurable). Every answer's code block
goes through a checker (Enforce); a rejection goes back to the model with its reasons for a bounded number of
repair rounds. Calls and tokens are counted against a per-monitor budget; when the budget, the server or the
repair rounds run out, the outcome says so and the engine falls back to the template generator.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poet_operator.poet.generators.prompt import PromptContext, build_messages, repair_message
from poet_operator.spec import LLMSettings as SpecLLMSettings

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
# Without a `usage` block from the server, tokens are estimated at about four characters each (the usual
# figure for English text and code with OpenAI tokenisers), so the token budget still binds.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """A rough token count of `text` for servers that report no usage (at least 1 for non-empty text)."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def prompt_chars(messages: list[dict[str, str]]) -> str:
    return "".join(str(m.get("content", "")) for m in messages)


class LLMConfigError(ValueError):
    """LLM settings that cannot work (no key, bad value); the message says which setting and how to fix it."""


class BudgetExceeded(RuntimeError):
    """The monitor's LLM budget (calls or tokens) is spent."""


@dataclass(frozen=True)
class LLMConfig:
    """How to reach the model and how much the engine may spend on it."""

    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key_env: str = DEFAULT_API_KEY_ENV
    api_key_file: str | None = None
    timeout_seconds: float = 60.0
    max_tokens: int = 4096
    temperature: float = 0.0
    max_repair_rounds: int = 2
    max_calls: int = 12
    max_total_tokens: int = 200_000
    # A key handed over directly (the operator reads `apiKeySecret` from Kubernetes); never serialised.
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_spec(cls, llm_spec: SpecLLMSettings | None) -> LLMConfig:
        """The spec's `generator.llm` section as client settings; absent section gives the defaults."""
        if llm_spec is None:
            return cls()
        return cls(
            model=llm_spec.model or cls.model,
            base_url=llm_spec.base_url,
            api_key_env=llm_spec.api_key_env,
            api_key_file=llm_spec.api_key_file,
            timeout_seconds=llm_spec.timeout_seconds,
            max_tokens=llm_spec.max_tokens,
            temperature=llm_spec.temperature,
            max_repair_rounds=llm_spec.max_repair_rounds,
            max_calls=llm_spec.call_budget,
            max_total_tokens=llm_spec.token_budget,
        )

    def resolve_api_key(self) -> str:
        """The key handed over directly, else from the mounted secret file, else from the environment."""
        if self.api_key:
            return self.api_key
        if self.api_key_file:
            path = Path(self.api_key_file)
            try:
                key = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise LLMConfigError(
                    f"generator.llm.apiKeyFile {path} cannot be read ({exc.strerror or exc}); "
                    "mount the secret there or unset apiKeyFile to use the environment variable"
                ) from None
            if not key:
                raise LLMConfigError(f"generator.llm.apiKeyFile {path} is empty; put the API key in it")
            return key
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise LLMConfigError(
                f"no API key: set the environment variable {self.api_key_env} "
                "or generator.llm.apiKeyFile to a mounted secret file"
            )
        return key


@dataclass
class LLMBudget:
    """Calls and tokens spent for one monitor, across versions, against hard caps."""

    max_calls: int
    max_total_tokens: int
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def check(self) -> None:
        """Raise `BudgetExceeded` if another call is not allowed."""
        if self.calls >= self.max_calls:
            raise BudgetExceeded(f"LLM call budget spent: {self.calls}/{self.max_calls} calls")
        if self.total_tokens >= self.max_total_tokens:
            raise BudgetExceeded(
                f"LLM token budget spent: {self.total_tokens}/{self.max_total_tokens} tokens"
            )

    def record(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.calls += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens

    def to_dict(self) -> dict[str, int]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "max_calls": self.max_calls,
            "max_total_tokens": self.max_total_tokens,
        }

    @classmethod
    def starting_from(cls, settings: LLMConfig, spent: Mapping[str, Any] | None) -> LLMBudget:
        """A budget that continues from what earlier versions of the monitor already spent."""
        spent = spent or {}
        return cls(
            max_calls=settings.max_calls,
            max_total_tokens=settings.max_total_tokens,
            calls=int(spent.get("calls", 0)),
            prompt_tokens=int(spent.get("prompt_tokens", 0)),
            completion_tokens=int(spent.get("completion_tokens", 0)),
        )


@dataclass(frozen=True)
class ChatReply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    estimated: bool = False  # True when the server reported no usage and the counts are estimates


class ChatClient:
    """A thin wrapper over `openai.OpenAI` with the settings applied and retries left to the repair loop."""

    def __init__(self, settings: LLMConfig) -> None:
        import openai  # here, not at the top: every `poetmon` start would pay seconds for a client unused

        self.settings = settings
        self._client = openai.OpenAI(
            api_key=settings.resolve_api_key(),
            base_url=settings.base_url,
            timeout=settings.timeout_seconds,
            max_retries=0,
        )

    def complete(self, messages: list[dict[str, str]]) -> ChatReply:
        started = time.perf_counter()
        response = self._client.chat.completions.create(
            model=self.settings.model,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=self.settings.max_tokens,
            temperature=self.settings.temperature,
        )
        text = response.choices[0].message.content or "" if response.choices else ""
        usage = response.usage
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None)
        estimated = not isinstance(prompt, int) or not isinstance(completion, int)
        if estimated:
            prompt, completion = estimate_tokens(prompt_chars(messages)), estimate_tokens(text)
        return ChatReply(
            text=text,
            prompt_tokens=int(prompt),
            completion_tokens=int(completion),
            seconds=time.perf_counter() - started,
            estimated=estimated,
        )


_FENCE_RE = re.compile(r"```[ \t]*(?P<lang>[\w+-]*)[ \t]*\n(?P<code>.*?)```", re.S)


def extract_code(text: str) -> str | None:
    """The answer's Python code block (the longest `python` block, else the longest block), or None."""
    blocks = [(m.group("lang").lower(), m.group("code")) for m in _FENCE_RE.finditer(text)]
    python = [code for lang, code in blocks if lang in ("python", "py", "python3")]
    candidates = python or [code for _, code in blocks]
    if not candidates:
        return None
    return max(candidates, key=len).strip("\n") + "\n"


@dataclass(frozen=True)
class CheckResult:
    """What the generator needs from Enforce: a verdict, reasons to send back, and the full report."""

    passed: bool
    reasons: list[str]
    report: Any = None


@dataclass
class Attempt:
    """One round with the model."""

    round: int
    outcome: str  # accepted | rejected | no_code | error
    reasons: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    tokens_estimated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "outcome": self.outcome,
            "reasons": self.reasons,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens_estimated": self.tokens_estimated,
            "seconds": round(self.seconds, 4),
        }


@dataclass
class LLMOutcome:
    """Accepted code with its enforce result, or why there is none (the engine then falls back)."""

    code: str | None
    check: CheckResult | None
    attempts: list[Attempt]
    budget: LLMBudget
    failure: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.code is not None and self.failure is None


class LLMGenerator:
    """Ask, check, repair: at most `1 + max_repair_rounds` calls, each counted against the budget."""

    def __init__(
        self,
        settings: LLMConfig,
        budget: LLMBudget,
        *,
        client: ChatClient | None = None,
        on_attempt: Callable[[Attempt], None] | None = None,
    ) -> None:
        self.settings = settings
        self.budget = budget
        self._client = client
        self._on_attempt = on_attempt

    def generate(self, context: PromptContext, check: Callable[[str], CheckResult]) -> LLMOutcome:
        import openai

        messages = build_messages(context)
        attempts: list[Attempt] = []
        try:
            client = self._client or ChatClient(self.settings)
        except LLMConfigError as exc:
            return LLMOutcome(None, None, attempts, self.budget, failure=str(exc), messages=messages)
        last_check: CheckResult | None = None
        for round_no in range(1 + max(0, self.settings.max_repair_rounds)):
            try:
                self.budget.check()
                reply = client.complete(messages)
            except BudgetExceeded as exc:
                return LLMOutcome(
                    None, last_check, attempts, self.budget, failure=str(exc), messages=messages
                )
            except openai.OpenAIError as exc:
                # A failed request still counts as a call; one that timed out was probably read by the
                # server, so its prompt counts against the token budget too (estimated, no usage came back).
                spent = estimate_tokens(prompt_chars(messages)) if _timed_out(exc) else 0
                self.budget.record(spent, 0)
                attempt = Attempt(
                    round_no, "error", [f"{type(exc).__name__}: {exc}"], spent, tokens_estimated=spent > 0
                )
                self._note(attempts, attempt)
                return LLMOutcome(
                    None,
                    last_check,
                    attempts,
                    self.budget,
                    failure=f"LLM request failed: {type(exc).__name__}: {exc}",
                    messages=messages,
                )
            self.budget.record(reply.prompt_tokens, reply.completion_tokens)
            code = extract_code(reply.text)
            messages.append({"role": "assistant", "content": reply.text})
            if code is None:
                reasons = ["the answer has no ```python code block; answer with exactly one code block"]
                self._note(
                    attempts,
                    Attempt(
                        round_no,
                        "no_code",
                        reasons,
                        reply.prompt_tokens,
                        reply.completion_tokens,
                        reply.seconds,
                        reply.estimated,
                    ),
                )
                messages.append({"role": "user", "content": repair_message(reasons)})
                continue
            last_check = check(code)
            outcome = "accepted" if last_check.passed else "rejected"
            self._note(
                attempts,
                Attempt(
                    round_no,
                    outcome,
                    list(last_check.reasons),
                    reply.prompt_tokens,
                    reply.completion_tokens,
                    reply.seconds,
                    reply.estimated,
                ),
            )
            if last_check.passed:
                return LLMOutcome(code, last_check, attempts, self.budget, messages=messages)
            messages.append({"role": "user", "content": repair_message(last_check.reasons)})
        rounds = len(attempts)
        return LLMOutcome(
            None,
            last_check,
            attempts,
            self.budget,
            failure=f"no acceptable code after {rounds} round(s); last reasons: "
            + "; ".join((last_check.reasons if last_check else attempts[-1].reasons)[:3]),
            messages=messages,
        )

    def _note(self, attempts: list[Attempt], attempt: Attempt) -> None:
        attempts.append(attempt)
        if self._on_attempt is not None:
            self._on_attempt(attempt)


def _timed_out(exc: BaseException) -> bool:
    import openai

    return isinstance(exc, openai.APITimeoutError)
