"""PII masking with reversible placeholders.

``PiiMasker(people).mask(text)`` replaces e-mail addresses, phone numbers, payment card numbers (Luhn
checked), IBANs (mod-97 checked), IPv4/IPv6 addresses, secrets (well-known API-token shapes, private-key
blocks, ``Bearer`` tokens, and high-entropy values after ``key=``/``token:``/``password=``...) and the names
of the tenant's own people with placeholders such as ``<EMAIL_1>``, ``<CARD_1>``, ``<PERSON_2>``.
The returned :class:`Vault` maps each placeholder back to the text it replaced: ``vault.unmask(reply)``
restores the originals in whatever the LLM wrote. One vault is shared by every text of one call, so the same
value gets the same placeholder everywhere (``mask(text, vault)``).

A person's full name becomes ``<PERSON_n>``, the given name alone ``<PERSON_n_GIVEN>``, the family name
alone ``<PERSON_n_FAMILY>`` (the model still sees that they are one person). Names match on word
boundaries, case-sensitively, so "will" in a sentence is not "Will Smith".
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

PiiKind = Literal["SECRET", "EMAIL", "IBAN", "CARD", "IP", "PHONE", "PERSON"]
KINDS: tuple[PiiKind, ...] = ("SECRET", "EMAIL", "IBAN", "CARD", "IP", "PHONE", "PERSON")
"""Detectors in priority order: where two matches overlap, the earlier kind wins."""

_PLACEHOLDER = re.compile(r"<(?:SECRET|EMAIL|IBAN|CARD|IP|PHONE|PERSON)_\d+(?:_GIVEN|_FAMILY)?>")

_TOKEN_SHAPES = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}|\bgithub_pat_[A-Za-z0-9_]{22,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"
    r"|\bAIza[0-9A-Za-z_-]{35}"
    r"|\bglpat-[A-Za-z0-9_-]{20,}"
    r"|\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    re.DOTALL)
_BEARER = re.compile(r"\b[Bb]earer\s+([A-Za-z0-9._~+/-]{16,}=*)")
_KEY_VALUE = re.compile(
    r"(?i)\b(?:api[_-]?key|apikey|secret(?:[_-]?key)?|client[_-]?secret|access[_-]?key(?:[_-]?id)?|"
    r"auth[_-]?token|access[_-]?token|token|password|passwd|pwd)[\"']?\s*[:=]\s*[\"']?([^\s\"',;]{8,})")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b|\b[A-Z]{2}\d{2}[A-Z0-9]{11,30}\b")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,5}(?:[ .-]\d{2,8}){1,4}(?![\w])"
                    r"|(?<![\w+])\+\d{8,15}(?!\w)")
_NANP_DOTTED = re.compile(r"^\d{3}\.\d{3}\.\d{4}$")
_DATE_LIKE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")

_SECRET_KEYWORDS_ALWAYS = ("password", "passwd", "pwd")
_MIN_ENTROPY_BITS = 3.0


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: PiiKind
    value: str
    variant: str = ""
    """"" for most kinds; for PERSON the person's key and "GIVEN"/"FAMILY"/"" (full name)"""


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a card number (digits only)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616 mod-97 check of an IBAN (spaces ignored)."""
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    rearranged = s[4:] + s[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value``'s character distribution."""
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _secrets(text: str) -> Iterable[Span]:
    for m in _TOKEN_SHAPES.finditer(text):
        yield Span(m.start(), m.end(), "SECRET", m.group(0))
    for m in _BEARER.finditer(text):
        yield Span(m.start(1), m.end(1), "SECRET", m.group(1))
    for m in _KEY_VALUE.finditer(text):
        value, keyword = m.group(1), text[m.start():m.start(1)].lower()
        always = any(k in keyword for k in _SECRET_KEYWORDS_ALWAYS)
        if always or (shannon_entropy(value) >= _MIN_ENTROPY_BITS and any(ch.isdigit() for ch in value)):
            yield Span(m.start(1), m.end(1), "SECRET", value)


def _emails(text: str) -> Iterable[Span]:
    for m in _EMAIL.finditer(text):
        yield Span(m.start(), m.end(), "EMAIL", m.group(0))


def _ibans(text: str) -> Iterable[Span]:
    for m in _IBAN.finditer(text):
        if iban_ok(m.group(0)):
            yield Span(m.start(), m.end(), "IBAN", m.group(0))


def _cards(text: str) -> Iterable[Span]:
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and luhn_ok(digits) and len(set(digits)) > 1:
            yield Span(m.start(), m.end(), "CARD", m.group(0))


def _ips(text: str) -> Iterable[Span]:
    for m in _IPV4.finditer(text):
        try:
            ipaddress.IPv4Address(m.group(0))
        except ValueError:
            continue
        yield Span(m.start(), m.end(), "IP", m.group(0))
    for m in _IPV6.finditer(text):
        candidate = m.group(0).split("%")[0]
        if sum(ch not in ":" for ch in candidate) < 2:
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        yield Span(m.start(), m.end(), "IP", m.group(0))


def _phones(text: str) -> Iterable[Span]:
    for m in _PHONE.finditer(text):
        value = m.group(0)
        digits = re.sub(r"\D", "", value)
        if not 9 <= len(digits) <= 15 or _DATE_LIKE.match(value):
            continue
        # a plain run of digits groups with dots only is a version or a number, not a phone
        if (not value.startswith(("+", "(")) and "." in value and " " not in value and "-" not in value
                and not _NANP_DOTTED.match(value)):
            continue
        # space-separated digit groups are phone numbers only with a trunk 0 ("030 1234567"), else id lists
        if not value.startswith(("+", "(", "0")) and "-" not in value and "." not in value:
            continue
        yield Span(m.start(), m.end(), "PHONE", value)


@dataclass(frozen=True)
class _Person:
    key: int
    full: str
    given: str
    family: str


class _NameMatcher:
    """Word-boundary, case-sensitive matches of full, given and family names (longest first)."""

    def __init__(self, people: Sequence[str]) -> None:
        variants: dict[str, tuple[int, str]] = {}
        for key, name in enumerate(dict.fromkeys(n.strip() for n in people if n.strip()), start=1):
            parts = name.split()
            variants.setdefault(name, (key, ""))
            if len(parts) > 1:
                if len(parts[0]) > 1:
                    variants.setdefault(parts[0], (key, "GIVEN"))
                if len(parts[-1]) > 1:
                    variants.setdefault(parts[-1], (key, "FAMILY"))
        self._variants = variants
        alternatives = sorted(variants, key=len, reverse=True)
        self._pattern = (re.compile(r"(?<![\w@])(?:" + "|".join(map(re.escape, alternatives)) + r")(?![\w@])")
                         if alternatives else None)

    def __call__(self, text: str) -> Iterable[Span]:
        if self._pattern is None:
            return
        for m in self._pattern.finditer(text):
            key, variant = self._variants[m.group(0)]
            yield Span(m.start(), m.end(), "PERSON", m.group(0), f"{key}:{variant}")


@dataclass
class Vault:
    """Placeholder <-> original text for one call; shared by every text masked in it."""

    to_placeholder: dict[tuple[PiiKind, str], str] = field(default_factory=dict)
    originals: dict[str, str] = field(default_factory=dict)
    _counts: Counter[str] = field(default_factory=Counter)
    _people: dict[str, int] = field(default_factory=dict)

    def placeholder(self, span: Span) -> str:
        ident = (span.kind, span.variant or span.value)
        found = self.to_placeholder.get(ident)
        if found is not None:
            return found
        if span.kind == "PERSON":
            person, variant = span.variant.split(":")
            if person not in self._people:
                self._counts["PERSON"] += 1
                self._people[person] = self._counts["PERSON"]
            name = f"<PERSON_{self._people[person]}{'_' + variant if variant else ''}>"
        else:
            self._counts[span.kind] += 1
            name = f"<{span.kind}_{self._counts[span.kind]}>"
        self.to_placeholder[ident] = name
        self.originals[name] = span.value
        return name

    def unmask(self, text: str) -> str:
        """``text`` with every placeholder this vault made replaced by its original (others kept)."""
        return _PLACEHOLDER.sub(lambda m: self.originals.get(m.group(0), m.group(0)), text)

    @property
    def kinds(self) -> Counter[str]:
        """How many distinct values of each kind were masked."""
        return Counter(p[1:].split("_")[0] for p in self.originals)


class PiiMasker:
    """Finds PII in text and replaces it with placeholders; ``people`` are the tenant's own people's names."""

    def __init__(self, people: Sequence[str] = ()) -> None:
        names = _NameMatcher(people)
        self._detectors: tuple[Callable[[str], Iterable[Span]], ...] = (
            _secrets, _emails, _ibans, _cards, _ips, _phones, names)

    def spans(self, text: str) -> list[Span]:
        """Non-overlapping PII spans of ``text`` in order (priority by kind, then the longer match)."""
        found = [s for detect in self._detectors for s in detect(text)]
        rank = {k: i for i, k in enumerate(KINDS)}
        found.sort(key=lambda s: (rank[s.kind], -(s.end - s.start), s.start))
        taken: list[Span] = []
        for span in found:
            if all(span.end <= t.start or span.start >= t.end for t in taken):
                taken.append(span)
        return sorted(taken, key=lambda s: s.start)

    def mask(self, text: str, vault: Vault | None = None) -> tuple[str, Vault]:
        """``text`` with each PII span replaced by its placeholder, and the vault that reverses it."""
        vault = vault if vault is not None else Vault()
        out, at = [], 0
        for span in self.spans(text):
            out += [text[at:span.start], vault.placeholder(span)]
            at = span.end
        out.append(text[at:])
        return "".join(out), vault
