// fault.test.mjs — the fault suite (issue 6, item 1): 5,000 durable packets
// on four channels, one transaction each, are committed while, case by
// case, PostgreSQL is restarted (fast, then immediate), the bridge's
// backends are terminated again and again (and, in a variant, its query
// connections are refused while its LISTEN connection stays), the bridge
// is killed with
// SIGKILL and started again, a proxy loses requests and answers at random,
// and clients are too slow (their queues overflow) or stop for so long that
// retention removes what they missed.  Every client — the real comet.js
// under Node and a raw protocol client (lib/raw-client.mjs) — must end
// with every seq of every channel exactly once, in order, with the payload
// committed with it; an explicit gap is accepted only for seqs that were
// pruned.  Each case prints its figures as TAP diagnostics
// ("# fault CASE CLIENT: sent=... received=... duplicates=... gaps=...
// rss_before_kb=... rss_after_kb=...") and, when $COMET_ARTIFACTS_FAULT
// names a directory, the run is written there as fault-cases.md.
//
// The cases run one after another in this one file: restarting PostgreSQL
// disturbs every database on the cluster, so nothing else may run then.
// Without $COMET_TEST_RESTART the restart cases fail: they are not skipped.
import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {
  makeDatabase, startBridge, newClient, cleanup, waitFor, withTimeout, sleep, defer, lit, BRIDGE_BINARY,
} from '../../client/test/lib/harness.mjs';
import {startProxy} from '../../client/test/lib/proxy.mjs';
import {RawClient} from './lib/raw-client.mjs';
import {startPublisher, committed, lastSeq, paceSql} from './lib/publisher.mjs';
import {checkClient, rssKb, recordClient, recordNote, appendNote, writeReport} from './lib/ledger.mjs';
import {
  mulberry32, suiteSeed, restartCluster, startTerminator, startChaos, refuseQueryConnections, allowConnections,
  replayCalls,
} from './lib/faults.mjs';
import {wireCounter, holdingFetch, gate, sleepUnless} from './lib/comet-wire.mjs';

const CHANNELS = 4;
const PER_CHANNEL = 1250;                   // 5,000 packets a case
const PACE = {batch: 25, pauseSeconds: 0.15}; // about 8 s of publishing
const WAIT = 10;                            // seconds a poll is held
const CASE = {timeout: 150000};
const SEED = suiteSeed();
const started = Date.now();
const SESSION_LOST = ['item-not-found', 'overflow', 'system-shutdown'];

// Under AddressSanitizer, freed memory sits in a quarantine (256 MB by
// default) and RSS could only grow: the bridges of this file keep a small
// one (ASan still catches a use after free of recently freed memory).
const ASAN = (() => {
  try {
    return readFileSync(BRIDGE_BINARY).includes('__asan_init');
  } catch (e) {
    return false;
  }
})();
if (ASAN)
  process.env.ASAN_OPTIONS = [process.env.ASAN_OPTIONS, 'quarantine_size_mb=16'].filter(Boolean).join(':');

const db = await makeDatabase('fault');
await db.sql(`SELECT comet.grant('f:%', ARRAY['subscribe']);`);
// count comet.replay calls (case b-pool-refused); set before any bridge connects
await db.sql(`ALTER DATABASE ${db.name} SET track_functions = 'all';`);

after(async () => {
  const file = writeReport(`Run of ${new Date(started).toISOString()}: seed ${SEED}, ` +
    `${CHANNELS * PER_CHANNEL} packets a case on ${CHANNELS} channels, bridge ${BRIDGE_BINARY}` +
    `${ASAN ? ' (ASan build, quarantine 16 MB)' : ''}, Node ${process.version}, ` +
    `${((Date.now() - started) / 1000).toFixed(0)} s in all.`);
  if (file) console.log(`fault report: ${file}`);
  await cleanup();
});

/* A per-case PRNG derived from the run's seed, so each case replays alone. */
function casePrng(name) {
  let h = SEED;
  for (const c of name) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return mulberry32(h);
}

/* Wait until at least fraction of the case's packets are committed. */
async function committedAtLeast(ctx, fraction, timeout = 60000) {
  const want = Math.ceil(fraction * CHANNELS * PER_CHANNEL);
  await waitFor(async () => (await committed(db, ctx.channels)) >= want, timeout,
    `${want} packets to be committed`);
  return committed(db, ctx.channels);
}

/* ---- the clients -------------------------------------------------------------- */

/*
 * A subscribed client of a case: kind 'comet' (comet.js, through a fetch
 * that counts the wire and may hold requests) or 'raw' (RawClient).
 * Accessors give both the same face for the checks.
 */
function makeClient(t, ctx, spec) {
  if (spec.kind === 'comet') {
    const wire = wireCounter();
    const fetch = spec.hold ? holdingFetch(wire.fetch, spec.hold) : wire.fetch;
    const rec = newClient(ctx.url, {channels: ctx.channels, wait: WAIT, fetch}, t);
    return {
      ...spec, rec, wire,
      lastSeq: channel => rec.client.lastSeq(channel),
      online: () => rec.client.status === 'online' && ctx.channels.every(c => rec.client.lastSeq(c) !== undefined),
      events: () => rec.events,
      sessions: () => wire.stats.sids.length,
      retries: () => wire.stats.retries,
      wireDuplicates: () => wire.stats.duplicates,
      errors: () => rec.errors.map(e => `${e.condition}: ${e.message}`),
      lost: () => Object.entries(wire.stats.conditions).filter(([c]) => SESSION_LOST.includes(c))
        .map(([c, n]) => `${c}x${n}`).join(' '),
    };
  }
  const raw = new RawClient(ctx.url, {channels: ctx.channels, wait: WAIT, beforePoll: spec.beforePoll,
    random: casePrng(`${ctx.name}/${spec.label}`)}).start();
  defer(t, () => withTimeout(raw.stop(), 5000, 'the raw client to stop').catch(() => {}));
  return {
    ...spec, raw,
    lastSeq: channel => raw.lastSeq(channel),
    online: () => !!raw.sid && ctx.channels.every(c => raw.lastSeq(c) !== undefined),
    events: () => raw.events,
    sessions: () => raw.sids.length,
    retries: () => raw.retries,
    wireDuplicates: () => raw.wire.duplicates,
    errors: () => raw.errors,
    lost: () => Object.entries(raw.lost).map(([c, n]) => `${c}x${n}`).join(' '),
  };
}

/* Every client has reached (or passed by a gap) seq sent[channel] on every channel. */
function allCaughtUp(clients, sent) {
  return clients.every(c => Object.entries(sent).every(([channel, n]) => (c.lastSeq(channel) ?? -1) >= n));
}

function behindText(clients, sent) {
  return clients.map(c => `${c.label} at ${Object.keys(sent).map(ch => c.lastSeq(ch)).join('/')}`).join(', ') +
    ` of ${Object.values(sent).join('/')}`;
}

/* ---- one case ----------------------------------------------------------------- */

/*
 * Run a case: a bridge (through a proxy when spec.proxy), the clients of
 * spec.clients (default: comet.js and raw), a publisher of 5,000 packets,
 * and spec.fault(ctx) while it publishes (resolves to a note).  Then every
 * client must reach the last seq of every channel; spec.afterPublish(ctx)
 * may do more first (and set ctx.sent, ctx.pruned).  Figures are printed
 * before anything is asserted, so a failing case still says what it saw.
 */
async function runCase(t, name, spec) {
  const caseStart = Date.now();
  // notes: what the fault did, for the record (hooks add to it)
  const ctx = {name, t, channels: [], pruned: {}, notes: [], prng: casePrng(name)};
  for (let i = 0; i < CHANNELS; i++) ctx.channels.push(`f:${name}:${i}`);
  ctx.bridge = await startBridge(db, ['--wait', String(WAIT), ...(spec.bridgeArgs || [])]);
  defer(t, () => ctx.bridge.stop());
  ctx.url = ctx.bridge.url;
  if (spec.proxy) {
    ctx.proxy = await startProxy(ctx.bridge.port);
    defer(t, () => ctx.proxy.close());
    ctx.url = ctx.proxy.url;
  }
  const specs = spec.clients ? spec.clients(ctx) : [{label: 'comet.js', kind: 'comet'}, {label: 'raw', kind: 'raw'}];
  ctx.clients = specs.map(s => makeClient(t, ctx, s));
  await waitFor(() => ctx.clients.every(c => c.online()), 20000, 'every client to be online');
  const rssBefore = rssKb(ctx.bridge.child.pid);

  ctx.publisher = startPublisher(db, ctx.channels, PER_CHANNEL, {...PACE, ...(spec.pace || {})});
  const note = await spec.fault(ctx);
  await withTimeout(ctx.publisher.done, 120000, 'the publisher');
  ctx.sent = {};
  for (const channel of ctx.channels) ctx.sent[channel] = await lastSeq(db, channel);
  if (spec.afterPublish) await spec.afterPublish(ctx);

  let waitError = null;
  try {
    await waitFor(() => allCaughtUp(ctx.clients, ctx.sent), 60000, 'every client to reach the last seq');
  } catch (e) {
    waitError = `${e.message}: ${behindText(ctx.clients, ctx.sent)}`;
    t.diagnostic(`bridge running=${ctx.bridge.running} exits=${JSON.stringify(ctx.bridge.exits)}; its log:\n${ctx.bridge.logTail(60)}`);
  }
  if (spec.quiet) await spec.quiet(ctx);     // the fault stops: what is late now is counted
  await sleep(500);          // anything arriving late (a duplicate) is counted too
  const rssAfter = rssKb(ctx.bridge.child.pid);

  const total = Object.values(ctx.sent).reduce((a, b) => a + b, 0);
  const outcomes = ctx.clients.map(c => {
    const figures = checkClient(c.events(), ctx.sent, c.gapsAllowed ? ctx.pruned : {});
    const line = recordClient(name, c.label, {
      sent: total, ...figures, wireDuplicates: c.wireDuplicates(), sessions: c.sessions(),
      retries: c.retries(), rssBefore, rssAfter,
    });
    t.diagnostic(line);
    if (c.raw && c.raw.wire.samples.length)
      t.diagnostic(`fault ${name} ${c.label}: on the wire: ${c.raw.wire.samples.join('; ')}`);
    return {client: c, figures};
  });
  const seconds = (Date.now() - caseStart) / 1000;
  t.diagnostic(recordNote(name, `${[note, ...ctx.notes].join('; ')}; ` +
    `publisher interrupted ${ctx.publisher.stats.interruptions}x; ` +
    `sessions lost: ${ctx.clients.map(c => `${c.label} [${c.lost() || 'none'}]`).join(', ')}`, seconds));

  assert.equal(total, CHANNELS * PER_CHANNEL + (ctx.extraSent || 0), 'every packet was committed exactly once');
  assert.equal(waitError, null, 'every client reached the last seq of every channel');
  for (const {client, figures} of outcomes) {
    assert.deepEqual(figures.problems, [], `${client.label}: every seq once, in order, with its payload`);
    assert.deepEqual(client.errors(), [], `${client.label}: no unexpected answer or error`);
  }
  assert.ok(Number.isFinite(rssBefore) && Number.isFinite(rssAfter), 'the bridge RSS was read');
  return {ctx, outcomes};
}

/*
 * docs/operations.md: while the bridge has lost the database, "sessions
 * stay, deliveries resume after the catch-up" — a client that polls all
 * along keeps its one session (no overflow, no item-not-found).
 */
function sessionsStayed(ctx) {
  for (const c of ctx.clients)
    assert.equal(c.sessions(), 1, `${c.label} kept its session through the database faults ` +
      `(sessions lost: ${c.lost() || 'none'})`);
}

/* The bridge's reconnection count (0 when it cannot say). */
async function reconnects(bridge) {
  const n = await bridge.metric('comet_database_reconnects_total').catch(() => NaN);
  return Number.isFinite(n) ? n : 0;
}

/* ---- (a) PostgreSQL restarted --------------------------------------------------- */

for (const mode of ['fast', 'immediate']) {
  test(`(a) PostgreSQL restarted twice (${mode} shutdown) while 5,000 packets are committed: ` +
       'every client ends with every seq once, in order', CASE, async t => {
    assert.ok(process.env.COMET_TEST_RESTART,
      'COMET_TEST_RESTART must name the command restarting the test cluster (scripts/cluster-restart.sh DIR)');
    const restarts = [];
    const {ctx} = await runCase(t, `a-${mode}`, {
      async fault(ctx) {
        for (const fraction of [0.3, 0.65]) {
          const at = await committedAtLeast(ctx, fraction);
          const seconds = await restartCluster(mode);
          restarts.push({at, seconds});
          await waitFor(async () => (await ctx.bridge.metric('comet_database_up')) === 1, 30000,
            'the bridge to be connected again');
        }
        return `PostgreSQL restarted (${mode}) at ${restarts.map(r => `${r.at} (${r.seconds.toFixed(1)} s)`)
          .join(' and ')} committed; bridge reconnections ${await reconnects(ctx.bridge)}`;
      },
    });
    assert.ok(restarts[0].at < 0.9 * CHANNELS * PER_CHANNEL, `the first restart landed while publishing (at ${restarts[0].at})`);
    sessionsStayed(ctx);
    assert.ok(ctx.publisher.stats.interruptions >= 2, 'the restarts cut the publisher off');
    assert.ok(await reconnects(ctx.bridge) >= 2, 'the bridge reconnected to the database');
  });
}

/* ---- (b) the bridge's backends terminated --------------------------------------- */

test('(b) the bridge\'s backends terminated every 200-500 ms while 5,000 packets are committed: ' +
     'every client ends with every seq once, in order', CASE, async t => {
  let stats = null;
  const {ctx} = await runCase(t, 'b-terminate', {
    async fault(ctx) {
      await committedAtLeast(ctx, 0.1);
      const terminator = startTerminator(db, {minMs: 200, maxMs: 500, random: ctx.prng});
      try {
        await withTimeout(ctx.publisher.done, 120000, 'the publisher');
      } finally {
        stats = await terminator.stop();
      }
      return `${stats.terminated} backends terminated in ${stats.rounds} rounds; ` +
        `bridge reconnections ${await reconnects(ctx.bridge)}`;
    },
  });
  assert.ok(stats.rounds >= 5, `terminations went on while publishing (${stats.rounds} rounds)`);
  assert.ok(stats.terminated >= 5, `backends were terminated (${stats.terminated})`);
  assert.ok(await reconnects(ctx.bridge) >= 3, 'the bridge reconnected again and again');
  sessionsStayed(ctx);
});

/*
 * A variant of (b): the query connections go and cannot come back for a
 * while (the role's connection limit, as when max_connections is reached)
 * while the LISTEN connection stays.  A large packet on each channel needs
 * the table (its NOTIFY carries no data), so each channel's delivery waits
 * for the pool; the NOTIFYs that arrive meanwhile carry their packets.
 * The bridge should then read each waiting channel from the table about
 * once: a handful of comet.replay calls, not one per NOTIFY.
 */
test('(b) the bridge\'s query connections terminated and refused while its LISTEN connection stays, with a ' +
     'large packet on each channel meanwhile: every client ends with every seq once, and the bridge reads the ' +
     'waiting channels from the table once, not once per NOTIFY', CASE, async t => {
  const bigAt = Math.round(PER_CHANNEL * 0.4);     // n of the large packets: inside the refusal
  let before = 0;
  let terminated = 0;
  defer(t, () => allowConnections(db));
  const {ctx} = await runCase(t, 'b-pool-refused', {
    pace: {bigAt: new Set([bigAt])},
    async fault(ctx) {
      before = await replayCalls(db);
      const from = await committedAtLeast(ctx, 0.3);
      terminated = await refuseQueryConnections(db);
      let to;
      try {
        to = await committedAtLeast(ctx, 0.6);
      } finally {
        await allowConnections(db);
      }
      return `${terminated} query backends terminated and the bridge's role refused new connections from ` +
        `${from} to ${to} committed (its LISTEN connection stayed); packet n=${bigAt} of each channel is ` +
        '10 kB (a NOTIFY without data)';
    },
  });
  const calls = await replayCalls(db) - before;
  t.diagnostic(appendNote('b-pool-refused', `comet.replay ran ${calls} times ` +
    `(at most 100 expected${calls > 100 ? ': TOO MANY, the case fails' : ''})`));
  assert.ok(terminated >= 1, `query backends were terminated (${terminated})`);
  assert.ok(calls >= CHANNELS, `the large packets were read from the table (${calls} replay calls)`);
  assert.ok(calls <= 100, `the bridge read the waiting channels from the table about once each, ` +
    `not once per NOTIFY that arrived while they waited (${calls} comet.replay calls for ` +
    `${CHANNELS} waiting channels and ${ctx.sent ? Object.values(ctx.sent).reduce((a, b) => a + b, 0) : '?'} packets)`);
});

/* ---- (c) the bridge killed and started again ------------------------------------- */

test('(c) the bridge killed with SIGKILL twice and started again on its port while 5,000 packets are ' +
     'committed: every client resumes and ends with every seq once, in order', CASE, async t => {
  const kills = [];
  const {ctx} = await runCase(t, 'c-kill', {
    async fault(ctx) {
      for (const [fraction, downMs] of [[0.3, 1000], [0.6, 300]]) {
        const at = await committedAtLeast(ctx, fraction);
        const sessions = ctx.clients.map(c => c.sessions());
        const exit = await ctx.bridge.kill('SIGKILL');
        kills.push({at, signal: exit && exit.signal});
        await sleep(downMs);
        await ctx.bridge.restart();
        // each kill is felt on its own: every client has a session on the new bridge first
        await waitFor(() => ctx.clients.every((c, i) => c.sessions() > sessions[i]), 20000,
          'every client to set up a session on the restarted bridge');
      }
      return `bridge killed (SIGKILL) at ${kills.map(k => k.at).join(' and ')} committed, restarted on the same port`;
    },
  });
  assert.deepEqual(kills.map(k => k.signal), ['SIGKILL', 'SIGKILL'], 'the bridge died by SIGKILL twice');
  assert.ok(kills[0].at < 0.9 * CHANNELS * PER_CHANNEL, `the first kill landed while publishing (at ${kills[0].at})`);
  for (const c of ctx.clients)
    assert.ok(c.sessions() >= 3, `${c.label} set up a new session after each kill (${c.sessions()})`);
});

/* ---- (d) a proxy losing requests and answers --------------------------------------- */

test('(d) a proxy cuts requests, drops answers and cuts connections at random while 5,000 packets are ' +
     'committed: every client retries and ends with every seq once, in order', CASE, async t => {
  let chaos = null;
  let counts = null;
  const {ctx} = await runCase(t, 'd-proxy', {
    proxy: true,
    async fault(ctx) {
      chaos = startChaos(ctx.proxy, ctx.prng);
      return `loopback proxy, seed ${SEED}: losses from the start to the end of delivery`;
    },
    async quiet(ctx) {
      counts = await chaos.stop();
      ctx.notes.push(`${counts.requests} requests through the proxy: ${counts.cut} cut before the bridge, ` +
        `${counts.dropped} answers dropped, ${counts.abandoned} abandoned while the bridge worked, ` +
        `every connection cut ${counts.cutAlls}x`);
    },
  });
  assert.ok(counts.cut >= 3 && counts.dropped >= 3, `requests were cut and answers dropped (${JSON.stringify(counts)})`);
  assert.ok(counts.cutAlls >= 2, 'every connection was cut more than once');
  for (const c of ctx.clients) assert.ok(c.retries() >= 1, `${c.label} retried with the same rid (${c.retries()})`);
});

/* ---- (e) slow clients overflow; stopped clients exceed retention ------------------ */

test('(e) slow clients overflow --max-pending 50 again and again and resume with every seq once; clients ' +
     'stopped past retention get an explicit gap for exactly what was pruned, then go on', CASE, async t => {
  const stalled = {comet: gate(), raw: gate()};
  let pruned = 0;
  let kept = 0;
  let gapsAt = null;
  const {ctx} = await runCase(t, 'e-overflow', {
    bridgeArgs: ['--max-pending', '50'],
    clients(ctx) {
      const slow = () => ctx.prng() < 0.3 ? 500 + Math.floor(ctx.prng() * 700) : 0;
      return [
        {label: 'comet.js', kind: 'comet',
          hold: (kind, body, signal) => (kind === 'poll' ? sleepUnless(slow(), signal) : undefined)},
        {label: 'raw', kind: 'raw', beforePoll: client => client._sleep(slow())},
        {label: 'comet.js-stopped', kind: 'comet', gapsAllowed: true,
          hold: (kind, body, signal) => (kind === 'poll' ? stalled.comet.wait(signal) : undefined)},
        {label: 'raw-stopped', kind: 'raw', gapsAllowed: true, beforePoll: () => stalled.raw.wait()},
      ];
    },
    async fault(ctx) {
      const at = await committedAtLeast(ctx, 0.2);
      stalled.comet.close();
      stalled.raw.close();
      return `slow clients pause 0.5-1.2 s before 30% of their polls; two clients stop polling at ${at} ` +
        'committed, until the rest is delivered and comet.prune(\'0 s\') has removed every packet';
    },
    async afterPublish(ctx) {
      // the slow clients get everything while nothing is pruned
      const slow = ctx.clients.filter(c => !c.gapsAllowed);
      await waitFor(() => allCaughtUp(slow, ctx.sent), 60000, `the slow clients to catch up (${behindText(slow, ctx.sent)})`);
      gapsAt = Object.fromEntries(ctx.clients.filter(c => c.gapsAllowed)
        .map(c => [c.label, ctx.channels.map(ch => c.lastSeq(ch))]));
      pruned = Number(await db.sql(`SELECT comet.prune('0 seconds');`));
      for (const channel of ctx.channels) {
        ctx.pruned[channel] = ctx.sent[channel];
        kept += Number(await db.sql(`SELECT count(*) FROM comet.replay(${lit(channel)}, 0);`));
      }
      ctx.notes.push(`the stopped clients were at ${JSON.stringify(gapsAt)} when ${pruned} packets ` +
        '(the whole database\'s) were pruned');
      stalled.comet.open();
      stalled.raw.open();
      // and after the gap, live packets again: 5 more a channel
      await waitFor(() => allCaughtUp(ctx.clients, ctx.sent), 30000,
        `the stopped clients to resume past the pruned packets (${behindText(ctx.clients, ctx.sent)})`);
      for (const channel of ctx.channels) {
        await db.sql(paceSql(channel, ctx.sent[channel] + 1, ctx.sent[channel] + 5, {batch: 5, pauseSeconds: 0, pad: 'after'}));
        ctx.sent[channel] += 5;
      }
      ctx.extraSent = 5 * CHANNELS;
    },
  });
  const overflowed = sid => new RegExp(`session ${sid.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} ended: overflow`)
    .test(ctx.bridge.logText);
  assert.ok(pruned >= CHANNELS * PER_CHANNEL, `comet.prune removed packets (${pruned})`);
  assert.equal(kept, 0, 'no packet of the case was kept');
  for (const c of ctx.clients) {
    const sids = c.kind === 'comet' ? c.wire.stats.sids : c.raw.sids;
    const overflows = sids.filter(overflowed).length;
    assert.ok(overflows >= 1, `${c.label}: a session ended by overflow (${overflows} of ${sids.length})`);
    assert.ok(c.sessions() >= 2, `${c.label} set up again after its session overflowed (${c.sessions()})`);
  }
  for (const c of ctx.clients.filter(x => x.gapsAllowed)) {
    const gaps = c.events().filter(e => e.type === 'gap');
    assert.equal(gaps.length, CHANNELS, `${c.label}: one gap a channel, for the pruned packets`);
    for (const g of gaps.map(e => e.value)) {
      const before = gapsAt[c.label][ctx.channels.indexOf(g.channel)];
      assert.equal(g.from, before + 1, `${c.label}: the gap on ${g.channel} starts after the last seq it had`);
      assert.equal(g.to, PER_CHANNEL, `${c.label}: the gap on ${g.channel} ends at the last pruned seq`);
    }
  }
});
