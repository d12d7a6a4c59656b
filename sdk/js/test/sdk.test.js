// The JavaScript SDK, natively: what a stage author sees.
import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';

import { Event, Invalid, Retry, exportStage, kv, log } from 'weir-stage';
import { start, run, runOne, initError, kvPut, kvClear, logs, InitError } from 'weir-stage/testing';

const text = (e) => new TextDecoder().decode(e.payload);

class Probe {
  init(config) {
    if (config.fail) throw new Invalid(config.fail);
    this.prefix = config.prefix ?? '';
    this.seen = 0;
  }
  process(event) {
    this.seen += 1;
    switch (event.text) {
      case 'split':
        return [event, event.withPayload('second')];
      case 'bad':
        throw new Invalid('bad event');
      case 'later':
        throw new Retry('try later');
      case 'drop':
        return null;
      case 'object':
        return { not: 'an event' };
      case 'strings':
        return ['a'];
      case 'boom':
        return undefined.field;
      case 'async':
        return Promise.resolve(event);
      default:
        return event.withHeader('seen', String(this.seen)).withPayload(this.prefix + event.text);
    }
  }
}

export const { init, process } = exportStage(Probe);

beforeEach(() => kvClear());

test('events: reading and changed copies', () => {
  const event = new Event('orders.created', '{"id": 7}', [['trace', 'a'], ['tag', 'x'], ['tag', 'y']]);
  assert.deepEqual(event.payload, new TextEncoder().encode('{"id": 7}'));
  assert.deepEqual(event.json(), { id: 7 });
  assert.equal(event.text, '{"id": 7}');
  assert.equal(event.header('tag'), 'x');
  assert.equal(event.header('Tag'), undefined);
  assert.deepEqual(event.headerValues('tag'), ['x', 'y']);

  const changed = event.withJson({ id: 8 }).withSubject('orders.checked').withHeader('tag', 'z');
  assert.equal(text(changed), '{"id":8}');
  assert.equal(changed.subject, 'orders.checked');
  assert.deepEqual(changed.headers, [['trace', 'a'], ['tag', 'z']]);
  assert.equal(event.subject, 'orders.created');
  assert.deepEqual(event.headerValues('tag'), ['x', 'y']);
  assert.deepEqual(event.addHeader('tag', 'w').headerValues('tag'), ['x', 'y', 'w']);
  assert.deepEqual(event.withoutHeader('tag').headers, [['trace', 'a']]);
  assert.equal(text(Event.fromJson('a', { ü: 1 })), '{"ü":1}');
  assert.deepEqual(new Event('a', 'x', { k: 'v' }).headers, [['k', 'v']]);
});

test('bad payloads throw Invalid with the reason', () => {
  assert.throws(() => new Event('a', 'not json').json(), (e) => e instanceof Invalid && e.message.startsWith('payload is not valid JSON: '));
  assert.throws(() => new Event('a', new Uint8Array([0xff, 0xfe])).text, { message: 'payload is not valid UTF-8' });
  assert.throws(() => new Event('a').withJson(10n), /^Invalid: cannot write the payload as JSON/);
  assert.throws(() => new Event('a', { x: 1 }), /use Event.fromJson/);
});

test('one batch: an outcome per event, in order', () => {
  const out = run(Probe, { prefix: 'p-' }, ['split', 'bad', 'later', 'drop', 'x'].map((t) => new Event('s', t)));
  assert.equal(out.length, 5);
  assert.deepEqual(out[0].events.map(text), ['split', 'second']);
  assert.equal(out[1].invalid, 'bad event');
  assert.equal(out[1].kind, 'invalid');
  assert.deepEqual(out[1].events, []);
  assert.equal(out[2].retry, 'try later');
  assert.equal(out[2].invalid, undefined);
  assert.ok(out[3].dropped);
  assert.equal(text(out[4].event), 'p-x');
  assert.equal(out[4].event.header('seen'), '5');
});

test('state lives across batches', () => {
  const stage = start(Probe, {});
  stage.process([new Event('s', 'a'), new Event('s', 'b')]);
  assert.equal(stage.processOne(new Event('s', 'c')).event.header('seen'), '3');
  assert.equal(stage.stage.seen, 3);
});

test('other errors name the type, message and line', () => {
  const out = runOne(Probe, {}, new Event('s', 'boom'));
  assert.match(out.invalid, /^TypeError: Cannot read properties of undefined \(reading 'field'\) \(at sdk\.test\.js:\d+\)$/);
  const line = Number(out.invalid.match(/:(\d+)\)$/)[1]);
  assert.equal(line, 32); // `return undefined.field;` above
});

test('wrong return values say what was expected', () => {
  assert.equal(
    runOne(Probe, {}, new Event('s', 'object')).invalid,
    'process returned Object {"not":"an event"}; return nothing (drop the event), an Event (map), or an array of Events (split)',
  );
  assert.match(runOne(Probe, {}, new Event('s', 'strings')).invalid, /^process returned an array holding string "a"; an array may hold only Events/);
  assert.match(runOne(Probe, {}, new Event('s', 'async')).invalid, /^process returned a Promise: stages run synchronously/);
});

test('init refusals', () => {
  assert.equal(initError(Probe, { fail: 'config.x: expected a number' }), 'config.x: expected a number');
  assert.equal(initError(Probe, {}), undefined);
  assert.match(initError(Probe, 'not json'), /^config is not valid JSON/);
  class Broken {
    init(config) {
      this.limit = config.limit.toFixed(0);
    }
    process(e) {
      return e;
    }
  }
  assert.match(initError(Broken, {}), /^TypeError: Cannot read properties of undefined \(reading 'toFixed'\) \(at sdk\.test\.js:\d+\)$/);
  assert.throws(() => start(Broken, {}), (e) => e instanceof InitError && e.message.startsWith('init refused the config: TypeError'));
});

test('the exported functions are what weir calls', () => {
  assert.deepEqual(init('{"fail": "no"}'), { tag: 'err', val: 'no' });
  assert.deepEqual(init('{}'), { tag: 'ok', val: undefined });
  // Events as the bindings hand them over: plain objects.
  const raw = (text) => ({ subject: 's', headers: [['h', '1']], payload: new TextEncoder().encode(text) });
  const results = process([raw('bad'), raw('drop'), raw('x')]);
  assert.deepEqual(results.slice(0, 2), [{ tag: 'err', val: { tag: 'invalid', val: 'bad event' } }, { tag: 'ok', val: [] }]);
  const [passed] = results[2].val;
  assert.ok(passed instanceof Event);
  assert.deepEqual(passed.headers, [['h', '1'], ['seen', '3']]);
  assert.equal(passed.text, 'x');
  // The harness accepts what exportStage returned, too.
  assert.equal(text(runOne({ stage: Probe }, {}, new Event('s', 'x')).event), 'x');
});

test('processBatch', () => {
  class Numbered {
    processBatch(events) {
      return events.map((e, i) => e.withHeader('part', `${i}/${events.length}`));
    }
  }
  assert.equal(run(Numbered, {}, [new Event('a'), new Event('a')])[1].event.header('part'), '1/2');

  class Short {
    processBatch(events) {
      return events.slice(0, 1);
    }
  }
  const short = run(Short, {}, [new Event('a'), new Event('a')]);
  assert.equal(short[0].invalid, short[1].invalid);
  assert.match(short[0].invalid, /^processBatch returned 1 results for a batch of 2 events/);

  class Mixed {
    processBatch(events) {
      if (events.some((e) => e.text === 'throw')) throw new RangeError('no');
      return events.map((e) => (e.text === 'drop' ? null : e.text === 'bad' ? new Invalid('refused') : e));
    }
  }
  const mixed = run(Mixed, {}, ['x', 'drop', 'bad'].map((t) => new Event('a', t)));
  assert.deepEqual(mixed.map((o) => o.kind), ['ok', 'ok', 'invalid']);
  assert.ok(mixed[1].dropped);
  assert.equal(mixed[2].invalid, 'refused');
  const alone = run(Mixed, {}, ['x', 'throw'].map((t) => new Event('a', t)));
  assert.equal(alone[0].event.text, 'x');
  assert.match(alone[1].invalid, /^RangeError: no \(at sdk\.test\.js:\d+\)$/);
});

test('kv reads', () => {
  kvPut('shops', 'eu-1', { country: 'DE' });
  kvPut('raw', 'k', new Uint8Array([0, 1]));
  kvPut('text', 'k', 'not json');
  assert.deepEqual(kv.getJson('shops', 'eu-1'), { country: 'DE' });
  assert.equal(kv.getJson('shops', 'nope'), undefined);
  assert.deepEqual(kv.get('raw', 'k'), new Uint8Array([0, 1]));
  assert.throws(() => kv.getJson('text', 'k'), (e) => e instanceof Invalid && e.message.startsWith('kv value text/k is not valid JSON'));
  assert.throws(() => kv.get('rates', 'EUR'), (e) => e instanceof Invalid && e.message.startsWith('KV bucket "rates" is not granted to this stage'));
});

test('a kv error dead-letters the event', () => {
  class Lookup {
    process(event) {
      return event.withJson(kv.getJson('shops', event.text));
    }
  }
  assert.match(runOne(Lookup, {}, new Event('s', 'eu-1')).invalid, /^KV bucket "shops" is not granted/);
  kvPut('shops', 'eu-1', { country: 'DE' });
  assert.deepEqual(runOne(Lookup, {}, new Event('s', 'eu-1')).json(), { country: 'DE' });
});

test('log lines and console output are collected', () => {
  class Chatty {
    init() {
      log.info('loaded %d rules', 3);
    }
    process(event) {
      console.log('saw', event.subject, { n: 1 });
      log.warn('careful');
      return event;
    }
  }
  start(Chatty).processOne(new Event('orders'));
  assert.deepEqual(logs(), [['info', 'loaded 3 rules'], ['info', 'saw orders {"n":1}'], ['warn', 'careful']]);
  assert.throws(() => log.log('loud', 'x'), /unknown log level "loud"/);
});

test('exportStage needs a stage', () => {
  assert.throws(() => exportStage(42), /takes the stage's class/);
  assert.throws(() => exportStage(class Empty {}), /Empty has neither process\(event\) nor processBatch\(events\)/);
});
