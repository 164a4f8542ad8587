/*
 * comet.js — a minimal browser client for comet-bridge (served as /comet.js).
 *
 * One poll is held at a time; sends go on a second request.  Each request
 * takes the next rid, so the bridge processes them in order.  This is the
 * bridge's first client: retries with the same rid, resume after a lost
 * session and the full API come with the complete client (docs/protocol.md).
 *
 *   const c = new Comet('/comet', {channels: ['demo'], auth: {token}});
 *   c.on('packet', p => ...); c.on('status', s => ...);
 *   await c.send('demo', {hello: 'world'});
 *   c.close();
 */
(function (global) {
  'use strict';

  class Comet {
    constructor(url, options = {}) {
      this.url = url;
      this.channels = options.channels || [];
      this.auth = options.auth;
      this.wait = options.wait;
      this.handlers = {};
      this.rid = Math.floor(Math.random() * 2 ** 40);
      this.sid = null;
      this.closed = false;
      this.lastSeq = {};
      this.start();
    }

    on(event, handler) {
      (this.handlers[event] = this.handlers[event] || []).push(handler);
      return this;
    }

    emit(event, value) {
      for (const handler of this.handlers[event] || []) handler(value);
    }

    async post(body) {
      const url = this.sid ? `${this.url}?sid=${encodeURIComponent(this.sid)}` : this.url;
      const response = await fetch(url, {
        method: 'POST',
        headers: {'Content-Type': 'application/json'},
        body: JSON.stringify(body),
      });
      const answer = await response.json();
      if (!response.ok) {
        const error = new Error(answer.message || answer.error);
        error.condition = answer.error;
        throw error;
      }
      return answer;
    }

    deliver(packets) {
      for (const packet of packets || []) {
        if (packet.gap) { this.emit('gap', packet); continue; }
        if (packet.seq !== undefined) {
          if (packet.seq <= (this.lastSeq[packet.channel] || 0)) continue;
          this.lastSeq[packet.channel] = packet.seq;
        }
        this.emit('packet', packet);
      }
    }

    async start() {
      this.emit('status', 'connecting');
      try {
        const setup = {rid: this.rid++, subscribe: this.channels};
        if (this.auth) setup.auth = this.auth;
        if (this.wait) setup.wait = this.wait;
        const answer = await this.post(setup);
        this.sid = answer.sid;
        Object.assign(this.lastSeq, answer.positions || {});
        this.emit('status', 'online');
        this.deliver(answer.packets);
        this.poll();
      } catch (error) {
        this.emit('status', 'offline');
        this.emit('error', error);
        if (!this.closed) setTimeout(() => this.start(), 2000);
      }
    }

    async poll() {
      while (!this.closed) {
        try {
          const answer = await this.post({sid: this.sid, rid: this.rid++});
          this.deliver(answer.packets);
        } catch (error) {
          if (this.closed) return;
          this.emit('status', 'offline');
          this.sid = null;
          setTimeout(() => this.start(), 1000);
          return;
        }
      }
    }

    async send(channel, data) {
      const answer = await this.post({sid: this.sid, rid: this.rid++, send: [{channel, data}]});
      this.deliver(answer.packets);
      const result = answer.results[0];
      if (result.error) {
        const error = new Error(result.message);
        error.condition = result.error;
        throw error;
      }
      return result;
    }

    close() {
      this.closed = true;
      if (this.sid) this.post({sid: this.sid, rid: this.rid++, terminate: true}).catch(() => {});
      this.emit('status', 'closed');
    }
  }

  global.Comet = Comet;
})(typeof window !== 'undefined' ? window : globalThis);
