// resume.test.mjs — comet.js when its session is lost: the bridge killed
// and started again, stopped for a while, a session overflowing, a resume
// that re-sends packets the client has, and packets pruned while the client
// was away.  Every seq is delivered once and in order, or reported as a gap.
import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import {
  makeDatabase, startBridge, newClient, cleanup, recordingFetch, waitFor, withTimeout, sendEachSql,
  range, barrier as barrierOn, defer,
} from './lib/harness.mjs';
import {startProxy} from './lib/proxy.mjs';

const db = await makeDatabase('resume');
after(cleanup);
await db.sql(`SELECT comet.grant('s:%', ARRAY['subscribe', 'publish']);`);
const TEST = {timeout: 45000};
const barrier = (rec, channel) => barrierOn(db, rec, channel);

/* The packets and gaps of a channel as the application saw them, in order. */
function seen(rec, channel) {
  return rec.events
    .filter(e => (e.type === 'packet' || e.type === 'gap') && e.value.channel === channel)
    .map(e => (e.type === 'gap' ? `gap ${e.value.from}-${e.value.to}` : e.value.seq));
}

test('the bridge is killed and started again while packets are committed: a new session resumes, every seq once, in order', TEST, async t => {
  const bridge = await startBridge(db, ['--wait', '20']);
  defer(t, () => bridge.stop());
  const recorder = recordingFetch();
  let authCalls = 0;
  const rec = newClient(bridge.url, {channels: ['s:stream'], fetch: recorder.fetch,
    auth: () => { authCalls++; return null; }}, t);
  await rec.waitStatus('online');
  const firstSid = rec.client.sid;
  const N = 150;
  const sender = db.sql(sendEachSql('s:stream', 1, N, {sleepSeconds: 0.02}), {timeout: 40000});
  sender.catch(() => {});
  await rec.waitPackets('s:stream', 30, 15000);
  const seenBefore = rec.statuses.length;
  await bridge.kill('SIGKILL');
  const deliveredAtKill = rec.packets.length;
  await rec.waitStatus('offline', 5000, seenBefore);
  // packets keep being committed while the bridge is away
  await waitFor(async () => Number(await db.sql(`SELECT comet.last_seq('s:stream')`)) >= deliveredAtKill + 20,
    15000, 'more packets to be committed while the bridge is down');
  await bridge.restart();
  await withTimeout(sender, 40000, 'the sender');
  await rec.waitPackets('s:stream', N, 20000);
  await barrier(rec, 's:stream');

  assert.deepEqual(seen(rec, 's:stream'), range(1, N + 1), 'every seq once, in order, no gap');
  assert.notEqual(rec.client.sid, firstSid, 'a new session');
  assert.equal(rec.client.status, 'online');
  const lost = recorder.log.find(e => e.kind === 'poll' && e.status === 404);
  assert.ok(lost, 'a poll learnt that the session is gone');
  assert.equal(lost.json.error, 'item-not-found');
  const setups = recorder.log.filter(e => e.kind === 'setup' && e.status === 200);
  assert.equal(setups.length, 2, 'one new setup');
  const resumed = setups[1].body.resume;
  assert.ok(resumed && typeof resumed['s:stream'] === 'number', 'the new setup resumes the channel');
  assert.ok(resumed['s:stream'] >= deliveredAtKill,
    `from the last seq delivered (${resumed['s:stream']} >= ${deliveredAtKill})`);
  assert.ok(authCalls >= 2, `auth asked again for the new session (${authCalls})`);
  const later = rec.statuses.slice(seenBefore);
  assert.ok(later.lastIndexOf('online') > later.indexOf('offline'), `offline, then online (${later.join(', ')})`);
  assert.deepEqual(rec.errors, []);
});

test('the bridge down for a while: offline, then online again with no action, nothing lost', TEST, async t => {
  const bridge = await startBridge(db, ['--wait', '20']);
  defer(t, () => bridge.stop());
  const recorder = recordingFetch();
  const rec = newClient(bridge.url, {channels: ['s:down'], fetch: recorder.fetch}, t);
  await rec.waitStatus('online');
  await db.sql(sendEachSql('s:down', 1, 3));
  await rec.waitPackets('s:down', 3);
  const seenBefore = rec.statuses.length;
  const exit = await bridge.stop();
  assert.equal(exit.code, 0, 'the bridge stopped cleanly');
  await rec.waitStatus('offline', 8000, seenBefore);
  const shutdown = recorder.log.find(e => e.kind === 'poll' && e.status === 503);
  assert.equal(shutdown && shutdown.json.error, 'system-shutdown', 'the held poll was told');
  // it keeps trying by itself
  const failed = () => recorder.log.filter(e => e.kind === 'setup' && e.error).length;
  await waitFor(() => failed() >= 2, 8000, 'the client to try again while the bridge is down');
  await db.sql(sendEachSql('s:down', 4, 8));
  assert.equal(rec.client.status, 'offline');
  await bridge.restart();
  await rec.waitStatus('online', 15000, seenBefore);
  await rec.waitPackets('s:down', 8);
  await barrier(rec, 's:down');
  assert.deepEqual(seen(rec, 's:down'), range(1, 9));
  const later = rec.statuses.slice(seenBefore);
  assert.equal(later.at(-1), 'online');
  assert.ok(later.indexOf('offline') < later.lastIndexOf('online'), `offline, then online (${later.join(', ')})`);
  assert.deepEqual(rec.errors, []);
});

test('overflow: no poll while packets pile up past --max-pending; the client resumes with no loss', TEST, async t => {
  const bridge = await startBridge(db, ['--wait', '20', '--max-pending', '5']);
  defer(t, () => bridge.stop());
  const proxy = await startProxy(bridge.port);
  defer(t, () => proxy.close());
  const rec = newClient(proxy.url, {channels: ['s:ov']}, t);
  await rec.waitStatus('online');
  const firstSid = rec.client.sid;
  await db.sql(sendEachSql('s:ov', 1, 3));
  await rec.waitPackets('s:ov', 3);
  await waitFor(async () => proxy.outstanding('poll').length === 1 &&
    (await bridge.metric('comet_requests_pending')) === 1, 5000, 'a poll held at the bridge');
  // the next poll stays in the proxy: the bridge holds none
  proxy.rule = req => (req.kind === 'poll' ? 'hold' : 'pass');
  await db.sql(sendEachSql('s:ov', 4, 4));
  await rec.waitPackets('s:ov', 4);
  await waitFor(() => proxy.heldRequests.length === 1, 5000, 'the next poll to be held in the proxy');
  await waitFor(async () => (await bridge.metric('comet_requests_pending')) === 0, 5000, 'no poll at the bridge');
  await db.sql(sendEachSql('s:ov', 5, 20));
  await waitFor(async () => (await bridge.metric('comet_sessions')) === 0, 5000, 'the session to overflow');
  await waitFor(() => /ended: overflow/.test(bridge.logText), 3000, 'the bridge to log that the session overflowed');
  proxy.rule = null;
  const released = proxy.heldRequests[0].req;
  proxy.release();
  await rec.waitPackets('s:ov', 20, 10000);
  await barrier(rec, 's:ov');
  assert.deepEqual(seen(rec, 's:ov'), range(1, 21), 'every seq once, in order, no gap');
  assert.ok([404, 410].includes(released.status), `the late poll learnt the session is gone (${released.status})`);
  const setups = proxy.entries('setup');
  assert.equal(setups.length, 2);
  assert.deepEqual(setups[1].json.resume, {'s:ov': 4}, 'resumed from the last seq delivered');
  assert.notEqual(rec.client.sid, firstSid);
});

test('de-duplication: a resume from an earlier seq re-sends packets the client has; each seq is seen once', TEST, async t => {
  const bridge = await startBridge(db, ['--wait', '20']);
  defer(t, () => bridge.stop());
  const proxy = await startProxy(bridge.port);
  defer(t, () => proxy.close());
  const rec = newClient(proxy.url, {channels: ['s:dup']}, t);
  await rec.waitStatus('online');
  await db.sql(sendEachSql('s:dup', 1, 10));
  await rec.waitPackets('s:dup', 10);
  // the next setup asks for more than the client needs
  proxy.rewrite = req => (req.kind === 'setup' && req.json.resume
    ? {...req.json, resume: {...req.json.resume, 's:dup': 3}} : undefined);
  // end the session from outside: a rid out of its window
  const sid = rec.client.sid;
  const response = await fetch(bridge.url, {method: 'POST', body: JSON.stringify({sid, rid: 1}),
    signal: AbortSignal.timeout(5000)});
  assert.equal(response.status, 404);
  await waitFor(() => rec.client.sid && rec.client.sid !== sid, 10000, 'a new session');
  await db.sql(sendEachSql('s:dup', 11, 15));
  await rec.waitPackets('s:dup', 15);
  await barrier(rec, 's:dup');

  const setup = proxy.entries('setup')[1];
  assert.deepEqual(setup.original.resume, {'s:dup': 10}, 'the client asked to resume from 10');
  assert.deepEqual(setup.json.resume, {'s:dup': 3}, 'the bridge was asked from 3');
  const resent = (setup.response.packets || []).map(p => p.seq);
  assert.deepEqual(resent, range(4, 10), 'the bridge re-sent 4..10');
  assert.deepEqual(seen(rec, 's:dup'), range(1, 16), 'each seq once, in order');
  assert.deepEqual(rec.gaps, []);
});

test('a gap: packets pruned while the client was away are reported, then the later packets arrive', TEST, async t => {
  const bridge = await startBridge(db, ['--wait', '20', '--inactivity', '1']);
  defer(t, () => bridge.stop());
  const proxy = await startProxy(bridge.port);
  defer(t, () => proxy.close());
  const rec = newClient(proxy.url, {channels: ['s:gap']}, t);
  await rec.waitStatus('online');
  await db.sql(sendEachSql('s:gap', 1, 5));
  await rec.waitPackets('s:gap', 5);
  // away: every connection and request is cut, until the session times out
  const seenBefore = rec.statuses.length;
  proxy.rule = () => 'cut';
  proxy.cutAll();
  await rec.waitStatus('offline', 5000, seenBefore);
  await waitFor(async () => (await bridge.metric('comet_sessions')) === 0, 8000, 'the session to time out');
  await db.sql(sendEachSql('s:gap', 6, 10));
  await db.sql(`SELECT comet.prune('0')`);
  assert.equal(await db.sql(`SELECT count(*) FROM comet.packets WHERE channel = 's:gap'`), '0',
    'packets 1..10 pruned');
  await db.sql(sendEachSql('s:gap', 11, 12));
  proxy.rule = null;
  await rec.waitPackets('s:gap', 7, 15000);
  await barrier(rec, 's:gap');
  assert.deepEqual(rec.gaps, [{channel: 's:gap', from: 6, to: 10}]);
  assert.deepEqual(seen(rec, 's:gap'), [1, 2, 3, 4, 5, 'gap 6-10', 11, 12, 13],
    'the gap is reported where the packets would have been');
  assert.deepEqual(proxy.entries('setup').at(-1).json.resume, {'s:gap': 5});
  assert.equal(rec.client.lastSeq('s:gap'), 13);

  // a page that loaded a snapshot as of seq 2 hears of the gap too
  const late = newClient(bridge.url, {channels: ['s:gap'], resume: {'s:gap': 2}}, t);
  await late.waitStatus('online');
  await late.waitPackets('s:gap', 3);
  assert.deepEqual(seen(late, 's:gap'), ['gap 3-10', 11, 12, 13]);
});

test('a session lost while a subscribe is unconfirmed: the channel resumes after the packets already delivered, no false gap', TEST, async t => {
  // The subscribe took effect on the bridge (its answer was lost), packet 3
  // of the channel was delivered on the poll, then the session ended.  The
  // new session subscribes again; packets 4 and 5, committed meanwhile, are
  // still kept and must be delivered, not reported as a gap.
  const bridge = await startBridge(db, ['--wait', '20']);
  defer(t, () => bridge.stop());
  const proxy = await startProxy(bridge.port);
  defer(t, () => proxy.close());
  const rec = newClient(proxy.url, {channels: ['s:base']}, t);
  await rec.waitStatus('online');
  const sid = rec.client.sid;
  await db.sql(sendEachSql('s:sub', 1, 2));
  let subscribeRid = null;
  proxy.rule = req => {
    if (req.kind === 'work' && req.json.subscribe) {
      if (subscribeRid === null) {
        subscribeRid = req.rid;
        return 'drop-response';
      }
      if (req.sid === sid) return 'hold';    // its retry does not get through
    }
    if (req.kind === 'setup') return 'hold';  // nor does the next setup, for now
    return 'pass';
  };
  const subscribing = rec.client.subscribe('s:sub');
  subscribing.catch(() => {});
  await waitFor(() => proxy.heldRequests.length === 1, 5000, 'the subscribe\'s retry to be held');
  await db.sql(sendEachSql('s:sub', 3, 3));
  await rec.waitPackets('s:sub', 1);
  assert.deepEqual(rec.seqs('s:sub'), [3], 'packet 3 came on the poll');
  // the session ends (a rid out of its window)
  const response = await fetch(bridge.url, {method: 'POST', body: JSON.stringify({sid, rid: 1}),
    signal: AbortSignal.timeout(5000)});
  assert.equal(response.status, 404);
  await waitFor(() => proxy.heldRequests.some(h => h.req.kind === 'setup'), 8000, 'the new setup');
  await db.sql(sendEachSql('s:sub', 4, 5));
  proxy.rule = null;
  proxy.release();
  const position = await withTimeout(subscribing, 8000,
    'subscribe() to settle (if it never does, the unconfirmed subscribe was dropped with the session: see the next test)');
  assert.equal(typeof position, 'number');
  await db.sql(sendEachSql('s:sub', 6, 6));
  await rec.waitPacket(p => p.channel === 's:sub' && p.seq === 6, 8000, 'packet 6');
  await barrier(rec, 's:sub');
  assert.deepEqual(seen(rec, 's:sub'), [3, 4, 5, 6, 7], 'packets 4 and 5 are kept: delivered, not a gap');
});

test('a subscribe and an unsubscribe in flight when the session is lost are done in the new session', TEST, async t => {
  const bridge = await startBridge(db, ['--wait', '20']);
  defer(t, () => bridge.stop());
  const proxy = await startProxy(bridge.port);
  defer(t, () => proxy.close());
  const rec = newClient(proxy.url, {channels: ['s:stay', 's:leave']}, t);
  await rec.waitStatus('online');
  const sid = rec.client.sid;
  // the request with both never gets through in this session
  proxy.rule = req => (req.kind === 'work' && req.sid === sid ? 'cut' : 'pass');
  const subscribing = rec.client.subscribe('s:join');
  const unsubscribing = rec.client.unsubscribe('s:leave');
  subscribing.catch(() => {});
  unsubscribing.catch(() => {});
  await waitFor(() => proxy.entries('work').length >= 1, 5000, 'the request to be tried');
  // the session ends (a rid out of its window) while the client retries
  const response = await fetch(bridge.url, {method: 'POST', body: JSON.stringify({sid, rid: 1}),
    signal: AbortSignal.timeout(5000)});
  assert.equal(response.status, 404);
  await waitFor(() => rec.client.sid && rec.client.sid !== sid, 10000, 'a new session');
  const settled = p => withTimeout(p.then(v => ({ok: v}), e => ({error: e.condition})), 8000,
    'the promise to settle').catch(e => ({never: e.message}));
  const [subscribed, unsubscribed] = await Promise.all([settled(subscribing), settled(unsubscribing)]);
  assert.deepEqual(subscribed, {ok: 0}, 'subscribe() resolves to the position, in the new session');
  assert.deepEqual(unsubscribed, {ok: undefined}, 'unsubscribe() resolves');
  assert.deepEqual(rec.client.channels.sort(), ['s:join', 's:stay']);
  await db.sql(sendEachSql('s:join', 1, 1));
  await rec.waitPackets('s:join', 1);
});

test('a setup refused for the session limit (503) is tried again until a session frees up', TEST, async t => {
  const bridge = await startBridge(db, ['--wait', '20', '--max-sessions', '1']);
  defer(t, () => bridge.stop());
  const first = newClient(bridge.url, {channels: ['s:limit']}, t);
  await first.waitStatus('online');
  const recorder = recordingFetch();
  const second = newClient(bridge.url, {channels: ['s:limit'], fetch: recorder.fetch}, t);
  await second.waitStatus('offline');
  await waitFor(() => recorder.log.filter(e => e.kind === 'setup' && e.status === 503).length >= 2, 8000,
    'the second client to be refused and to try again');
  const refused = recorder.log.find(e => e.kind === 'setup' && e.status === 503);
  assert.equal(refused.json.error, 'service-unavailable');
  assert.deepEqual(second.errors, [], 'a 503 is not final');
  await first.client.close();
  await second.waitStatus('online', 15000);
  await db.sql(sendEachSql('s:limit', 1, 1));
  await second.waitPackets('s:limit', 1);
});

test('a long-lived client does not pile up abort listeners across sessions', TEST, async t => {
  // every session (and every backoff sleep) adds an 'abort' listener to the
  // client's signal; if they are never removed, a client that lives through
  // many lost sessions leaks them (Node says MaxListenersExceededWarning)
  const bridge = await startBridge(db, ['--wait', '20']);
  defer(t, () => bridge.stop());
  const warnings = [];
  const onWarning = w => { if (w.name === 'MaxListenersExceededWarning') warnings.push(w.message); };
  process.on('warning', onWarning);
  defer(t, () => process.off('warning', onWarning));
  const rec = newClient(bridge.url, {channels: ['s:many']}, t);
  await rec.waitStatus('online');
  const sids = new Set([rec.client.sid]);
  for (let i = 0; i < 15; i++) {
    const sid = rec.client.sid;
    const response = await fetch(bridge.url, {method: 'POST', body: JSON.stringify({sid, rid: 1}),
      signal: AbortSignal.timeout(5000)});
    assert.equal(response.status, 404);
    await waitFor(() => rec.client.sid && rec.client.sid !== sid, 10000, `session ${i + 2}`);
    sids.add(rec.client.sid);
  }
  assert.equal(sids.size, 16, 'sixteen sessions, one after another');
  await db.sql(sendEachSql('s:many', 1, 1));
  await rec.waitPackets('s:many', 1);
  await new Promise(resolve => setImmediate(resolve));
  assert.deepEqual(warnings, [], 'no listener leak');
});

test('a catch-up longer than one resume answer: every seq once, in order, no gap, then live packets', TEST, async t => {
  // the bridge carries at most max(--max-pending, 1000) resumed packets a
  // channel in one answer, the oldest first; the client asks again
  const bridge = await startBridge(db, ['--wait', '20']);
  defer(t, () => bridge.stop());
  await db.sql(`SELECT comet.send('s:long', jsonb_build_object('n', i)) FROM generate_series(1, 2600) i`);
  const recorder = recordingFetch();
  const rec = newClient(bridge.url, {channels: ['s:long'], resume: {'s:long': 0}, fetch: recorder.fetch}, t);
  await rec.waitPackets('s:long', 2600, 20000);
  await db.sql(sendEachSql('s:long', 2601, 2602));
  await rec.waitPackets('s:long', 2602, 10000);
  await barrier(rec, 's:long');
  const got = seen(rec, 's:long');
  assert.deepEqual(got.slice(0, 2602), range(1, 2602), 'every seq once, in order, no gap');
  const asked = recorder.log.filter(e => e.kind === 'work' && e.body.resume && e.body.resume['s:long'] !== undefined);
  assert.deepEqual(asked.map(e => e.body.resume['s:long']), [1000, 2000], 'asked again from 1000, then 2000');
});

test('a subscribe whose catch-up is cut short while a poll is held: no false gap, every seq once', {timeout: 60000}, async t => {
  // The held poll is answered (empty) with the cut catch-up; the client may
  // poll again before it has read that it must ask for the rest.  That poll
  // must not let the channel's live packets go past the kept ones.
  const BACKLOG = 2500;
  const LIVE = 150;
  await db.sql(`SELECT comet.send('s:cutrace', to_jsonb(i)) FROM generate_series(1, ${BACKLOG}) i;`);
  const bridge = await startBridge(db, ['--wait', '20']);
  defer(t, () => bridge.stop());
  const recorder = recordingFetch();
  const rec = newClient(bridge.url, {channels: ['s:cutrace-small'], resume: {'s:cutrace': 0}, fetch: recorder.fetch}, t);
  await rec.waitStatus('online');
  await waitFor(() => recorder.outstanding('poll') === 1, 5000, 'a held poll');
  const sender = db.sql(sendEachSql('s:cutrace', 1, LIVE, {sleepSeconds: 0.005}), {timeout: 40000});
  await new Promise(resolve => setTimeout(resolve, 100));
  await withTimeout(rec.client.subscribe('s:cutrace'), 10000, 'subscribe');
  await sender;
  await waitFor(() => (rec.client.lastSeq('s:cutrace') || 0) >= BACKLOG + LIVE, 20000, 'every packet of s:cutrace');
  assert.deepEqual(rec.gaps, [], 'no gap: every packet is kept');
  assert.deepEqual(rec.seqs('s:cutrace'), range(1, BACKLOG + LIVE), 'every seq once, in order');
});

test('asking again for a cut catch-up is refused (grant revoked): a gap for exactly the rest, then live packets', {timeout: 60000}, async t => {
  // The bridge lets the channel go from the position the cut answer gave;
  // the client reports what it did not get as a gap, never skips it silently.
  const BACKLOG = 2500;
  await db.sql(`SELECT comet.grant('r:refuse', ARRAY['subscribe']);
                SELECT comet.send('r:refuse', to_jsonb(i)) FROM generate_series(1, ${BACKLOG}) i;`);
  const bridge = await startBridge(db, ['--wait', '20']);
  defer(t, () => bridge.stop());
  const proxy = await startProxy(bridge.port);
  defer(t, () => proxy.close());
  proxy.rule = req => (req.kind === 'work' && req.json.resume && 'r:refuse' in req.json.resume ? 'hold' : 'pass');
  const rec = newClient(proxy.url, {channels: ['r:refuse'], resume: {'r:refuse': 0}}, t);
  await rec.waitStatus('online');
  await waitFor(() => proxy.heldRequests.length === 1, 5000, 'the ask-again, held at the proxy');
  assert.equal(rec.client.lastSeq('r:refuse'), 1000, 'the setup carried the first 1000');
  await db.sql(`SELECT comet.revoke('r:refuse', ARRAY['subscribe'], NULL);`);
  proxy.rule = null;
  proxy.release();
  await waitFor(() => rec.gaps.length > 0, 10000, 'a gap');
  assert.deepEqual(rec.gaps, [{channel: 'r:refuse', from: 1001, to: BACKLOG}], 'the gap is exactly the rest');
  assert.ok(rec.errors.some(e => e.condition === 'forbidden'), 'and the refusal is reported');
  await db.sql(sendEachSql('r:refuse', 1, 3));
  await rec.waitPackets('r:refuse', 1003, 10000);
  assert.deepEqual(rec.seqs('r:refuse'), [...range(1, 1000), BACKLOG + 1, BACKLOG + 2, BACKLOG + 3],
    'then the live packets, from the position on');
});

test('close() while a long catch-up is still being asked for: closed, and no gap is reported', {timeout: 30000}, async t => {
  await db.sql(`SELECT comet.send('s:closing', to_jsonb(i)) FROM generate_series(1, 2500) i;`);
  const bridge = await startBridge(db, ['--wait', '20']);
  defer(t, () => bridge.stop());
  const proxy = await startProxy(bridge.port);
  defer(t, () => proxy.close());
  // the ask for the rest waits at the proxy, so close() finds it unanswered
  proxy.rule = req => (req.kind === 'work' && req.json.resume ? 'hold' : 'pass');
  const rec = newClient(proxy.url, {channels: ['s:closing'], resume: {'s:closing': 0}}, t);
  await rec.waitStatus('online');
  await waitFor(() => proxy.heldRequests.length === 1, 5000, 'the ask for the rest, held at the proxy');
  assert.equal(rec.client.lastSeq('s:closing'), 1000, 'the first 1000 came with the setup');
  // (not awaited: its terminate comes after the rid held at the proxy,
  // which the client gave up, and waits for it at the bridge)
  rec.client.close();
  await new Promise(resolve => setTimeout(resolve, 100));
  assert.equal(rec.client.status, 'closed');
  assert.deepEqual(rec.gaps, [], 'no gap: the application stopped, nothing went missing');
  assert.deepEqual(rec.errors, [], 'and no error');
});

test('a subscribe with a resume, queued before the session and refused: polls go on for the other channels', TEST, async t => {
  const bridge = await startBridge(db, ['--wait', '20']);
  defer(t, () => bridge.stop());
  const rec = newClient(bridge.url, {channels: ['s:goes-on'], resume: {'q:not-granted': 5}}, t);
  // asked before the setup is answered: it waits for the session, then resumes from 5
  const refused = rec.client.subscribe('q:not-granted').then(() => null, e => e);
  const error = await withTimeout(refused, 10000, 'the subscribe to settle');
  assert.equal(error && error.condition, 'forbidden', 'the subscribe is refused');
  await db.sql(sendEachSql('s:goes-on', 1, 2));
  await rec.waitPackets('s:goes-on', 2, 5000);
  assert.deepEqual(rec.seqs('s:goes-on'), [1, 2], "the other channel's packets still arrive");
});
