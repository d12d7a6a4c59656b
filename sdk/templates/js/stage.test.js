// {{name}}'s native tests: `node --test` in this directory, no WebAssembly.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { Event } from 'weir-stage';
import { runOne, initError } from 'weir-stage/testing';
import Stage from './stage.js';

const CONFIG = { field: 'team', value: 'web' };

test('sets the field', () => {
  const out = runOne(Stage, CONFIG, new Event('{{name}}.in', '{"id": 1}'));
  assert.deepEqual(out.json(), { id: 1, team: 'web' });
});

test('refuses events that are not objects', () => {
  const out = runOne(Stage, CONFIG, new Event('{{name}}.in', '[1, 2]'));
  assert.equal(out.invalid, 'payload is a JSON array, not an object');
});

test('refuses a config without field', () => {
  assert.match(initError(Stage, {}), /^config\.field: expected the name of the field/);
});
