/**
 * Typed client of every gateway route. Request and response types come from `schema.d.ts`, generated
 * from the checked-in OpenAPI (`npm run generate`), never copied by hand.
 */
import type { components } from "./schema.js";
import { errorFor, GatewayError, type Problem, TimeoutError } from "./errors.js";

export type Schemas = components["schemas"];

export interface RecommendOptions {
  userId: string;
  /** How many tasks (1..50, default 5). */
  k?: number;
  /** Where the list is shown (default "for_you"). */
  surface?: string;
  includeClosed?: boolean;
  /** Idempotency: the same id gets the same suggestion and slate (default: one per request). */
  requestId?: string;
}

export type Credentials =
  | { kind: "client"; clientId: string; clientSecret: string; scope?: string }
  | { kind: "apiKey"; apiKey: string };

export interface ClientOptions {
  baseUrl: string;
  credentials?: Credentials;
  /** Per-attempt timeout (default 10 s). */
  timeoutMs?: number;
  /** Attempts in total on 429/503/network errors, honouring Retry-After (default 3). */
  maxAttempts?: number;
  /** Cap on one wait between attempts (default 30 s). */
  maxRetryWaitMs?: number;
  /** Refresh a token this long before it expires (default 30 s). */
  refreshSkewMs?: number;
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
}

interface RequestSpec {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  path: string;
  query?: Record<string, string | number | undefined>;
  json?: unknown;
  form?: Record<string, string>;
  auth?: "credentials" | "none" | { bearer: string };
}

const RETRY_STATUSES = new Set([429, 503]);

export class SundayMlClient {
  private token: { value: string; expiresAt: number } | undefined;
  private pendingToken: Promise<string> | undefined;
  private readonly fetchImpl: typeof fetch;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(private readonly options: ClientOptions) {
    this.fetchImpl = options.fetch ?? globalThis.fetch;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  // --- auth -------------------------------------------------------------------------------------
  /** A valid access token (client credentials), fetched once and refreshed before it expires. */
  async accessToken(): Promise<string> {
    const creds = this.options.credentials;
    if (creds?.kind !== "client") throw new Error("accessToken() needs client credentials");
    const skew = this.options.refreshSkewMs ?? 30_000;
    if (this.token && Date.now() < this.token.expiresAt - skew) return this.token.value;
    this.pendingToken ??= this.fetchToken(creds).finally(() => { this.pendingToken = undefined; });
    return this.pendingToken;
  }

  private async fetchToken(creds: { clientId: string; clientSecret: string; scope?: string }): Promise<string> {
    const form: Record<string, string> = {
      grant_type: "client_credentials", client_id: creds.clientId, client_secret: creds.clientSecret,
    };
    if (creds.scope) form.scope = creds.scope;
    const issued = await this.request<Schemas["TokenResponse"]>({ method: "POST", path: "/oauth/token", form, auth: "none" });
    this.token = { value: issued.access_token, expiresAt: Date.now() + issued.expires_in * 1000 };
    return issued.access_token;
  }

  /** Forget the cached token (the next call fetches a new one). */
  invalidateToken(): void { this.token = undefined; }

  // --- capabilities -----------------------------------------------------------------------------
  rankAssignees(body: Schemas["RankRequest"]): Promise<Schemas["Ranking"]> {
    return this.request({ method: "POST", path: "/v1/assignment/rank", json: body });
  }

  predictTask(taskId: string): Promise<Schemas["TimelinePrediction"]> {
    return this.request({ method: "GET", path: `/v1/timeline/tasks/${encodeURIComponent(taskId)}` });
  }

  predictProject(projectId: string, simulations?: number): Promise<Schemas["ProjectTimeline"]> {
    return this.request({ method: "GET", path: `/v1/timeline/projects/${encodeURIComponent(projectId)}`,
                          query: { simulations } });
  }

  // nlp
  searchTasks(body: Schemas["SearchIn"]): Promise<Schemas["SearchResults"]> {
    return this.request({ method: "POST", path: "/v1/nlp/search", json: body });
  }

  similarTasks(taskId: string, k?: number): Promise<Schemas["SearchResults"]> {
    return this.request({ method: "GET", path: `/v1/nlp/tasks/${encodeURIComponent(taskId)}/similar`, query: { k } });
  }

  sentiment(texts: string[]): Promise<Schemas["Sentiments"]> {
    return this.request({ method: "POST", path: "/v1/nlp/sentiment", json: { texts } satisfies Schemas["SentimentIn"] });
  }

  summarizeMeeting(body: Schemas["SummaryIn"]): Promise<Schemas["Summary"]> {
    return this.request({ method: "POST", path: "/v1/nlp/summaries", json: body });
  }

  draftDescription(body: Schemas["DraftIn"]): Promise<Schemas["Draft"]> {
    return this.request({ method: "POST", path: "/v1/nlp/drafts", json: body });
  }

  // personalization
  recommend(options: RecommendOptions): Promise<Schemas["Recommendations"]> {
    return this.request({ method: "GET", path: "/v1/personalization/recommendations", query: {
      user_id: options.userId, k: options.k, surface: options.surface,
      include_closed: options.includeClosed === undefined ? undefined : String(options.includeClosed),
      request_id: options.requestId,
    } });
  }

  // automation
  listSuggestions(options: { userId?: string; limit?: number } = {}): Promise<Schemas["SuggestionPage"]> {
    return this.request({ method: "GET", path: "/v1/automation/suggestions",
                          query: { user_id: options.userId, limit: options.limit } });
  }

  /** suggested -> approved; the approver is this client. Repeating it returns the suggestion unchanged. */
  approveSuggestion(suggestionId: string, reason?: string): Promise<Schemas["Suggestion"]> {
    return this.request({ method: "POST", path: `/v1/automation/suggestions/${encodeURIComponent(suggestionId)}/approve`,
                          json: reason === undefined ? {} : { reason } });
  }

  /** suggested -> rejected (not suggested again to that person for a cool-down). */
  rejectSuggestion(suggestionId: string, reason?: string): Promise<Schemas["Suggestion"]> {
    return this.request({ method: "POST", path: `/v1/automation/suggestions/${encodeURIComponent(suggestionId)}/reject`,
                          json: reason === undefined ? {} : { reason } });
  }

  /** Per ISO week, oldest first, ending with the current one (default 4, at most 52): suggestions shown,
   *  accepted, rejected, expired, and the manual actions saved per week (needs `automation:read`). */
  automationAnalytics(options: { weeks?: number } = {}): Promise<Schemas["Analytics"]> {
    return this.request({ method: "GET", path: "/v1/automation/analytics", query: { weeks: options.weeks } });
  }

  // anomaly
  /** Score a person's newest hour of activity against the hours before it (needs `anomaly:read`). */
  scoreActivity(body: Schemas["ScoreIn"]): Promise<Schemas["AnomalyScore"]> {
    return this.request({ method: "POST", path: "/v1/anomaly/scores", json: body });
  }

  /** The tenant's open and acknowledged incidents (resolved ones too with `includeResolved`). */
  listIncidents(options: { includeResolved?: boolean } = {}): Promise<Schemas["IncidentPage"]> {
    return this.request({ method: "GET", path: "/v1/anomaly/incidents", query: {
      include_resolved: options.includeResolved === undefined ? undefined : String(options.includeResolved) } });
  }

  /** open -> acknowledged (needs `anomaly:write`). */
  acknowledgeIncident(incidentId: string): Promise<Schemas["Incident"]> {
    return this.request({ method: "POST", path: `/v1/anomaly/incidents/${encodeURIComponent(incidentId)}/acknowledge` });
  }

  /** -> resolved (needs `anomaly:write`). */
  resolveIncident(incidentId: string): Promise<Schemas["Incident"]> {
    return this.request({ method: "POST", path: `/v1/anomaly/incidents/${encodeURIComponent(incidentId)}/resolve` });
  }

  /** The tenant's alert rules (the defaults, version 0, until it sets its own; needs `anomaly:admin`). */
  getAnomalyRules(): Promise<Schemas["Rules"]> {
    return this.request({ method: "GET", path: "/v1/anomaly/rules" });
  }

  /** Replace the rules: a bad file is a ValidationError (400, the detail names the field), a stale
   * `expected_version` a ConflictError (409); needs `anomaly:admin`; audited with this client as the author. */
  putAnomalyRules(body: Schemas["RulesIn"]): Promise<Schemas["Rules"]> {
    return this.request({ method: "PUT", path: "/v1/anomaly/rules", json: body });
  }

  // --- webhooks ---------------------------------------------------------------------------------
  createSubscription(body: Schemas["SubscriptionIn"]): Promise<Schemas["SubscriptionCreated"]> {
    return this.request({ method: "POST", path: "/v1/webhooks", json: body });
  }
  listSubscriptions(): Promise<Schemas["Subscription"][]> {
    return this.request({ method: "GET", path: "/v1/webhooks" });
  }
  getSubscription(id: string): Promise<Schemas["Subscription"]> {
    return this.request({ method: "GET", path: `/v1/webhooks/${encodeURIComponent(id)}` });
  }
  updateSubscription(id: string, patch: Schemas["SubscriptionPatch"]): Promise<Schemas["Subscription"]> {
    return this.request({ method: "PATCH", path: `/v1/webhooks/${encodeURIComponent(id)}`, json: patch });
  }
  deleteSubscription(id: string): Promise<void> {
    return this.request({ method: "DELETE", path: `/v1/webhooks/${encodeURIComponent(id)}` });
  }
  listDeliveries(id: string, limit?: number): Promise<Schemas["DeliveryPage"]> {
    return this.request({ method: "GET", path: `/v1/webhooks/${encodeURIComponent(id)}/deliveries`, query: { limit } });
  }
  getDelivery(id: string): Promise<Schemas["Delivery"]> {
    return this.request({ method: "GET", path: `/v1/webhooks/deliveries/${encodeURIComponent(id)}` });
  }
  deadLetters(limit?: number): Promise<Schemas["DeliveryPage"]> {
    return this.request({ method: "GET", path: "/v1/webhooks/dead-letters", query: { limit } });
  }
  replayDelivery(id: string): Promise<Schemas["Delivery"]> {
    return this.request({ method: "POST", path: `/v1/webhooks/deliveries/${encodeURIComponent(id)}/replay` });
  }

  // --- API keys and admin -----------------------------------------------------------------------
  createApiKey(body: Schemas["ApiKeyIn"]): Promise<Schemas["ApiKeyCreated"]> {
    return this.request({ method: "POST", path: "/v1/api-keys", json: body });
  }
  listApiKeys(): Promise<Schemas["ApiKeyPage"]> {
    return this.request({ method: "GET", path: "/v1/api-keys" });
  }
  revokeApiKey(keyId: string): Promise<void> {
    return this.request({ method: "DELETE", path: `/v1/api-keys/${encodeURIComponent(keyId)}` });
  }
  createClient(adminToken: string, body: Schemas["ClientIn"]): Promise<Schemas["ClientCreated"]> {
    return this.request({ method: "POST", path: "/v1/admin/clients", json: body, auth: { bearer: adminToken } });
  }
  health(): Promise<Schemas["Health"]> {
    return this.request({ method: "GET", path: "/healthz", auth: "none" });
  }

  // --- transport --------------------------------------------------------------------------------
  private async headersFor(spec: RequestSpec): Promise<Record<string, string>> {
    const headers: Record<string, string> = { accept: "application/json, application/problem+json" };
    const auth = spec.auth ?? "credentials";
    if (typeof auth === "object") headers.authorization = `Bearer ${auth.bearer}`;
    else if (auth === "credentials") {
      const creds = this.options.credentials;
      if (creds?.kind === "apiKey") headers["x-api-key"] = creds.apiKey;
      else if (creds?.kind === "client") headers.authorization = `Bearer ${await this.accessToken()}`;
    }
    return headers;
  }

  private url(spec: RequestSpec): string {
    const url = new URL(spec.path, this.options.baseUrl);
    for (const [k, v] of Object.entries(spec.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    return url.toString();
  }

  private async request<T>(spec: RequestSpec): Promise<T> {
    const maxAttempts = this.options.maxAttempts ?? 3;
    let refreshed = false;
    for (let attempt = 1; ; attempt++) {
      const response = await this.send(spec);
      if (response.ok) {
        return (response.status === 204 ? undefined : await response.json()) as T;
      }
      const error = await toError(response);
      const tokenAuth = (spec.auth ?? "credentials") === "credentials" && this.options.credentials?.kind === "client";
      if (response.status === 401 && tokenAuth && !refreshed) {
        refreshed = true; // the token may have been revoked or rotated away: fetch a new one, once
        this.invalidateToken();
        continue;
      }
      if (!RETRY_STATUSES.has(response.status) || attempt >= maxAttempts) throw error;
      await this.sleep(this.waitMs(error.retryAfterS, attempt));
    }
  }

  private waitMs(retryAfterS: number | undefined, attempt: number): number {
    const cap = this.options.maxRetryWaitMs ?? 30_000;
    const fallback = 200 * 2 ** (attempt - 1) * (0.8 + 0.4 * Math.random());
    return Math.min(cap, retryAfterS !== undefined ? retryAfterS * 1000 : fallback);
  }

  private async send(spec: RequestSpec): Promise<Response> {
    const headers = await this.headersFor(spec);
    let body: string | undefined;
    if (spec.form) {
      headers["content-type"] = "application/x-www-form-urlencoded";
      body = new URLSearchParams(spec.form).toString();
    } else if (spec.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(spec.json);
    }
    const timeoutMs = this.options.timeoutMs ?? 10_000;
    try {
      return await this.fetchImpl(this.url(spec), {
        method: spec.method, headers, body, signal: AbortSignal.timeout(timeoutMs), redirect: "manual",
      });
    } catch (err) {
      if (err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError")) {
        throw new TimeoutError(timeoutMs);
      }
      throw err;
    }
  }
}

async function toError(response: Response): Promise<GatewayError> {
  const retryAfter = response.headers.get("retry-after");
  const retryAfterS = retryAfter !== null && /^\d+$/.test(retryAfter) ? Number(retryAfter) : undefined;
  let problem: Problem;
  try {
    problem = (await response.json()) as Problem;
  } catch {
    problem = { type: "about:blank", title: response.statusText || "Error", status: response.status };
  }
  return errorFor(problem, retryAfterS);
}
