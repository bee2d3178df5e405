"""Static vocabularies of the simulated Sunday.com world: roles, skills, task types, topics.

Text models need variety, so each task type has several title and description templates and each
project topic its own components; slots are filled from many small word lists.
"""

from __future__ import annotations

# The task types are the mesh's (defined once, in mesh.events); the tables below are keyed by them
# (tests/unit/test_vocabulary.py checks that they cover exactly these).
from mesh.events import TASK_TYPES as TASK_TYPES

# Hours of work per story point differ per kind of work (multiplier on the base hours).
TYPE_HOURS: dict[str, float] = {
    "bug": 0.8, "feature": 1.2, "design": 1.0, "docs": 0.7, "ops": 0.9, "research": 1.1, "data": 1.1, "qa": 0.8,
}

TYPE_SKILLS: dict[str, tuple[str, ...]] = {
    "bug": ("python", "typescript", "go", "sql", "react", "api", "auth", "mobile"),
    "feature": ("python", "typescript", "react", "go", "api", "mobile", "sql", "graphql"),
    "design": ("figma", "ux", "ui", "accessibility", "illustration"),
    "docs": ("writing", "api-docs", "editing"),
    "ops": ("kubernetes", "terraform", "aws", "monitoring", "networking", "security"),
    "research": ("user-research", "analytics", "statistics"),
    "data": ("sql", "spark", "etl", "statistics", "python", "ml"),
    "qa": ("test-automation", "selenium", "python", "typescript"),
}

# Role -> (how much the role takes on each task type, the skills people in the role tend to have).
ROLES: dict[str, tuple[dict[str, float], tuple[str, ...]]] = {
    "engineer": ({"bug": 1.0, "feature": 1.0, "qa": 0.4, "ops": 0.3},
                 ("python", "go", "sql", "api", "auth", "graphql", "typescript")),
    "frontend": ({"bug": 1.0, "feature": 1.0, "design": 0.4},
                 ("typescript", "react", "mobile", "ui", "accessibility", "graphql")),
    "designer": ({"design": 1.0, "research": 0.5}, ("figma", "ux", "ui", "illustration", "accessibility")),
    "sre": ({"ops": 1.0, "bug": 0.6}, ("kubernetes", "terraform", "aws", "monitoring", "networking", "security")),
    "data_scientist": ({"data": 1.0, "research": 0.8}, ("sql", "spark", "etl", "statistics", "python", "ml")),
    "writer": ({"docs": 1.0}, ("writing", "api-docs", "editing")),
    "qa_engineer": ({"qa": 1.0, "bug": 0.6}, ("test-automation", "selenium", "python", "typescript")),
    "pm": ({"research": 0.6, "docs": 0.5}, ("user-research", "analytics", "writing")),
}
ROLE_WEIGHTS: dict[str, float] = {
    "engineer": 0.32, "frontend": 0.18, "designer": 0.1, "sre": 0.08, "data_scientist": 0.08,
    "writer": 0.05, "qa_engineer": 0.09, "pm": 0.1,
}

# (IANA name, UTC offset in hours in January); offsets are fixed for the run (no DST changes).
TIMEZONES: tuple[tuple[str, int], ...] = (
    ("America/Los_Angeles", -8), ("America/New_York", -5), ("America/Sao_Paulo", -3), ("Europe/London", 0),
    ("Europe/Paris", 1), ("Europe/Berlin", 1), ("Asia/Jerusalem", 2), ("Asia/Kolkata", 5),
    ("Asia/Singapore", 8), ("Asia/Tokyo", 9), ("Australia/Sydney", 11),
)

FIRST_NAMES: tuple[str, ...] = (
    "Ada", "Ben", "Chloe", "Dev", "Elif", "Farah", "Gil", "Hana", "Ivan", "Jun", "Kira", "Liam", "Maya", "Noa",
    "Omar", "Priya", "Quinn", "Rafael", "Sara", "Tomas", "Uma", "Victor", "Wen", "Ximena", "Yusuf", "Zoe",
    "Amir", "Bianca", "Carlos", "Dana", "Emeka", "Freya", "Goran", "Hiro", "Ines", "Jonas", "Kemal", "Lena",
)
LAST_NAMES: tuple[str, ...] = (
    "Levi", "Cohen", "Smith", "Garcia", "Kim", "Okafor", "Nakamura", "Rossi", "Novak", "Silva", "Müller",
    "Haddad", "Patel", "Nguyen", "Johansson", "Dubois", "Kowalski", "Mensah", "Tanaka", "Ortiz", "Ibrahim",
)

# Project topic -> components people talk about in that project.
TOPICS: dict[str, tuple[str, ...]] = {
    "billing": ("invoice page", "payment webhook", "tax calculation", "subscription renewal", "refund flow",
                "pricing table", "card vault", "dunning emails"),
    "onboarding": ("signup form", "welcome tour", "workspace templates", "invite flow", "email verification",
                   "first-board wizard", "trial banner"),
    "search": ("search index", "query parser", "autocomplete", "search results page", "ranking service",
               "filters panel", "saved searches"),
    "mobile": ("iOS app", "Android app", "push notifications", "offline sync", "mobile board view",
               "deep links", "app store listing"),
    "notifications": ("email digest", "notification center", "Slack integration", "webhook dispatcher",
                      "mention alerts", "quiet hours setting"),
    "reporting": ("dashboard widgets", "CSV export", "chart renderer", "workload report", "burndown chart",
                  "scheduled reports"),
    "integrations": ("Jira importer", "GitHub sync", "Google Calendar sync", "Zapier connector",
                     "public API", "OAuth consent screen"),
    "permissions": ("role editor", "guest access", "audit log", "SSO login", "SCIM provisioning",
                    "board sharing dialog"),
    "data platform": ("event pipeline", "warehouse loader", "feature tables", "dbt models", "backfill job",
                      "schema registry"),
    "infrastructure": ("Kubernetes cluster", "CI pipeline", "staging environment", "load balancer",
                       "database failover", "log retention", "TLS certificates"),
}
PROJECT_KINDS: tuple[str, ...] = ("revamp", "v2", "launch", "hardening", "Q-goals", "migration", "beta", "cleanup")

# Words that hint at the size of a task; text models can learn effort from them.
SMALL_WORDS: tuple[str, ...] = ("minor", "quick", "small", "tiny", "simple", "one-line")
LARGE_WORDS: tuple[str, ...] = ("major", "end-to-end", "complete", "cross-team", "full", "large")

SYMPTOMS: tuple[str, ...] = (
    "crashes", "times out", "shows stale data", "returns 500", "renders blank", "loses changes",
    "double-charges", "hangs on load", "drops events", "sorts incorrectly", "leaks memory", "logs users out",
)
CONDITIONS: tuple[str, ...] = (
    "on Safari", "for guest users", "after a page refresh", "when the list has more than 1000 items",
    "in dark mode", "on slow networks", "for workspaces in EU", "right after login", "when two people edit",
    "on the first day of the month", "with non-ASCII names", "behind a corporate proxy",
)
CAPABILITIES: tuple[str, ...] = (
    "bulk editing", "keyboard shortcuts", "custom fields", "undo", "templates", "filters by owner",
    "multi-select", "drag and drop", "inline comments", "export to PDF", "recurring items", "dark mode",
)
ARTIFACTS: tuple[str, ...] = (
    "mockups", "user flow", "style guide", "icon set", "prototype", "empty states", "error states",
)
DOC_ARTIFACTS: tuple[str, ...] = (
    "setup guide", "API reference", "release notes", "runbook", "FAQ", "migration guide", "tutorial",
)
OPS_ACTIONS: tuple[str, ...] = (
    "upgrade", "scale out", "add alerts for", "rotate secrets of", "set up backups for", "reduce cost of",
    "move to terraform", "harden",
)
QUESTIONS: tuple[str, ...] = (
    "why users abandon", "how teams use", "what blocks adoption of", "how often people open",
    "which segments churn after using",
)
METRICS: tuple[str, ...] = (
    "weekly active boards", "time to first task", "conversion rate", "retention by cohort", "p95 latency",
)

TITLE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "bug": ("{component} {symptom} {condition}", "Fix: {component} {symptom}", "[{size}] {component} bug {condition}",
            "{Component} {symptom} – reported by customers", "Regression: {component} {symptom} {condition}"),
    "feature": ("Add {capability} to {component}", "Support {capability} in the {component}",
                "{Component}: {size} {capability} support", "Let users use {capability} on {component}",
                "New: {capability} for {component}"),
    "design": ("Design {artifact} for {component}", "{Size} redesign of the {component} {artifact}",
               "Update {component} {artifact}", "{Component} {artifact} for {capability}"),
    "docs": ("Write {doc} for {component}", "Update the {component} {doc}", "{Size} {doc} refresh: {component}",
             "Document {capability} in the {doc}"),
    "ops": ("{Ops} the {component}", "{Size} work: {ops} {component}", "{Component}: {ops} before launch"),
    "research": ("Research {question} {component}", "Interview customers on {component}",
                 "Study {question} {capability}", "{Size} study of {component} usage"),
    "data": ("Build {metric} report from {component}", "Backfill {component} data for {metric}",
             "Pipeline: {metric} by {component}", "{Size} fix of {metric} numbers in {component}"),
    "qa": ("Test plan for {component} {capability}", "Automate regression tests of {component}",
           "{Size} QA pass on {component}", "E2E tests: {component} {condition}"),
}

DESCRIPTION_SENTENCES: dict[str, tuple[str, ...]] = {
    "bug": ("Steps: open the {component} {condition}; it {symptom}.", "Customers report that the {component} "
            "{symptom}.", "Seen {condition}; started after the last release.", "Expected: no error. Actual: it "
            "{symptom}.", "Logs point at the {component}.", "Affects roughly {pct}% of sessions."),
    "feature": ("Users asked for {capability} in the {component}.", "Goal: make {capability} work end to end.",
                "Acceptance: {capability} is available to every plan.", "Behind a feature flag first.",
                "Should also work {condition}.", "Track adoption with {metric}."),
    "design": ("Deliver {artifact} for the {component}.", "Cover {capability} and error states.",
               "Align with the style guide.", "Review with engineering before handoff.",
               "Include mobile breakpoints."),
    "docs": ("The {doc} for the {component} is out of date.", "Explain {capability} with examples.",
             "Add screenshots and a troubleshooting section.", "Link from the in-app help."),
    "ops": ("We need to {ops} the {component}.", "Do it without downtime.", "Current alerts miss {symptom} "
            "incidents.", "Write the runbook when done.", "Budget impact should be neutral."),
    "research": ("Find out {question} the {component}.", "Talk to {pct} customers across segments.",
                 "Summarise findings with quotes.", "Recommend next steps for {capability}."),
    "data": ("The {metric} numbers disagree with finance.", "Source: the {component}.", "Backfill the last {pct} "
             "days.", "Add a data quality check.", "Expose it in the dashboard widgets."),
    "qa": ("Cover {capability} in the {component}.", "Include {condition}.", "Run on every pull request.",
           "Flaky tests must be quarantined."),
}
