"""Versioned prompt templates with typed context injection.

Each template is a TOML file in ``services/nlp/text/prompts/`` (``id``, ``version``, ``kind``,
``max_tokens``, ``temperature``, a ``[context]`` table of variable -> type ("str", "int", "list[str]") and
``[messages]`` with ``system`` and ``user`` texts using ``{variable}`` fields). Each template kind has one
context dataclass (:data:`CONTEXT_TYPES`); loading checks that the file declares exactly that dataclass'
fields with the same types, and :meth:`PromptTemplate.render` refuses a context of another type, so a
template and the code that fills it cannot drift apart silently. ``list[str]`` values render as "- item"
lines. The cache key of an LLM answer includes ``id`` and ``version``: bump the version when a text changes.

>>> template = load_template("meeting_summary")
>>> template.render(SummaryContext(title="Weekly sync", transcript=("Ana: ...",)))
(ChatMessage(role='system', ...), ChatMessage(role='user', ...))
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union, get_type_hints

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
Kind = Literal["summary", "draft"]


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class SummaryContext:
    """A meeting to summarise: its title and its transcript lines ("Speaker: text")."""

    title: str
    transcript: tuple[str, ...]


@dataclass(frozen=True)
class DraftContext:
    """A task to describe: its title, its project's name, and similar tasks' texts of that project."""

    title: str
    project: str
    similar: tuple[str, ...]


PromptContext = Union[SummaryContext, DraftContext]  # noqa: UP007 (a runtime alias used in isinstance checks)
CONTEXT_TYPES: dict[Kind, type[SummaryContext] | type[DraftContext]] = {"summary": SummaryContext,
                                                                          "draft": DraftContext}
_TYPE_NAMES = {str: "str", int: "int", tuple[str, ...]: "list[str]"}


class TemplateError(ValueError):
    """A template file that is malformed or does not match its kind's context type."""


@dataclass(frozen=True)
class PromptTemplate:
    id: str
    version: int
    kind: Kind
    max_tokens: int
    temperature: float
    variables: dict[str, str]
    system: str
    user: str

    @property
    def key(self) -> str:
        """``id@version``: what cached answers are keyed by."""
        return f"{self.id}@{self.version}"

    def render(self, context: PromptContext) -> tuple[ChatMessage, ...]:
        """The system and user messages with ``context`` injected (TypeError for a context of another kind)."""
        expected = CONTEXT_TYPES[self.kind]
        if type(context) is not expected:
            raise TypeError(f"template {self.key} takes {expected.__name__}, got {type(context).__name__}")
        values = {f.name: _render_value(getattr(context, f.name)) for f in dataclasses.fields(context)}
        return (ChatMessage("system", self.system.format_map(values)),
                ChatMessage("user", self.user.format_map(values)))


def _render_value(value: object) -> str:
    if isinstance(value, tuple):
        return "\n".join(f"- {item}" for item in value) if value else "(none)"
    return str(value)


def parse_template(text: str, source: str = "<string>") -> PromptTemplate:
    """A template from TOML text; TemplateError naming ``source`` when it is malformed or mistyped."""
    try:
        raw = tomllib.loads(text)
        kind = raw["kind"]
        template = PromptTemplate(id=str(raw["id"]), version=int(raw["version"]), kind=kind,
                                  max_tokens=int(raw["max_tokens"]), temperature=float(raw.get("temperature", 0.2)),
                                  variables={str(k): str(v) for k, v in raw["context"].items()},
                                  system=str(raw["messages"]["system"]), user=str(raw["messages"]["user"]))
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
        raise TemplateError(f"{source}: {e}") from e
    if kind not in CONTEXT_TYPES:
        raise TemplateError(f"{source}: unknown kind {kind!r} (one of {sorted(CONTEXT_TYPES)})")
    hints = get_type_hints(CONTEXT_TYPES[kind])
    declared = {name: _TYPE_NAMES.get(tp, repr(tp)) for name, tp in hints.items()}
    if declared != template.variables:
        raise TemplateError(f"{source}: [context] {template.variables} does not match "
                            f"{CONTEXT_TYPES[kind].__name__} {declared}")
    try:
        dummy = {name: "" for name in declared}
        template.system.format_map(dummy)
        template.user.format_map(dummy)
    except (KeyError, IndexError, ValueError) as e:
        raise TemplateError(f"{source}: a message uses a field the context does not have: {e}") from e
    return template


def load_template(name: str, directory: Path = PROMPTS_DIR) -> PromptTemplate:
    """``<directory>/<name>.toml``."""
    path = directory / f"{name}.toml"
    if not path.is_file():
        raise TemplateError(f"no prompt template {path}")
    return parse_template(path.read_text(encoding="utf-8"), str(path))
