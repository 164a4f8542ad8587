// comet.d.ts — types for comet.js, the client of comet-bridge.

export type CometStatus = 'connecting' | 'online' | 'offline' | 'closed';

/** A packet: durable ones carry their channel's seq; plain NOTIFYs do not. */
export interface CometPacket<T = unknown> {
  channel: string;
  seq?: number;
  data: T;
}

/** Packets from..to (inclusive) of a channel are no longer kept. */
export interface CometGap {
  channel: string;
  from: number;
  to: number;
}

/** An error answered by the bridge (or by the client itself, condition 'closed'). */
export class CometError extends Error {
  /** 'bad-request', 'forbidden', 'item-not-found', 'overflow', 'internal-error', ... */
  condition: string;
  /** The HTTP status it came with (200 for a failed item of a request; 0 if none). */
  status: number;
}

export interface CometOptions {
  /** Channels to subscribe to at setup. */
  channels?: string[];
  /** The auth object the bridge's authentication function checks, or a function giving it. */
  auth?: object | null | (() => object | null | Promise<object | null>);
  /** Seconds a poll may be held (at most the bridge's --wait). */
  wait?: number;
  /** Deliver each channel's packets after this seq (e.g. a snapshot's). */
  resume?: Record<string, number>;
  /** A fetch implementation (default: the global fetch). */
  fetch?: typeof fetch;
}

export interface CometEvents {
  packet: CometPacket;
  gap: CometGap;
  status: CometStatus;
  error: CometError;
}

export class Comet {
  constructor(url: string, options?: CometOptions);
  static CometError: typeof CometError;
  readonly url: string;
  readonly options: CometOptions;
  readonly status: CometStatus;
  /** The current session's id, or null between sessions. */
  readonly sid: string | null;
  readonly channels: string[];
  on<K extends keyof CometEvents>(event: K, handler: (value: CometEvents[K]) => void): this;
  off<K extends keyof CometEvents>(event: K, handler: (value: CometEvents[K]) => void): this;
  /** The last seq delivered on a channel. */
  lastSeq(channel: string): number | undefined;
  /** Resolves to the receive function's answer (its json/jsonb result), if any. */
  send<R = unknown>(channel: string, data: unknown): Promise<R | undefined>;
  /** Resolves to the channel's position: the last seq before the subscription took effect. */
  subscribe(channel: string): Promise<number | undefined>;
  unsubscribe(channel: string): Promise<void>;
  /** Terminates the session; the client stops. */
  close(): Promise<void>;
}

export default Comet;
