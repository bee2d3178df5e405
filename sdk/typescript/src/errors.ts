/** Typed errors: every non-2xx answer of the gateway is an RFC 9457 problem, carried here. */
import type { components } from "./schema.js";

export type Problem = components["schemas"]["Problem"];

export class GatewayError extends Error {
  readonly status: number;
  readonly problem: Problem;
  /** Seconds from the Retry-After header, when the gateway sent one. */
  readonly retryAfterS: number | undefined;

  constructor(problem: Problem, retryAfterS?: number) {
    super(`${problem.status} ${problem.title}${problem.detail ? `: ${problem.detail}` : ""}`);
    this.name = new.target.name;
    this.status = problem.status;
    this.problem = problem;
    this.retryAfterS = retryAfterS;
  }
}

export class UnauthorizedError extends GatewayError {}
export class ForbiddenError extends GatewayError {}
export class NotFoundError extends GatewayError {}
/** 400 or 422: the request is invalid (`problem.detail` / `problem.errors` name the field). */
export class ValidationError extends GatewayError {}
/** 409: the resource changed since the version the request was made against. */
export class ConflictError extends GatewayError {}
export class RateLimitedError extends GatewayError {}
export class UnavailableError extends GatewayError {}

/** The request did not complete in time (no answer from the gateway). */
export class TimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`no answer within ${timeoutMs} ms`);
    this.name = "TimeoutError";
  }
}

export function errorFor(problem: Problem, retryAfterS?: number): GatewayError {
  const kinds: Record<number, typeof GatewayError> = {
    400: ValidationError, 401: UnauthorizedError, 403: ForbiddenError, 404: NotFoundError, 409: ConflictError,
    422: ValidationError,
    429: RateLimitedError, 503: UnavailableError,
  };
  const Kind = kinds[problem.status] ?? GatewayError;
  return new Kind(problem, retryAfterS);
}
