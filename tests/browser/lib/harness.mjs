// harness.mjs — what the browser tests (tests/browser/*.test.mjs) share.
//
// A test file gets its own database on the throwaway cluster named by
// $COMET_TEST_DB (a libpq conninfo of its "postgres" database, as a
// superuser), loads Grid-o-Matic into it exactly as scripts/run.sh does, and
// starts comet-bridge ($COMET_BRIDGE, default bridge/comet-bridge) on a free
// 127.0.0.1 port with the demo's static files and functions.  Each player is
// a headless Debian chromium (/usr/bin/chromium, never a downloaded one) in
// its own persistent context with a fresh user data directory.
//
// Everything a file starts is registered and undone by cleanup(), which each
// file calls from its after() hook, also when a test failed.  Every wait is
// bounded.

import {spawn} from 'node:child_process';
import {createRequire} from 'node:module';
import {existsSync, mkdirSync, mkdtempSync, rmSync, createWriteStream} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {randomBytes} from 'node:crypto';
import {PSQL, sleep, withTimeout, freePort, lit} from '../../lib/util.mjs';
export {PSQL, sleep, withTimeout, freePort, lit};

const require = createRequire(import.meta.url);
const {chromium} = require('playwright-core');

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const BROWSER_DIR = path.resolve(HERE, '..');
export const REPO_ROOT = path.resolve(BROWSER_DIR, '../..');
export const DEMO_DIR = path.join(REPO_ROOT, 'examples/grid-o-matic');

export const ADMIN_CONNINFO = process.env.COMET_TEST_DB || 'dbname=postgres';
export const BRIDGE_BINARY = path.resolve(REPO_ROOT, process.env.COMET_BRIDGE || 'bridge/comet-bridge');
export const ARTIFACTS = path.resolve(REPO_ROOT, process.env.COMET_ARTIFACTS || 'tests/browser/artifacts');

export const CHROMIUM = '/usr/bin/chromium';
/* Exactly these flags (the user data directory is the persistent context's). */
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];



/**
 * Poll predicate (sync or async) every 25 ms until it returns a truthy value
 * or timeout ms pass; returns that value, or throws saying what was awaited
 * (and the last value seen, when describe is given).
 */
export async function waitFor(predicate, timeout, what, describe) {
  const deadline = Date.now() + timeout;
  let lastError = null;
  for (;;) {
    let value;
    try {
      value = await predicate();
      lastError = null;
    } catch (e) {
      value = undefined;
      lastError = e;
    }
    if (value) return value;
    if (Date.now() >= deadline) {
      let seen = '';
      if (describe) {
        try {
          seen = `; last seen: ${JSON.stringify(await describe())}`;
        } catch (e) {
          seen = `; (could not describe: ${e.message})`;
        }
      }
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${seen}` +
                      (lastError ? ` (last error: ${lastError.message})` : ''));
    }
    await sleep(25);
  }
}



/* ---- psql ----------------------------------------------------------------- */

/**
 * Run psql (-X -q -v ON_ERROR_STOP=1) with extra arguments; resolves to its
 * output, rejects with its error text.
 */
function runPsql(conninfo, args, input, timeout = 30000) {
  return new Promise((resolve, reject) => {
    const child = spawn(PSQL, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', conninfo, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: {...process.env, PGCONNECT_TIMEOUT: '5', PGCLIENTENCODING: 'UTF8'},
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
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
      else reject(new Error(`psql ${args.join(' ')} failed (exit ${code}):\n${err}`));
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input || '');
  });
}

/** SQL text through psql (-At: rows one a line, columns separated by |). */
export function psql(conninfo, text) {
  return runPsql(conninfo, ['-At', '-f', '-'], text.endsWith('\n') ? text : text + '\n');
}


/** conninfo with dbname replaced (or added). */
export function withDbname(conninfo, dbname) {
  const rest = conninfo.replace(/(^|\s)dbname\s*=\s*('(?:[^'\\]|\\.)*'|\S+)/g, ' ').trim();
  return `${rest} dbname=${dbname}`.trim();
}

/* ---- what a test file started ------------------------------------------------ */

const resources = {
  players: new Set(),
  bridges: new Set(),
  database: null,
};

/** Close every player's browser, stop every bridge, drop the database. */
export async function cleanup() {
  const errors = [];
  for (const player of resources.players) {
    try {
      await player.close();
    } catch (e) {
      errors.push(e);
    }
  }
  resources.players.clear();
  for (const bridge of resources.bridges) {
    try {
      await bridge.stop();
    } catch (e) {
      errors.push(e);
    }
  }
  resources.bridges.clear();
  if (resources.database) {
    const db = resources.database;
    resources.database = null;
    try {
      await db.drop();
    } catch (e) {
      errors.push(e);
    }
  }
  if (errors.length) throw errors[0];
}

/* a signal or an exit: kill what still runs (the database stays; the cluster is throwaway) */
function emergency() {
  for (const bridge of resources.bridges) bridge.killNow();
  for (const player of resources.players) player.killNow();
}
process.on('exit', emergency);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    emergency();
    process.exit(130);
  });
}

/* ---- the database ------------------------------------------------------------ */

/**
 * A fresh database comet_browser_<pid>_<random> with the comet extension and
 * Grid-o-Matic loaded (examples/grid-o-matic/sql/grid.sql, psql -X -q -v
 * ON_ERROR_STOP=1), as scripts/run.sh loads it.  Returns {name, conninfo,
 * sql(text), drop()}.
 */
export async function makeDatabase() {
  const name = `comet_browser_${process.pid}_${randomBytes(3).toString('hex')}`;
  await psql(ADMIN_CONNINFO, `CREATE DATABASE ${name}`);
  const conninfo = withDbname(ADMIN_CONNINFO, name);
  const db = {
    name,
    conninfo,
    sql: text => psql(conninfo, text),
    async drop() {
      // the bridge is stopped by then; FORCE ends anything left over
      await psql(ADMIN_CONNINFO, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
  resources.database = db;
  await psql(conninfo, 'SET client_min_messages = warning;\nCREATE EXTENSION comet;');
  await runPsql(conninfo, ['-f', path.join(DEMO_DIR, 'sql/grid.sql')], '');
  return db;
}

/* ---- the bridge -------------------------------------------------------------- */

let bridgeLogs = 0;

/**
 * comet-bridge on 127.0.0.1:port (a free one unless given), started as
 * scripts/run.sh starts it, with --db to the test database as user
 * postgres.  Resolves once "listening on" is in its stderr.  Returns
 * {url, port, stderr(), kill(signal), stop(), restart()}.
 */
export async function startBridge(db, {port} = {}) {
  const fixedPort = port !== undefined;
  const dbConninfo = `${withDbname(ADMIN_CONNINFO, db.name).replace(/(^|\s)user\s*=\s*\S+/g, ' ').trim()} user=postgres`;
  const args = port => [
    '--listen', `127.0.0.1:${port}`,
    '--db', dbConninfo,
    '--static', path.join(DEMO_DIR, 'www'), '--client', path.join(REPO_ROOT, 'client/comet.js'),
    '--auth-function', 'grid.authenticate', '--authorize-function', 'grid.authorize',
    '--receive-function', 'grid.receive', '--session-function', 'grid.presence',
  ];
  mkdirSync(ARTIFACTS, {recursive: true});
  // bridge-<test file>.log (-2, -3... for a file's further bridges)
  const base = path.basename(process.argv[1] || 'test', '.mjs').replace(/\.test$/, '');
  const logPath = path.join(ARTIFACTS, `bridge-${base}${++bridgeLogs > 1 ? `-${bridgeLogs}` : ''}.log`);
  const log = createWriteStream(logPath);

  const bridge = {
    port: undefined,
    url: undefined,
    child: null,
    text: '',
    logPath,
    stderr() { return this.text; },
    killNow() {
      if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
        try { this.child.kill('SIGKILL'); } catch (e) { /* gone */ }
      }
    },
    /** Send a signal and wait (bounded) for the process to end. */
    async kill(signal = 'SIGKILL', timeout = 10000) {
      const child = this.child;
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise(resolve => child.once('exit', resolve));
      child.kill(signal);
      try {
        await withTimeout(exited, timeout, `the bridge to exit after ${signal}`);
      } catch (e) {
        child.kill('SIGKILL');
        await withTimeout(exited, 5000, 'the bridge to exit after SIGKILL');
        throw e;
      }
    },
    async stop() {
      await this.kill('SIGTERM');
      resources.bridges.delete(this);
      await new Promise(resolve => log.end(resolve));
    },
    /** Start it again on the same port (after kill()). */
    async restart() {
      await spawnOn(this.port, true);
    },
  };

  async function spawnOnce(p) {
    const child = spawn(BRIDGE_BINARY, args(p), {stdio: ['ignore', 'pipe', 'pipe'], env: process.env});
    bridge.child = child;
    let text = '';
    const onData = d => {
      text += d;
      bridge.text += d;
      log.write(d);
    };
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    let exited = false;
    child.once('exit', () => { exited = true; });
    child.once('error', e => { exited = true; text += `\nspawn error: ${e.message}`; });
    try {
      await waitFor(() => text.includes('listening on') || exited, 15000,
                    `comet-bridge to say "listening on" (port ${p})`);
    } catch (e) {
      bridge.killNow();
      throw new Error(`${e.message}\n${text}`);
    }
    return {ok: !exited && text.includes('listening on'), text};
  }

  async function spawnOn(p, sticky) {
    // a restart on the same port may find it briefly unavailable: retry
    const deadline = Date.now() + 10000;
    for (let attempt = 1; ; attempt++) {
      const {ok, text} = await spawnOnce(p);
      if (ok) {
        bridge.port = p;
        bridge.url = `http://127.0.0.1:${p}/`;
        return;
      }
      if (!/address already in use|EADDRINUSE|bind/i.test(text) || Date.now() > deadline)
        throw new Error(`comet-bridge did not start on port ${p} (attempt ${attempt}):\n${text}`);
      if (!sticky) p = await freePort();
      await sleep(200);
    }
  }

  resources.bridges.add(bridge);
  await spawnOn(fixedPort ? port : await freePort(), fixedPort);
  return bridge;
}

/* ---- players: one browser each ---------------------------------------------- */

/**
 * A player: headless chromium in a persistent context with a fresh user data
 * directory under os.tmpdir() (removed by close()).  Returns {name, context,
 * page, errors, close(), killNow()}; errors collects the page's uncaught
 * exceptions.
 */
export async function launchPlayer(name, {viewport = {width: 1280, height: 800}, ...options} = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `comet-browser-${name}-`));
  const player = {
    name,
    dir,
    context: null,
    page: null,
    errors: [],
    closed: false,
    async close() {
      if (this.closed) return;
      this.closed = true;
      resources.players.delete(this);
      try {
        if (this.context) {
          // pages first, as a player closes a tab: the page gets its pagehide
          // and the client terminates its session (closing the whole
          // persistent context shuts chromium down without that)
          for (const page of this.context.pages()) {
            try {
              await withTimeout(page.close(), 10000, `${name}'s page to close`);
            } catch (e) {
              // the context's close below ends it anyway
            }
          }
          await withTimeout(this.context.close(), 15000, `${name}'s browser to close`);
        }
      } finally {
        rmSync(dir, {recursive: true, force: true});
      }
    },
    killNow() {
      // playwright kills the browsers it launched when this process exits
      rmSync(dir, {recursive: true, force: true});
    },
  };
  resources.players.add(player);
  player.context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport,
    timeout: 30000,
    ...options,
  });
  player.context.setDefaultTimeout(10000);
  player.page = player.context.pages()[0] || await player.context.newPage();
  watchPage(player, player.page);
  player.context.on('page', page => watchPage(player, page));
  return player;
}

function watchPage(player, page) {
  page.on('pageerror', error => player.errors.push(`${player.name}: ${error.message}`));
}

/* ---- screenshots ------------------------------------------------------------- */

/** Save page's screenshot as $COMET_ARTIFACTS/<name>.png; returns the path. */
export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, {recursive: true});
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({path: file, timeout: 10000});
  return file;
}
