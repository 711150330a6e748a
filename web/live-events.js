/**
 * Live events from roi's WebSocket at /ws, for browsers: one socket, any number of channels, kept up by itself.
 *
 * - connects with `?token=` (browsers cannot set headers on a WebSocket);
 * - answers the server's heartbeat `{"type":"ping"}` with `{"op":"pong"}` (two unanswered pings close it, 4408),
 *   and drops a socket that has been silent for more than 2.5 heartbeats;
 * - reconnects with exponential backoff and jitter, and subscribes every channel again with `since` = the last
 *   `seq` it saw there, so that missed events are replayed;
 * - delivers each event once, in order (dedupe by `seq`), and reports a gap or `recovered: false` (history no
 *   longer reaches back) through `onResync`, so that the page refetches over HTTP;
 * - treats close code 4401 as "token refused: sign in again" and stops.
 *
 * No dependencies; see web/README.md for the API.
 */

export const TOKEN_REFUSED = 4401;

const DEFAULTS = {
  url: "/ws",
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  connectTimeoutMs: 10_000,
  silenceHeartbeats: 2.5,
};

/** Connection states, as passed to `onStateChange`. */
export const State = Object.freeze({
  IDLE: "idle",
  CONNECTING: "connecting",
  OPEN: "open",
  RECONNECTING: "reconnecting",
  UNAUTHORIZED: "unauthorized",
  CLOSED: "closed",
});

export class LiveEvents {
  #options;
  #socket = null;
  #welcomed = false;
  #state = State.IDLE;
  #attempt = 0;
  #reconnectTimer = null;
  #connectTimer = null;
  #silenceTimer = null;
  #heartbeatMs = 20_000;
  #channels = new Map(); // channel -> {lastSeq: number|null, handlers: Set, retryTimer}
  #onOnline = () => {
    if (this.#state === State.RECONNECTING) this.#reconnectNow();
  };

  /**
   * @param {object} options
   * @param {string|(() => string|null)} options.token the bearer token, or a function returning the current one
   * @param {string} [options.url] the endpoint, relative to the page (default "/ws"); http(s) becomes ws(s)
   * @param {(state: string, detail?: object) => void} [options.onStateChange]
   * @param {(reason: string) => void} [options.onUnauthorized] the token was refused: sign in again
   * @param {(frame: object) => void} [options.onError] an error frame not tied to a subscribed channel
   * @param {() => Promise<boolean|null>} [options.checkToken] asked when a socket closes before the server's
   *   welcome: `false` means the token is no longer valid (a server that refuses the upgrade with HTTP 401 looks
   *   like a network failure to a browser), `true` or `null` (unknown) keep reconnecting
   * @param {number} [options.initialDelayMs] first reconnect delay (500)
   * @param {number} [options.maxDelayMs] longest reconnect delay (30000)
   * @param {number} [options.connectTimeoutMs] give up on a connection not welcomed within this (10000)
   */
  constructor(options) {
    this.#options = { ...DEFAULTS, ...options };
  }

  get state() {
    return this.#state;
  }

  /** The last `seq` delivered on `channel`, or null. */
  lastSeq(channel) {
    return this.#channels.get(channel)?.lastSeq ?? null;
  }

  connect() {
    if (this.#socket || this.#state === State.CLOSED) return;
    if (typeof window !== "undefined") window.addEventListener("online", this.#onOnline);
    this.#open();
  }

  /**
   * Receive the events of `channel`. `handler` is a function called with each event frame
   * (`{type: "event", channel, seq, event, data, ts}`), or an object with any of:
   * `onEvent(frame)`, `onSubscribed(frame)`, `onResync(channel, {reason, seq})` (reason "gap" or "history":
   * refetch over HTTP), `onError(frame)` (e.g. code "forbidden": the subscription is dropped).
   * `since`: deliver the events after this `seq` (replayed from history), for a caller that already holds a state.
   * Returns a function that removes this handler (and unsubscribes when it was the channel's last).
   */
  subscribe(channel, handler, { since = null } = {}) {
    const handlers = typeof handler === "function" ? { onEvent: handler } : handler;
    let entry = this.#channels.get(channel);
    if (!entry) {
      entry = { lastSeq: since, handlers: new Set(), retryTimer: null };
      this.#channels.set(channel, entry);
      this.#sendSubscribe(channel);
    }
    entry.handlers.add(handlers);
    return () => this.#removeHandler(channel, handlers);
  }

  /** Stop for good: no reconnect; `connect()` will not start it again. */
  close() {
    this.#setState(State.CLOSED);
    this.#clearTimers();
    for (const entry of this.#channels.values()) clearTimeout(entry.retryTimer);
    this.#channels.clear();
    if (typeof window !== "undefined") window.removeEventListener("online", this.#onOnline);
    this.#dropSocket(1000, "closed by the page");
  }

  #open() {
    const token = typeof this.#options.token === "function" ? this.#options.token() : this.#options.token;
    const url = new URL(this.#options.url, globalThis.location?.href);
    url.protocol = url.protocol === "https:" ? "wss:" : url.protocol === "http:" ? "ws:" : url.protocol;
    if (token) url.searchParams.set("token", token);
    this.#setState(this.#attempt === 0 ? State.CONNECTING : State.RECONNECTING);
    this.#welcomed = false;
    const socket = new WebSocket(url);
    this.#socket = socket;
    this.#connectTimer = setTimeout(() => this.#lost(socket, "no welcome from the server"), this.#options.connectTimeoutMs);
    socket.onmessage = (message) => this.#receive(socket, message);
    socket.onclose = (event) => this.#closed(socket, event);
  }

  #receive(socket, message) {
    if (socket !== this.#socket) return;
    let frame;
    try {
      frame = JSON.parse(message.data);
    } catch {
      return;
    }
    this.#expectFrameWithin(this.#heartbeatMs * this.#options.silenceHeartbeats);
    switch (frame.type) {
      case "welcome":
        this.#welcomed = true;
        this.#attempt = 0;
        clearTimeout(this.#connectTimer);
        if (frame.heartbeat_s > 0) this.#heartbeatMs = frame.heartbeat_s * 1000;
        this.#expectFrameWithin(this.#heartbeatMs * this.#options.silenceHeartbeats);
        this.#setState(State.OPEN, { connectionId: frame.connection_id });
        for (const channel of this.#channels.keys()) this.#sendSubscribe(channel);
        break;
      case "ping":
        this.#send({ op: "pong" });
        break;
      case "subscribed":
        this.#subscribed(frame);
        break;
      case "event":
        this.#event(frame);
        break;
      case "error":
        this.#error(frame);
        break;
      default: // pong, unsubscribed
        break;
    }
  }

  #subscribed(frame) {
    const entry = this.#channels.get(frame.channel);
    if (!entry) return;
    if (frame.recovered === false) {
      entry.lastSeq = frame.seq;
      this.#notify(entry, "onResync", frame.channel, { reason: "history", seq: frame.seq });
    } else if (entry.lastSeq === null) {
      entry.lastSeq = frame.seq;
    }
    this.#notify(entry, "onSubscribed", frame);
  }

  #event(frame) {
    const entry = this.#channels.get(frame.channel);
    if (!entry) return;
    if (entry.lastSeq !== null && frame.seq <= entry.lastSeq) return;
    const gap = entry.lastSeq !== null && frame.seq > entry.lastSeq + 1;
    entry.lastSeq = frame.seq;
    if (gap) this.#notify(entry, "onResync", frame.channel, { reason: "gap", seq: frame.seq });
    this.#notify(entry, "onEvent", frame);
  }

  #error(frame) {
    const entry = frame.channel ? this.#channels.get(frame.channel) : undefined;
    if (!entry) {
      this.#options.onError?.(frame);
      return;
    }
    if (frame.code === "unavailable") {
      // The server could not reach its database or Redis just now: ask again a little later.
      clearTimeout(entry.retryTimer);
      entry.retryTimer = setTimeout(() => this.#sendSubscribe(frame.channel), this.#backoffMs(1));
      return;
    }
    this.#channels.delete(frame.channel);
    this.#notify(entry, "onError", frame);
  }

  #closed(socket, event) {
    if (socket !== this.#socket) return;
    const welcomed = this.#welcomed;
    this.#socket = null;
    this.#clearTimers();
    if (this.#state === State.CLOSED) return;
    if (event.code === TOKEN_REFUSED) {
      this.#unauthorized(event.reason || "token refused");
      return;
    }
    if (!welcomed && this.#options.checkToken) {
      this.#setState(State.RECONNECTING, { code: event.code });
      Promise.resolve(this.#options.checkToken())
        .catch(() => null)
        .then((valid) => {
          if (this.#state !== State.RECONNECTING || this.#socket) return;
          if (valid === false) this.#unauthorized("token refused");
          else this.#scheduleReconnect(event.code);
        });
      return;
    }
    this.#scheduleReconnect(event.code);
  }

  #unauthorized(reason) {
    this.#setState(State.UNAUTHORIZED, { reason });
    this.#options.onUnauthorized?.(reason);
  }

  /** The socket went silent or never answered: give up on it without waiting for a closing handshake. */
  #lost(socket, why) {
    if (socket !== this.#socket) return;
    this.#dropSocket(4000, why);
    this.#clearTimers();
    this.#scheduleReconnect(null);
  }

  #scheduleReconnect(code) {
    const delayMs = this.#backoffMs(this.#attempt);
    this.#attempt += 1;
    this.#setState(State.RECONNECTING, { code, delayMs, attempt: this.#attempt });
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => this.#open(), delayMs);
  }

  #reconnectNow() {
    if (this.#socket) return;
    clearTimeout(this.#reconnectTimer);
    this.#open();
  }

  /** Exponential, capped, with "equal jitter": between half and all of the step, so that clients spread out. */
  #backoffMs(attempt) {
    const step = Math.min(this.#options.maxDelayMs, this.#options.initialDelayMs * 2 ** attempt);
    return step / 2 + Math.random() * (step / 2);
  }

  #expectFrameWithin(ms) {
    clearTimeout(this.#silenceTimer);
    const socket = this.#socket;
    this.#silenceTimer = setTimeout(() => this.#lost(socket, "the server went silent"), ms);
  }

  #sendSubscribe(channel) {
    const entry = this.#channels.get(channel);
    if (!entry || !this.#welcomed) return;
    const message = { op: "subscribe", channel };
    if (entry.lastSeq !== null) message.since = entry.lastSeq;
    this.#send(message);
  }

  #removeHandler(channel, handlers) {
    const entry = this.#channels.get(channel);
    if (!entry) return;
    entry.handlers.delete(handlers);
    if (entry.handlers.size > 0) return;
    clearTimeout(entry.retryTimer);
    this.#channels.delete(channel);
    if (this.#welcomed) this.#send({ op: "unsubscribe", channel });
  }

  #notify(entry, method, ...args) {
    for (const handlers of [...entry.handlers]) {
      try {
        handlers[method]?.(...args);
      } catch (error) {
        // One page component failing must not stop the others, nor the socket.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  #send(message) {
    if (this.#socket?.readyState === WebSocket.OPEN) this.#socket.send(JSON.stringify(message));
  }

  #dropSocket(code, reason) {
    const socket = this.#socket;
    this.#socket = null;
    this.#welcomed = false;
    if (!socket) return;
    socket.onmessage = null;
    socket.onclose = null;
    try {
      socket.close(code, reason);
    } catch {
      socket.close();
    }
  }

  #clearTimers() {
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#silenceTimer);
  }

  #setState(state, detail = {}) {
    const changed = state !== this.#state;
    this.#state = state;
    if (changed || state === State.RECONNECTING) this.#options.onStateChange?.(state, detail);
  }
}
