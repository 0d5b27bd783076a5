// What the receiver gets for one status event. Plain JavaScript with no
// imports, so `npm test` runs it in Node; `plugin.js` wraps it for the host.
//
//   {"event": "message.read", "message": "wamid.HBg...", "to": "5939800000000",
//    "at": "2026-04-27T21:35:00Z", "final": true}
//
// A failure adds "error": {"code", "text"}; `disconnected` events are dropped
// (this receiver only tracks messages); the webhook setting `prefix` (default
// `message`) changes the event name's first word.

/** The statuses that mean the message will not arrive. */
const FAILURES = new Set(['failed', 'number_not_found', 'expired']);

/**
 * The body for `event`, or `undefined` to send nothing.
 *
 * @param {object} event the canonical event, as the host passes it: camelCase
 *   fields, `status` in canonical spelling (`canonicalStatus` converts), the
 *   timestamp in Unix seconds (a BigInt from the host, a number in tests).
 * @param {Map<string, string>} settings the webhook's `settings` table.
 */
export function render(event, settings) {
  const status = canonicalStatus(event.status);
  if (status === 'disconnected') return undefined;
  const prefix = settings.get('prefix') ?? 'message';
  const body = {
    event: `${prefix}.${status}`,
    message: event.messageId ?? null,
    to: event.recipient ?? null,
    at: rfc3339Utc(event.timestamp),
    final: event.final,
  };
  if (FAILURES.has(status)) {
    body.error = { code: event.error?.code ?? null, text: failureText(event, status) };
  }
  return body;
}

/**
 * The canonical name of a status. WIT enums reach JavaScript in kebab case
 * (`number-not-found`); canonical JSON spells them `number_not_found`.
 */
export function canonicalStatus(status) {
  return status.replaceAll('-', '_');
}

/** Unix seconds as RFC 3339 UTC without fractions: `2026-04-27T21:35:00Z`. */
export function rfc3339Utc(seconds) {
  return new Date(Number(seconds) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * The human text of a failure: `error.message`, else `error.title`, else a
 * default for the status (the same texts as the Rust SDK's `failure_text`).
 */
export function failureText(event, status) {
  const given = event.error?.message ?? event.error?.title;
  if (given) return given;
  if (status === 'number_not_found') return 'Number not found on WhatsApp';
  if (status === 'expired') return 'Message expired';
  return 'Message failed';
}
