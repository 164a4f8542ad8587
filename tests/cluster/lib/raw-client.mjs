// raw-client.mjs — a small client that speaks comet's wire protocol
// (docs/protocol.md) itself, with Node's fetch: many of them, next to
// comet.js, check that sessions survive a bridge dying behind nginx.
//
// It does what the protocol asks of a client and nothing more:
//   - setup without sid, then one poll at a time, each with the next rid,
//     the sid in the URL and in the body;
//   - a request that fails in transit (no answer, 502/504 from the proxy,
//     429, 503 service-unavailable) is sent again with the same rid;
//   - a lost session (404 item-not-found, 410 overflow, 503
//     system-shutdown) is set up again with "resume" from the last seq of
//     each channel, and caught up with subscribe+resume while the last seq
//     is below the answer's "positions", before it polls again.
// It keeps what arrives exactly as it arrived (no de-duplication), so a
// duplicate or a reordering by the bridges shows in the test's checks.
//
// loseAnswers (0..1): the share of polls whose answer is "lost" — thrown
// away after it arrived, or the request cut while held — and asked for
// again with the same rid; a thrown-away answer must come back
// byte-identical (counted in `mismatchedRetries` when not).

const BACKOFF_MS = [50, 100, 200, 400, 800];
const SETUP_TIMEOUT_MS = 10000;

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

/** The node prefix of a sid ("b2" of "b2.xxxx"), or null. */
export function nodeOf(sid) {
  const dot = typeof sid === 'string' ? sid.indexOf('.') : -1;
  return dot > 0 ? sid.slice(0, dot) : null;
}

export class RawClient {
  /**
   * url: the /comet endpoint; channels: the channels to follow; options:
   * wait (seconds a poll is held), loseAnswers, name (for messages).
   */
  constructor(url, channels, {wait = 20, loseAnswers = 0, name = 'raw'} = {}) {
    this.url = url;
    this.channels = channels;
    this.wait = wait;
    this.loseAnswers = loseAnswers;
    this.name = name;
    this.seqs = new Map(channels.map(c => [c, []]));   // every seq as it arrived
    this.gaps = [];
    this.last = new Map();                              // channel -> last seq seen
    this.sessions = [];                                 // {sid, node, at}
    this.session = null;                                // {sid, rid}
    this.error = null;                                  // what stopped it unexpectedly
    this.stats = {retries: 0, unreachable: 0, lostAnswers: 0, cutPolls: 0, sessionsLost: 0,
      mismatchedRetries: 0};
    this.stopping = false;
    this.abort = new AbortController();
    this.done = null;
    this.trace = [];                                    // the last requests, for a failure's message
  }

  /* Remember one request and what came of it (the last 300). */
  _trace(entry) {
    this.trace.push({t: Date.now(), ...entry});
    if (this.trace.length > 300) this.trace.shift();
  }

  /** The trace entries around a channel's seq, as text. */
  traceAround(channel, seq) {
    const hits = this.trace.filter(e => e.packets && e.packets.some(p => p.startsWith(`${channel}:`) &&
      Math.abs(Number(p.split(':')[1]) - seq) <= 2));
    const first = hits.length ? this.trace.indexOf(hits[0]) : this.trace.length - 10;
    return this.trace.slice(Math.max(0, first - 5), first + hits.length + 8)
      .map(e => JSON.stringify(e)).join('\n');
  }

  /** Start following the channels (returns at once). */
  start() {
    this.done = this._run().catch(e => {
      this.error = e;
    });
    return this;
  }

  /** The node of the current session. */
  get node() {
    return this.session ? nodeOf(this.session.sid) : null;
  }

  /** Does every channel have every seq up to n[channel]? */
  complete(expected) {
    return this.channels.every(c => (this.last.get(c) || 0) >= expected);
  }

  /** Stop polling and terminate the session (best effort, bounded). */
  async stop() {
    this.stopping = true;
    this.abort.abort();
    await this.done;
    const session = this.session;
    if (!session) return;
    this.session = null;
    try {
      await this._post(session.sid, {sid: session.sid, rid: session.rid + 1, terminate: true}, 3000);
    } catch (e) {
      // its bridge may be gone: the session then ends by inactivity
    }
  }

  /* One POST: {status, text, json}; throws on a transport failure or timeout. */
  async _post(sid, body, timeoutMs, cutAfterMs = null) {
    const url = sid ? `${this.url}?sid=${encodeURIComponent(sid)}` : this.url;
    const signals = [AbortSignal.timeout(timeoutMs)];
    if (!this.stopping) signals.push(this.abort.signal);
    const cut = new AbortController();
    signals.push(cut.signal);
    const timer = cutAfterMs === null ? null : setTimeout(() => cut.abort(), cutAfterMs);
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    for (const s of signals) {
      if (s.aborted) controller.abort();
      else s.addEventListener('abort', onAbort, {once: true});
    }
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      const text = await response.text();
      let json = null;
      try {
        json = JSON.parse(text);
      } catch (e) {
        json = null;
      }
      return {status: response.status, text, json};
    } catch (e) {
      if (cut.signal.aborted) this.stats.cutPolls++;
      throw e;
    } finally {
      clearTimeout(timer);
      for (const s of signals) s.removeEventListener('abort', onAbort);
    }
  }

  /* An answer's packets as "channel:seq" strings, for the trace. */
  static summary(answer) {
    const packets = answer && answer.json && answer.json.packets;
    if (!Array.isArray(packets)) return undefined;
    return packets.map(p => `${p.channel}:${p.gap ? `gap${p.gap.from}-${p.gap.to}` : p.seq}`);
  }

  /* Is this answer one to send again with the same rid? */
  static transient(answer) {
    if (answer === null) return true;
    const condition = answer.json && answer.json.error;
    return answer.status === 502 || answer.status === 504 || answer.status === 429 ||
      (answer.status === 503 && condition === 'service-unavailable') ||
      (answer.json === null && answer.status >= 500);
  }

  /*
   * A request of the session, answered for good: sent again with the same
   * rid while the failure is transient.  null when stopping.
   */
  async _request(body, timeoutMs, {poll = false} = {}) {
    let attempt = 0;
    let thrownAway = null;        // the text of an answer we pretended to lose
    for (;;) {
      if (this.stopping) return null;
      let answer = null;
      const lose = poll && this.loseAnswers > 0 && Math.random() < this.loseAnswers;
      const cutAfter = lose && Math.random() < 0.5 ? Math.floor(Math.random() * 300) : null;
      let failure = null;
      try {
        answer = await this._post(body.sid, body, timeoutMs, cutAfter);
      } catch (e) {
        answer = null;
        failure = e.name || 'error';
      }
      this._trace({sid: body.sid, rid: body.rid, kind: poll ? 'poll' : 'work', cutAfter,
        status: answer ? answer.status : failure, packets: RawClient.summary(answer),
        thrownAway: answer && answer.status === 200 && thrownAway === null && lose && cutAfter === null});
      if (this.stopping) return null;
      if (answer && answer.status === 503 && /no bridge could be reached/.test(answer.text)) this.stats.unreachable++;
      if (RawClient.transient(answer)) {
        this.stats.retries++;
        await sleep(BACKOFF_MS[Math.min(attempt++, BACKOFF_MS.length - 1)] * (0.5 + Math.random() / 2));
        continue;
      }
      if (answer.status === 200 && thrownAway !== null) {
        if (answer.text !== thrownAway) this.stats.mismatchedRetries++;
        thrownAway = null;
      } else if (answer.status === 200 && lose && cutAfter === null) {
        // the answer "got lost": ask again for the same rid
        this.stats.lostAnswers++;
        thrownAway = answer.text;
        continue;
      }
      return answer;
    }
  }

  /* Hand the packets of an answer over, as they are. */
  _deliver(packets) {
    for (const packet of packets || []) {
      if (packet.gap) {
        this.gaps.push(packet);
        this.last.set(packet.channel, Math.max(this.last.get(packet.channel) || 0, packet.gap.to));
      } else if (typeof packet.seq === 'number') {
        if (!this.seqs.has(packet.channel)) this.seqs.set(packet.channel, []);
        this.seqs.get(packet.channel).push(packet.seq);
        this.last.set(packet.channel, Math.max(this.last.get(packet.channel) || 0, packet.seq));
      }
    }
  }

  /* Sessions, one after another, until stopped. */
  async _run() {
    while (!this.stopping) {
      if (!(await this._setup())) return;
      const why = await this._pollLoop();
      if (why === 'stopped') return;
      this.stats.sessionsLost++;
      this.session = null;
    }
  }

  /* One session set up and caught up; false when stopping. */
  async _setup() {
    for (let attempt = 0; !this.stopping; attempt++) {
      const rid = Math.floor(Math.random() * 2 ** 40) + 1;
      const body = {rid, subscribe: this.channels, wait: this.wait};
      const resume = {};
      for (const channel of this.channels)
        if (this.last.has(channel)) resume[channel] = this.last.get(channel);
      if (Object.keys(resume).length) body.resume = resume;
      let answer = null;
      try {
        answer = await this._post(null, body, SETUP_TIMEOUT_MS);
      } catch (e) {
        answer = null;
      }
      this._trace({rid, kind: 'setup', resume, status: answer ? answer.status : 'error',
        sid: answer && answer.json && answer.json.sid, positions: answer && answer.json && answer.json.positions,
        packets: RawClient.summary(answer)});
      if (this.stopping) return false;
      if (answer && answer.status === 200 && answer.json && answer.json.sid) {
        const json = answer.json;
        this.session = {sid: json.sid, rid};
        this.sessions.push({sid: json.sid, node: nodeOf(json.sid), at: Date.now()});
        for (const [channel, position] of Object.entries(json.positions || {}))
          if (!this.last.has(channel)) this.last.set(channel, position);
        this._deliver(json.packets);
        const caughtUp = await this._catchUp(json.positions || {});
        if (caughtUp === 'stopped') return false;
        if (caughtUp === 'lost') {
          this.stats.sessionsLost++;
          continue;
        }
        return true;
      }
      if (answer && !RawClient.transient(answer))
        throw new Error(`${this.name}: setup refused: ${answer.status} ${answer.text}`);
      this.stats.retries++;
      await sleep(BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)]);
    }
    return false;
  }

  /*
   * While a channel's last seq is below its position, ask for the next
   * chunk (subscribe again with resume), holding no poll meanwhile.
   */
  async _catchUp(positions) {
    const target = new Map(Object.entries(positions));
    for (;;) {
      const behind = this.channels.find(c => target.has(c) && (this.last.get(c) || 0) < target.get(c));
      if (behind === undefined) return 'ok';
      const rid = ++this.session.rid;
      const answer = await this._request({sid: this.session.sid, rid, subscribe: [behind],
        resume: {[behind]: this.last.get(behind) || 0}}, SETUP_TIMEOUT_MS);
      if (answer === null) return 'stopped';
      if (answer.status !== 200) {
        if (this._sessionLost(answer)) return 'lost';
        throw new Error(`${this.name}: catch-up refused: ${answer.status} ${answer.text}`);
      }
      const before = this.last.get(behind) || 0;
      this._deliver(answer.json.packets);
      // a chunk that brings nothing would loop for ever
      if ((this.last.get(behind) || 0) === before)
        throw new Error(`${this.name}: catch-up of ${behind} from ${before} brought nothing: ${answer.text}`);
    }
  }

  _sessionLost(answer) {
    const condition = answer.json && answer.json.error;
    return condition === 'item-not-found' || condition === 'overflow' || condition === 'system-shutdown';
  }

  /* Polls until the session is lost ('lost') or the client stops ('stopped'). */
  async _pollLoop() {
    for (;;) {
      if (this.stopping) return 'stopped';
      const rid = ++this.session.rid;
      const answer = await this._request({sid: this.session.sid, rid},
        this.wait * 1000 + 15000, {poll: true});
      if (answer === null) return 'stopped';
      if (answer.status === 200) {
        this._deliver(answer.json.packets);
        continue;
      }
      if (this._sessionLost(answer)) return 'lost';
      throw new Error(`${this.name}: poll answered ${answer.status} ${answer.text}`);
    }
  }
}
