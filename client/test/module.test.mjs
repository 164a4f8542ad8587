// module.test.mjs — how comet.js is loaded: require(), the ES module
// comet.mjs (named and default export, the same class), a classic script
// (window.Comet), the copies the bridge serves at /comet.js and /comet.mjs,
// and comet.d.ts naming every public method.
import {test} from 'node:test';
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {createRequire} from 'node:module';
import path from 'node:path';
import vm from 'node:vm';
import {makeDatabase, startBridge, cleanup, CLIENT_DIR} from './lib/harness.mjs';
import CometDefault, {Comet as CometNamed, CometError as CometErrorNamed} from '../comet.mjs';

const require = createRequire(import.meta.url);
const CometRequired = require('../comet.js');
const TEST = {timeout: 20000};
const source = name => readFileSync(path.join(CLIENT_DIR, name));

test('comet.mjs exports the class of comet.js, named and as default', TEST, () => {
  assert.equal(typeof CometNamed, 'function');
  assert.equal(CometNamed.name, 'Comet');
  assert.equal(CometDefault, CometNamed, 'import Comet and import {Comet} are the same');
  assert.equal(CometNamed, CometRequired, 'and the same as require(\'../comet.js\')');
  assert.equal(CometRequired.Comet, CometRequired, 'require(...).Comet');
  assert.equal(CometRequired.default, CometRequired, 'require(...).default');
  assert.equal(CometErrorNamed, CometRequired.CometError);
  assert.equal(CometNamed.CometError, CometErrorNamed, 'Comet.CometError');
  const error = new CometErrorNamed('forbidden', 'no', 403);
  assert.ok(error instanceof Error);
  assert.equal(error.name, 'CometError');
  assert.deepEqual([error.condition, error.message, error.status], ['forbidden', 'no', 403]);
});

test('comet.js as a classic script defines window.Comet', TEST, () => {
  // a page: no module, no require; the script's this is the window
  const window = {fetch: () => new Promise(() => {})};
  window.window = window;
  const context = vm.createContext(window);
  vm.runInContext(source('comet.js').toString('utf8'), context, {filename: 'comet.js'});
  assert.equal(typeof context.Comet, 'function');
  assert.equal(context.Comet.name, 'Comet');
  assert.equal(typeof context.Comet.CometError, 'function');
  for (const method of ['on', 'off', 'send', 'subscribe', 'unsubscribe', 'close', 'lastSeq'])
    assert.equal(typeof context.Comet.prototype[method], 'function', method);
});

test('the bridge serves /comet.js and /comet.mjs, the same bytes as the files', TEST, async t => {
  t.after(cleanup);
  const db = await makeDatabase('module');
  const bridge = await startBridge(db, []);
  for (const name of ['comet.js', 'comet.mjs']) {
    const {status, headers, bytes} = await bridge.get(`/${name}`);
    assert.equal(status, 200, `GET /${name}`);
    assert.match(headers.get('content-type') || '', /^(text|application)\/javascript\b/,
      `/${name} has a JavaScript type (a module script needs one)`);
    assert.ok(bytes.equals(source(name)),
      `/${name} is client/${name} byte for byte (is bridge/comet-bridge older than the file? rebuild it)`);
  }
});

test('comet.d.ts names every public method and property of comet.js', TEST, () => {
  const dts = source('comet.d.ts').toString('utf8');
  const cometClass = dts.slice(dts.indexOf('export class Comet {'));
  assert.ok(cometClass.length > 0, 'a Comet class declaration');
  const proto = CometRequired.prototype;
  const names = Object.getOwnPropertyNames(proto).filter(n => n !== 'constructor' && !n.startsWith('_'));
  assert.ok(names.length >= 8, `public members found (${names.join(', ')})`);
  for (const name of names) {
    const descriptor = Object.getOwnPropertyDescriptor(proto, name);
    const declared = descriptor.get
      ? new RegExp(`\\b(readonly\\s+)?${name}\\s*[:(]|\\bget\\s+${name}\\s*\\(`)
      : new RegExp(`\\b${name}\\s*(<[^>]*>)?\\s*\\(`);
    assert.match(cometClass, declared, `comet.d.ts declares ${descriptor.get ? 'the getter' : 'the method'} ${name}`);
  }
  // what the constructor sets that an application reads
  for (const field of ['url', 'status', 'sid'])
    assert.match(cometClass, new RegExp(`\\b${field}\\s*:`), `comet.d.ts declares ${field}`);
  assert.match(cometClass, /static\s+CometError\b/);
  assert.match(cometClass, /constructor\s*\(\s*url\s*:\s*string/);
  // the events and statuses the top comment of comet.js lists
  const js = source('comet.js').toString('utf8');
  for (const event of ['packet', 'gap', 'status', 'error']) {
    assert.ok(js.includes(`'${event}'`), `comet.js emits ${event}`);
    assert.match(dts, new RegExp(`\\b${event}\\s*:`), `CometEvents has ${event}`);
  }
  for (const status of ['connecting', 'online', 'offline', 'closed'])
    assert.ok(dts.includes(`'${status}'`), `CometStatus has '${status}'`);
  // every option the constructor reads
  const options = new Set([...js.matchAll(/options\.(\w+)/g)].map(m => m[1]));
  for (const option of options)
    assert.match(dts, new RegExp(`\\b${option}\\?\\s*:`), `CometOptions has ${option}`);
  assert.match(dts, /condition\s*:\s*string/);
  assert.match(dts, /export default Comet/);
});
