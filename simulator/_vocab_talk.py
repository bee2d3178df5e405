"""Words people use in comments, meetings and manual workflows."""

from __future__ import annotations

SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")

COMMENT_OPENERS: dict[str, tuple[str, ...]] = {
    "negative": ("Ugh,", "Honestly this is frustrating:", "Not great:", "This keeps failing.", "Blocked again.",
                 "I'm worried:", "Really annoying,", "This is a mess.", "Disappointed –"),
    "neutral": ("FYI,", "Quick update:", "Note:", "For context,", "Status:", "Heads up:", "As discussed,", ""),
    "positive": ("Great work!", "Nice,", "Love this –", "Awesome,", "Thanks a lot!", "Looks good to me.",
                 "Brilliant,", "Super helpful:"),
}
COMMENT_BODIES: dict[str, tuple[str, ...]] = {
    "negative": ("the {component} still {symptom}", "we are way behind on this", "nobody answered my question",
                 "the fix broke {component} again", "this was supposed to ship last week",
                 "I can't reproduce anything with these steps", "the estimate was way off",
                 "we are waiting on another team and it's stuck"),
    "neutral": ("I moved this to the next sprint", "the {component} change is in review",
                "linked the related ticket", "I'll pick this up after lunch", "updated the description",
                "the PR is open for {component}", "added the logs from staging", "the meeting moved to Thursday"),
    "positive": ("the {component} works perfectly now", "customers already noticed the improvement",
                 "this shipped ahead of schedule", "the new {component} is so much faster",
                 "thanks for jumping on this so quickly", "tests are green and the demo went well"),
}
COMMENT_CLOSERS: dict[str, tuple[str, ...]] = {
    "negative": ("😞", "Please escalate.", "Not acceptable.", "Again.", "", "Can someone help?"),
    "neutral": ("", "", "Thanks.", "Let me know.", "cc the team."),
    "positive": ("🎉", "", "Well done!", "Thanks!", "Kudos to the team."),
}
SENTIMENT_SCORES: dict[str, float] = {"negative": -0.7, "neutral": 0.0, "positive": 0.7}

MEETING_TITLES: tuple[str, ...] = (
    "Sprint planning", "Weekly sync", "Design review", "Retro", "Standup", "Release go/no-go", "Roadmap review",
)
FILLER_UTTERANCES: tuple[str, ...] = (
    "Let's get started.", "Can everyone hear me?", "Quick round of updates first.",
    "The {component} work is on track.", "We saw some issues with the {component} yesterday.",
    "I think we should keep the scope small.", "Agreed.", "Any blockers?", "Not from my side.",
    "The customer call about {component} went well.", "We are a bit behind on the {component}.",
    "Let's park that for now.", "Good point.", "Makes sense to me.", "I'll share the doc after the call.",
    "Numbers for last week look fine.", "Let's wrap up.",
)
ACTION_VERBS: tuple[str, ...] = (
    "fix", "review", "write up", "update", "test", "deploy", "investigate", "draft", "schedule", "clean up",
)
ACTION_OBJECTS: tuple[str, ...] = (
    "the {component} bug", "the {component} spec", "the release notes", "the load test", "the design mockups",
    "the migration plan", "the on-call runbook", "the customer follow-up", "the {component} dashboard",
)
DAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "end of week", "next sprint")
# {name} is the owner of the item, {task} is "<verb> <object>", {day} a due day.
ACTION_TEMPLATES_SELF: tuple[str, ...] = (
    "I'll {task} by {day}.", "I will {task} before {day}.", "Let me {task}, should be done by {day}.",
    "I can take it: I'll {task} by {day}.",
)
ACTION_TEMPLATES_OTHER: tuple[str, ...] = (
    "{name}, can you {task} by {day}?", "Action item: {name} to {task} by {day}.",
    "Let's have {name} {task} before {day}.", "{name} will {task} by {day}.",
)
ACTION_REPLIES: tuple[str, ...] = ("Sure, will do.", "Yes, I'll take it.", "OK.", "On it.")

# Manual actions people repeat by hand (UserActivity.action); resource is "<entity id>:<detail>".
MANUAL_STEPS: tuple[tuple[str, str], ...] = (
    ("set_field", "status_label=shipped"), ("set_field", "priority=high"), ("set_field", "due=+3d"),
    ("set_field", "sprint=current"), ("move_item", "group=done"), ("move_item", "board=archive"),
    ("move_item", "group=triage"), ("notify", "channel=#releases"), ("notify", "user=owner"),
    ("notify", "channel=#support"), ("add_label", "label=needs-qa"), ("add_label", "label=customer"),
    ("assign", "team=triage"), ("create_subtask", "template=release-checklist"), ("archive", "attachments"),
    ("share", "report=weekly-status"), ("set_field", "estimate=8h"), ("notify", "user=assignee"),
)
