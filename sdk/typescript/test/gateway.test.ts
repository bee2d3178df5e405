/** Runs against a LIVE gateway started by scripts/test-sdk.sh (GATEWAY_URL, GATEWAY_ADMIN_TOKEN). */
import { describe, expect, it } from "vitest";
import {
  ConflictError, ForbiddenError, NotFoundError, RateLimitedError, SundayMlClient, signWebhook, TimeoutError, UnauthorizedError, UnavailableError,
  ValidationError, verifyWebhookSignature,
} from "../src/index.js";

const baseUrl = process.env.GATEWAY_URL ?? "";
const adminToken = process.env.GATEWAY_ADMIN_TOKEN ?? "";
if (!baseUrl || !adminToken) throw new Error("GATEWAY_URL and GATEWAY_ADMIN_TOKEN must be set (scripts/test-sdk.sh)");

const ALL = ["assignment:read", "timeline:read", "nlp:read", "personalization:read", "automation:read",
             "automation:write", "anomaly:read", "anomaly:write", "anomaly:admin", "webhooks:read", "webhooks:write", "keys:read", "keys:write"];

async function clientFor(tenant: string, options: { plan?: string; scopes?: string[] } = {}) {
  const admin = new SundayMlClient({ baseUrl });
  const created = await admin.createClient(adminToken, { tenant_id: tenant, scopes: options.scopes ?? ALL,
                                                         plan: options.plan ?? null, name: "sdk-test" });
  return { clientId: created.client_id, clientSecret: created.client_secret };
}

function recordingSleep() {
  const waits: number[] = [];
  return { waits, sleep: async (ms: number) => { waits.push(ms); } };
}

describe("SundayMlClient against a live gateway", () => {
  it("gets a token and calls every capability route with typed results", async () => {
    const sdk = new SundayMlClient({ baseUrl, credentials: { kind: "client", ...(await clientFor("acme")) } });
    const ranking = await sdk.rankAssignees({ task_id: "task-1", k: 3 });
    expect(ranking.candidates.map((c) => c.user_id)).toEqual(["ada", "bob", "cy"]);
    const byPayload = await sdk.rankAssignees({ task: { task_id: "new-1", title: "Fix login", priority: "high" } });
    expect(byPayload.task_id).toBe("new-1");
    const task = await sdk.predictTask("task-1");
    expect(task.entity_kind).toBe("task");
    const project = await sdk.predictProject("proj-1", 100);
    expect(project.milestones.length).toBe(1);
    expect((await sdk.health()).status).toBe("ok");
  });

  it("calls the nlp routes (search, similar tasks, sentiment, summaries, drafts)", async () => {
    const sdk = new SundayMlClient({ baseUrl, credentials: { kind: "client", ...(await clientFor("acme")) } });
    const found = await sdk.searchTasks({ query: "login", k: 5, project_id: "proj-1" });
    expect(found.hits.map((h) => h.item_id)).toEqual(["task-1", "task-2"]);
    expect(found.provenance.model_name).toBe("nlp-embedder");
    expect((await sdk.similarTasks("task-1", 3)).hits.map((h) => h.item_id)).toEqual(["task-2"]);
    const moods = await sdk.sentiment(["The build is broken", "Great work"]);
    expect(moods.results.map((r) => r.label)).toEqual(["negative", "positive"]);
    const summary = await sdk.summarizeMeeting({ title: "Planning", project_id: "proj-1",
                                                 utterances: [{ speaker: "Ada", text: "I will fix the login." }] });
    expect(summary.action_items[0]).toMatchObject({ owner: "Ada", linked_task_id: "task-1" });
    const draft = await sdk.draftDescription({ title: "Fix login", project_id: "proj-1" });
    expect(draft.description).toContain("Fix login");
    expect(draft.similar_task_ids).toEqual(["task-1", "task-2"]);

    const globex = new SundayMlClient({ baseUrl, credentials: { kind: "client", ...(await clientFor("globex")) } });
    await expect(globex.similarTasks("task-1")).rejects.toBeInstanceOf(NotFoundError);
    await expect(sdk.searchTasks({ query: "   " })).rejects.toBeInstanceOf(ValidationError);
  });

  it("recommends tasks to a person of the caller's tenant", async () => {
    const sdk = new SundayMlClient({ baseUrl, credentials: { kind: "client", ...(await clientFor("acme")) } });
    const recs = await sdk.recommend({ userId: "ada", k: 2, surface: "home", requestId: "req-1" });
    expect(recs.items.map((i) => i.item_id)).toEqual(["task-1", "task-2"]);
    expect(recs).toMatchObject({ user_id: "ada", surface: "home", suggestion_id: "rec-req-1" });
    const globex = new SundayMlClient({ baseUrl, credentials: { kind: "client", ...(await clientFor("globex")) } });
    await expect(globex.recommend({ userId: "ada" })).rejects.toBeInstanceOf(NotFoundError);
    await expect(sdk.recommend({ userId: "ada", k: 51 })).rejects.toBeInstanceOf(ValidationError);
  });

  it("lists, approves and rejects suggested automations", async () => {
    const creds = await clientFor("acme");
    const sdk = new SundayMlClient({ baseUrl, credentials: { kind: "client", ...creds } });
    expect((await sdk.listSuggestions()).items.map((s) => s.suggestion_id)).toEqual(["sug-1", "sug-2"]);
    expect((await sdk.listSuggestions({ userId: "bob" })).items.map((s) => s.suggestion_id)).toEqual(["sug-2"]);
    const approved = await sdk.approveSuggestion("sug-1");
    expect(approved).toMatchObject({ status: "approved", decided_by: creds.clientId });
    expect(await sdk.approveSuggestion("sug-1")).toEqual(approved); // a repeat: unchanged
    const refused = await sdk.rejectSuggestion("sug-1", "changed my mind").catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConflictError); // a decision the suggestion's state forbids: 409
    expect((refused as ConflictError).problem.detail).toContain("sug-1 is approved");
    expect(await sdk.rejectSuggestion("sug-2", "too noisy")).toMatchObject({ status: "rejected", reason: "too noisy" });
    expect((await sdk.listSuggestions()).items).toEqual([]);
    const analytics = await sdk.automationAnalytics({ weeks: 2 });
    expect(analytics.weeks.map((w) => w.iso_week)).toHaveLength(2);
    expect(analytics.weeks[1]).toMatchObject({ shown: 2, accepted: 1, rejected: 1, actions_saved_estimate: 2 });
    expect(analytics.weeks[0]).toMatchObject({ shown: 0, accepted: 0, rejected: 0 });
    expect((await sdk.automationAnalytics()).weeks).toHaveLength(4);
    await expect(sdk.automationAnalytics({ weeks: 53 })).rejects.toBeInstanceOf(ValidationError);

    const globex = new SundayMlClient({ baseUrl, credentials: { kind: "client", ...(await clientFor("globex")) } });
    await expect(globex.approveSuggestion("sug-1")).rejects.toBeInstanceOf(NotFoundError);
    const reader = new SundayMlClient({ baseUrl, credentials: { kind: "client",
      ...(await clientFor("globex", { scopes: ["automation:read"] })) } });
    expect((await reader.listSuggestions()).items.map((s) => s.suggestion_id)).toEqual(["sug-9"]);
    await expect(reader.approveSuggestion("sug-9")).rejects.toBeInstanceOf(ForbiddenError);
    expect((await reader.automationAnalytics({ weeks: 1 })).weeks[0]).toMatchObject({ shown: 1, accepted: 0 });
  });

  it("raises typed errors carrying the problem details", async () => {
    const globex = new SundayMlClient({ baseUrl, credentials: { kind: "client", ...(await clientFor("globex")) } });
    const notFound = await globex.rankAssignees({ task_id: "task-1" }).catch((e: unknown) => e);
    expect(notFound).toBeInstanceOf(NotFoundError);
    expect((notFound as NotFoundError).problem.status).toBe(404);
    const invalid = await globex.rankAssignees({ k: 3 }).catch((e: unknown) => e);
    expect(invalid).toBeInstanceOf(ValidationError);
    const badKey = new SundayMlClient({ baseUrl, credentials: { kind: "apiKey", apiKey: "smk.0011223344556677.x" } });
    const unauthorized = await badKey.predictTask("task-1").catch((e: unknown) => e);
    expect(unauthorized).toBeInstanceOf(UnauthorizedError);
    expect((unauthorized as UnauthorizedError).problem.type).toMatch(/unauthorized$/);
  });

  it("retries 503 honouring Retry-After, then gives up with UnavailableError", async () => {
    // scripts/test-sdk.sh points the anomaly backend at a port nobody listens on: configured but down
    const { waits, sleep } = recordingSleep();
    const sdk = new SundayMlClient({ baseUrl, credentials: { kind: "client", ...(await clientFor("acme")) },
                                     maxAttempts: 3, sleep });
    const error = await sdk.listIncidents().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnavailableError);
    expect(waits).toEqual([5000, 5000]);
    expect((error as UnavailableError).retryAfterS).toBe(5);
  });

  it("retries 429 honouring Retry-After", async () => {
    const { waits, sleep } = recordingSleep();
    const sdk = new SundayMlClient({ baseUrl, credentials: { kind: "client", ...(await clientFor("acme", { plan: "sdk-tiny" })) },
                                     maxAttempts: 2, maxRetryWaitMs: 3_600_000, sleep });
    await sdk.rankAssignees({ task_id: "task-1" });
    await sdk.rankAssignees({ task_id: "task-1" });
    const error = await sdk.rankAssignees({ task_id: "task-1" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RateLimitedError);
    const retryAfter = (error as RateLimitedError).retryAfterS ?? 0;
    expect(retryAfter).toBeGreaterThan(0);
    expect(waits.length).toBe(1);
    expect(waits[0]).toBe(retryAfter * 1000); // 1 token at 0.01/s: about 100 s
  });

  it("refreshes the token before it expires", async () => {
    let tokenCalls = 0;
    const counting: typeof fetch = (input, init) => {
      if (String(input).endsWith("/oauth/token")) tokenCalls++;
      return fetch(input, init);
    };
    const sdk = new SundayMlClient({ baseUrl, credentials: { kind: "client", ...(await clientFor("acme")) },
                                     fetch: counting, refreshSkewMs: 0 });
    await sdk.predictTask("task-1");
    await sdk.predictTask("task-1");
    expect(tokenCalls).toBe(1);
    const eager = new SundayMlClient({ baseUrl, credentials: { kind: "client", ...(await clientFor("acme")) },
                                       fetch: counting, refreshSkewMs: 10 * 3600 * 1000 });
    tokenCalls = 0;
    await eager.predictTask("task-1");
    await eager.predictTask("task-1");
    expect(tokenCalls).toBe(2);
  });

  it("times out", async () => {
    const slow: typeof fetch = async (input, init) => {
      await new Promise((resolve) => init?.signal?.addEventListener("abort", resolve));
      return fetch(input, init);
    };
    const sdk = new SundayMlClient({ baseUrl, fetch: slow, timeoutMs: 50 });
    await expect(sdk.health()).rejects.toBeInstanceOf(TimeoutError);
  });

  it("manages webhooks (secret once) and API keys", async () => {
    const sdk = new SundayMlClient({ baseUrl, credentials: { kind: "client", ...(await clientFor("acme")) } });
    const created = await sdk.createSubscription({ url: "http://127.0.0.1:9/hook", event_types: ["alert"] });
    expect(created.secret).toMatch(/^whsec_/);
    const fetched = await sdk.getSubscription(created.id);
    expect(JSON.stringify(fetched)).not.toContain(created.secret);
    expect((await sdk.updateSubscription(created.id, { active: false })).active).toBe(false);
    expect((await sdk.listDeliveries(created.id)).items).toEqual([]);
    expect((await sdk.deadLetters()).items).toEqual([]);
    await sdk.deleteSubscription(created.id);
    await expect(sdk.getSubscription(created.id)).rejects.toBeInstanceOf(NotFoundError);

    const key = await sdk.createApiKey({ scopes: ["timeline:read"], name: "ci" });
    const byKey = new SundayMlClient({ baseUrl, credentials: { kind: "apiKey", apiKey: key.key } });
    expect((await byKey.predictTask("task-1")).entity_id).toBe("task-1");
    expect((await sdk.listApiKeys()).items.map((k) => k.key_id)).toContain(key.key_id);
    await sdk.revokeApiKey(key.key_id);
    await expect(byKey.predictTask("task-1")).rejects.toBeInstanceOf(UnauthorizedError);
  });
});

describe("verifyWebhookSignature", () => {
  const body = '{"event_id":"e1"}';
  it("accepts a valid signature and rejects tampering, wrong secrets and stale timestamps", () => {
    const ts = 1_700_000_000;
    const sig = signWebhook("whsec_a", ts, body);
    expect(verifyWebhookSignature("whsec_a", String(ts), body, sig, { nowS: ts + 10 })).toBe(true);
    expect(verifyWebhookSignature("whsec_a", String(ts), body + " ", sig, { nowS: ts })).toBe(false);
    expect(verifyWebhookSignature("whsec_b", String(ts), body, sig, { nowS: ts })).toBe(false);
    expect(verifyWebhookSignature("whsec_a", String(ts), body, sig, { nowS: ts + 301 })).toBe(false);
    expect(verifyWebhookSignature("whsec_a", "abc", body, sig, { nowS: ts })).toBe(false);
  });
  it("matches the gateway's Python signature", () => {
    // python: gateway.webhooks.signing.sign("whsec_x", 1700000000, b'{"a":1}')
    expect(signWebhook("whsec_x", 1_700_000_000, '{"a":1}'))
      .toBe("v1=b3438763ab46d9634b9844c8722818eaf523f803db1327484c6067462a5fd6d1");
  });
});
