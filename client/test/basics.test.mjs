// basics.test.mjs — comet.js against a real comet-bridge and PostgreSQL:
// status events, packets once each and in seq order, plain NOTIFYs, send()
// and what the receive function answers or raises, subscribe() and
// unsubscribe(), close(), refused setups, one held poll with sends on a
// second connection, and batching.
import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import {
  Comet, makeDatabase, startBridge, newClient, cleanup, recordingFetch, waitFor, withTimeout,
  sendEachSql, range, BRIDGE_ROLE, barrier as barrierOn, defer,
} from './lib/harness.mjs';
import {startProxy} from './lib/proxy.mjs';

const db = await makeDatabase('basics');
after(cleanup);

await db.sql(`
SELECT comet.grant('b:%', ARRAY['subscribe', 'publish']);
SELECT comet.grant('ro:%', ARRAY['subscribe']);
SELECT comet.grant('u:alice', ARRAY['subscribe', 'publish'], 'alice');
-- an application's receive function: refuses with RAISE, answers with jsonb, or sends
CREATE FUNCTION app_receive(subject text, sid text, channel text, data jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
  IF data ? 'refuse' THEN
    RAISE EXCEPTION 'messages may not say %', data->>'refuse';
  END IF;
  IF data ? 'ask' THEN
    RETURN jsonb_build_object('answer', (data->>'ask')::int * 2, 'subject', subject, 'sid', sid);
  END IF;
  PERFORM comet.send(channel, data);
  RETURN NULL;
END $$;
GRANT EXECUTE ON FUNCTION app_receive(text, text, text, jsonb) TO ${BRIDGE_ROLE};
`);

const bridge = await startBridge(db, ['--wait', '20']);
const TEST = {timeout: 30000};

const barrier = (rec, channel) => barrierOn(db, rec, channel);

test('status goes connecting, then online; a committed packet arrives with channel, seq and data', TEST, async t => {
  const rec = newClient(bridge.url, {channels: ['b:first']}, t);
  await rec.waitStatus('online');
  assert.deepEqual(rec.statuses, ['connecting', 'online']);
  assert.equal(rec.client.status, 'online');
  assert.equal(typeof rec.client.sid, 'string');
  assert.deepEqual(rec.client.channels, ['b:first']);
  await db.sql(`SELECT comet.send('b:first', '{"x": 1, "text": "Grüße, 你好, 👋", "list": [1, 2.5, null]}');`);
  await rec.waitPackets('b:first', 1);
  assert.deepEqual(rec.packets, [{channel: 'b:first', seq: 1,
    data: {x: 1, text: 'Grüße, 你好, 👋', list: [1, 2.5, null]}}]);
  assert.equal(rec.client.lastSeq('b:first'), 1);
  assert.deepEqual(rec.gaps, []);
  assert.deepEqual(rec.errors, []);
});

test('packets arrive once each, in seq order: 50 transactions, then 20 in one', TEST, async t => {
  const rec = newClient(bridge.url, {channels: ['b:order']}, t);
  await rec.waitStatus('online');
  await db.sql(sendEachSql('b:order', 1, 50));
  await db.sql(`SELECT comet.send('b:order', jsonb_build_object('n', g)) FROM generate_series(51, 70) g;`);
  await rec.waitPackets('b:order', 70);
  await barrier(rec, 'b:order');
  const packets = rec.packets.filter(p => p.channel === 'b:order');
  assert.deepEqual(packets.slice(0, 70).map(p => p.seq), range(1, 70), 'seqs 1..70 in order');
  assert.deepEqual(packets.slice(0, 70).map(p => p.data.n), range(1, 70), 'in the order they were sent');
  assert.equal(packets.length, 71, 'nothing twice: 70 packets and the marker');
  assert.equal(packets[70].seq, 71);
  assert.deepEqual(rec.gaps, []);
});

test('a rolled-back send never arrives', TEST, async t => {
  const rec = newClient(bridge.url, {channels: ['b:rollback']}, t);
  await rec.waitStatus('online');
  await db.sql(`
BEGIN;
SELECT comet.send('b:rollback', '"rolled back"');
ROLLBACK;
BEGIN;
SAVEPOINT s;
SELECT comet.send('b:rollback', '"savepoint rolled back"');
ROLLBACK TO SAVEPOINT s;
SELECT comet.send('b:rollback', '"kept"');
COMMIT;
`);
  await barrier(rec, 'b:rollback');
  assert.deepEqual(rec.packets.map(p => [p.seq, p.data]).slice(0, 1), [[1, 'kept']]);
  assert.equal(rec.packets.length, 2, 'only the committed packet and the marker');
  assert.equal(rec.packets[1].seq, 2);
});

test('a plain NOTIFY arrives without seq, its payload parsed as JSON or as a string', TEST, async t => {
  const rec = newClient(bridge.url, {channels: ['b:plain']}, t);
  await rec.waitStatus('online');
  await db.sql(`SELECT pg_notify('b:plain', '{"k": [1, 2], "s": "x"}');
SELECT pg_notify('b:plain', 'not json {');
NOTIFY "b:plain", '42';`);
  await rec.waitPackets('b:plain', 3);
  assert.deepEqual(rec.packets, [
    {channel: 'b:plain', data: {k: [1, 2], s: 'x'}},
    {channel: 'b:plain', data: 'not json {'},
    {channel: 'b:plain', data: 42},
  ]);
  for (const p of rec.packets) assert.equal('seq' in p, false, 'a plain NOTIFY has no seq');
  assert.equal(rec.client.lastSeq('b:plain'), 0, 'a plain NOTIFY does not move the position');
});

test('send() resolves once the bridge has sent it, and another client gets the packet', TEST, async t => {
  const reader = newClient(bridge.url, {channels: ['b:chat']}, t);
  const writer = newClient(bridge.url, {}, t);
  await reader.waitStatus('online');
  await writer.waitStatus('online');
  const answer = await withTimeout(writer.client.send('b:chat', {text: 'hi', n: [1, 2]}), 8000, 'send()');
  assert.equal(answer, undefined, 'comet.receive answers nothing');
  assert.equal(await db.sql(`SELECT count(*) FROM comet.packets WHERE channel = 'b:chat'`), '1',
    'the packet is committed when send() resolves');
  await reader.waitPackets('b:chat', 1);
  assert.deepEqual(reader.packets, [{channel: 'b:chat', seq: 1, data: {text: 'hi', n: [1, 2]}}]);
  assert.deepEqual(writer.packets, [], 'the writer is not subscribed');
  assert.equal(await writer.client.send('b:chat', null), undefined, 'null data is fine');
  await reader.waitPackets('b:chat', 2);
  assert.deepEqual(reader.packets[1], {channel: 'b:chat', seq: 2, data: null});
});

test('send() rejects with forbidden on a channel not granted for publish', TEST, async t => {
  const rec = newClient(bridge.url, {channels: ['ro:news']}, t);
  await rec.waitStatus('online');
  await assert.rejects(withTimeout(rec.client.send('ro:news', {x: 1}), 8000, 'send()'), e => {
    assert.ok(e instanceof Comet.CometError, 'a CometError');
    assert.equal(e.condition, 'forbidden');
    assert.equal(typeof e.message, 'string');
    return true;
  });
  assert.equal(await db.sql(`SELECT count(*) FROM comet.packets WHERE channel = 'ro:news'`), '0');
  // the session goes on
  assert.equal(await rec.client.send('b:after-forbidden', 1), undefined);
  assert.equal(rec.client.status, 'online');
  assert.deepEqual(rec.errors, [], 'a refused send is not an error event');
});

test('a receive function: RAISE rejects send() with its message, jsonb is what send() resolves to', TEST, async t => {
  const appBridge = await startBridge(db, ['--wait', '20', '--receive-function', 'app_receive']);
  defer(t, () => appBridge.stop());
  const token = await db.sql(`SELECT comet.issue_token('alice', '1 hour')`);
  const reader = newClient(appBridge.url, {channels: ['b:app']}, t);
  const writer = newClient(appBridge.url, {auth: {token}}, t);
  await reader.waitStatus('online');
  await writer.waitStatus('online');

  await assert.rejects(withTimeout(writer.client.send('b:app', {refuse: 'boo'}), 8000, 'send()'), e => {
    assert.ok(e instanceof Comet.CometError);
    assert.equal(e.message, 'messages may not say boo');
    assert.equal(e.condition, 'bad-request');
    return true;
  });
  const answer = await withTimeout(writer.client.send('b:app', {ask: 21}), 8000, 'send()');
  assert.deepEqual(answer, {answer: 42, subject: 'alice', sid: writer.client.sid});
  assert.equal(await writer.client.send('b:app', {text: 'sent'}), undefined, 'NULL answers nothing');
  await reader.waitPackets('b:app', 1);
  await barrier(reader, 'b:app');
  assert.deepEqual(reader.datas('b:app').slice(0, 1), [{text: 'sent'}],
    'only what the function sent is a packet');
  assert.equal(reader.packets.length, 2);
  await assert.rejects(writer.client.send('ro:x', {ask: 1}), {condition: 'forbidden'},
    'publish is checked before the receive function');
});

test('subscribe() resolves to the position; the packets after it arrive', TEST, async t => {
  const rec = newClient(bridge.url, {channels: ['b:base']}, t);
  await rec.waitStatus('online');
  await db.sql(sendEachSql('b:late', 1, 3));
  const position = await withTimeout(rec.client.subscribe('b:late'), 8000, 'subscribe()');
  assert.equal(position, 3, 'the last seq committed before the subscription');
  assert.deepEqual(rec.client.channels.sort(), ['b:base', 'b:late']);
  await db.sql(sendEachSql('b:late', 4, 5));
  await rec.waitPackets('b:late', 2);
  await barrier(rec, 'b:late');
  assert.deepEqual(rec.seqs('b:late'), [4, 5, 6], 'the packets after the position, once each');
  assert.deepEqual(rec.datas('b:late').slice(0, 2), [{n: 4}, {n: 5}]);
  assert.deepEqual(rec.gaps, []);
  assert.equal(await rec.client.subscribe('b:late'), 6, 'subscribing again resolves to where it is');
});

test('subscribe() to a channel not granted rejects with forbidden', TEST, async t => {
  const rec = newClient(bridge.url, {channels: ['b:base2']}, t);
  await rec.waitStatus('online');
  await assert.rejects(withTimeout(rec.client.subscribe('secret'), 8000, 'subscribe()'), e => {
    assert.ok(e instanceof Comet.CometError);
    assert.equal(e.condition, 'forbidden');
    return true;
  });
  assert.deepEqual(rec.client.channels, ['b:base2'], 'the refused channel is not subscribed');
  await db.sql(`SELECT comet.send('secret', '"classified"');`);
  await barrier(rec, 'b:base2');
  assert.ok(!rec.packets.some(p => p.channel === 'secret'), 'nothing arrives on the refused channel');
  assert.equal(await rec.client.subscribe('b:other'), 0, 'the session goes on');
  assert.equal(rec.client.status, 'online');
});

test('unsubscribe() stops packets on that channel (the bridge sends none)', TEST, async t => {
  const recorder = recordingFetch();
  const rec = newClient(bridge.url, {channels: ['b:keep', 'b:drop'], fetch: recorder.fetch}, t);
  await rec.waitStatus('online');
  await db.sql(`SELECT comet.send('b:drop', '"before"');`);
  await rec.waitPackets('b:drop', 1);
  await withTimeout(rec.client.unsubscribe('b:drop'), 8000, 'unsubscribe()');
  const unsubscribedAt = recorder.log.length;
  assert.deepEqual(rec.client.channels, ['b:keep']);
  await db.sql(`SELECT comet.send('b:drop', '"after"'); SELECT comet.send('b:keep', '"after"');`);
  await rec.waitPackets('b:keep', 1);
  await barrier(rec, 'b:keep');
  assert.deepEqual(rec.packets.filter(p => p.channel === 'b:drop').map(p => p.data), ['before']);
  const carried = recorder.log.slice(unsubscribedAt)
    .flatMap(e => (e.json && e.json.packets) || []).filter(p => p.channel === 'b:drop');
  assert.deepEqual(carried, [], 'no answer after the unsubscribe carried a packet of the channel');
});

test('close() says closed and terminates the session on the bridge', TEST, async t => {
  // its own bridge, so that the session count is this client's alone
  const own = await startBridge(db, ['--wait', '20', '--inactivity', '45']);
  defer(t, () => own.stop());
  const recorder = recordingFetch();
  const rec = newClient(own.url, {channels: ['b:close'], fetch: recorder.fetch}, t);
  await rec.waitStatus('online');
  await waitFor(async () => (await own.metric('comet_requests_pending')) === 1, 5000, 'the poll to be held');
  assert.equal(await own.metric('comet_sessions'), 1);
  await withTimeout(rec.client.close(), 5000, 'close()');
  assert.equal(rec.statuses.at(-1), 'closed');
  assert.equal(rec.client.status, 'closed');
  // well before the 45 s of inactivity: the session was terminated
  await waitFor(async () => (await own.metric('comet_sessions')) === 0, 3000, 'comet_sessions to drop to 0');
  await waitFor(async () => (await own.metric('comet_requests_pending')) === 0, 3000, 'no request left held');
  const terminate = recorder.log.find(e => e.kind === 'terminate');
  assert.ok(terminate, 'a terminate request was sent');
  assert.equal(terminate.status, 200, 'and answered');
  await rec.client.close();
  assert.equal(rec.statuses.filter(s => s === 'closed').length, 1, 'closed once, however often close() is called');
  await assert.rejects(rec.client.send('b:close', 1), {condition: 'closed'});
});

test('a refused setup emits error with its condition, then closed', TEST, async t => {
  const badToken = newClient(bridge.url, {channels: ['b:x'], auth: {token: 'not-a-token'}}, t);
  await badToken.waitStatus('closed');
  assert.equal(badToken.errors.length, 1);
  assert.equal(badToken.errors[0].condition, 'forbidden');
  assert.equal(badToken.errors[0].status, 403);
  assert.deepEqual(badToken.events.map(e => e.type === 'status' ? e.value : e.type),
    ['connecting', 'error', 'closed'], 'error, then closed');

  const notAllowed = newClient(bridge.url, {channels: ['b:y', 'secret']}, t);
  await notAllowed.waitStatus('closed');
  assert.deepEqual(notAllowed.errors.map(e => [e.condition, e.status]), [['forbidden', 403]]);
  assert.deepEqual(notAllowed.statuses, ['connecting', 'closed']);
  await assert.rejects(notAllowed.client.send('b:y', 1), {condition: 'closed'});

  // the same with a good token works; auth may be a function
  const token = await db.sql(`SELECT comet.issue_token('alice', '1 hour')`);
  let calls = 0;
  const alice = newClient(bridge.url, {channels: ['u:alice'], auth: async () => { calls++; return {token}; }}, t);
  await alice.waitStatus('online');
  assert.equal(calls, 1);
  await db.sql(`SELECT comet.send('u:alice', '"for alice"');`);
  await alice.waitPackets('u:alice', 1);
  assert.deepEqual(alice.errors, []);
});

test('a token revoked while the client only polls: its next poll is refused, the client closes with forbidden', TEST, async t => {
  const token = await db.sql(`SELECT comet.issue_token('alice', '1 hour')`);
  const alice = newClient(bridge.url, {channels: ['u:alice'], auth: {token}}, t);
  await alice.waitStatus('online');
  await db.sql(`SELECT comet.send('u:alice', '"before"');`);
  await alice.waitPackets('u:alice', 1);
  await db.sql(`SELECT comet.revoke_token('${token}');`);
  // the held poll is checked again when the next one arrives: make one come
  await db.sql(`SELECT comet.send('u:alice', '"as it is revoked"');`);
  await alice.waitStatus('closed', 15000);
  assert.ok(alice.errors.length >= 1 && alice.errors.every(e => e.condition === 'forbidden'),
    `forbidden: ${JSON.stringify(alice.errors.map(e => [e.condition, e.status]))}`);
  await db.sql(`SELECT comet.send('u:alice', '"after"');`);
  await new Promise(resolve => setTimeout(resolve, 500));
  assert.ok(!alice.datas('u:alice').includes('after'), 'nothing after the revocation reaches it');
});

test('one poll is held at a time; sends go on a second connection and are answered at once', TEST, async t => {
  const own = await startBridge(db, ['--wait', '20']);
  defer(t, () => own.stop());
  const proxy = await startProxy(own.port);
  const recorder = recordingFetch();
  const rec = newClient(proxy.url, {channels: ['b:one'], fetch: recorder.fetch}, t);
  await rec.waitStatus('online');
  await waitFor(() => proxy.outstanding('poll').length === 1, 5000, 'a poll to be held');
  await waitFor(async () => (await own.metric('comet_requests_pending')) === 1, 5000, 'the bridge to hold it');
  const held = proxy.outstanding('poll')[0];

  // sends on a channel the client does not read: the held poll stays held
  for (let i = 1; i <= 5; i++) {
    const answer = await withTimeout(rec.client.send('b:one-out', {i}), 5000, `send ${i}`);
    assert.equal(answer, undefined);
    const work = proxy.entries('work').at(-1);
    assert.deepEqual(work.json.send, [{channel: 'b:one-out', data: {i}}]);
    assert.equal(work.status, 200, 'the send was answered');
    assert.notEqual(work.conn, held.conn, 'on another connection than the held poll');
    assert.equal(held.end, undefined, 'while the poll is still held');
    assert.deepEqual(proxy.outstanding('poll'), [held], 'and no other poll');
  }
  await waitFor(async () => (await own.metric('comet_requests_pending')) === 1, 5000,
    'one request pending on the bridge');

  // packets make the polls go round; still one at a time
  await db.sql(sendEachSql('b:one', 1, 5, {sleepSeconds: 0.02}));
  await rec.waitPackets('b:one', 5);
  await waitFor(() => proxy.outstanding('poll').length === 1, 5000, 'a poll to be held again');
  const pollNow = proxy.outstanding('poll')[0];
  assert.notEqual(pollNow, held);
  await withTimeout(rec.client.send('b:one-out', {i: 6}), 5000, 'send 6');
  assert.equal(pollNow.end, undefined, 'the held poll was still held when the send was answered');
  assert.notEqual(proxy.entries('work').at(-1).conn, pollNow.conn);
  await waitFor(async () => (await own.metric('comet_requests_pending')) === 1, 5000,
    'one request pending on the bridge');

  // never two polls outstanding: each poll started after the one before ended
  const polls = proxy.entries('poll');
  assert.ok(polls.length >= 3, `several polls (${polls.length})`);
  for (let i = 1; i < polls.length; i++)
    assert.ok(polls[i].start >= polls[i - 1].end, `poll ${polls[i].rid} began after poll ${polls[i - 1].rid} ended`);
  assert.equal(recorder.maxConcurrentPolls, 1, 'the client never had two polls out');
  assert.deepEqual(rec.seqs('b:one'), range(1, 5));
});

test("a sender's own packet reaches it at once, however the bridge splits it between the send's answer and the poll", TEST, async t => {
  // The packet a send commits reaches the session in the same moment as the
  // send's result: it goes with the send's answer or on the held poll, and
  // the client hands out packets in rid order.  Neither may wait for the
  // other (the held poll would otherwise hold them until `wait` ran out).
  const rec = newClient(bridge.url, {channels: ['b:echo']}, t);
  await rec.waitStatus('online');
  for (let i = 1; i <= 30; i++) {
    await withTimeout(rec.client.send('b:echo', {i}), 5000, `send ${i}`);
    await rec.waitPackets('b:echo', i, 2000);
  }
  assert.deepEqual(rec.seqs('b:echo'), range(1, 30));
  assert.deepEqual(rec.datas('b:echo').map(d => d.i), range(1, 30));
  assert.deepEqual(rec.gaps, []);
});

test('many send() calls made together are batched into fewer requests', TEST, async t => {
  const recorder = recordingFetch();
  const reader = newClient(bridge.url, {channels: ['b:batch']}, t);
  const writer = newClient(bridge.url, {fetch: recorder.fetch}, t);
  await reader.waitStatus('online');
  await writer.waitStatus('online');
  const N = 150;
  const sends = range(1, N).map(n => writer.client.send('b:batch', {n}));
  const answers = await withTimeout(Promise.all(sends), 10000, 'all sends');
  assert.deepEqual(answers, new Array(N).fill(undefined), 'every send resolved');
  const work = recorder.log.filter(e => e.kind === 'work');
  const rids = new Set(work.map(e => e.rid));
  assert.ok(rids.size < N, `fewer requests (${rids.size}) than sends (${N})`);
  assert.ok(rids.size <= 4, `a batch takes the sends made while one request is out (${rids.size} requests)`);
  for (const e of work)
    assert.ok(e.body.send.length <= 100, `at most 100 items a request (${e.body.send.length})`);
  assert.deepEqual(work.flatMap(e => e.body.send.map(s => s.data.n)), range(1, N),
    'every send went once, in order');
  await reader.waitPackets('b:batch', N);
  await barrier(reader, 'b:batch');
  assert.deepEqual(reader.seqs('b:batch'), range(1, N + 1));
  assert.deepEqual(reader.datas('b:batch').slice(0, N).map(d => d.n), range(1, N));
});

test('a batch mixing subscribe, unsubscribe and sends settles each promise with its own result', TEST, async t => {
  const recorder = recordingFetch();
  const rec = newClient(bridge.url, {channels: ['b:mix-keep', 'b:mix-leave'], fetch: recorder.fetch}, t);
  await rec.waitStatus('online');
  await db.sql(sendEachSql('b:mix-join', 1, 2));
  const settle = p => p.then(value => ({value}), e => ({error: e.condition}));
  // the first send goes alone; the rest wait for it and go together
  const first = settle(rec.client.send('b:mix-out', {n: 1}));
  const rest = [
    settle(rec.client.send('ro:mix', {n: 2})),
    settle(rec.client.subscribe('secret-mix')),
    settle(rec.client.send('b:mix-out', {n: 3})),
    settle(rec.client.unsubscribe('b:mix-leave')),
    settle(rec.client.subscribe('b:mix-join')),
  ];
  const results = await withTimeout(Promise.all([first, ...rest]), 10000, 'every promise');
  assert.deepEqual(results, [
    {value: undefined},
    {error: 'forbidden'},
    {error: 'forbidden'},
    {value: undefined},
    {value: undefined},
    {value: 2},
  ]);
  const work = recorder.log.filter(e => e.kind === 'work');
  assert.equal(work.length, 2, 'two requests');
  assert.deepEqual(work[1].body.subscribe, ['secret-mix', 'b:mix-join']);
  assert.deepEqual(work[1].body.unsubscribe, ['b:mix-leave']);
  assert.equal(work[1].body.send.length, 2);
  assert.deepEqual(rec.client.channels.sort(), ['b:mix-join', 'b:mix-keep']);
  assert.equal(await db.sql(`SELECT string_agg(data->>'n', ',' ORDER BY seq) FROM comet.packets WHERE channel = 'b:mix-out'`),
    '1,3');
  await db.sql(sendEachSql('b:mix-join', 3, 3));
  await rec.waitPackets('b:mix-join', 1);
  assert.deepEqual(rec.seqs('b:mix-join'), [3]);
});
