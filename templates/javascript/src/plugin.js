// The component's entry point: what statushook calls. Keep it thin; the
// format itself is in render.js, where `npm test` can reach it.
//
// How the WIT (wit/plugin.wit) maps to JavaScript:
// - the export is an object named after the interface, `formatter`, with a
//   `format(event, settings)` method;
// - `event` has camelCase fields (`botId`, `messageId`, `channelName`, and
//   `error.traceId`); an absent option is `undefined`; `timestamp` (a u64) is
//   a BigInt; `status` is kebab case (`number-not-found`);
// - `settings` is an array of `[key, value]` pairs;
// - return `undefined` to send nothing, `{contentType, headers, body}` to
//   send (`headers` an array of `[name, value]`, `body` a Uint8Array); throw
//   a string to fail: the delivery becomes a dead letter with that text.
import { log } from 'statushook:plugin/log@0.1.0';
import { render } from './render.js';

const encoder = new TextEncoder();

export const formatter = {
  format(event, settings) {
    const body = render(event, new Map(settings));
    if (body === undefined) {
      log('debug', `${event.id}: ${event.status} is not sent to this receiver`);
      return undefined;
    }
    return {
      contentType: 'application/json',
      headers: [],
      body: encoder.encode(JSON.stringify(body)),
    };
  },
};
