// nginx.mjs — a private nginx in front of test bridges, for tests/cluster.
//
// startNginx() renders examples/nginx/ (render.sh) into a fresh directory
// under the OS temp dir, with the bridges' ports and a free port for nginx,
// and runs `nginx -p PREFIX -c PREFIX/conf/nginx.conf -g 'daemon off;'` in
// its own process group.  Nothing outside PREFIX is written; the system's
// nginx is not touched.  stop() ends master and workers and removes PREFIX;
// a test file that exits early kills the group synchronously.
//
// nginx missing is an error, never a skip: the cluster suite needs it
// (Debian: nginx-light).  $COMET_NGINX names another binary.

import {spawn, execFileSync} from 'node:child_process';
import {existsSync, mkdtempSync, readFileSync, rmSync, chmodSync} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {sleep, withTimeout, freePort} from '../../lib/util.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, '../../..');
export const RENDER = path.join(REPO_ROOT, 'examples/nginx/render.sh');

/** The nginx binary: $COMET_NGINX, else nginx on PATH or in /usr/sbin; null when none. */
export function findNginx() {
  if (process.env.COMET_NGINX) return existsSync(process.env.COMET_NGINX) ? process.env.COMET_NGINX : null;
  const dirs = [...(process.env.PATH || '').split(':'), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const dir of dirs)
    if (dir && existsSync(path.join(dir, 'nginx'))) return path.join(dir, 'nginx');
  return null;
}

const started = new Set();     // nginx instances not stopped yet

// Exiting with nginx still up (a failed before(), ^C): kill its group and
// remove its directory.
process.on('exit', () => {
  for (const nginx of started) {
    nginx.killGroupSync('SIGKILL');
    try {
      rmSync(nginx.prefix, {recursive: true, force: true});
    } catch (e) {
      // nothing more to do
    }
  }
});

class Nginx {
  constructor(binary, prefix) {
    this.binary = binary;
    this.prefix = prefix;
    this.port = null;
    this.child = null;
    this.output = '';
  }

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The /comet endpoint through nginx. */
  get url() {
    return `${this.base}/comet`;
  }

  get running() {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /* Render the configuration for these ports. */
  render(port, bridgePorts, staticDir) {
    const args = [RENDER, this.prefix, '--listen', String(port), '--bridges', bridgePorts.join(',')];
    if (staticDir) args.push('--static', staticDir);
    execFileSync('bash', args, {stdio: ['ignore', 'pipe', 'pipe']});
  }

  /* Start on port; resolves once GET / answers through it. */
  async spawnOn(port) {
    const conf = path.join(this.prefix, 'conf/nginx.conf');
    const child = spawn(this.binary, ['-p', this.prefix, '-c', conf,
      '-e', path.join(this.prefix, 'logs/error.log'), '-g', 'daemon off;'],
    {stdio: ['ignore', 'pipe', 'pipe'], detached: true});
    this.child = child;
    this.port = port;
    started.add(this);
    child.stdout.on('data', d => { this.output += d; });
    child.stderr.on('data', d => { this.output += d; });
    child.exited = new Promise(resolve => child.on('exit', (code, signal) => resolve({code, signal})));
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline) {
      if (!this.running) break;
      try {
        const response = await fetch(`${this.base}/`, {signal: AbortSignal.timeout(1000)});
        await response.arrayBuffer();
        if (response.status === 200) return;
      } catch (e) {
        // not listening yet
      }
      await sleep(50);
    }
    const why = this.running ? 'it does not answer GET /' : 'it exited';
    await this.stopProcess();
    const error = new Error(`nginx did not start on port ${port}: ${why}\n${this.output}\n${this.errorLogTail()}`);
    error.portInUse = /in use/i.test(this.output + this.errorLogTail());
    throw error;
  }

  /** The access log's lines (format "comet" of examples/nginx/comet.conf). */
  accessLog() {
    try {
      return readFileSync(path.join(this.prefix, 'logs/access.log'), 'utf8').split('\n').filter(Boolean);
    } catch (e) {
      return [];
    }
  }

  /** The last lines of nginx's error log, for a failure's message. */
  errorLogTail(lines = 30) {
    try {
      const text = readFileSync(path.join(this.prefix, 'logs/error.log'), 'utf8');
      return '--- nginx error log ---\n' + text.split('\n').slice(-lines).join('\n');
    } catch (e) {
      return '(no nginx error log)';
    }
  }

  /* Signal master and workers (one process group). */
  killGroupSync(signal) {
    if (!this.running) return;
    try {
      process.kill(-this.child.pid, signal);
    } catch (e) {
      // already gone
    }
  }

  /* Fast shutdown (SIGTERM: held polls are cut), SIGKILL to the group after 5 s. */
  async stopProcess() {
    if (!this.running) {
      started.delete(this);
      return;
    }
    this.killGroupSync('SIGTERM');
    try {
      await withTimeout(this.child.exited, 5000, 'nginx to stop');
    } catch (e) {
      // the whole group: workers whose master was killed would keep serving
      this.killGroupSync('SIGKILL');
      await withTimeout(this.child.exited, 3000, 'nginx to die');
    }
    started.delete(this);
  }

  /** Stop nginx and remove its directory. */
  async stop() {
    await this.stopProcess();
    rmSync(this.prefix, {recursive: true, force: true});
  }
}

/**
 * nginx in front of bridges on 127.0.0.1:bridgePorts[0..2] (node ids b1, b2,
 * b3), on a free port; staticDir: the page files (default: the demo's).
 */
export async function startNginx(bridgePorts, {staticDir} = {}) {
  const binary = findNginx();
  if (!binary)
    throw new Error('nginx not found: the cluster tests need it (Debian: apt-get install nginx-light)');
  const prefix = mkdtempSync(path.join(os.tmpdir(), 'comet-nginx-'));
  // as root the workers are "nobody": they must reach PREFIX
  chmodSync(prefix, 0o755);
  const nginx = new Nginx(binary, prefix);
  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      nginx.render(port, bridgePorts, staticDir);
      await nginx.spawnOn(port);
      return nginx;
    } catch (e) {
      lastError = e;
      if (e.stderr) lastError = new Error(`render.sh failed: ${e.stderr}`);
      if (!e.portInUse) break;
    }
  }
  rmSync(prefix, {recursive: true, force: true});
  throw lastError;
}
