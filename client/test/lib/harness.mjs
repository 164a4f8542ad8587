// harness.mjs — what the client tests (client/test/*.test.mjs) share.
//
// A test file talks to a real comet-bridge over real HTTP on 127.0.0.1,
// backed by a real PostgreSQL database, with the real comet.js running under
// Node (global fetch).  Mirrors bridge/t/lib/CometTest.pm:
//
//   - makeDatabase(): a fresh database per test file on the cluster named by
//     $COMET_TEST_DB (CREATE EXTENSION comet, the bridge role
//     comet_bridge_test with the grants of docs/sql.md), dropped at the end;
//   - sql(text): statements through psql (-X -q -At, ON_ERROR_STOP), as an
//     application would; several statements are several transactions;
//   - startBridge(args): comet-bridge ($COMET_BRIDGE) on a free port, waits
//     for "listening on"; stop(), kill(signal), restart() on the same port,
//     metrics(), get(path);
//   - newClient(url, options): a Comet with a recorder of its events, closed
//     at the end;
//   - recordingFetch(): a fetch that logs every request and answer;
//   - waitFor(predicate, timeout): every wait is bounded.
//
// cleanup() (registered with after() by each file) closes clients, proxies,
// bridges and drops the database, also when a test failed; a signal or an
// exit does what it can synchronously.

import {spawn, execFileSync} from 'node:child_process';
import {createRequire} from 'node:module';
import {existsSync} from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {randomBytes} from 'node:crypto';
import {PSQL, sleep, withTimeout, freePort, lit} from '../../../tests/lib/util.mjs';
export {PSQL, sleep, withTimeout, freePort, lit};

const require = createRequire(import.meta.url);
const HERE = path.dirname(fileURLToPath(import.meta.url));
export const CLIENT_DIR = path.resolve(HERE, '../..');
export const REPO_ROOT = path.resolve(CLIENT_DIR, '..');

/** The client under test, loaded as Node code loads it ($COMET_TEST_CLIENT: another copy, to try a fix). */
export const CLIENT_FILE = process.env.COMET_TEST_CLIENT
  ? path.resolve(process.env.COMET_TEST_CLIENT) : path.join(CLIENT_DIR, 'comet.js');
export const Comet = require(CLIENT_FILE);

export const ADMIN_CONNINFO = process.env.COMET_TEST_DB || 'dbname=postgres';
export const BRIDGE_BINARY = path.resolve(REPO_ROOT, process.env.COMET_BRIDGE || 'bridge/comet-bridge');
export const BRIDGE_ROLE = 'comet_bridge_test';



/**
 * Poll predicate (sync or async) every 20 ms until it returns a truthy value
 * or timeout ms pass; returns that value, or throws with what was waited for.
 */
export async function waitFor(predicate, timeout = 5000, what = 'a condition') {
  const deadline = Date.now() + timeout;
  for (;;) {
    let value;
    try {
      value = await predicate();
    } catch (e) {
      value = undefined;
    }
    if (value) return value;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(20);
  }
}



/* ---- psql ----------------------------------------------------------------- */

/**
 * Run SQL text with psql; resolves to its output (rows one a line, columns
 * separated by |), rejects with psql's error text.
 */
export function psql(conninfo, text, {timeout = 30000} = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(PSQL, ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', conninfo, '-f', '-'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: {...process.env, PGCONNECT_TIMEOUT: '5'},
    });
    let out = '';
    let err = '';
    child.stdout.on('data', d => { out += d; });
    child.stderr.on('data', d => { err += d; });
    const timer = setTimeout(() => {
      err = `psql timed out after ${timeout} ms\n${err}`;
      child.kill('SIGKILL');
    }, timeout);
    child.on('error', e => { clearTimeout(timer); reject(e); });
    child.on('close', code => {
      clearTimeout(timer);
      if (code === 0) resolve(out.replace(/\n$/, ''));
      else reject(new Error(`SQL failed: ${text.length > 300 ? text.slice(0, 300) + '...' : text}\n${err}`));
    });
    child.stdin.on('error', () => {});
    child.stdin.end(text.endsWith('\n') ? text : text + '\n');
  });
}


/* ---- what a test file started, stopped at the end ------------------------------ */

const resources = {
  clients: new Set(),
  proxies: new Set(),
  bridges: new Set(),
  database: null,
};

const testStacks = new WeakMap();

/**
 * Run fn when test t ends, last registered first (a client before its proxy,
 * a proxy before its bridge), also when the test failed.
 */
export function defer(t, fn) {
  let stack = testStacks.get(t);
  if (!stack) {
    stack = [];
    testStacks.set(t, stack);
    t.after(async () => {
      let failure = null;
      while (stack.length) {
        try {
          await stack.pop()();
        } catch (e) {
          failure = failure || e;
        }
      }
      if (failure) throw failure;
    });
  }
  stack.push(fn);
}

/** Register something with a close() to be closed at the end (proxies). */
export function track(kind, thing) {
  resources[kind].add(thing);
  return thing;
}

/**
 * Close every client, proxy and bridge and drop the database.  Each test
 * file calls this from after(); a failure here is reported, not hidden.
 */
export async function cleanup() {
  const errors = [];
  for (const proxy of resources.proxies) proxy.rule = null;
  for (const client of resources.clients) {
    // close() terminates the session; it must not hang the file
    try {
      await withTimeout(client.close(), 3000, 'client.close()');
    } catch (e) {
      // a client whose bridge is gone cannot say goodbye: fine
    }
  }
  resources.clients.clear();
  for (const proxy of resources.proxies) {
    try {
      await proxy.close();
    } catch (e) {
      errors.push(e);
    }
  }
  resources.proxies.clear();
  for (const bridge of resources.bridges) {
    try {
      await bridge.stop();
    } catch (e) {
      errors.push(e);
    }
  }
  resources.bridges.clear();
  if (resources.database) {
    try {
      await resources.database.drop();
    } catch (e) {
      errors.push(e);
    }
  }
  if (errors.length) throw errors[0];
}

// Interrupted (the runner's timeout, ^C) or exiting with something left:
// kill the bridges and drop the database synchronously.
function emergencyCleanup() {
  for (const bridge of resources.bridges) {
    try {
      if (bridge.child && bridge.child.exitCode === null && bridge.child.signalCode === null)
        bridge.child.kill('SIGKILL');
    } catch (e) {
      // nothing more to do
    }
  }
  if (resources.database && !resources.database.dropped) {
    try {
      execFileSync(PSQL, ['-X', '-q', '-d', ADMIN_CONNINFO, '-c',
        `DROP DATABASE IF EXISTS ${resources.database.name} WITH (FORCE)`],
      {stdio: 'ignore', timeout: 10000, env: {...process.env, PGCONNECT_TIMEOUT: '5'}});
      resources.database.dropped = true;
    } catch (e) {
      // nothing more to do
    }
  }
}
process.on('exit', emergencyCleanup);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    emergencyCleanup();
    process.exit(1);
  });
}

/* ---- the database ------------------------------------------------------------- */

/**
 * A new database for this test file (name from label, the pid and random
 * bits, so two runs never collide), with the comet extension and the bridge
 * role's grants.  Returns {name, conninfo, bridgeConninfo, sql, grant, drop}.
 */
export async function makeDatabase(label = 'client') {
  const base = String(label).toLowerCase().replace(/[^a-z0-9]+/g, '_').slice(0, 20);
  const name = `comet_node_${base}_${process.pid}_${randomBytes(3).toString('hex')}`;
  await psql(ADMIN_CONNINFO, `CREATE DATABASE ${name};`);
  const db = {
    name,
    dropped: false,
    conninfo: `${ADMIN_CONNINFO} dbname=${name}`,
    bridgeConninfo: `${ADMIN_CONNINFO} dbname=${name} user=${BRIDGE_ROLE}`,
    sql(text, options) {
      return psql(db.conninfo, text, options);
    },
    /** comet.grant(pattern, actions, subject) */
    grant(pattern, actions, subject = null) {
      const array = `ARRAY[${actions.map(lit).join(',')}]::text[]`;
      return db.sql(`SELECT comet.grant(${lit(pattern)}, ${array}, ${lit(subject)});`);
    },
    async drop() {
      if (db.dropped) return;
      await psql(ADMIN_CONNINFO, `DROP DATABASE IF EXISTS ${name} WITH (FORCE);`, {timeout: 20000});
      db.dropped = true;
      if (resources.database === db) resources.database = null;
    },
  };
  resources.database = db;
  await db.sql(`
CREATE EXTENSION comet;
DO $$ BEGIN
  CREATE ROLE ${BRIDGE_ROLE} LOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
-- what docs/sql.md says the bridge's role needs
GRANT EXECUTE ON FUNCTION comet.authenticate(jsonb), comet.authorize(text, text, text),
    comet.receive(text, text, text, jsonb), comet.send(text, jsonb),
    comet.replay(text, bigint, integer), comet.last_seq(text), comet.prune(interval)
  TO ${BRIDGE_ROLE};
`);
  return db;
}

/* ---- the bridge ------------------------------------------------------------------ */

class Bridge {
  constructor(args, db, options) {
    this.args = args;
    this.db = db;
    this.options = options;
    this.port = null;
    this.child = null;
    this.logText = '';
    this.exits = [];
  }

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The /comet endpoint. */
  get url() {
    return `${this.base}/comet`;
  }

  get running() {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /* Start on this.port (or a free one); resolves once it listens. */
  async _spawn(port) {
    if (!existsSync(BRIDGE_BINARY))
      throw new Error(`no bridge binary at ${BRIDGE_BINARY} (build it, or set COMET_BRIDGE)`);
    const argv = ['--listen', `127.0.0.1:${port}`, '--db', this.options.db || this.db.bridgeConninfo,
      '--log-level', this.options.logLevel || 'info', ...this.args];
    const child = spawn(BRIDGE_BINARY, argv, {stdio: ['ignore', 'pipe', 'pipe']});
    this.child = child;
    this.port = port;
    let text = '';
    const onData = d => {
      text += d;
      this.logText += d;
      // keep the log bounded
      if (this.logText.length > 400000) this.logText = this.logText.slice(-200000);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const exited = new Promise(resolve => child.on('exit', (code, signal) => {
      this.exits.push({code, signal});
      resolve({code, signal});
    }));
    child.exited = exited;
    const pattern = new RegExp(`listening on 127\\.0\\.0\\.1:${port}\\b`);
    const deadline = Date.now() + (this.options.startTimeout || 15000);
    while (Date.now() < deadline) {
      if (pattern.test(text)) return true;
      if (!this.running) break;
      await sleep(20);
    }
    const running = this.running;
    if (running) {
      child.kill('SIGKILL');
      await exited;
    }
    const error = new Error(`comet-bridge did not start on port ${port}: ` +
      (running ? 'no "listening on" line in time' : `it exited (${JSON.stringify(this.exits.at(-1))})`) +
      `\n--- bridge log ---\n${text.slice(-3000)}`);
    error.portInUse = /in use/i.test(text);
    throw error;
  }

  async start() {
    let lastError;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await this._spawn(await freePort());
        return this;
      } catch (e) {
        lastError = e;
        if (!e.portInUse) break;
      }
    }
    throw lastError;
  }

  /** Start again on the same port (after stop() or kill()). */
  async restart() {
    if (this.running) await this.stop();
    let lastError;
    // the port was ours a moment ago; retry briefly if the OS still holds it
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        await this._spawn(this.port);
        return this;
      } catch (e) {
        lastError = e;
        if (!e.portInUse) break;
        await sleep(100);
      }
    }
    throw lastError;
  }

  /** Send a signal and wait (up to 5 s) for the process to exit. */
  async kill(signal = 'SIGKILL') {
    if (!this.running) return this.exits.at(-1);
    const child = this.child;
    child.kill(signal);
    return withTimeout(child.exited, 5000, `comet-bridge to exit on ${signal}`);
  }

  /** SIGTERM, then SIGKILL after 3 s. */
  async stop() {
    if (!this.running) return this.exits.at(-1);
    const child = this.child;
    child.kill('SIGTERM');
    try {
      return await withTimeout(child.exited, 3000, 'comet-bridge to stop');
    } catch (e) {
      child.kill('SIGKILL');
      return withTimeout(child.exited, 3000, 'comet-bridge to die');
    }
  }

  /** GET a path: {status, headers, text, bytes}. */
  async get(urlPath) {
    const response = await fetch(`${this.base}${urlPath}`, {signal: AbortSignal.timeout(5000)});
    const bytes = Buffer.from(await response.arrayBuffer());
    return {status: response.status, headers: response.headers, bytes, text: bytes.toString('utf8')};
  }

  /** GET /metrics as {"name{labels}": number}. */
  async metrics() {
    const {status, text} = await this.get('/metrics');
    if (status !== 200) throw new Error(`GET /metrics answered ${status}`);
    const metrics = {};
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const m = /^(\S+?(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
      if (m) metrics[m[1]] = Number(m[2]);
    }
    return metrics;
  }

  /** One metric's value (NaN when the bridge does not report it). */
  async metric(name) {
    const m = await this.metrics();
    return name in m ? m[name] : NaN;
  }

  /** The last lines of the bridge's log, for a failure's message. */
  logTail(lines = 40) {
    return this.logText.split('\n').slice(-lines).join('\n');
  }
}

/**
 * Start comet-bridge for db with extra arguments; options: {db: conninfo,
 * logLevel, startTimeout}.  Stopped at the end of the file.
 */
export async function startBridge(db, args = [], options = {}) {
  const bridge = new Bridge(args, db, options);
  resources.bridges.add(bridge);
  await bridge.start();
  return bridge;
}

/* ---- clients -------------------------------------------------------------------- */

/**
 * A fetch that records every POST: log entries {body, rid, sid, kind,
 * status, json, error, start, end}.  kind: 'setup', 'poll', 'work',
 * 'terminate'.  outstanding(kind) counts requests not answered yet.
 */
export function recordingFetch(inner = (...args) => fetch(...args)) {
  const log = [];
  let concurrentPolls = 0;
  const recorder = {
    log,
    maxConcurrentPolls: 0,
    outstanding(kind) {
      return log.filter(e => e.end === undefined && (!kind || e.kind === kind)).length;
    },
    async fetch(url, init = {}) {
      let body = null;
      try {
        body = JSON.parse(init.body);
      } catch (e) {
        body = null;
      }
      const entry = {url: String(url), body, rid: body && body.rid, sid: body && body.sid,
        kind: requestKind(body), start: Date.now()};
      log.push(entry);
      if (entry.kind === 'poll') {
        concurrentPolls++;
        recorder.maxConcurrentPolls = Math.max(recorder.maxConcurrentPolls, concurrentPolls);
      }
      try {
        const response = await inner(url, init);
        const text = await response.clone().text();
        entry.status = response.status;
        try {
          entry.json = JSON.parse(text);
        } catch (e) {
          entry.json = null;
        }
        return response;
      } catch (e) {
        entry.error = e;
        throw e;
      } finally {
        entry.end = Date.now();
        if (entry.kind === 'poll') concurrentPolls--;
      }
    },
  };
  recorder.fetch = recorder.fetch.bind(recorder);
  return recorder;
}

/** What a request body asks for: 'setup', 'poll', 'work', 'terminate', 'other'. */
export function requestKind(body) {
  if (!body || typeof body !== 'object') return 'other';
  if (body.sid === undefined) return 'setup';
  if (body.terminate) return 'terminate';
  if (body.send || body.subscribe || body.unsubscribe) return 'work';
  return 'poll';
}

/**
 * A Comet client whose events are recorded, closed at the end of the test
 * t (when given) or of the file:
 *   rec.packets, rec.gaps, rec.statuses, rec.errors, rec.events (all, in order)
 *   rec.seqs(channel), rec.datas(channel)
 *   await rec.waitPackets(channel, n, timeout), rec.waitStatus(s, timeout)
 */
export function newClient(url, options = {}, t = null) {
  const client = new Comet(url, options);
  resources.clients.add(client);
  // a test may close its clients when it ends (else: at the end of the file)
  if (t) defer(t, () => withTimeout(client.close(), 3000, 'client.close()').catch(() => {}));
  const rec = {
    client,
    packets: [],
    gaps: [],
    statuses: [],
    errors: [],
    events: [],
    onPacket: null,
    seqs(channel) {
      return rec.packets.filter(p => p.channel === channel).map(p => p.seq);
    },
    datas(channel) {
      return rec.packets.filter(p => p.channel === channel).map(p => p.data);
    },
    waitPackets(channel, n, timeout = 8000) {
      return waitFor(() => rec.packets.filter(p => p.channel === channel).length >= n, timeout,
        `${n} packets on ${channel} (have ${rec.packets.filter(p => p.channel === channel).length})`);
    },
    waitPacket(predicate, timeout = 8000, what = 'a packet') {
      return waitFor(() => rec.packets.find(predicate), timeout, what);
    },
    /** Wait for status s to be reached after the n-th status event (default: any). */
    waitStatus(s, timeout = 8000, after = 0) {
      return waitFor(() => rec.statuses.slice(after).includes(s), timeout,
        `status '${s}' (statuses so far: ${rec.statuses.join(', ')})`);
    },
  };
  client.on('packet', p => { rec.packets.push(p); rec.events.push({type: 'packet', value: p}); if (rec.onPacket) rec.onPacket(p); });
  client.on('gap', g => { rec.gaps.push(g); rec.events.push({type: 'gap', value: g}); });
  client.on('status', s => { rec.statuses.push(s); rec.events.push({type: 'status', value: s}); });
  client.on('error', e => { rec.errors.push(e); rec.events.push({type: 'error', value: e}); });
  return rec;
}

/** 1..n as an array. */
export function range(from, to) {
  const out = [];
  for (let i = from; i <= to; i++) out.push(i);
  return out;
}

/** SQL that sends one packet per transaction: data {n: from..to} on channel. */
export function sendEachSql(channel, from, to, {sleepSeconds = 0} = {}) {
  let text = '';
  for (let i = from; i <= to; i++) {
    text += `SELECT comet.send(${lit(channel)}, '{"n": ${i}}');\n`;
    if (sleepSeconds) text += `SELECT pg_sleep(${sleepSeconds});\n`;
  }
  return text;
}

/**
 * Commit a marker packet on channel and wait until rec has it: everything
 * committed on the channel before it has been delivered by then (the
 * client delivers a channel in seq order).  Resolves to the marker packet.
 */
export async function barrier(db, rec, channel, timeout = 8000) {
  const marker = `marker-${randomBytes(6).toString('hex')}`;
  await db.sql(`SELECT comet.send(${lit(channel)}, ${lit(JSON.stringify({marker}))});`);
  return rec.waitPacket(p => p.channel === channel && p.data && p.data.marker === marker, timeout,
    `the marker packet on ${channel}`);
}
