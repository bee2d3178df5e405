/** Verifying webhook deliveries: HMAC-SHA256 over `${timestamp}.${body}`, constant-time compare. */
import { createHmac, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADER = "sunday-webhook-signature";
export const TIMESTAMP_HEADER = "sunday-webhook-timestamp";
export const ID_HEADER = "sunday-webhook-id";

export interface VerifyOptions {
  /** Largest accepted distance between the signed timestamp and now (default 300 s). */
  toleranceS?: number;
  /** Current time in seconds (tests). */
  nowS?: number;
}

export function signWebhook(secret: string, timestamp: number, body: string | Uint8Array): string {
  const mac = createHmac("sha256", secret);
  mac.update(`${timestamp}.`);
  mac.update(body);
  return `v1=${mac.digest("hex")}`;
}

/** True when `signature` (the Sunday-Webhook-Signature header) signs `body` at `timestamp` with `secret`. */
export function verifyWebhookSignature(
  secret: string, timestamp: string, body: string | Uint8Array, signature: string, options: VerifyOptions = {},
): boolean {
  const tolerance = options.toleranceS ?? 300;
  const now = options.nowS ?? Date.now() / 1000;
  if (!/^\d+$/.test(timestamp) || Math.abs(now - Number(timestamp)) > tolerance) return false;
  const expected = Buffer.from(signWebhook(secret, Number(timestamp), body));
  return signature.split(",").some((part) => {
    const given = Buffer.from(part.trim());
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}
