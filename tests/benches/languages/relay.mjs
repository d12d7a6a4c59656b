// A hand-written nats.js relay doing json-map's work, the native baseline of
// the JavaScript stage in tests/benches/languages.rs: subscribe to `in`,
// parse each event, add the fields, serialise, publish to `out` (headers
// kept). Run from a scratch directory whose node_modules/nats links to the
// installed nats package:
//
//   node relay.mjs NATS_URL FIELDS_JSON
//
// Prints `ready` once the subscription is at the server; runs until killed.
import { connect } from 'nats';

const [url, fieldsJson] = process.argv.slice(2);
const fields = JSON.parse(fieldsJson);
const nc = await connect({ servers: url });
const decoder = new TextDecoder();
const encoder = new TextEncoder();
const sub = nc.subscribe('in');
(async () => {
  for await (const m of sub) {
    const event = JSON.parse(decoder.decode(m.data));
    Object.assign(event, fields);
    const payload = encoder.encode(JSON.stringify(event));
    nc.publish('out', payload, m.headers ? { headers: m.headers } : undefined);
  }
})();
await nc.flush();
console.log('ready');
