// Unit tests of the format, in Node (`npm test`); `cases.json` runs the
// built component through the real host (`statushook plugin-test --cases`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { render } from '../src/render.js';

function event(status) {
  return {
    id: 'evt-1',
    botId: 'acme',
    messageId: 'wamid.TEST',
    status,
    timestamp: 1777325700n,
    recipient: '5939800000000',
    final: true,
  };
}

test('a read status becomes a message event', () => {
  const body = render(event('read'), new Map());
  assert.equal(body.event, 'message.read');
  assert.equal(body.at, '2026-04-27T21:35:00Z');
  assert.equal(body.error, undefined);
});

test('disconnected is dropped and the prefix is a setting', () => {
  assert.equal(render(event('disconnected'), new Map()), undefined);
  const body = render(event('sent'), new Map([['prefix', 'wa']]));
  assert.equal(body.event, 'wa.sent');
});

test('kebab-case statuses are sent in canonical spelling, with a default failure text', () => {
  const body = render(event('number-not-found'), new Map());
  assert.equal(body.event, 'message.number_not_found');
  assert.deepEqual(body.error, { code: null, text: 'Number not found on WhatsApp' });
});
