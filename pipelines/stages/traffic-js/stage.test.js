// traffic-js's native tests: `node --test` in this directory (no WebAssembly).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { Event } from 'weir-stage';
import { run, runOne, initError } from 'weir-stage/testing';
import Traffic from './stage.js';

const CASES = JSON.parse(readFileSync(new URL('../traffic-cases.json', import.meta.url), 'utf8'));
const CONFIG = CASES.config;

function hit(url, referrer, fields = {}) {
  const payload = { hit_id: 'h-1', ...fields };
  if (url !== null && url !== undefined) payload.url = url;
  if (referrer !== null && referrer !== undefined) payload.referrer = referrer;
  return new Event('tracking.hit', JSON.stringify(payload), [['trace-id', 't1']]);
}

test('the shared classification cases', async (t) => {
  for (const [url, referrer, expected] of CASES.cases) {
    await t.test(`${url} from ${referrer}`, () => {
      const result = runOne(Traffic, CONFIG, hit(url, referrer)).json();
      const got = {};
      for (const k of ['channel', 'source', 'medium', 'campaign']) if (k in result) got[k] = result[k];
      assert.deepEqual(got, expected);
    });
  }
});

test('the hit keeps its fields, subject and headers', () => {
  const out = runOne(Traffic, CONFIG, hit('https://shop.example.com/?utm_source=newsletter&utm_medium=email', '', { ts: '2026-12-05T09:00:00Z' }));
  assert.equal(out.event.subject, 'tracking.hit');
  assert.equal(out.event.header('trace-id'), 't1');
  assert.deepEqual(out.json(), {
    hit_id: 'h-1',
    ts: '2026-12-05T09:00:00Z',
    url: 'https://shop.example.com/?utm_source=newsletter&utm_medium=email',
    referrer: '',
    channel: 'email',
    source: 'newsletter',
    medium: 'email',
  });
});

test('utm fields of the hit count when the URL has none', () => {
  const out = runOne(Traffic, CONFIG, hit('https://shop.example.com/', null, { utm_source: 'newsletter', utm_medium: 'email' }));
  assert.equal(out.json().channel, 'email');
});

test('into nests the result, and the fields can be renamed', () => {
  const config = { into: 'traffic', url_field: 'page', referrer_field: 'ref' };
  const out = runOne(Traffic, config, new Event('t', JSON.stringify({ page: 'https://a.example/', ref: 'https://t.co/x' })));
  assert.deepEqual(out.json().traffic, { channel: 'social', source: 'x', medium: 'social' });
});

test('a batch gets one outcome per hit', () => {
  const out = run(Traffic, CONFIG, [hit('https://shop.example.com/', 'https://www.google.com/'), new Event('tracking.hit', 'not json'), hit(42)]);
  assert.equal(out[0].json().channel, 'search');
  assert.match(out[1].invalid, /^payload is not valid JSON: /);
  assert.equal(out[2].invalid, 'field "url" must be a string, got number 42');
});

test('a payload that is not an object is refused', () => {
  const out = runOne(Traffic, CONFIG, new Event('tracking.hit', '["/", "google"]'));
  assert.equal(out.invalid, 'payload is a JSON list, not an object: a tracking hit is an object with a url and a referrer');
});

test('bad config is refused with the key', () => {
  assert.equal(
    initError(Traffic, { internal_hosts: 'shop.example.com' }),
    'config.internal_hosts: expected a list of host names, like ["example.com"], got "shop.example.com"',
  );
  assert.match(initError(Traffic, { internal_host: [] }), /^config\.internal_host: unknown key; the keys are /);
  assert.equal(initError(Traffic, {}), undefined);
});

test('the sample hits all classify', () => {
  const lines = readFileSync(new URL('../../samples/traffic.jsonl', import.meta.url), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const events = lines.map((l) => new Event(l.subject, l.payload_text ?? JSON.stringify(l.payload)));
  const out = run(Traffic, CONFIG, events);
  const channels = out.filter((o) => o.ok).map((o) => o.json().channel);
  assert.equal(channels.length, lines.length - 2);
  assert.equal(out.filter((o) => o.invalid).length, 2);
  assert.deepEqual(new Set(channels), new Set(['search', 'paid', 'email', 'social', 'referral', 'internal', 'direct', 'other']));
});
