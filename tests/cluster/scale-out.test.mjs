// scale-out.test.mjs — three comet-bridges over one database behind nginx
// (examples/nginx), on loopback: sessions are spread over every bridge,
// routed back to their own bridge by the sid's node prefix, and when one
// bridge is killed with SIGKILL and started again, no client loses or
// repeats a durable packet.
//
//   COMET_BRIDGE=bridge/asan/comet-bridge \
//   COMET_TEST_DB="host=... port=... user=postgres dbname=postgres" \
//     node --test --test-reporter=tap tests/cluster/*.test.mjs
//
// The scenario: 30 raw-protocol clients (lib/raw-client.mjs, a third of
// them losing answers on purpose) and 2 comet.js clients follow 5
// channels; a publisher commits 3,000 durable packets, one transaction
// each, over about 12 s.  After the first half and a quiet second (every
// poll held), the bridge of the first comet.js client is killed (SIGKILL);
// its clients fall over to the other two while the second half is
// published, and 2 s after the kill it is started again.  The figures
// (per-bridge sessions, fall-over times) are printed as TAP diagnostics.

import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {
  makeDatabase, startBridge, newClient, recordingFetch, cleanup, waitFor, sleep, lit, range,
} from '../../client/test/lib/harness.mjs';
import {startNginx} from './lib/nginx.mjs';
import {RawClient, nodeOf} from './lib/raw-client.mjs';

const NODES = ['b1', 'b2', 'b3'];
const CHANNELS = ['cl0', 'cl1', 'cl2', 'cl3', 'cl4'];
const PACKETS = 3000;
const PER_CHANNEL = PACKETS / CHANNELS.length;
const RAW_CLIENTS = 30;
let victim = null;           // the bridge killed: the one comet.js client 0 is on
let restartedAt = null;

let db;
let nginx;
const bridges = {};          // node -> harness Bridge
const raw = [];              // RawClient
const js = [];               // {rec, fetch: recordingFetch, channels}

before(async () => {
  db = await makeDatabase('cluster');
  await db.grant('cl%', ['subscribe']);
  for (const node of NODES) bridges[node] = await startBridge(db, ['--node-id', node]);
  nginx = await startNginx(NODES.map(node => bridges[node].port));
});

after(async () => {
  await Promise.all(raw.map(client => client.stop()));
  let failure = null;
  try {
    await cleanup();
  } catch (e) {
    failure = e;
  }
  if (nginx) await nginx.stop();
  if (failure) throw failure;
});

/* POST a JSON body to /comet through nginx: {status, json}. */
async function post(body, sid = body.sid) {
  const url = sid === undefined ? nginx.url : `${nginx.url}?sid=${encodeURIComponent(sid)}`;
  const response = await fetch(url, {method: 'POST', body: JSON.stringify(body),
    headers: {'Content-Type': 'application/json'}, signal: AbortSignal.timeout(10000)});
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch (e) {
    json = null;
  }
  return {status: response.status, json, text, retryAfter: response.headers.get('retry-after')};
}

/* A short session through nginx: set up, terminated; resolves to its sid. */
async function probeSetup() {
  const rid = 1000;
  const answer = await post({rid, subscribe: ['cl0'], wait: 1});
  assert.equal(answer.status, 200, `a setup through nginx: ${answer.text}`);
  const sid = answer.json.sid;
  await post({sid, rid: rid + 1, terminate: true});
  return sid;
}

/* node -> count of the nodes of these sids. */
function countNodes(sids) {
  const counts = Object.fromEntries(NODES.map(node => [node, 0]));
  for (const sid of sids) {
    const node = nodeOf(sid);
    counts[node] = (counts[node] || 0) + 1;
  }
  return counts;
}

/* Every session a comet.js client set up: [{sid, at}], the current one last. */
function jsSids(client) {
  return client.fetch.log.filter(e => e.kind === 'setup' && e.status === 200 && e.json && e.json.sid)
    .map(e => ({sid: e.json.sid, at: e.end}));
}

/* The sum of the channels' last seqs: how many packets are committed. */
async function committed() {
  const out = await db.sql(`SELECT sum(comet.last_seq(c)) FROM unnest(ARRAY[${CHANNELS.map(lit).join(',')}]) c;`);
  return Number(out) || 0;
}

/*
 * The publisher: packets from..to-1 of PACKETS, each comet.send in its own
 * transaction (psql's autocommit), round robin over the channels (or all
 * on channel), with a short sleep every 10 so that they spread over time.
 */
function publish(from, to, channel = null) {
  let text = '';
  for (let i = from; i < to; i++) {
    text += `SELECT comet.send(${lit(channel || CHANNELS[i % CHANNELS.length])}, '{"n": ${i}}');\n`;
    if (i % 10 === 9) text += 'SELECT pg_sleep(0.03);\n';
  }
  return db.sql(text, {timeout: 120000});
}

test('the demo page and comet.js are served through nginx', async () => {
  const page = await fetch(`${nginx.base}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<script src="\/comet\.js"><\/script>/);
  const client = await fetch(`${nginx.base}/comet.js`);
  assert.equal(client.status, 200);
  assert.match(client.headers.get('content-type'), /javascript/);
  assert.match(await client.text(), /class Comet/);
  const module = await fetch(`${nginx.base}/comet.mjs`);
  assert.equal(module.status, 200);
  const script = await fetch(`${nginx.base}/app.js`);
  assert.equal(script.status, 200);
});

test('32 clients on 5 channels get all 3,000 packets exactly once, in order, while a bridge is killed and restarted', async t => {
  const started = Date.now();
  // 30 raw clients on two or three channels each, every third losing answers
  for (let i = 0; i < RAW_CLIENTS; i++) {
    const channels = [CHANNELS[i % 5], CHANNELS[(i + 1) % 5]];
    if (i % 4 === 0) channels.push(CHANNELS[(i + 3) % 5]);
    raw.push(new RawClient(nginx.url, channels, {name: `raw${i}`, loseAnswers: i % 3 === 0 ? 0.1 : 0}).start());
  }
  // and comet.js: one on every channel, one on two
  for (const channels of [CHANNELS, ['cl0', 'cl3']]) {
    const fetchLog = recordingFetch();
    const rec = newClient(nginx.url, {channels, fetch: fetchLog.fetch});
    js.push({rec, fetch: fetchLog, channels});
  }
  await waitFor(() => raw.every(c => c.session) && js.every(c => c.rec.client.status === 'online'),
    15000, 'every client to have a session');

  // setups were balanced over every bridge
  const first = [...raw.map(c => c.sessions[0].sid), ...js.map(c => jsSids(c)[0].sid)];
  const initial = countNodes(first);
  t.diagnostic(`first sessions per bridge: ${JSON.stringify(initial)}`);
  for (const node of NODES)
    assert.ok(initial[node] >= 5, `bridge ${node} got ${initial[node]} of ${first.length} setups: ${JSON.stringify(initial)}`);

  // the first half; then a second without packets, so that every client's
  // poll is held when the bridge dies
  await publish(0, PACKETS / 2);
  t.diagnostic(`published ${PACKETS / 2} packets in ${Date.now() - started} ms (from the clients' start)`);
  await sleep(1000);

  // kill the bridge of comet.js client 0 (so comet.js falls over too)
  victim = nodeOf(js[0].rec.client.sid);
  assert.ok(NODES.includes(victim), `comet.js client 0 has a session: ${js[0].rec.client.sid}`);
  const victims = {
    raw: raw.filter(c => c.node === victim),
    js: js.filter(c => nodeOf(c.rec.client.sid) === victim),
  };
  const victimSid = (victims.raw[0] && victims.raw[0].session.sid) || `${victim}.nosuchsession`;
  const killedAt = Date.now();
  await bridges[victim].kill('SIGKILL');
  t.diagnostic(`killed ${victim}, ${victims.raw.length} raw and ${victims.js.length} comet.js sessions on it`);
  // the second half goes on meanwhile
  const publishing = publish(PACKETS / 2, PACKETS);
  publishing.catch(() => {});       // awaited below: no unhandled rejection meanwhile

  // a request for the dead bridge falls over to another one: item-not-found
  const fellOver = await post({sid: victimSid, rid: 1});
  assert.equal(fellOver.status, 404, `a request for ${victim} while it is down: ${fellOver.text}`);
  assert.equal(fellOver.json.error, 'item-not-found');

  // every client of the dead bridge resumes on another one
  await waitFor(() => victims.raw.every(c => c.node && c.node !== victim) &&
    victims.js.every(c => c.rec.client.status === 'online' && nodeOf(c.rec.client.sid) !== victim),
  15000, `the clients of ${victim} to resume elsewhere`);
  const resumedAfter = [
    ...victims.raw.map(c => c.sessions.at(-1).at - killedAt),
    ...victims.js.map(c => jsSids(c).at(-1).at - killedAt),
  ].sort((a, b) => a - b);
  if (resumedAfter.length)
    t.diagnostic(`fall-over: ${resumedAfter.length} sessions resumed on another bridge after ` +
      `${resumedAfter[0]}-${resumedAfter.at(-1)} ms (median ${resumedAfter[resumedAfter.length >> 1]} ms)`);

  // down for a while longer, then back
  await sleep(Math.max(0, 2000 - (Date.now() - killedAt)));
  await bridges[victim].restart();
  restartedAt = Date.now();
  t.diagnostic(`restarted ${victim} ${Date.now() - killedAt} ms after the kill, at ${await committed()} packets`);

  await publishing;
  const publishedAt = Date.now();
  t.diagnostic(`published the other ${PACKETS / 2} in ${publishedAt - killedAt} ms from the kill`);

  // everyone gets everything
  await waitFor(() => raw.every(c => c.error || c.complete(PER_CHANNEL)) &&
    js.every(c => c.channels.every(ch => c.rec.seqs(ch).length >= PER_CHANNEL || c.rec.gaps.length)),
  30000, 'every client to have every packet').catch(e => {
    const behind = raw.filter(c => !c.complete(PER_CHANNEL))
      .map(c => `${c.name}@${c.node}: ${JSON.stringify(Object.fromEntries(c.last))}`);
    throw new Error(`${e.message}; behind: ${behind.join('; ')}\n${nginx.errorLogTail(10)}`);
  });
  t.diagnostic(`all delivered ${Date.now() - publishedAt} ms after the last commit`);

  const expected = range(1, PER_CHANNEL);
  let deliveries = 0;
  for (const c of raw) {
    assert.equal(c.error, null, `${c.name}: ${c.error && c.error.stack}`);
    assert.deepEqual(c.gaps, [], `${c.name} got gaps`);
    for (const channel of c.channels) {
      const seqs = c.seqs.get(channel);
      const wrong = seqs.findIndex((seq, i) => seq !== i + 1);
      assert.deepEqual(seqs, expected, `${c.name} on ${channel}: every seq once, in order; ` +
        `sessions ${JSON.stringify(c.sessions)}; its requests around seq ${seqs[wrong]}:\n` +
        c.traceAround(channel, seqs[wrong]));
      deliveries += seqs.length;
    }
    assert.equal(c.stats.mismatchedRetries, 0, `${c.name}: a repeated rid got another answer`);
  }
  for (const [i, c] of js.entries()) {
    assert.deepEqual(c.rec.gaps, [], `comet.js client ${i} got gaps`);
    assert.deepEqual(c.rec.errors, [], `comet.js client ${i} reported errors`);
    for (const channel of c.channels) {
      assert.deepEqual(c.rec.seqs(channel), expected, `comet.js client ${i} on ${channel}`);
      deliveries += c.rec.seqs(channel).length;
    }
  }

  // the clients are done: stop them before the next tests change the bridges
  await Promise.all(raw.map(c => c.stop()));
  await Promise.all(js.map(c => c.rec.client.close().catch(() => {})));

  const stats = {retries: 0, unreachable: 0, lostAnswers: 0, cutPolls: 0, sessionsLost: 0};
  for (const c of raw) for (const key of Object.keys(stats)) stats[key] += c.stats[key];
  const everySid = [...raw.flatMap(c => c.sessions.map(s => s.sid)),
    ...js.flatMap(c => jsSids(c).map(s => s.sid))];
  t.diagnostic(`${deliveries} packets delivered to ${raw.length + js.length} clients; ` +
    `raw clients: ${JSON.stringify(stats)}`);
  t.diagnostic(`sessions per bridge over the run: ${JSON.stringify(countNodes(everySid))}`);
  // nginx did not send the polls held by the dead bridge to another one:
  // they failed (nginx's 503) and their clients sent them again
  // (a client between two polls at the kill sees no cut poll: at least one)
  assert.ok(victims.raw.length > 0, `raw clients had sessions on ${victim}`);
  assert.ok(victims.raw.some(c => c.stats.unreachable >= 1),
    `a held poll was cut by the kill with nginx's 503: ${JSON.stringify(victims.raw.map(c => c.stats))}`);
  // the victims lost their sessions; the others kept theirs
  for (const c of raw.filter(c => !victims.raw.includes(c)))
    assert.equal(c.sessions.length, 1, `${c.name} was not on ${victim} and kept its session: ` +
      JSON.stringify(c.sessions));
  for (const c of js.filter(c => !victims.js.includes(c)))
    assert.equal(jsSids(c).length, 1, `a comet.js client not on ${victim} kept its session`);
});

test('after the restart, new setups reach the restarted bridge again', async t => {
  victim = victim || 'b2';
  if (!bridges[victim].running) {
    await bridges[victim].restart();
    restartedAt = Date.now();
  }
  // nginx leaves a bridge that refused a connection aside for fail_timeout
  // (5 s), then gives it setups again
  let probes = 0;
  await waitFor(async () => (probes++, nodeOf(await probeSetup()) === victim), 15000,
    `a setup to reach ${victim} again`);
  t.diagnostic(`setup ${probes} of this test reached ${victim}, ${Date.now() - restartedAt} ms after its restart`);
  const sids = [];
  for (let i = 0; i < 30; i++) sids.push(await probeSetup());
  const counts = countNodes(sids);
  t.diagnostic(`30 setups after the restart: ${JSON.stringify(counts)}`);
  for (const node of NODES)
    assert.ok(counts[node] >= 8, `round robin over the three bridges: ${JSON.stringify(counts)}`);
});

test('a session resumed on a bridge that already delivers the channel gets each packet once', async t => {
  // what a client of a dead bridge does on another bridge, many times over:
  // three followers keep the channel listened on every bridge while
  // packets commit, and new sessions resume from a few packets back
  const channel = 'cl-resume';
  const followers = [0, 1, 2].map(i => new RawClient(nginx.url, [channel], {name: `follower${i}`}).start());
  try {
    await waitFor(() => followers.every(c => c.session), 10000, 'the followers to have sessions');
    assert.deepEqual(countNodes(followers.map(c => c.session.sid)), {b1: 1, b2: 1, b3: 1});
    let done = false;
    const publishing = publish(0, 1500, channel).finally(() => { done = true; });
    let setups = 0;
    const doubled = [];
    while (!done) {
      const last = Number(await db.sql(`SELECT comet.last_seq(${lit(channel)});`));
      const from = Math.max(0, last - 3);
      const answer = await post({rid: 1, subscribe: [channel], resume: {[channel]: from}});
      assert.equal(answer.status, 200, answer.text);
      setups++;
      const seqs = answer.json.packets.map(p => p.seq);
      if (!seqs.every((seq, i) => seq > (i ? seqs[i - 1] : from)))
        doubled.push({sid: answer.json.sid, resume: from, positions: answer.json.positions, seqs});
      await post({sid: answer.json.sid, rid: 2, terminate: true});
    }
    await publishing;
    t.diagnostic(`${setups} setups resuming ${channel} while 1,500 packets committed; ` +
      `${doubled.length} answers repeated or reordered a seq`);
    assert.deepEqual(doubled, [], 'every resumed setup carries each seq once, in order, after its resume point');
    await waitFor(() => followers.every(c => c.complete(1500)), 15000, 'the followers to have every packet');
    for (const c of followers) assert.deepEqual(c.seqs.get(channel), range(1, 1500), c.name);
  } finally {
    await Promise.all(followers.map(c => c.stop()));
  }
});

test('a sid in the URL that differs from the body\'s is refused with 400 through nginx', async () => {
  const a = await post({rid: 10, subscribe: ['cl1']});
  assert.equal(a.status, 200, a.text);
  let b;
  for (let tries = 0; !b || nodeOf(b.json.sid) === nodeOf(a.json.sid); tries++) {
    assert.ok(tries < 10, 'setups through nginx all reach one bridge');
    b = await post({rid: 10, subscribe: ['cl1']});
    assert.equal(b.status, 200, b.text);
  }
  // another bridge's session in the URL: routed there, refused there
  const crossed = await post({sid: a.json.sid, rid: 11}, b.json.sid);
  assert.equal(crossed.status, 400, crossed.text);
  assert.equal(crossed.json.error, 'bad-request');
  // the same bridge, another random part
  const forged = `${nodeOf(a.json.sid)}.AAAAAAAAAAAAAAAAAAAAAAAA`;
  const same = await post({sid: a.json.sid, rid: 11}, forged);
  assert.equal(same.status, 400, same.text);
  assert.equal(same.json.error, 'bad-request');
  // the sessions are unharmed
  for (const session of [a, b]) {
    const ended = await post({sid: session.json.sid, rid: 11, terminate: true});
    assert.equal(ended.status, 200, ended.text);
  }
});

test('a sid of a node no bridge has gets item-not-found from some bridge', async () => {
  for (const sid of ['zz.AAAAAAAAAAAAAAAAAAAAAAAA', 'nodot', 'b9.x', '.AAAA']) {
    const answer = await post({sid, rid: 5});
    assert.equal(answer.status, 404, `${sid}: ${answer.text}`);
    assert.equal(answer.json.error, 'item-not-found', sid);
  }
});

test('an oversized body gets a JSON 413, from the bridge or from nginx', async () => {
  const big = n => ({rid: 1, subscribe: ['cl0'], auth: {pad: 'x'.repeat(n)}});
  // over the bridge's --max-body (64 KiB), under nginx's limit (128 KiB)
  const bridgeRefused = await post(big(100000));
  assert.equal(bridgeRefused.status, 413, bridgeRefused.text);
  assert.equal(bridgeRefused.json.error, 'request-too-large');
  // over nginx's limit
  const nginxRefused = await post(big(200000));
  assert.equal(nginxRefused.status, 413, nginxRefused.text);
  assert.equal(nginxRefused.json.error, 'request-too-large');
});

test('with no bridge reachable, nginx answers 503 service-unavailable in JSON', async () => {
  const sid = await probeSetup();
  for (const node of NODES) await bridges[node].stop();
  for (const body of [{rid: 1, subscribe: ['cl0']}, {sid, rid: 1002}]) {
    const answer = await post(body);
    assert.equal(answer.status, 503, answer.text);
    assert.equal(answer.json.error, 'service-unavailable', answer.text);
    assert.equal(answer.retryAfter, '1', 'Retry-After');
  }
});
