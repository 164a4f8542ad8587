// faults.mjs — the faults the suite injects, each bounded and counted:
// PostgreSQL restarted ($COMET_TEST_RESTART), the bridge's backends
// terminated again and again, its query connections refused while its
// LISTEN connection stays, and a loopback proxy losing requests and
// answers at random from a seeded PRNG (so that a failing run can be
// replayed with COMET_FAULT_SEED).
import {spawn, execFileSync} from 'node:child_process';
import {sleep, PSQL, ADMIN_CONNINFO, BRIDGE_ROLE} from '../../../client/test/lib/harness.mjs';

/* A small seeded PRNG (mulberry32): () => [0, 1). */
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/* The run's seed: $COMET_FAULT_SEED, or a fresh one (printed by the suite). */
export function suiteSeed() {
  const given = process.env.COMET_FAULT_SEED;
  if (given !== undefined && given !== '') {
    const seed = Number(given);
    if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32)
      throw new Error(`COMET_FAULT_SEED must be an integer in [0, 2^32), not ${given}`);
    return seed;
  }
  return Math.floor(Math.random() * 2 ** 32);
}

/*
 * Restart PostgreSQL in place: $COMET_TEST_RESTART with mode ('fast' or
 * 'immediate') appended, run by sh.  Resolves to the seconds it took;
 * rejects with its output when it fails or takes over timeout ms.
 */
export function restartCluster(mode, timeout = 120000) {
  const command = process.env.COMET_TEST_RESTART;
  if (!command) return Promise.reject(new Error('COMET_TEST_RESTART is not set: cannot restart PostgreSQL'));
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', `${command} ${mode}`], {stdio: ['ignore', 'pipe', 'pipe']});
    let output = '';
    child.stdout.on('data', d => { output += d; });
    child.stderr.on('data', d => { output += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
    child.on('error', e => { clearTimeout(timer); reject(e); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve((Date.now() - started) / 1000);
      else reject(new Error(`"${command} ${mode}" failed (${signal || `exit ${code}`}):\n${output}`));
    });
  });
}

/*
 * Terminate the bridge's backends (application_name comet-bridge, in db's
 * database) every minMs..maxMs until stop().  stats: {rounds, terminated,
 * failures}.
 */
export function startTerminator(db, {minMs = 200, maxMs = 500, random = Math.random} = {}) {
  const stats = {rounds: 0, terminated: 0, failures: 0};
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        const n = await db.sql(`SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
  FROM pg_stat_activity
 WHERE application_name = 'comet-bridge' AND datname = current_database();`, {timeout: 10000});
        stats.rounds++;
        stats.terminated += Number(n);
      } catch (e) {
        stats.failures++;
      }
      await sleep(minMs + Math.floor(random() * (maxMs - minMs)));
    }
  })();
  return {
    stats,
    async stop() {
      stopped = true;
      await loop;
      return stats;
    },
  };
}

/*
 * Make proxy lose things at random until stop(): each request is cut before
 * it reaches the bridge (p.cut), has its answer dropped after the bridge
 * did the work (p.drop), or is abandoned while the bridge works on it
 * (p.abandon); and every cutEveryMs (min..max) every open connection is
 * cut, held polls included.  stop() resolves to the counts.
 */
export function startChaos(proxy, random, {cut = 0.06, drop = 0.08, abandon = 0.04,
  cutEveryMs = [700, 1800]} = {}) {
  proxy.rule = req => {
    if (req.kind === 'other') return 'pass';
    const r = random();
    if (r < cut) return 'cut';
    if (r < cut + drop) return 'drop-response';
    if (r < cut + drop + abandon) return 'abandon';
    return 'pass';
  };
  let cutAlls = 0;
  let stopped = false;
  let wake = null;
  const loop = (async () => {
    while (!stopped) {
      const ms = cutEveryMs[0] + Math.floor(random() * (cutEveryMs[1] - cutEveryMs[0]));
      await new Promise(resolve => {
        const timer = setTimeout(resolve, ms);
        wake = () => { clearTimeout(timer); resolve(); };
      });
      if (!stopped) {
        proxy.cutAll();
        cutAlls++;
      }
    }
  })();
  return {
    async stop() {
      stopped = true;
      proxy.rule = null;
      if (wake) wake();
      await loop;
      const count = action => proxy.log.filter(e => e.action === action).length;
      return {requests: proxy.log.length, cut: count('cut'), dropped: count('drop-response'),
        abandoned: count('abandon'), cutAlls};
    },
  };
}

/* ---- the bridge's query connections refused ------------------------------------------ */

// The bridge's role is the cluster's, shared by every test database: a
// limit left behind by an interrupted run would lock later suites out, so
// it is lifted on exit too.
let roleLimited = false;
process.on('exit', () => {
  if (!roleLimited) return;
  try {
    execFileSync(PSQL, ['-X', '-q', '-d', ADMIN_CONNINFO, '-c', `ALTER ROLE ${BRIDGE_ROLE} CONNECTION LIMIT -1`],
      {stdio: 'ignore', timeout: 10000, env: {...process.env, PGCONNECT_TIMEOUT: '5'}});
  } catch (e) {
    // nothing more to do
  }
});

/*
 * Refuse the bridge's new connections (its role limited to the one it
 * holds: the LISTEN connection) and terminate its other backends (the
 * query pool).  Resolves to the number terminated; allowConnections()
 * undoes it.
 */
export async function refuseQueryConnections(db) {
  roleLimited = true;
  await db.sql(`ALTER ROLE ${BRIDGE_ROLE} CONNECTION LIMIT 1;`);
  return Number(await db.sql(`SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
  FROM pg_stat_activity
 WHERE application_name = 'comet-bridge' AND datname = current_database()
   AND query !~* '^\\s*(un)?listen\\M';`));
}

/* Let the bridge's role connect again. */
export async function allowConnections(db) {
  await db.sql(`ALTER ROLE ${BRIDGE_ROLE} CONNECTION LIMIT -1;`);
  roleLimited = false;
}

/*
 * How many times comet.replay ran in db's backends (track_functions must
 * be 'all' for them), after the bridge's backends are terminated so that
 * what they counted is flushed.
 */
export async function replayCalls(db) {
  await db.sql(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE application_name = 'comet-bridge' AND datname = current_database();`);
  await sleep(1000);
  return Number(await db.sql(`SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions
 WHERE schemaname = 'comet' AND funcname = 'replay';`));
}
