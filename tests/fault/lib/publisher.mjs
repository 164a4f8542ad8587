// publisher.mjs — the fault suite's publisher: durable packets sent with
// comet.send through psql, one transaction each, paced so that a fault can
// land while they flow, and resilient to the faults themselves.
//
// Each channel has its own publisher (a psql process) sending packets
// {"n": 1..perChannel} in order.  When psql dies (PostgreSQL restarted, its
// backend terminated), the publisher asks the database what was committed
// (comet.last_seq) and goes on from the next n: a transaction in flight at
// the fault either committed or did not, and the database is the only
// judge.  Since a channel has one sender and seqs follow commit order, the
// packet with seq k always carries n = k; the suite checks that too.
//
// Never sends a packet twice and never skips one: that is what makes
// "every seq exactly once" a statement about the bridge and the client.
import {psql, sleep, lit} from '../../../client/test/lib/harness.mjs';

/*
 * The SQL sending packets from..to on channel, one autocommitted statement
 * each (so one transaction each), with a pause after every batch.  Packets
 * whose n is in bigAt carry bigPad instead of pad (past NOTIFY's 8000
 * bytes, so the bridge must read them from the table).
 */
export function paceSql(channel, from, to, {batch, pauseSeconds, pad, bigAt = null, bigPad = ''}) {
  const lines = [];
  for (let n = from; n <= to; n++) {
    const data = JSON.stringify({n, pad: bigAt && bigAt.has(n) ? bigPad : pad});
    lines.push(`SELECT comet.send(${lit(channel)}, ${lit(data)});`);
    if (pauseSeconds > 0 && (n - from + 1) % batch === 0 && n < to)
      lines.push(`SELECT pg_sleep(${pauseSeconds});`);
  }
  return lines.join('\n') + '\n';
}

/*
 * comet.last_seq(channel), asked again until the database answers or
 * timeout ms pass (it may be restarting).
 */
export async function lastSeq(db, channel, timeout = 60000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return Number(await db.sql(`SELECT comet.last_seq(${lit(channel)});`, {timeout: 10000}));
    } catch (e) {
      if (Date.now() >= deadline) throw new Error(`comet.last_seq(${channel}) unanswered: ${e.message}`);
      await sleep(200);
    }
  }
}

/* The packets committed so far on channels (0 while the database is away). */
export async function committed(db, channels) {
  const list = `ARRAY[${channels.map(lit).join(',')}]::text[]`;
  try {
    return Number(await db.sql(`SELECT coalesce(sum(comet.last_seq(c)), 0) FROM unnest(${list}) c;`,
      {timeout: 5000}));
  } catch (e) {
    return 0;
  }
}

/* One channel's publisher: resolves when 1..perChannel are all committed. */
async function publishChannel(db, channel, perChannel, options, stats) {
  let next = 1;
  while (next <= perChannel) {
    if (stats.stopped) throw new Error('the publisher was stopped');
    try {
      await psql(db.conninfo, paceSql(channel, next, perChannel, options), {timeout: options.timeout});
      next = perChannel + 1;
    } catch (e) {
      // the connection died under a fault: what was committed decides where to go on
      stats.interruptions++;
      stats.lastError = e.message.split('\n').filter(Boolean).slice(-1)[0];
      await sleep(100);
      next = (await lastSeq(db, channel)) + 1;
    }
  }
}

/*
 * Start publishing perChannel packets on each channel, concurrently (one
 * psql a channel), paced: a pause of pauseSeconds after every batch;
 * options.bigAt (a Set of n) makes those packets large (10 kB).
 * Returns {done, stats, stop()}: done resolves when every packet is
 * committed; stats.interruptions counts the psql runs a fault cut short.
 */
export function startPublisher(db, channels, perChannel, options = {}) {
  const opts = {
    batch: options.batch || 25,
    pauseSeconds: options.pauseSeconds === undefined ? 0.15 : options.pauseSeconds,
    pad: options.pad || 'x'.repeat(64),
    bigAt: options.bigAt || null,
    bigPad: 'y'.repeat(10000),
    timeout: options.timeout || 120000,
  };
  const stats = {interruptions: 0, lastError: null, stopped: false, started: Date.now(), ended: null};
  const done = Promise.all(channels.map(channel => publishChannel(db, channel, perChannel, opts, stats)))
    .finally(() => { stats.ended = Date.now(); });
  done.catch(() => {});
  return {done, stats, stop() { stats.stopped = true; }};
}
