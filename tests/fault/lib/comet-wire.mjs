// comet-wire.mjs — fetch wrappers for comet.js in the fault suite: one that
// counts what reaches the client on the wire (packets, the same seq twice,
// sessions set up), and one that delays or stalls requests, to make a slow
// or stopped client out of the real comet.js without touching it.
import {requestKind} from '../../../client/test/lib/harness.mjs';

/*
 * Wrap fetch: every answer comet.js gets is parsed (from a clone) and
 * counted.  Returns {fetch, stats}: stats.packets, stats.duplicates
 * (durable packets, channel and seq, seen in more than one answer:
 * comet.js must drop them, so this is information, not a fault),
 * stats.sids (sessions set up), stats.answers (by HTTP status),
 * stats.conditions (by error condition), stats.requests and
 * stats.retries (requests sent again with a rid already sent).
 */
export function wireCounter(inner = (...args) => fetch(...args)) {
  const stats = {packets: 0, duplicates: 0, sids: [], answers: {}, conditions: {}, requests: 0, retries: 0};
  const seen = new Map();
  const sent = new Set();         // sid/rid of every session request sent
  const sending = body => {
    stats.requests++;
    if (!body || body.sid === undefined) return;
    const key = `${body.sid}/${body.rid}`;
    if (sent.has(key)) stats.retries++;
    sent.add(key);
  };
  const count = (body, status, json) => {
    stats.answers[status] = (stats.answers[status] || 0) + 1;
    if (!json || typeof json !== 'object') return;
    if (typeof json.error === 'string') stats.conditions[json.error] = (stats.conditions[json.error] || 0) + 1;
    if (requestKind(body) === 'setup' && status === 200 && typeof json.sid === 'string') stats.sids.push(json.sid);
    for (const p of Array.isArray(json.packets) ? json.packets : []) {
      stats.packets++;
      if (typeof p.seq !== 'number') continue;
      let set = seen.get(p.channel);
      if (!set) seen.set(p.channel, set = new Set());
      if (set.has(p.seq)) stats.duplicates++;
      set.add(p.seq);
    }
  };
  const wrapped = async (url, init = {}) => {
    let body = null;
    try {
      body = JSON.parse(init.body);
    } catch (e) {
      body = null;
    }
    sending(body);
    const response = await inner(url, init);
    try {
      count(body, response.status, JSON.parse(await response.clone().text()));
    } catch (e) {
      // an answer cut short: comet.js sees the failure itself
    }
    return response;
  };
  return {fetch: wrapped, stats};
}

/*
 * Wrap fetch: before each request, await hold(kind, body, signal) — a
 * promise that resolves when the request may go (a delay, a closed gate).
 * It must settle when signal aborts (comet.js gave up on the request).
 */
export function holdingFetch(inner, hold) {
  return async (url, init = {}) => {
    let body = null;
    try {
      body = JSON.parse(init.body);
    } catch (e) {
      body = null;
    }
    await hold(requestKind(body), body, init.signal);
    if (init.signal && init.signal.aborted) throw new Error('aborted while held');
    return inner(url, init);
  };
}

/* A gate: wait(signal) resolves once open() is called (or at once when open; or on abort). */
export function gate() {
  let isOpen = true;
  let waiters = [];
  return {
    get isOpen() { return isOpen; },
    close() { isOpen = false; },
    open() {
      isOpen = true;
      for (const w of waiters.splice(0)) w();
    },
    wait(signal) {
      if (isOpen) return Promise.resolve();
      return new Promise(resolve => {
        const done = () => {
          waiters = waiters.filter(w => w !== done);
          if (signal) signal.removeEventListener('abort', done);
          resolve();
        };
        waiters.push(done);
        if (signal) signal.addEventListener('abort', done, {once: true});
      });
    },
  };
}

/* Sleep ms, or less when signal aborts. */
export function sleepUnless(ms, signal) {
  return new Promise(resolve => {
    const done = () => {
      clearTimeout(timer);
      if (signal) signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    if (signal) signal.addEventListener('abort', done, {once: true});
  });
}
