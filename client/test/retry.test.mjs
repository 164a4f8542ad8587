// retry.test.mjs — comet.js through a proxy that loses requests and answers:
// a lost answer is asked for again with the same rid and the bridge's cached
// answer makes it count once; a request cut before the bridge saw it is
// simply sent again; a connection cut under a held poll is picked up again
// by the client itself.
import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import {
  makeDatabase, startBridge, newClient, cleanup, waitFor, withTimeout, sendEachSql, range,
  barrier as barrierOn, BRIDGE_ROLE, defer,
} from './lib/harness.mjs';
import {startProxy, once} from './lib/proxy.mjs';

const db = await makeDatabase('retry');
after(cleanup);
await db.sql(`
SELECT comet.grant('r:%', ARRAY['subscribe', 'publish']);
-- a receive function slow enough for a retry to find its rid still at work
CREATE FUNCTION slow_receive(subject text, sid text, channel text, data jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep(1.5);
  PERFORM comet.send(channel, data);
END $$;
GRANT EXECUTE ON FUNCTION slow_receive(text, text, text, jsonb) TO ${BRIDGE_ROLE};
`);
const bridge = await startBridge(db, ['--wait', '20']);
const TEST = {timeout: 40000};
const barrier = (rec, channel) => barrierOn(db, rec, channel);
const count = async channel =>
  Number(await db.sql(`SELECT count(*) FROM comet.packets WHERE channel = '${channel}'`));

/* A client through a new proxy; resolves once it is online with a poll held. */
async function clientThroughProxy(t, options, target = bridge) {
  const proxy = await startProxy(target.port);
  defer(t, () => proxy.close());
  const rec = newClient(proxy.url, {wait: 20, ...options}, t);
  await rec.waitStatus('online');
  await waitFor(() => proxy.outstanding('poll').length === 1, 5000, 'a poll to be held');
  return {proxy, rec};
}

/* The entries of the proxy's log for one rid, in order. */
const byRid = (proxy, rid) => proxy.log.filter(e => e.rid === rid && e.sid !== undefined);

test('the answer to a poll that carried packets is lost: the same rid again, each packet once, in order', TEST, async t => {
  const {proxy, rec} = await clientThroughProxy(t, {channels: ['r:poll']});
  const sid = rec.client.sid;
  const seen = rec.statuses.length;
  const rule = once((req, res) => req.kind === 'poll' && res.json && res.json.packets && res.json.packets.length > 0,
    'drop');
  proxy.responseRule = rule;
  await db.sql(`SELECT comet.send('r:poll', jsonb_build_object('n', g)) FROM generate_series(1, 5) g;`);
  await rec.waitPackets('r:poll', 5);
  await db.sql(sendEachSql('r:poll', 6, 10));
  await rec.waitPackets('r:poll', 10);
  await barrier(rec, 'r:poll');

  assert.equal(rule.fired, 1, 'one answer was dropped');
  const dropped = rule.matched[0];
  assert.equal(dropped.outcome, 'dropped');
  const tries = byRid(proxy, dropped.rid);
  assert.equal(tries.length, 2, `rid ${dropped.rid} was sent twice`);
  assert.equal(tries[1].outcome, 'passed');
  assert.deepEqual(tries[1].response, tries[0].response, 'the bridge answered the retry with the same answer');
  assert.deepEqual(rec.seqs('r:poll'), range(1, 11), 'each packet once, in order');
  assert.deepEqual(rec.datas('r:poll').slice(0, 10).map(d => d.n), range(1, 10));
  assert.equal(rec.client.sid, sid, 'the same session');
  assert.equal(proxy.entries('setup').length, 1, 'no new setup');
  const later = rec.statuses.slice(seen);
  assert.ok(later.indexOf('offline') >= 0 && later.lastIndexOf('online') > later.indexOf('offline'),
    `offline while the answer was lost, online again (${later.join(', ')})`);
  assert.deepEqual(rec.gaps, []);
});

test('the answer to a send is lost: the retry gets the cached answer; the packet is committed once', TEST, async t => {
  const reader = newClient(bridge.url, {channels: ['r:send']}, t);
  await reader.waitStatus('online');
  const {proxy, rec: writer} = await clientThroughProxy(t, {});
  const rule = once(req => req.kind === 'work' && !!req.json.send, 'drop-response');
  proxy.rule = rule;
  let settled = 0;
  const answer = await withTimeout(writer.client.send('r:send', {once: true}).finally(() => settled++), 10000, 'send()');
  assert.equal(answer, undefined);
  assert.equal(settled, 1);
  const tries = byRid(proxy, rule.matched[0].rid);
  assert.deepEqual(tries.map(e => e.outcome), ['dropped', 'passed'], 'sent twice with the same rid');
  assert.deepEqual(tries.map(e => e.status), [200, 200]);
  assert.deepEqual(tries[1].response, tries[0].response, 'the retry got the cached answer');
  assert.deepEqual(tries[1].response.results, [{ok: true}]);
  assert.equal(await count('r:send'), 1, 'committed exactly once');
  await barrier(reader, 'r:send');
  assert.deepEqual(reader.seqs('r:send'), [1, 2], 'the reader got it once');
  assert.deepEqual(reader.packets[0].data, {once: true});
  assert.equal(proxy.entries('setup').length, 1, 'the writer kept its session');
});

test('a request cut before it reached the bridge is sent again and works', TEST, async t => {
  // a setup
  const setupProxy = await startProxy(bridge.port);
  defer(t, () => setupProxy.close());
  const setupRule = once(req => req.kind === 'setup', 'cut');
  setupProxy.rule = setupRule;
  const rec = newClient(setupProxy.url, {channels: ['r:cut'], wait: 20}, t);
  await rec.waitStatus('online');
  assert.equal(setupRule.fired, 1);
  assert.deepEqual(setupProxy.entries('setup').map(e => e.outcome), ['cut', 'passed']);
  assert.deepEqual(rec.statuses, ['connecting', 'offline', 'online']);

  // a send
  const {proxy, rec: writer} = await clientThroughProxy(t, {});
  const sendRule = once(req => req.kind === 'work' && !!req.json.send, 'cut');
  proxy.rule = sendRule;
  assert.equal(await withTimeout(writer.client.send('r:cut', {n: 1}), 10000, 'send()'), undefined);
  const tries = byRid(proxy, sendRule.matched[0].rid);
  assert.deepEqual(tries.map(e => e.outcome), ['cut', 'passed'], 'the same rid again');
  assert.equal(tries[0].status, undefined, 'the bridge never answered the cut one');
  assert.equal(await count('r:cut'), 1);

  // a poll: the one after the held one is cut
  const pollRule = once(req => req.kind === 'poll', 'cut');
  setupProxy.rule = pollRule;
  await rec.waitPackets('r:cut', 1);
  await db.sql(sendEachSql('r:cut', 2, 6));
  await rec.waitPackets('r:cut', 6);
  await barrier(rec, 'r:cut');
  assert.equal(pollRule.fired, 1);
  assert.deepEqual(byRid(setupProxy, pollRule.matched[0].rid).map(e => e.outcome), ['cut', 'passed']);
  assert.deepEqual(rec.seqs('r:cut'), range(1, 7), 'each packet once, in order');
});

test('a send cut while the bridge works on it: 429 for the retry, then the cached answer', TEST, async t => {
  const slow = await startBridge(db, ['--wait', '20', '--receive-function', 'slow_receive']);
  defer(t, () => slow.stop());
  const {proxy, rec} = await clientThroughProxy(t, {}, slow);
  const rule = once(req => req.kind === 'work' && !!req.json.send, 'abandon');
  proxy.rule = rule;
  assert.equal(await withTimeout(rec.client.send('r:slow', {n: 1}), 15000, 'send()'), undefined);
  const tries = byRid(proxy, rule.matched[0].rid);
  assert.equal(tries[0].outcome, 'abandoned');
  assert.ok(tries.some(e => e.status === 429), `a retry found the rid still at work (${tries.map(e => e.status)})`);
  assert.equal(tries.at(-1).status, 200);
  assert.deepEqual(tries.at(-1).response.results, [{ok: true}]);
  assert.equal(await count('r:slow'), 1, 'committed exactly once');
  assert.equal(proxy.entries('setup').length, 1, 'the same session');
});

test('cutAll() under a held poll: offline, online again by itself, nothing lost', TEST, async t => {
  const {proxy, rec} = await clientThroughProxy(t, {channels: ['r:all']});
  const sid = rec.client.sid;
  await db.sql(sendEachSql('r:all', 1, 5));
  await rec.waitPackets('r:all', 5);
  await waitFor(() => proxy.outstanding('poll').length === 1, 5000, 'a poll to be held');
  const held = proxy.outstanding('poll')[0];
  const seen = rec.statuses.length;
  assert.ok(proxy.cutAll() >= 1, 'connections were cut');
  await rec.waitStatus('offline', 5000, seen);
  await db.sql(sendEachSql('r:all', 6, 10));
  await rec.waitStatus('online', 10000, seen);
  await rec.waitPackets('r:all', 10);
  await barrier(rec, 'r:all');
  assert.deepEqual(rec.seqs('r:all'), range(1, 11), 'each packet once, in order');
  assert.ok(byRid(proxy, held.rid).length >= 2, 'the cut poll was sent again with its rid');
  assert.equal(rec.client.sid, sid, 'the bridge kept the session');
  assert.deepEqual(rec.gaps, []);
  assert.deepEqual(rec.errors, []);
});

test('a send whose answer is lost while packets keep the polls going still resolves, in the same session', TEST, async t => {
  // The bridge keeps answers for the last `requests` (2) rids only.  When a
  // send's answer is lost and the polls go on, the client must not move its
  // rids past the window before the send's retry is answered, or the retry
  // ends the session and a send the bridge did is reported as failed.
  const own = await startBridge(db, ['--wait', '20']);
  defer(t, () => own.stop());
  const {proxy, rec} = await clientThroughProxy(t, {channels: ['r:busy']}, own);
  const sid = rec.client.sid;
  let sendRid = null;
  proxy.rule = req => {
    if (req.kind === 'work' && req.json.send) {
      if (sendRid === null) {
        sendRid = req.rid;
        return 'drop-response';     // the bridge does it, the answer is lost
      }
      if (req.rid === sendRid) return 'hold';   // the retry is slow to get there
    }
    return 'pass';
  };
  const sending = rec.client.send('r:busy-out', {important: true});
  sending.catch(() => {});
  await waitFor(() => proxy.heldRequests.length === 1, 5000, 'the retry of the send to be held');
  // packets keep coming, one at a time, until either the client polled past
  // the window (and a later poll was answered) or it waits for the send (and
  // the bridge queues the packets)
  const movedOn = () => proxy.entries('poll').some(e => e.rid >= sendRid + 2 && e.status === 200);
  const waits = async () => (await own.metric('comet_packets_queued')) >= 1;
  let sent = 0;
  while (sent < 10 && !movedOn() && !(await waits())) {
    sent++;
    await db.sql(sendEachSql('r:busy', sent, sent));
    await waitFor(async () => movedOn() || (await waits()), 1000, 'the poll to go on').catch(() => {});
  }
  assert.ok(movedOn() || (await waits()), 'the polls went on, or the client waited');
  const pollsPastWindow = proxy.entries('poll').filter(e => e.rid >= sendRid + 2).map(e => e.rid);
  proxy.release();
  let outcome;
  try {
    outcome = {answer: await withTimeout(sending, 10000, 'send()')};
  } catch (e) {
    outcome = {condition: e.condition, message: e.message};
  }
  assert.equal(await count('r:busy-out'), 1, 'the bridge did the send once');
  assert.deepEqual(outcome, {answer: undefined},
    `send() should resolve: the bridge did it (send rid ${sendRid}; polls sent meanwhile: ${pollsPastWindow.join(', ')}; ` +
    `the retry got ${JSON.stringify(byRid(proxy, sendRid).map(e => [e.status, e.response && e.response.error]))})`);
  assert.equal(rec.client.sid, sid, 'the session was not lost');
  await rec.waitPackets('r:busy', sent);
  await barrier(rec, 'r:busy');
  assert.deepEqual(rec.seqs('r:busy'), range(1, sent + 1));
});

test('packets split between a send\'s answer and a later poll\'s come out in order', TEST, async t => {
  // A send's answer carries the packets queued when the bridge did it; a
  // later poll's answer may reach the client first.  The client must hand
  // out the earlier rid's packets first (else 3 and 4 would look like a gap,
  // then like duplicates).
  const own = await startBridge(db, ['--wait', '20']);
  defer(t, () => own.stop());
  const {proxy, rec} = await clientThroughProxy(t, {channels: ['r:split']}, own);
  await db.sql(sendEachSql('r:split', 1, 1));
  await rec.waitPackets('r:split', 1);
  await waitFor(() => proxy.outstanding('poll').length === 1, 5000, 'a poll to be held');
  const poll = proxy.outstanding('poll')[0];
  let work = null;
  proxy.rule = req => {
    if (req.kind === 'work' && work === null) {
      work = req;
      return 'hold';
    }
    return 'pass';
  };
  proxy.responseRule = req => (req === work ? 'hold' : 'pass');
  const sending = rec.client.send('r:split-out', {n: 1});
  sending.catch(() => {});
  await waitFor(() => proxy.heldRequests.length === 1, 5000, 'the send to be held');
  assert.equal(work.rid, poll.rid + 1);
  // packet 2 answers the held poll; the next poll waits at the bridge for the send's rid
  await db.sql(sendEachSql('r:split', 2, 2));
  await rec.waitPackets('r:split', 2);
  const next = await waitFor(() => proxy.entries('poll').find(e => e.rid === work.rid + 1), 5000, 'the next poll');
  // 3 and 4 are queued: no request is held at the bridge
  await db.sql(sendEachSql('r:split', 3, 4));
  await waitFor(async () => (await own.metric('comet_packets_queued')) === 2, 5000, 'two packets queued');
  proxy.release();                 // the send reaches the bridge and takes 3 and 4
  await waitFor(() => work.answerHeld && proxy.heldRequests.length === 1, 5000, 'the send\'s answer');
  await db.sql(sendEachSql('r:split', 5, 5));
  await waitFor(() => next.outcome === 'passed', 5000, 'the later poll\'s answer to reach the client');
  assert.deepEqual(next.response.packets.map(p => p.seq), [5], 'the later poll carried 5');
  assert.deepEqual(work.response.packets.map(p => p.seq), [3, 4], 'the send\'s answer carries 3 and 4');
  proxy.release();                 // now the send's answer
  assert.equal(await withTimeout(sending, 5000, 'send()'), undefined);
  await rec.waitPackets('r:split', 5);
  await barrier(rec, 'r:split');
  assert.deepEqual(rec.seqs('r:split'), range(1, 6), 'in seq order');
  assert.deepEqual(rec.gaps, []);
});

test('a send while the bridge cannot reach the database: 503, tried again, done once', TEST, async t => {
  const own = await startBridge(db, ['--wait', '20']);
  defer(t, () => own.stop());
  defer(t, () => db.sql(`GRANT CONNECT ON DATABASE ${db.name} TO PUBLIC;`));
  const {proxy, rec} = await clientThroughProxy(t, {}, own);
  // the bridge's role may not connect any more, and its connections end
  await db.sql(`REVOKE CONNECT ON DATABASE ${db.name} FROM PUBLIC;
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
  WHERE application_name = 'comet-bridge' AND datname = current_database()
    AND usename = '${BRIDGE_ROLE}' AND backend_type = 'client backend';`);
  await waitFor(async () => (await own.metric('comet_database_up')) === 0, 5000, 'the bridge to lose its database');
  const seen = rec.statuses.length;
  let settled = 0;
  const sending = rec.client.send('r:db', {n: 1}).finally(() => settled++);
  sending.catch(() => {});
  await waitFor(() => proxy.entries('work').some(e => e.status === 503), 8000, 'the send to be refused for now');
  const refused = proxy.entries('work').find(e => e.status === 503);
  assert.equal(refused.response.error, 'service-unavailable');
  await rec.waitStatus('offline', 5000, seen);
  assert.equal(settled, 0, 'send() waits');
  await db.sql(`GRANT CONNECT ON DATABASE ${db.name} TO PUBLIC;`);
  // the bridge is back within its reconnect backoff (at most 5 s)
  let outcome;
  try {
    outcome = {answer: await withTimeout(sending, 15000, 'send()')};
  } catch (e) {
    outcome = {error: e.condition || e.message};
  }
  const tries = byRid(proxy, refused.rid);
  assert.deepEqual(outcome, {answer: undefined},
    `send() resolves once the database is back (the retries of rid ${refused.rid} were answered ` +
    `${tries.map(e => e.status).join(', ')}; the last at ${tries.at(-1).start - tries[0].start} ms)`);
  assert.equal(byRid(proxy, refused.rid).at(-1).status, 200, 'the same rid, answered at last');
  assert.equal(await count('r:db'), 1, 'done once');
  await rec.waitStatus('online', 5000, seen);
});
