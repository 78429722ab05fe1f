// One event stream that survives restarts. Every (re)connection is a new EventSource that
// this code opens itself: with an API key it first mints a stream token (single use, so the
// browser's own reconnect could not reuse it), and it resumes with ?last_event_id= after the
// last event received. While the server is away it retries with backoff and says so.

import { api, apiKey, ApiError } from "./api.js";

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 5000;
const HIDDEN_CLOSE_MS = 60_000; // a hidden tab gives its connection back after a minute

export class LiveStream {
  // path: the stream; tokenPath: where to mint its token; probe: a GET that says whether
  // the server is back (and still lets us in) before a reconnect; events: names to listen to;
  // onResync: called when a reconnect has no event to resume after (none came before the
  // stream dropped), so that the page reads again what it may have missed.
  constructor({ path, tokenPath, probe, query = [], events, onEvent, onState, onResync }) {
    Object.assign(this, { path, tokenPath, probe, query, events, onEvent, onState, onResync });
    this.last = null;
    this.source = null;
    this.closed = false;
    this.paused = false;
    this.delay = FIRST_DELAY_MS;
    this.timer = null;
    this.hiddenTimer = null;
    this.visibility = () => this.visibilityChanged();
  }

  start() {
    document.addEventListener("visibilitychange", this.visibility);
    this.connect(false);
  }

  close() {
    this.closed = true;
    this.source?.close();
    this.source = null;
    clearTimeout(this.timer);
    clearTimeout(this.hiddenTimer);
    document.removeEventListener("visibilitychange", this.visibility);
  }

  async connect(reconnecting) {
    if (this.closed || this.paused) return;
    const params = new URLSearchParams(this.query);
    if (this.last !== null) params.set("last_event_id", String(this.last));
    const resync = reconnecting && this.last === null;
    try {
      if (apiKey.get()) {
        params.set("token", (await api(this.tokenPath, { method: "POST" })).data.token);
      } else if (reconnecting) {
        await api(this.probe);
      }
    } catch (error) {
      if (error instanceof ApiError && error.status !== 429 && error.status < 500) {
        this.onState("failed", error);
        return;
      }
      this.retry();
      return;
    }
    if (this.closed || this.paused) return;
    const source = new EventSource(`${this.path}?${params}`);
    this.source = source;
    source.onopen = () => {
      this.delay = FIRST_DELAY_MS;
      this.onState("live");
      if (resync) this.onResync?.();
    };
    source.onerror = () => {
      source.close();
      if (this.source === source) this.retry();
    };
    for (const name of this.events) {
      source.addEventListener(name, (event) => this.receive(event));
    }
  }

  receive(event) {
    const id = event.lastEventId ? Number(event.lastEventId) : null;
    if (id !== null) this.last = id;
    this.onEvent(event.type, JSON.parse(event.data), id);
  }

  retry() {
    this.source = null;
    if (this.closed) return;
    this.onState("reconnecting");
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(true), this.delay);
    this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
  }

  visibilityChanged() {
    if (document.hidden) {
      this.hiddenTimer = setTimeout(() => {
        this.paused = true;
        this.source?.close();
        this.source = null;
        this.onState("paused");
      }, HIDDEN_CLOSE_MS);
    } else {
      clearTimeout(this.hiddenTimer);
      if (this.paused) {
        this.paused = false;
        this.connect(true);
      }
    }
  }
}

// The header's connection indicator: what the page's stream is doing, in words.
const CONNECTION = {
  idle: "", live: "Live", reconnecting: "Reconnecting…", paused: "Paused while hidden",
  failed: "Not connected", ended: "",
};

export function showConnection(state) {
  const element = document.getElementById("connection");
  element.dataset.state = state;
  element.textContent = CONNECTION[state] ?? "";
}
