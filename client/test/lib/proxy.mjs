// proxy.mjs — a loopback HTTP/1.1-aware TCP proxy in front of comet-bridge
// that loses requests and answers on command, to prove the client's
// retransmission, resume and de-duplication.
//
// Per client connection it reads each request (head + Content-Length body;
// fetch does not pipeline), forwards it on its own upstream connection to
// the bridge, reads the bridge's full answer (status line, headers,
// Content-Length or chunked body) and passes it back byte for byte.  What
// happens to a request is decided by
//
//   proxy.rule(req)  -> 'pass'           forward it, pass the answer on
//                       'cut'            destroy the client's connection
//                                        before forwarding: the bridge never
//                                        sees the request
//                       'drop-response'  forward it, read the answer, then
//                                        destroy the client's connection
//                                        without sending it: the bridge did
//                                        the work, the client sees a
//                                        network error
//                       'abandon'        forward it and destroy the client's
//                                        connection at once, while the
//                                        bridge works on it (its answer is
//                                        read and thrown away)
//                       'hold'           keep it here, unforwarded, until
//                                        proxy.release() (or cutAll())
//   proxy.responseRule(req, res) -> 'pass' | 'drop' | 'hold' (after the
//                       answer; 'hold' keeps the answer until release())
//   proxy.rewrite(req) -> a new body object, or undefined to leave it
//
// req: {id, conn, method, url, headers, json, body, rid, sid, kind} where
// kind is 'setup', 'poll', 'work', 'terminate' or 'other'; res: {status,
// json}.  once(predicate, action) makes a rule that fires once.
// proxy.log has one entry per request: {...req, action, status, json (the
// answer's), start, end, outcome}.  proxy.cutAll() destroys every open
// connection (held polls included).

import net from 'node:net';
import {requestKind, track} from './harness.mjs';

/** A rule that answers action the first time predicate(req, res) holds, then 'pass'. */
export function once(predicate, action) {
  const rule = (req, res) => {
    if (rule.fired < rule.times && predicate(req, res)) {
      rule.fired++;
      rule.matched.push(req);
      return action;
    }
    return 'pass';
  };
  rule.fired = 0;
  rule.times = 1;
  rule.matched = [];
  return rule;
}

/* Parse an HTTP message head; null while incomplete. */
function parseHead(buffer) {
  const end = buffer.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = buffer.subarray(0, end).toString('latin1').split('\r\n');
  const first = lines.shift();
  const headers = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return {first, headers, headEnd: end + 4};
}

/*
 * The length of a complete response at the start of buffer (head and
 * body), or -1 while incomplete.  closed: the upstream has ended (a body
 * without a length runs to the end).
 */
function responseLength(buffer, closed) {
  const head = parseHead(buffer);
  if (!head) return -1;
  const status = Number(head.first.split(' ')[1]);
  if ((status >= 100 && status < 200) || status === 204 || status === 304) return head.headEnd;
  if (/chunked/i.test(head.headers['transfer-encoding'] || '')) {
    let pos = head.headEnd;
    for (;;) {
      const eol = buffer.indexOf('\r\n', pos);
      if (eol < 0) return -1;
      const size = parseInt(buffer.subarray(pos, eol).toString('latin1'), 16);
      if (Number.isNaN(size)) return -1;
      if (size === 0) {
        // no trailers: an empty line at once; else they end with one
        if (buffer.length < eol + 4) return -1;
        if (buffer.subarray(eol + 2, eol + 4).toString('latin1') === '\r\n') return eol + 4;
        const end = buffer.indexOf('\r\n\r\n', eol);
        return end >= 0 ? end + 4 : -1;
      }
      pos = eol + 2 + size + 2;
      if (buffer.length < pos) return -1;
    }
  }
  if (head.headers['content-length'] !== undefined) {
    const total = head.headEnd + Number(head.headers['content-length']);
    return buffer.length >= total ? total : -1;
  }
  return closed ? buffer.length : -1;
}

/* The body of a complete response (chunks joined). */
function responseBody(raw) {
  const head = parseHead(raw);
  if (!/chunked/i.test(head.headers['transfer-encoding'] || '')) return raw.subarray(head.headEnd);
  const parts = [];
  let pos = head.headEnd;
  for (;;) {
    const eol = raw.indexOf('\r\n', pos);
    const size = parseInt(raw.subarray(pos, eol).toString('latin1'), 16);
    if (!size) break;
    parts.push(raw.subarray(eol + 2, eol + 2 + size));
    pos = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

function parseJson(buffer) {
  try {
    return JSON.parse(buffer.toString('utf8'));
  } catch (e) {
    return null;
  }
}

class Proxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.rule = null;
    this.responseRule = null;
    this.rewrite = null;
    this.log = [];
    this.heldRequests = [];
    this.connections = new Set();
    this.nextConn = 1;
    this.nextId = 1;
    this.server = net.createServer(socket => this._accept(socket));
  }

  listen() {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.port = this.server.address().port;
        resolve(this);
      });
    });
  }

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }

  get url() {
    return `${this.base}/comet`;
  }

  /** Log entries for requests of this kind (and sid, when given). */
  entries(kind, sid) {
    return this.log.filter(e => (!kind || e.kind === kind) && (!sid || e.sid === sid));
  }

  /** Requests forwarded and not answered yet (held polls). */
  outstanding(kind) {
    return this.log.filter(e => e.end === undefined && (!kind || e.kind === kind));
  }

  /** Forward every request held by 'hold' (they go on as 'pass'). */
  release() {
    const held = this.heldRequests;
    this.heldRequests = [];
    for (const h of held) h.resume();
    return held.length;
  }

  /** Destroy every open connection, client and upstream sides. */
  cutAll() {
    this.heldRequests = [];
    let n = 0;
    for (const conn of [...this.connections]) {
      conn.destroy('cut-all');
      n++;
    }
    return n;
  }

  close() {
    this.rule = null;
    this.cutAll();
    return new Promise(resolve => this.server.close(() => resolve()));
  }

  _accept(socket) {
    const conn = {
      id: this.nextConn++,
      socket,
      upstream: null,
      upstreamBuffer: Buffer.alloc(0),
      upstreamClosed: false,
      onUpstream: null,
      buffer: Buffer.alloc(0),
      busy: false,
      dead: false,
      current: null,
      destroy: why => this._destroy(conn, why),
    };
    this.connections.add(conn);
    socket.setNoDelay(true);
    socket.on('data', data => {
      conn.buffer = Buffer.concat([conn.buffer, data]);
      this._next(conn);
    });
    socket.on('error', () => {});
    socket.on('close', () => this._destroy(conn, 'client-closed'));
  }

  _destroy(conn, why) {
    if (conn.dead) return;
    conn.dead = true;
    this.connections.delete(conn);
    if (conn.current && conn.current.end === undefined) {
      conn.current.end = Date.now();
      conn.current.outcome = conn.current.outcome || why;
    }
    conn.socket.destroy();
    if (conn.upstream && !conn.keepUpstream) conn.upstream.destroy();
    this.heldRequests = this.heldRequests.filter(h => h.conn !== conn);
  }

  /* Take the next complete request from the client's buffer. */
  _next(conn) {
    if (conn.busy || conn.dead) return;
    const head = parseHead(conn.buffer);
    if (!head) return;
    const length = Number(head.headers['content-length'] || 0);
    if (conn.buffer.length < head.headEnd + length) return;
    const body = conn.buffer.subarray(head.headEnd, head.headEnd + length);
    conn.buffer = conn.buffer.subarray(head.headEnd + length);
    const [method, url] = head.first.split(' ');
    const json = parseJson(body);
    const req = {
      id: this.nextId++,
      conn: conn.id,
      method,
      url,
      headers: head.headers,
      body: body.toString('utf8'),
      json,
      rid: json && typeof json === 'object' ? json.rid : undefined,
      sid: json && typeof json === 'object' ? json.sid : undefined,
      kind: method === 'POST' ? requestKind(json) : 'other',
      start: Date.now(),
    };
    conn.busy = true;
    conn.current = req;
    this.log.push(req);
    this._handle(conn, req, head);
  }

  _decide(fn, ...args) {
    if (typeof fn !== 'function') return 'pass';
    return fn(...args) || 'pass';
  }

  async _handle(conn, req, head) {
    let action = this._decide(this.rule, req);
    req.action = action;
    if (action === 'cut') {
      req.outcome = 'cut';
      conn.destroy('cut');
      return;
    }
    if (action === 'hold') {
      req.outcome = 'held';
      const released = await new Promise(resolve => {
        this.heldRequests.push({conn, req, resume: () => resolve(true)});
      });
      if (!released || conn.dead) return;
      req.outcome = undefined;
      req.released = Date.now();
    }
    // the request as the bridge gets it
    let body = Buffer.from(req.body, 'utf8');
    if (typeof this.rewrite === 'function' && req.json && typeof req.json === 'object') {
      const replaced = this.rewrite(req);
      if (replaced !== undefined) {
        req.original = req.json;
        req.json = replaced;
        req.rid = replaced.rid;
        body = Buffer.from(JSON.stringify(replaced), 'utf8');
      }
    }
    let headText = `${head.first}\r\n`;
    for (const [name, value] of Object.entries(head.headers)) {
      if (name === 'content-length') continue;
      headText += `${name}: ${value}\r\n`;
    }
    headText += `content-length: ${body.length}\r\n\r\n`;
    const bytes = Buffer.concat([Buffer.from(headText, 'latin1'), body]);
    if (action === 'abandon') {
      const forwarding = this._forward(conn, bytes);
      conn.keepUpstream = true;
      req.outcome = 'abandoned';
      conn.destroy('abandoned');
      forwarding.then(raw => {
        req.status = Number(parseHead(raw).first.split(' ')[1]);
        req.response = parseJson(responseBody(raw));
      }, () => {}).finally(() => conn.upstream.destroy());
      return;
    }
    let raw;
    try {
      raw = await this._forward(conn, bytes);
    } catch (e) {
      // the bridge went away (or the client did): the client sees its connection end
      req.outcome = req.outcome || `upstream: ${e.message}`;
      conn.destroy('upstream-failed');
      return;
    }
    if (conn.dead) return;
    const status = Number(parseHead(raw).first.split(' ')[1]);
    req.status = status;
    req.response = parseJson(responseBody(raw));
    if (action !== 'drop-response') {
      const decision = this._decide(this.responseRule, req, {status, json: req.response});
      if (decision === 'drop') action = 'drop-response';
      if (decision === 'hold') {
        // the answer waits here until release()
        req.outcome = 'answer held';
        req.answerHeld = true;
        await new Promise(resolve => {
          this.heldRequests.push({conn, req, response: true, resume: () => resolve()});
        });
        if (conn.dead) return;
        req.outcome = undefined;
      }
      req.action = action;
    }
    req.end = Date.now();
    if (action === 'drop-response') {
      req.outcome = 'dropped';
      conn.destroy('dropped');
      return;
    }
    req.outcome = 'passed';
    const closeAfter = /close/i.test(parseHead(raw).headers.connection || '');
    conn.socket.write(raw);
    conn.busy = false;
    conn.current = null;
    if (closeAfter) {
      conn.socket.end();
      return;
    }
    this._next(conn);
  }

  /* Send bytes upstream (connecting when needed); resolves to the full answer. */
  _forward(conn, bytes) {
    return new Promise((resolve, reject) => {
      if (!conn.upstream || conn.upstreamClosed) {
        const upstream = net.connect(this.targetPort, '127.0.0.1');
        upstream.setNoDelay(true);
        conn.upstream = upstream;
        conn.upstreamClosed = false;
        conn.upstreamBuffer = Buffer.alloc(0);
        upstream.on('data', data => {
          conn.upstreamBuffer = Buffer.concat([conn.upstreamBuffer, data]);
          if (conn.onUpstream) conn.onUpstream();
        });
        const ended = why => {
          if (conn.upstream !== upstream) return;
          conn.upstreamClosed = true;
          conn.upstreamError = why;
          if (conn.onUpstream) conn.onUpstream();
        };
        upstream.on('end', () => ended('the bridge closed the connection'));
        upstream.on('close', () => ended('the connection closed'));
        upstream.on('error', e => ended(e.message));
      }
      conn.onUpstream = () => {
        const length = responseLength(conn.upstreamBuffer, conn.upstreamClosed);
        if (length >= 0 && (length > 0 || conn.upstreamClosed)) {
          if (length === 0) {
            conn.onUpstream = null;
            reject(new Error(conn.upstreamError || 'no answer'));
            return;
          }
          const raw = conn.upstreamBuffer.subarray(0, length);
          conn.upstreamBuffer = conn.upstreamBuffer.subarray(length);
          conn.onUpstream = null;
          resolve(raw);
        } else if (conn.upstreamClosed) {
          conn.onUpstream = null;
          reject(new Error(conn.upstreamError || 'no answer'));
        }
      };
      conn.upstream.write(bytes);
    });
  }
}

/** A proxy on a free loopback port in front of the bridge on targetPort; closed at the end. */
export async function startProxy(targetPort) {
  const proxy = new Proxy(targetPort);
  await proxy.listen();
  track('proxies', proxy);
  return proxy;
}
