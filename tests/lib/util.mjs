// util.mjs — small helpers shared by the Node suites (client/test and
// tests/browser): finding psql, sleeping, deadlines, free loopback ports and
// SQL literals.  Each suite's own harness re-exports them.
import {existsSync} from 'node:fs';
import net from 'node:net';
import path from 'node:path';

function findPsql() {
  for (const dir of (process.env.PATH || '').split(':')) {
    if (dir && existsSync(path.join(dir, 'psql'))) return path.join(dir, 'psql');
  }
  for (const p of ['/usr/lib/postgresql/15/bin/psql', '/usr/bin/psql'])
    if (existsSync(p)) return p;
  return 'psql';
}
export const PSQL = findPsql();

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

/** A promise with a deadline: rejects after ms with what it was. */
export function withTimeout(promise, ms, what = 'a promise') {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A port on 127.0.0.1 that nothing listens on now (the OS picks it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const {port} = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** A SQL string literal. */
export function lit(value) {
  if (value === null || value === undefined) return 'NULL';
  return `'${String(value).replace(/'/g, "''")}'`;
}
