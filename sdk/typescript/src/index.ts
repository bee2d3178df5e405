export { SundayMlClient } from "./client.js";
export type { ClientOptions, Credentials, RecommendOptions, Schemas } from "./client.js";
export {
  ConflictError, ForbiddenError, GatewayError, NotFoundError, RateLimitedError, TimeoutError, UnauthorizedError,
  UnavailableError, ValidationError,
} from "./errors.js";
export type { Problem } from "./errors.js";
export { ID_HEADER, SIGNATURE_HEADER, signWebhook, TIMESTAMP_HEADER, verifyWebhookSignature } from "./webhooks.js";
export type { paths, components } from "./schema.js";
