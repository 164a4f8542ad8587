// raw-client.mjs — a comet client written from docs/protocol.md alone, on
// node:http (not fetch, not comet.js), for the fault suite: a second,
// independent reading of the protocol, whose wire traffic is counted.
//
// What a correct client does, and this one does:
//   - setup with `resume` = the last seq it has on each channel (none on
//     the first setup); `positions` from the answer start the channels it
//     had nothing of;
//   - catch-up: while a channel's last seq is below its position, ask again
//     (`subscribe` + `resume` for it), holding no poll meanwhile;
//   - then one poll at a time, each with the next rid;
//   - a request that fails in transit (connection refused or cut, timeout,
//     an answer cut short), or is answered 429, 502, 504 or 503
//     service-unavailable, is sent again with the SAME rid and body: the
//     bridge answers a repeated rid with the same bytes;
//   - item-not-found, overflow and system-shutdown end the session: set up
//     a new one, resuming;
//   - a packet whose seq is not above the last one accepted on its channel
//     is dropped (and counted as a duplicate on the wire); a gap moves the
//     channel's last seq to its end.
//
// It never invents a gap: a seq that jumps ahead is accepted as it is, and
// the suite's checker reports the hole.  Anything unexpected (a refusal, a
// failed result, a catch-up that does not move) goes into `errors`.
import http from 'node:http';

const BACKOFF_FIRST_MS = 100;
const BACKOFF_MAX_MS = 2000;
const WORK_TIMEOUT_MS = 30000;
const POLL_SLACK_MS = 15000;
const SESSION_LOST = new Set(['item-not-found', 'overflow', 'system-shutdown']);

/* The last n items of a list, as text. */
function tail(list, n) {
  return (list.length > n ? '...,' : '') + list.slice(-n).join(',');
}

/* Capped exponential backoff, half to all of it. */
function backoff(attempt, random) {
  const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.min(attempt, 10));
  return Math.round(cap / 2 + random() * cap / 2);
}

/*
 * One POST of body (JSON) to url with agent; resolves to {status, json,
 * retryAfter} for any complete HTTP answer, rejects when the request or
 * its answer does not make it (refused, cut, timed out).
 */
function post(url, body, {agent, timeoutMs}) {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    if (body.sid) target.searchParams.set('sid', body.sid);
    const bytes = Buffer.from(JSON.stringify(body), 'utf8');
    let settled = false;
    const settle = (fn, value) => {
      if (settled) return;
      settled = true;
      fn(value);
    };
    const req = http.request(target, {
      method: 'POST',
      agent,
      headers: {'Content-Type': 'application/json', 'Content-Length': bytes.length},
    }, res => {
      const chunks = [];
      res.on('data', chunk => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json = null;
        try {
          json = JSON.parse(text);
        } catch (e) {
          json = null;
        }
        settle(resolve, {status: res.statusCode, json, retryAfter: Number(res.headers['retry-after'])});
      });
      res.on('error', e => settle(reject, e));
      res.on('close', () => {
        if (!res.complete) settle(reject, new Error('the answer was cut short'));
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', e => settle(reject, e));
    req.end(bytes);
  });
}

export class RawClient {
  /*
   * url: the bridge's /comet (or a proxy's).  options:
   *   channels:   channels to subscribe to
   *   wait:       seconds a poll may be held
   *   beforePoll: async (client) => {} awaited before each poll (a slow
   *               or stalled client)
   *   random:     a () => [0, 1) for backoff jitter and rids
   */
  constructor(url, options) {
    this.url = url;
    this.channels = [...options.channels];
    this.wait = options.wait || 10;
    this.beforePoll = options.beforePoll || null;
    this.random = options.random || Math.random;
    this.agent = new http.Agent({keepAlive: true, maxSockets: 2});
    this.stopped = false;
    this.sid = null;
    this.nextRid = 0;
    this.lastSeqs = new Map();       // channel -> last seq accepted (or skipped by a gap)
    this.targets = new Map();        // channel -> position to reach by catching up
    this.events = [];                // what the application sees: {type: 'packet'|'gap', value}
    this.sids = [];                  // every session set up
    this.lost = {};                  // condition -> sessions lost by it
    this.errors = [];
    this.retries = 0;                // requests sent again with the same rid
    this.setupFailures = 0;
    this.catchUps = 0;               // catch-up requests
    this.wire = {packets: 0, duplicates: 0, older: 0, plain: 0, foreign: 0, samples: []};
    this._wireSeen = new Map();      // channel -> Set of seqs seen on the wire
    this._wakers = new Set();
    this._stopping = new Promise(resolve => { this._wakers.add(resolve); });
    this.running = null;
  }

  /* Start setting up sessions and polling, in the background. */
  start() {
    this.running = this._run().catch(e => { this.errors.push(`crashed: ${e.stack || e}`); });
    return this;
  }

  /* The last seq accepted on channel (or skipped by a gap), or undefined. */
  lastSeq(channel) {
    return this.lastSeqs.get(channel);
  }

  /* Stop: cut the held poll, terminate the session (best effort), wait for the loop. */
  async stop() {
    if (this.stopped) return;
    this.stopped = true;
    for (const wake of this._wakers) wake();
    this.agent.destroy();
    const sid = this.sid;
    if (sid) {
      const agent = new http.Agent({keepAlive: false});
      try {
        await post(this.url, {sid, rid: this.nextRid, terminate: true}, {agent, timeoutMs: 3000});
      } catch (e) {
        // the bridge ends the session by inactivity anyway
      }
      agent.destroy();
    }
    if (this.running) await this.running;
  }

  /* Sleep ms, or less when the client stops. */
  _sleep(ms) {
    return new Promise(resolve => {
      const wake = () => {
        clearTimeout(timer);
        this._wakers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this._wakers.add(wake);
    });
  }

  /* Sessions one after another until stopped. */
  async _run() {
    for (let attempt = 0; !this.stopped;) {
      if (!(await this._setup())) {
        this.setupFailures++;
        await this._sleep(backoff(attempt++, this.random));
        continue;
      }
      attempt = 0;
      const why = await this._session();
      this.sid = null;
      if (why !== 'stopped') this.lost[why] = (this.lost[why] || 0) + 1;
    }
  }

  /* One setup attempt; true when a session is up. */
  async _setup() {
    const rid = Math.floor(this.random() * 2 ** 40) + 1;
    const body = {rid, subscribe: this.channels, wait: this.wait};
    const resume = {};
    for (const channel of this.channels)
      if (this.lastSeqs.has(channel)) resume[channel] = this.lastSeqs.get(channel);
    if (Object.keys(resume).length) body.resume = resume;
    let answer;
    try {
      answer = await post(this.url, body, {agent: this.agent, timeoutMs: WORK_TIMEOUT_MS});
    } catch (e) {
      return false;
    }
    if (this.stopped) return false;
    if (answer.status !== 200) {
      const condition = answer.json && answer.json.error;
      // 5xx (the database away, the bridge stopping) and 429 are worth retrying; a refusal is not expected here
      if (answer.status < 500 && answer.status !== 429)
        this.errors.push(`setup answered ${answer.status} ${condition}`);
      return false;
    }
    const json = answer.json || {};
    if (typeof json.sid !== 'string') {
      this.errors.push(`setup answered 200 without a sid: ${JSON.stringify(json).slice(0, 200)}`);
      return false;
    }
    this.sid = json.sid;
    this.sids.push(json.sid);
    this.nextRid = rid + 1;
    this.targets.clear();
    for (const [channel, position] of Object.entries(json.positions || {})) {
      if (!this.lastSeqs.has(channel)) this.lastSeqs.set(channel, position);
      this.targets.set(channel, position);
    }
    this._acceptAll(json.packets, {source: 'setup', resume, packets: json.packets});
    return true;
  }

  /*
   * A session: catch up to every channel's position, then poll.  Resolves
   * to the condition that ended it, or 'stopped'.
   */
  async _session() {
    const caughtUp = await this._catchUp();
    if (caughtUp !== true) return caughtUp;
    while (!this.stopped) {
      if (this.beforePoll) await Promise.race([this.beforePoll(this), this._stopping]);
      if (this.stopped) break;
      const rid = this.nextRid++;
      const answer = await this._request({sid: this.sid, rid}, this.wait * 1000 + POLL_SLACK_MS);
      if (answer === null) break;
      if (answer.status !== 200) return this._ended(answer, 'poll');
      if (answer.json === null) this.errors.push(`poll ${rid} answered 200 without JSON`);
      else this._acceptAll(answer.json.packets, {source: 'poll', packets: answer.json.packets});
    }
    return 'stopped';
  }

  /* Ask for the channels behind their positions until none is; true, or why the session ended. */
  async _catchUp() {
    for (;;) {
      const behind = this.channels.filter(c => this.targets.has(c) && this.lastSeqs.get(c) < this.targets.get(c));
      if (!behind.length || this.stopped) return this.stopped ? 'stopped' : true;
      const before = behind.map(c => this.lastSeqs.get(c));
      const resume = {};
      for (const channel of behind) resume[channel] = this.lastSeqs.get(channel);
      const body = {sid: this.sid, rid: this.nextRid++, subscribe: behind, resume};
      this.catchUps++;
      const answer = await this._request(body, WORK_TIMEOUT_MS);
      if (answer === null) return 'stopped';
      if (answer.status !== 200) return this._ended(answer, 'catch-up');
      const json = answer.json || {};
      (json.results || []).forEach((result, i) => {
        if (!result || !result.ok) this.errors.push(`catch-up of ${behind[i]} refused: ${JSON.stringify(result)}`);
      });
      this._acceptAll(json.packets, {source: 'catch-up', resume, packets: json.packets});
      for (const channel of behind) {
        const position = json.positions && json.positions[channel];
        if (typeof position === 'number') this.targets.set(channel, position);
      }
      const moved = behind.some((c, i) => this.lastSeqs.get(c) > before[i] ||
        this.lastSeqs.get(c) >= this.targets.get(c));
      if (!moved) {
        this.errors.push(`catch-up made no progress on ${behind.join(', ')} (at ${before.join(', ')}, ` +
          `positions ${behind.map(c => this.targets.get(c)).join(', ')})`);
        for (const channel of behind) this.targets.delete(channel);
      }
    }
  }

  /* A non-200 answer that ends the session: its condition (anything unexpected is also an error). */
  _ended(answer, what) {
    const condition = (answer.json && answer.json.error) || `http-${answer.status}`;
    if (!SESSION_LOST.has(condition)) this.errors.push(`${what} answered ${answer.status} ${condition}`);
    return condition;
  }

  /*
   * A request in the session, answered for good: sent again with the same
   * rid and body while it fails in transit or is answered 429, 502, 504 or
   * 503 service-unavailable.  Resolves to the answer, or null when stopped.
   */
  async _request(body, timeoutMs) {
    for (let attempt = 0; ; attempt++) {
      if (this.stopped) return null;
      let answer = null;
      try {
        answer = await post(this.url, body, {agent: this.agent, timeoutMs});
      } catch (e) {
        answer = null;
      }
      if (this.stopped) return null;
      const condition = answer && answer.json && answer.json.error;
      const transient = answer === null || answer.status === 429 || answer.status === 502 ||
        answer.status === 504 || (answer.status === 503 && condition === 'service-unavailable') ||
        (answer.json === null && answer.status >= 500);
      if (!transient) return answer;
      this.retries++;
      const wait = answer && answer.retryAfter > 0 ? answer.retryAfter * 1000 : backoff(attempt, this.random);
      await this._sleep(wait);
    }
  }

  _acceptAll(packets, source) {
    for (const packet of packets || []) this._accept(packet, source);
  }

  /* One packet or gap from the wire (in an answer to source): count it, drop what is not above the last seq. */
  _accept(packet, source) {
    const channel = packet.channel;
    this.wire.packets++;
    if (!this.channels.includes(channel)) {
      this.wire.foreign++;
      return;
    }
    const last = this.lastSeqs.get(channel);
    if (packet.gap) {
      if (last !== undefined && packet.gap.to <= last) return;
      const from = last === undefined ? packet.gap.from : Math.max(packet.gap.from, last + 1);
      this.lastSeqs.set(channel, packet.gap.to);
      this.events.push({type: 'gap', value: {channel, from, to: packet.gap.to}});
      return;
    }
    if (typeof packet.seq !== 'number') {
      this.wire.plain++;
      return;
    }
    let seen = this._wireSeen.get(channel);
    if (!seen) this._wireSeen.set(channel, seen = new Set());
    if (seen.has(packet.seq)) {
      this.wire.duplicates++;
      if (this.wire.samples.length < 5)
        this.wire.samples.push(`${channel} seq ${packet.seq} again in a ${source.source} answer ` +
          `(had ${last}${source.resume ? `, resumed from ${source.resume[channel]}` : ''}; the answer's ` +
          `seqs there: ${tail(source.packets.filter(p => p.channel === channel).map(p => p.seq), 12)})`);
    }
    seen.add(packet.seq);
    if (last !== undefined && packet.seq <= last) {
      this.wire.older++;
      return;
    }
    this.lastSeqs.set(channel, packet.seq);
    this.events.push({type: 'packet', value: packet});
  }
}
