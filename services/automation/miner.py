"""Sequential pattern mining over episodes (PrefixSpan), with support and confidence; and the
frequent-bigram baseline it is benchmarked against.

For each (person, trigger type, condition): the step sequences of its episodes go through PrefixSpan
(closed patterns); a pattern's *support* is the number of episodes whose steps contain it (in order, gaps
allowed) and its *confidence* the share of the trigger's episodes that do. A pattern is kept when
support >= ``min_support``, confidence >= ``min_confidence`` and it has at least ``min_steps`` steps; then
only maximal ones (not contained in another kept pattern of the same key), and per person and steps only
the condition with the highest confidence (the most specific one on a tie).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from prefixspan import PrefixSpan  # type: ignore[import-untyped]

from services.automation.sequences import Episode


@dataclass(frozen=True)
class MinerConfig:
    min_support: int = 4
    """Fewest episodes the steps must follow."""
    min_confidence: float = 0.5
    """Smallest share of the trigger's episodes the steps must follow."""
    min_steps: int = 2
    """A one-step reaction is too often a coincidence and saves little."""
    max_steps: int = 8


@dataclass(frozen=True)
class MinedPattern:
    tenant_id: str
    user_id: str
    trigger_type: str
    condition: str
    steps: tuple[str, ...]
    support: int
    episodes: int
    projects: tuple[str, ...]

    @property
    def confidence(self) -> float:
        return self.support / self.episodes if self.episodes else 0.0

    @property
    def key(self) -> tuple[str, str, str, str, tuple[str, ...]]:
        return (self.tenant_id, self.user_id, self.trigger_type, self.condition, self.steps)


Group = tuple[str, str, str, str]


def group_episodes(episodes: Sequence[Episode]) -> dict[Group, list[Episode]]:
    groups: dict[Group, list[Episode]] = defaultdict(list)
    for ep in episodes:
        groups[(ep.tenant_id, ep.user_id, ep.trigger_type, ep.condition)].append(ep)
    return groups


def is_subsequence(small: Sequence[str], big: Sequence[str]) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


def _mine_group(key: Group, eps: list[Episode], config: MinerConfig) -> list[MinedPattern]:
    seqs = [list(e.steps) for e in eps if e.steps]
    if len(seqs) < config.min_support:
        return []
    vocab = sorted({t for s in seqs for t in s})
    index = {t: i for i, t in enumerate(vocab)}
    found = PrefixSpan([[index[t] for t in s] for s in seqs]).frequent(
        config.min_support, closed=True,
        filter=lambda patt, matches: len(patt) <= config.max_steps)
    projects = tuple(sorted({e.project_id for e in eps}))
    kept = [MinedPattern(*key, tuple(vocab[i] for i in patt), int(freq), len(eps), projects)
            for freq, patt in found
            if len(patt) >= config.min_steps and freq / len(eps) >= config.min_confidence]
    return [p for p in kept
            if not any(q is not p and len(q.steps) > len(p.steps) and is_subsequence(p.steps, q.steps)
                       for q in kept)]


def mine(episodes: Sequence[Episode], config: MinerConfig = MinerConfig()) -> list[MinedPattern]:
    """The patterns worth suggesting, best per (tenant, person, steps); sorted by key."""
    best: dict[tuple[str, str, tuple[str, ...]], MinedPattern] = {}
    for key, eps in sorted(group_episodes(episodes).items()):
        for p in _mine_group(key, eps, config):
            slot = (p.tenant_id, p.user_id, p.steps)
            other = best.get(slot)
            if other is None or (p.confidence, len(p.condition)) > (other.confidence, len(other.condition)):
                best[slot] = p
    return sorted(best.values(), key=lambda p: p.key)


def bigram_baseline(episodes: Sequence[Episode], min_support: int = 4, max_steps: int = 8
                    ) -> list[MinedPattern]:
    """Baseline: per (person, trigger), follow the most frequent next action from the trigger while that
    bigram was seen at least ``min_support`` times (no confidence, no mining)."""
    out = []
    for key, eps in sorted(group_episodes(episodes).items()):
        pairs: Counter[tuple[str, str]] = Counter()
        for e in eps:
            chain = ("<trigger>", *e.steps)
            pairs.update(pairwise(chain))
        steps: list[str] = []
        current = "<trigger>"
        while len(steps) < max_steps:
            options = [(n, b) for (a, b), n in pairs.items() if a == current and b not in steps]
            if not options:
                break
            n, nxt = max(options)
            if n < min_support:
                break
            steps.append(nxt)
            current = nxt
        if len(steps) >= 2:
            support = sum(1 for e in eps if is_subsequence(steps, e.steps))
            out.append(MinedPattern(*key, tuple(steps), support, len(eps),
                                    tuple(sorted({e.project_id for e in eps}))))
    return out
