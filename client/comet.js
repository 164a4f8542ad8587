/*
 * comet.js — the browser (and Node) client for comet-bridge.
 *
 *   const c = new Comet('/comet', {channels: ['grid:1'], auth: {token}});
 *   c.on('packet', p => ...);     // {channel, seq, data}, once each, in seq order
 *   c.on('gap', g => ...);        // {channel, from, to}: packets no longer kept
 *   c.on('status', s => ...);     // 'connecting', 'online', 'offline', 'closed'
 *   c.on('error', e => ...);      // e.condition, e.message: the session cannot go on
 *   const answer = await c.send('grid:1', {type: 'move'});  // rejects with e.condition
 *   await c.subscribe('grid:2'); await c.unsubscribe('grid:2');
 *   await c.close();
 *
 * How it keeps its promises (docs/protocol.md is the wire protocol):
 *   - One poll is held at a time; sends, subscribes and unsubscribes go on a
 *     second request, batched while one is in flight.
 *   - Every request has a rid, the next one in the session.  A request that
 *     fails in transit is sent again with the same rid (capped exponential
 *     backoff with jitter): the bridge answers a repeated rid with the same
 *     answer, so nothing is lost or done twice.
 *   - Packets of a response are handed to the application only after every
 *     earlier request's response, so packets taken from the session's queue
 *     by two requests still come out in order.
 *   - When the session is lost (item-not-found, overflow, system-shutdown),
 *     a new one is set up that resumes each channel from the last seq
 *     delivered; duplicates are dropped by seq, and a seq that jumps is
 *     reported as a gap, never skipped silently.
 *   - close() and page unload terminate the session.
 *
 * Usable as a classic script (window.Comet), from Node (require), and as
 * an ES module through comet.mjs.  No dependencies.
 */
(function (root) {
  'use strict';

  const BACKOFF_FIRST_MS = 250;
  const BACKOFF_MAX_MS = 10000;
  const WORK_TIMEOUT_MS = 30000;
  const POLL_SLACK_MS = 15000;      // beyond the session's wait
  const MAX_ITEMS_PER_REQUEST = 100;

  // Conditions after which the session is gone and a new one resumes it.
  const SESSION_LOST = new Set(['item-not-found', 'overflow', 'system-shutdown']);

  /* An error the bridge answered: condition, message, HTTP status. */
  class CometError extends Error {
    constructor(condition, message, status) {
      super(message || condition);
      this.name = 'CometError';
      this.condition = condition;
      this.status = status;
    }
  }

  /* Full jitter between half and all of the capped exponential delay. */
  function backoff(attempt) {
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.min(attempt, 16));
    return Math.round(cap / 2 + Math.random() * cap / 2);
  }

  function sleep(ms) {
    return new Promise(resolve => setTimeout(resolve, ms));
  }

  /* Resolves early when the signal aborts (no rejection: callers re-check). */
  function sleepUnless(ms, signal) {
    return new Promise(resolve => {
      const onAbort = () => { clearTimeout(timer); resolve(); };
      const timer = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve(); }, ms);
      signal.addEventListener('abort', onAbort, {once: true});
    });
  }

  function randomRid() {
    // any start below 2^53 works; leave room for a long session
    return Math.floor(Math.random() * 2 ** 40) + 1;
  }

  class Comet {
    /*
     * url: the bridge's /comet endpoint.  options:
     *   channels: channels to subscribe to at setup
     *   auth:     the auth object, or a function returning it (or a promise)
     *   wait:     seconds a poll may be held (the bridge's maximum if unset)
     *   resume:   {channel: seq} — deliver each channel's packets after seq
     *             (e.g. the seq of a state snapshot the page loaded)
     *   fetch:    a fetch implementation (default: the global one)
     */
    constructor(url, options = {}) {
      this.url = url;
      this.options = options;
      this.status = 'connecting';
      this.sid = null;
      this._fetch = options.fetch || ((...args) => root.fetch(...args));
      this._handlers = new Map();
      this._channels = new Set(options.channels || []);
      this._subscribing = new Set();        // asked for, not yet confirmed
      this._catchingUp = new Map();         // channel -> position to reach by resuming
      this._caughtUp = [];                  // polls waiting for catch-ups to end
      this._lastSeq = new Map(Object.entries(options.resume || {}));
      this._closed = false;
      this._stop = new AbortController();   // aborts everything on close()
      this._session = null;
      this._work = [];                      // items waiting for a request
      this._workRunning = false;
      this._onUnload = () => this._unload();
      if (typeof root.addEventListener === 'function')
        root.addEventListener('pagehide', this._onUnload);
      this._run();
    }

    /* ---- the application's API --------------------------------------- */

    on(event, handler) {
      if (!this._handlers.has(event)) this._handlers.set(event, new Set());
      this._handlers.get(event).add(handler);
      return this;
    }

    off(event, handler) {
      const set = this._handlers.get(event);
      if (set) set.delete(handler);
      return this;
    }

    /* Channels subscribed now (or being subscribed). */
    get channels() {
      return [...this._channels];
    }

    /* The last seq delivered on a channel, or undefined. */
    lastSeq(channel) {
      return this._lastSeq.get(channel);
    }

    /* Send data on channel; resolves to the receive function's answer, if any. */
    send(channel, data) {
      return this._queueWork({send: {channel, data: data === undefined ? null : data}});
    }

    /* Subscribe; resolves to the channel's position (last seq before it took effect). */
    subscribe(channel) {
      if (this._channels.has(channel)) return Promise.resolve(this._lastSeq.get(channel));
      // packets may come before the answer does (on the held poll): accept them
      this._subscribing.add(channel);
      return this._queueWork({subscribe: channel}).finally(() => this._subscribing.delete(channel));
    }

    unsubscribe(channel) {
      if (!this._channels.has(channel)) return Promise.resolve();
      this._channels.delete(channel);
      this._lastSeq.delete(channel);
      return this._queueWork({unsubscribe: channel});
    }

    /* End the session and stop.  Safe to call more than once. */
    async close() {
      if (this._closed) return;
      this._closed = true;
      if (typeof root.removeEventListener === 'function')
        root.removeEventListener('pagehide', this._onUnload);
      const session = this._session;
      this._stop.abort();
      this._failWork(new CometError('closed', 'the client was closed'));
      this._setStatus('closed');
      if (session) {
        try {
          await this._post(session.sid, {sid: session.sid, rid: session.nextRid++, terminate: true},
                           WORK_TIMEOUT_MS, null, true);
        } catch (e) {
          // the bridge ends the session by inactivity anyway
        }
      }
    }

    /* ---- events ----------------------------------------------------------- */

    _emit(event, value) {
      const set = this._handlers.get(event);
      if (!set) return;
      for (const handler of [...set]) {
        try {
          handler(value);
        } catch (e) {
          // an application handler's mistake must not stop the client
          setTimeout(() => { throw e; });
        }
      }
    }

    _setStatus(status) {
      if (this.status === status || (this.status === 'closed' && status !== 'closed')) return;
      this.status = status;
      this._emit('status', status);
    }

    /* A packet or gap from a response, in order: drop duplicates, report jumps. */
    _deliver(packet) {
      const channel = packet.channel;
      if (!this._channels.has(channel) && !this._subscribing.has(channel)) return;
      const last = this._lastSeq.get(channel);
      if (packet.gap) {
        const from = Math.max(packet.gap.from, last === undefined ? packet.gap.from : last + 1);
        if (last !== undefined && packet.gap.to <= last) return;
        this._lastSeq.set(channel, packet.gap.to);
        this._emit('gap', {channel, from, to: packet.gap.to});
        return;
      }
      if (typeof packet.seq === 'number') {
        if (last !== undefined && packet.seq <= last) return;         // seen already
        if (last !== undefined && packet.seq > last + 1)
          this._emit('gap', {channel, from: last + 1, to: packet.seq - 1});
        this._lastSeq.set(channel, packet.seq);
      }
      this._emit('packet', packet);
    }

    /* ---- HTTP ------------------------------------------------------------- */

    /*
     * One POST; resolves to {status, json} for any HTTP answer, rejects on a
     * transport failure or timeout.  signal (optional) aborts it.
     */
    async _post(sid, body, timeoutMs, signal, keepalive) {
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), timeoutMs);
      const onAbort = () => abort.abort();
      if (signal) signal.addEventListener('abort', onAbort, {once: true});
      try {
        const url = sid ? `${this.url}${this.url.includes('?') ? '&' : '?'}sid=${encodeURIComponent(sid)}`
                        : this.url;
        const response = await this._fetch(url, {
          method: 'POST',
          headers: {'Content-Type': 'application/json'},
          body: JSON.stringify(body),
          signal: abort.signal,
          keepalive: !!keepalive,
          credentials: 'same-origin',
        });
        const text = await response.text();
        let json = null;
        try {
          json = JSON.parse(text);
        } catch (e) {
          json = null;
        }
        return {status: response.status, json, retryAfter: Number(response.headers.get('Retry-After'))};
      } finally {
        clearTimeout(timer);
        if (signal) signal.removeEventListener('abort', onAbort);
      }
    }

    /*
     * A session's request, answered for good: retried with the same rid on
     * transport failures, proxies' 502/504, 429 (the rid is still being
     * worked on) and 503 service-unavailable.  Resolves to {status, json};
     * rejects only when the session or the client stops.
     */
    async _request(session, body, timeoutMs) {
      for (let attempt = 0; ; attempt++) {
        if (session.stop.signal.aborted) throw new CometError('closed', 'the session is over');
        let answer = null;
        // a retried poll is held again without an answer: if it has not
        // failed after a second, the bridge has it and we are back
        const backOnline = attempt > 0 ? setTimeout(() => this._setStatus('online'), 1000) : null;
        try {
          answer = await this._post(session.sid, body, timeoutMs, session.stop.signal);
        } catch (e) {
          answer = null;
        } finally {
          clearTimeout(backOnline);
        }
        if (session.stop.signal.aborted) throw new CometError('closed', 'the session is over');
        const condition = answer && answer.json && answer.json.error;
        const transient = answer === null || answer.status === 502 || answer.status === 504 ||
          (answer.status === 429) ||
          (answer.status === 503 && condition === 'service-unavailable') ||
          (answer.json === null && answer.status >= 500);
        if (!transient) {
          if (answer.status < 500 && !SESSION_LOST.has(condition)) this._setStatus('online');
          return answer;
        }
        this._setStatus('offline');
        const wait = answer && answer.retryAfter > 0 ? answer.retryAfter * 1000 : backoff(attempt);
        await sleepUnless(wait, session.stop.signal);
      }
    }

    /* ---- sessions -------------------------------------------------------- */

    /* Set up sessions, one after another, until closed or refused. */
    async _run() {
      // handlers are added after the constructor returns: tell them where we are
      await null;
      if (this.status === 'connecting') this._emit('status', 'connecting');
      for (let attempt = 0; !this._closed; ) {
        const outcome = await this._setup();
        if (outcome === 'online') {
          attempt = 0;
          const why = await this._pollLoop(this._session);
          this._endSession(why);
          if (this._closed) return;
          this._setStatus('connecting');
          // a bridge that is shutting down needs a moment before a new setup
          if (why === 'system-shutdown') await sleepUnless(backoff(attempt++), this._stop.signal);
        } else if (outcome === 'fatal') {
          return;
        } else {
          this._setStatus('offline');
          await sleepUnless(backoff(attempt++), this._stop.signal);
        }
      }
    }

    async _auth() {
      const auth = this.options.auth;
      return typeof auth === 'function' ? await auth() : auth;
    }

    /* One setup; 'online', 'retry' or 'fatal'. */
    async _setup() {
      const rid = randomRid();
      const body = {rid, subscribe: [...this._channels]};
      let auth;
      try {
        auth = await this._auth();
      } catch (e) {
        this._fatal(new CometError('forbidden', `auth failed: ${e.message}`, 0));
        return 'fatal';
      }
      if (auth !== undefined && auth !== null) body.auth = auth;
      if (this.options.wait !== undefined) body.wait = this.options.wait;
      const resume = {};
      for (const channel of this._channels)
        if (this._lastSeq.has(channel)) resume[channel] = this._lastSeq.get(channel);
      if (Object.keys(resume).length) body.resume = resume;

      let answer;
      try {
        answer = await this._post(null, body, WORK_TIMEOUT_MS, this._stop.signal);
      } catch (e) {
        return 'retry';
      }
      if (this._closed) return 'fatal';
      const json = answer.json || {};
      if (answer.status !== 200) {
        if (answer.status >= 500 || answer.status === 429 || answer.json === null) return 'retry';
        // refused for good: wrong auth, a channel not allowed, a bad option
        this._fatal(new CometError(json.error || 'bad-request', json.message, answer.status));
        return 'fatal';
      }
      this._startSession(json, rid);
      return 'online';
    }

    _startSession(json, rid) {
      const session = {
        sid: json.sid,
        nextRid: rid + 1,
        stop: new AbortController(),
        inflight: new Set(),      // rids sent, not yet answered
        answered: new Map(),      // rid -> packets, waiting for earlier rids
        wait: typeof json.wait === 'number' ? json.wait : 60,
      };
      session.onClientStop = () => session.stop.abort();
      this._stop.signal.addEventListener('abort', session.onClientStop, {once: true});
      this._session = session;
      this.sid = session.sid;
      for (const [channel, position] of Object.entries(json.positions || {}))
        if (!this._lastSeq.has(channel)) this._lastSeq.set(channel, position);
      this._setStatus('online');
      for (const packet of json.packets || []) this._deliver(packet);
      // channels re-subscribed with resume after packets were delivered on them
      for (const item of this._work)
        if (item.subscribe !== undefined && !item.sentIn && this._lastSeq.has(item.subscribe))
          this._catchingUp.set(item.subscribe, Infinity);
      this._followPositions(json.positions);
      this._kickWork();
    }

    /*
     * A resume answer carries at most some packets a channel, the oldest
     * first: while a channel's last delivered seq is below its position,
     * ask again (subscribe with resume) until it is there.  No poll is held
     * meanwhile, so the live packets the session queues come after the
     * catch-up, in the same answers, in order.
     */
    _followPositions(positions) {
      for (const [channel, position] of Object.entries(positions || {})) {
        const last = this._lastSeq.get(channel);
        if (typeof position !== 'number' || last === undefined || last >= position) {
          this._catchingUp.delete(channel);
          continue;
        }
        this._catchingUp.set(channel, position);
        if (!this._work.some(w => w.subscribe === channel))
          this._queueWork({subscribe: channel, catchUp: true}).catch(error => {
            // cannot resume any more (no longer allowed): say what is missing
            const from = this._lastSeq.get(channel);
            this._catchingUp.delete(channel);
            this._wakePolls();
            if (error.condition === 'closed') return;   // close(): the application stopped reading
            if (from !== undefined && from < position) {
              this._lastSeq.set(channel, position);
              this._emit('gap', {channel, from: from + 1, to: position});
            }
            if (error.condition !== 'closed') this._emit('error', error);
          });
      }
      this._wakePolls();
    }

    /* A subscribe was refused or failed: the channel is not read, and polls need not wait for it. */
    _refused(channel) {
      this._lastSeq.delete(channel);
      if (this._catchingUp.delete(channel)) this._wakePolls();
    }

    _wakePolls() {
      if (this._catchingUp.size === 0)
        for (const wake of this._caughtUp.splice(0)) wake();
    }

    _endSession(why) {
      const session = this._session;
      if (!session) return;
      session.stop.abort();
      this._stop.signal.removeEventListener('abort', session.onClientStop);
      // what was answered in order is delivered; the rest is resumed by seq
      this._drain(session, true);
      this._session = null;
      this.sid = null;
      // items sent but unconfirmed: a send may or may not have been done, so
      // say so; a subscribe or unsubscribe is simply done again
      for (const item of this._work.filter(w => w.sentIn === session)) {
        if (item.send) {
          this._work.splice(this._work.indexOf(item), 1);
          item.reject(new CometError(why, 'the session ended before the bridge confirmed this send; ' +
                                          'it may or may not have been delivered', 0));
        } else {
          item.sentIn = null;
        }
      }
      this._workRunning = false;
    }

    _fatal(error) {
      this._closed = true;
      this._stop.abort();
      this._failWork(error);
      this._emit('error', error);
      this._setStatus('closed');
    }

    /*
     * The session's next rid, in flight from here on; null if the session
     * has ended.  At most one poll and one work request are in flight, so
     * rids stay inside the bridge's window of two, and the bridge keeps its
     * last poll answer and its last work answer until the next of the same
     * kind: a retry always finds its answer.
     */
    _takeRid(session) {
      if (session.stop.signal.aborted) return null;
      const rid = session.nextRid++;
      session.inflight.add(rid);
      return rid;
    }

    /* A rid is no longer in flight. */
    _settled(session, rid) {
      session.inflight.delete(rid);
    }

    /* A rid's response is in: hand out every packet now in order. */
    _answered(session, rid, packets) {
      session.answered.set(rid, packets || []);
      this._settled(session, rid);
      this._drain(session, false);
    }

    /* Deliver answered packets whose earlier rids are all answered (all: everything). */
    _drain(session, all) {
      const oldest = session.inflight.size ? Math.min(...session.inflight) : Infinity;
      const rids = [...session.answered.keys()].sort((a, b) => a - b);
      for (const rid of rids) {
        if (!all && rid > oldest) break;
        const packets = session.answered.get(rid);
        session.answered.delete(rid);
        for (const packet of packets) this._deliver(packet);
      }
    }

    /* Hold polls until the session ends; resolves to the condition that ended it. */
    async _pollLoop(session) {
      while (!session.stop.signal.aborted) {
        while (this._catchingUp.size > 0 && !session.stop.signal.aborted)
          await new Promise(wake => {
            const done = () => {
              session.stop.signal.removeEventListener('abort', done);
              wake();
            };
            this._caughtUp.push(done);
            session.stop.signal.addEventListener('abort', done, {once: true});
          });
        const rid = this._takeRid(session);
        if (rid === null) break;
        let answer;
        try {
          answer = await this._request(session, {sid: session.sid, rid},
                                       session.wait * 1000 + POLL_SLACK_MS);
        } catch (e) {
          return 'closed';
        }
        const json = answer.json || {};
        if (answer.status === 200) {
          this._answered(session, rid, json.packets);
          continue;
        }
        this._settled(session, rid);
        if (SESSION_LOST.has(json.error)) return json.error;
        // anything else is unexpected for a poll: start over, resuming
        this._emit('error', new CometError(json.error || 'internal-error', json.message, answer.status));
        return json.error || 'internal-error';
      }
      return 'closed';
    }

    /* ---- work: send, subscribe, unsubscribe ------------------------------ */

    _queueWork(item) {
      if (this._closed) return Promise.reject(new CometError('closed', 'the client was closed'));
      return new Promise((resolve, reject) => {
        item.resolve = resolve;
        item.reject = reject;
        item.sentIn = null;
        this._work.push(item);
        this._kickWork();
      });
    }

    _failWork(error) {
      const work = this._work;
      this._work = [];
      for (const item of work) item.reject(error);
    }

    _kickWork() {
      if (!this._workRunning && this._session && this._work.some(w => !w.sentIn))
        this._runWork(this._session);
    }

    /* One request for the waiting items (at most MAX_ITEMS_PER_REQUEST). */
    async _runWork(session) {
      this._workRunning = true;
      const rid = this._takeRid(session);
      if (rid === null) {             // the session ended; the items wait for the next one
        this._workRunning = false;
        return;
      }
      const items = this._work.filter(w => !w.sentIn).slice(0, MAX_ITEMS_PER_REQUEST);
      for (const item of items) item.sentIn = session;
      // the bridge answers subscribe items first, then unsubscribe, then send
      const subscribes = items.filter(w => w.subscribe !== undefined);
      const unsubscribes = items.filter(w => w.unsubscribe !== undefined);
      const sends = items.filter(w => w.send !== undefined);
      const body = {sid: session.sid, rid};
      if (subscribes.length) body.subscribe = subscribes.map(w => w.subscribe);
      // a channel that delivered packets before an earlier session ended resumes from there
      const resume = {};
      for (const w of subscribes)
        if (this._lastSeq.has(w.subscribe)) resume[w.subscribe] = this._lastSeq.get(w.subscribe);
      if (Object.keys(resume).length) body.resume = resume;
      if (unsubscribes.length) body.unsubscribe = unsubscribes.map(w => w.unsubscribe);
      if (sends.length) body.send = sends.map(w => w.send);
      let answer;
      try {
        answer = await this._request(session, body, WORK_TIMEOUT_MS);
      } catch (e) {
        return;         // the session ended: _endSession settled the items
      }
      const json = answer.json || {};
      const settled = [...subscribes, ...unsubscribes, ...sends];
      for (const item of settled) {
        const index = this._work.indexOf(item);
        if (index >= 0) this._work.splice(index, 1);
      }
      if (answer.status === 200) {
        const results = json.results || [];
        settled.forEach((item, i) => {
          const result = results[i] || {error: 'internal-error', message: 'no result for this item'};
          if (result.error) {
            // a catch-up's channel stays subscribed: its rejection reports the gap from there
            if (item.subscribe !== undefined && !item.catchUp) this._refused(item.subscribe);
            item.reject(new CometError(result.error, result.message, 200));
          } else if (item.subscribe !== undefined) {
            const position = json.positions && json.positions[item.subscribe];
            this._channels.add(item.subscribe);
            if (!this._lastSeq.has(item.subscribe) && typeof position === 'number')
              this._lastSeq.set(item.subscribe, position);
            item.resolve(position);
          } else {
            item.resolve(result.data);
          }
        });
        this._answered(session, body.rid, json.packets);
        if (subscribes.length) this._followPositions(json.positions);
      } else {
        this._settled(session, body.rid);
        if (SESSION_LOST.has(json.error)) {
          // the poll learns it too; put back what can be redone safely
          for (const item of settled) {
            if (item.send) {
              item.reject(new CometError(json.error, 'the session ended before the bridge confirmed ' +
                                                     'this send; it may or may not have been delivered',
                                         answer.status));
            } else {
              item.sentIn = null;
              this._work.push(item);
            }
          }
          session.stop.abort();
        } else {
          for (const item of settled) {
            if (item.subscribe !== undefined && !item.catchUp) this._refused(item.subscribe);
            item.reject(new CometError(json.error || 'internal-error', json.message, answer.status));
          }
        }
      }
      this._workRunning = false;
      if (!session.stop.signal.aborted) this._kickWork();
    }

    /* Page unload: end the session without waiting for an answer. */
    _unload() {
      const session = this._session;
      if (!session || this._closed) return;
      this._closed = true;
      this._stop.abort();
      const body = JSON.stringify({sid: session.sid, rid: session.nextRid++, terminate: true});
      const url = `${this.url}${this.url.includes('?') ? '&' : '?'}sid=${encodeURIComponent(session.sid)}`;
      try {
        this._fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json'}, body,
                          keepalive: true}).catch(() => {});
      } catch (e) {
        // nothing more can be done while the page goes away
      }
      this._setStatus('closed');
    }
  }

  Comet.CometError = CometError;
  root.Comet = Comet;
  if (typeof module === 'object' && module && module.exports) {
    module.exports = Comet;
    module.exports.Comet = Comet;
    module.exports.CometError = CometError;
    module.exports.default = Comet;
  }
})(typeof globalThis !== 'undefined' ? globalThis : this);
