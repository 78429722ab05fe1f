// The runs list: newest first, filtered by the query string, paged with a cursor, and kept
// live by one stream of every run's events. Rows are patched in place; a new run is added
// at the top only while the list is scrolled to the top, and otherwise waits behind a
// "N new runs" button, so that nothing moves under a reader's eyes.

import { api, FIRST_RETRY_MS, MAX_RETRY_MS, retryDelay, transient } from "./api.js";
import {
  add, badge, bar, duration, h, labelList, pct, seconds, setBadge, setBar, setText, short,
  tickTimes, when,
} from "./dom.js";
import { LiveStream, showConnection } from "./live.js";
import { focusHeading, navigate } from "./main.js";

const PAGE_SIZE = 50;
const STATUSES = [
  "queued", "running", "rolling_back", "cancelling", "succeeded", "failed", "cancelled",
];
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const COLUMNS = [
  "Status", "Pipeline", "Run", "Progress", "Current step", "Started", "Duration", "Labels",
];
// Every event type but step.log: the list shows no log lines.
const EVENTS = [
  "run.queued", "run.started", "run.cancelling", "run.recovered", "run.rollback_started",
  "run.succeeded", "run.failed", "run.cancelled", "step.started", "step.progress",
  "step.retrying", "step.succeeded", "step.failed", "step.skipped", "step.cancelled",
  "step.rollback_started", "step.rolled_back", "step.rollback_failed",
];
const AT_TOP_PX = 8;

function currentStep(run) {
  const steps = run.steps ?? [];
  const step = steps.find((s) => s.status === "running") ?? steps.find((s) => s.status === "failed");
  return step?.name ?? "";
}

class Row {
  constructor(run) {
    this.run = run;
    this.status = badge("run", run.status);
    this.bar = bar(`Progress of run ${short(run.id)}`);
    this.percent = h("span", { class: "num" });
    this.step = h("td", { class: "step" });
    this.duration = h("td", { class: "num duration" });
    const pipeline = `/ui/pipelines/${encodeURIComponent(run.pipeline)}`;
    this.element = h("tr", { "data-run": run.id },
      h("td", {}, this.status),
      h("td", {}, h("a", { href: pipeline }, run.pipeline)),
      h("td", {}, h("a", { href: `/ui/runs/${run.id}`, title: run.id, class: "mono" },
        short(run.id))),
      h("td", { class: "progress" }, this.bar, this.percent),
      this.step,
      h("td", {}, when(run.started_at ?? run.created_at)),
      this.duration,
      h("td", {}, labelList(run.labels)));
    this.paint();
  }

  paint() {
    const run = this.run;
    setBadge(this.status, "run", run.status);
    setBar(this.bar, run.progress);
    setText(this.percent, pct(run.progress));
    setText(this.step, run.current ?? currentStep(run));
    setText(this.duration, duration(seconds(run.started_at, run.finished_at)));
  }

  apply(type, event) {
    const run = this.run;
    if (event.seq <= (run.last_event_id ?? 0)) return; // already in this row's state
    run.last_event_id = event.seq;
    run.status = event.status ?? run.status;
    run.progress = event.progress ?? run.progress;
    if (type === "run.started") run.started_at ??= event.time;
    if (type === "step.started") run.current = event.step;
    if (TERMINAL.has(run.status)) {
      run.finished_at ??= event.time;
      if (run.status !== "failed") run.current = "";
    }
    this.paint();
  }
}

class RunsList {
  constructor(page) {
    this.page = page;
    const query = new URLSearchParams(location.search);
    this.filters = Object.fromEntries(
      ["pipeline", "status", "label"].map((name) => [name, query.get(name) ?? ""]));
    this.rows = new Map();
    this.waiting = []; // new runs held back while the reader is scrolled down
    this.asked = new Set();
    this.cursor = null;
    this.early = []; // events that came while the first page was loading
    this.loaded = false;
    this.wake = null; // ends the wait between two tries of the first load
    this.lives = 0; // how often the stream has gone live: a try that fails after one retries at once
  }

  build() {
    const f = this.filters;
    this.tbody = h("tbody");
    this.older = h("button", { type: "button", hidden: true }, "Load older");
    this.older.addEventListener("click", () => this.load().catch((error) => {
      setText(this.older, `Load older (failed: ${error.message})`);
    }));
    this.empty = h("p", { class: "empty", hidden: true }, "No runs match. Start one from ",
      h("a", { href: "/ui/pipelines" }, "Pipelines"), ".");
    this.retrying = h("p", { class: "reconnecting load-retry", role: "status", hidden: true });
    this.pill = h("button", { type: "button", class: "pill", hidden: true });
    this.pill.addEventListener("click", () => this.showWaiting());
    this.pipeline = h("select", { id: "filter-pipeline", name: "pipeline" },
      h("option", { value: "" }, "All"));
    this.status = h("select", { id: "filter-status", name: "status" },
      h("option", { value: "" }, "All"),
      STATUSES.map((s) => h("option", { value: s, selected: s === f.status }, s.replace("_", " "))));
    this.label = h("input", {
      id: "filter-label", name: "label", placeholder: "key:value", value: f.label,
    });
    const form = h("form", { class: "filters", role: "search", "aria-label": "Filter runs" },
      h("label", { for: "filter-pipeline" }, "Pipeline"), this.pipeline,
      h("label", { for: "filter-status" }, "Status"), this.status,
      h("label", { for: "filter-label" }, "Label"), this.label,
      h("button", { type: "submit" }, "Apply"),
      h("a", { href: "/ui", class: "clear" }, "Clear"));
    const filter = (event) => {
      event.preventDefault();
      const chosen = {
        pipeline: this.pipeline.value, status: this.status.value, label: this.label.value.trim(),
      };
      const query = new URLSearchParams(Object.entries(chosen).filter(([, value]) => value));
      navigate(`/ui${query.size ? `?${query}` : ""}`, { replace: true });
    };
    form.addEventListener("submit", filter);
    this.pipeline.addEventListener("change", filter);
    this.status.addEventListener("change", filter);

    add(this.page.main,
      h("div", { class: "page-head" }, h("h1", { tabindex: -1 }, "Runs"),
        h("a", { href: "/ui/pipelines", class: "button" }, "Start a run")),
      form, this.pill,
      h("table", { class: "runs" },
        h("caption", { class: "sr-only" }, "Runs, newest first"),
        h("thead", {}, h("tr", {}, COLUMNS.map((name) => h("th", { scope: "col" }, name)))),
        this.tbody),
      this.retrying, this.empty, this.older,
      h("p", { class: "hint" }, "Keys: / filter · j / k next and previous run · Enter open"));
  }

  async start() {
    this.build();
    focusHeading(this.page);
    const query = new URLSearchParams(EVENTS.map((type) => ["type", type]));
    if (this.filters.pipeline) query.append("pipeline", this.filters.pipeline);
    const stream = new LiveStream({
      path: "/events", tokenPath: "/events/stream-token", probe: "/runs?limit=1",
      query: [...query], events: EVENTS, onEvent: (type, event) => this.receive(type, event),
      onState: (state) => {
        showConnection(state);
        if (state === "live") { // the server is back: try the first load now
          this.lives += 1;
          this.wake?.();
        }
      },
      onResync: () => this.resync().catch(() => {}),
    });
    this.page.onLeave(() => stream.close());
    stream.start(); // first: what happens while the first page loads waits in `early`
    const pipelines = await this.firstLoad();
    if (!this.page.alive) return;
    for (const { name } of pipelines) {
      this.pipeline.append(h("option", { value: name, selected: name === this.filters.pipeline }, name));
    }
    this.loaded = true;
    for (const [type, event] of this.early.splice(0)) this.receive(type, event);

    const ticker = setInterval(() => {
      for (const row of this.rows.values()) if (!TERMINAL.has(row.run.status)) row.paint();
      tickTimes(this.tbody);
    }, 1000);
    const keys = (event) => keyboard(event, this.tbody, this.label);
    document.addEventListener("keydown", keys);
    this.page.onLeave(() => {
      clearInterval(ticker);
      document.removeEventListener("keydown", keys);
    });
  }

  // The first page of runs and the pipelines, tried again until the server answers: the
  // stream reconnects by itself, and the list must not be left behind on an error.
  async firstLoad() {
    for (let delay = FIRST_RETRY_MS; ; delay = Math.min(delay * 2, MAX_RETRY_MS)) {
      const lives = this.lives;
      // Events from before this try are in what it reads; only those that come while it
      // runs may be newer than that, so a failed try's are dropped.
      this.early = [];
      try {
        this.cursor = null; // a try that failed half-way may have moved it
        const [, pipelines] = await Promise.all([this.load(), api("/pipelines")]);
        this.retrying.hidden = true;
        return pipelines.data.items;
      } catch (error) {
        if (!transient(error) || !this.page.alive) throw error;
        setText(this.retrying, `Could not load the runs (${error.message}). Trying again…`);
        this.retrying.hidden = false;
        if (this.lives !== lives) continue; // the stream came back during the try
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, retryDelay(error, delay));
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = null;
        if (!this.page.alive) return [];
      }
    }
  }

  async load() {
    const params = new URLSearchParams(Object.entries(this.filters).filter(([, value]) => value));
    params.set("limit", String(PAGE_SIZE));
    if (this.cursor) params.set("cursor", this.cursor);
    this.older.disabled = true;
    const { data } = await api(`/runs?${params}`);
    if (!this.page.alive) return;
    for (const run of data.items) if (!this.rows.has(run.id)) this.add(run, false);
    this.cursor = data.next_cursor;
    this.older.hidden = !this.cursor;
    this.older.disabled = false;
    this.empty.hidden = this.rows.size > 0;
  }

  add(run, first) {
    const row = new Row(run);
    this.rows.set(run.id, row);
    if (first) this.tbody.prepend(row.element);
    else this.tbody.append(row.element);
    this.empty.hidden = true;
  }

  matches(run) {
    const { pipeline, status, label } = this.filters;
    const [key, ...value] = label.split(":");
    return (!pipeline || run.pipeline === pipeline) && (!status || run.status === status)
      && (!label || run.labels?.[key] === value.join(":"));
  }

  receive(type, event) {
    if (!this.loaded) {
      this.early.push([type, event]);
      return;
    }
    const row = this.rows.get(event.run_id);
    const status = this.filters.status;
    if (row) {
      row.apply(type, event);
    } else if (!this.asked.has(event.run_id)
      && (status ? event.status === status : type === "run.queued")) {
      this.arrived(event.run_id).catch(() => this.asked.delete(event.run_id));
    } else {
      const held = this.waiting.find((run) => run.id === event.run_id);
      if (held) Object.assign(held, { status: event.status, progress: event.progress });
    }
  }

  // After a reconnect with no event to resume after: the newest runs as they are now, so
  // that what happened while the stream was down is not missed.
  async resync() {
    const params = new URLSearchParams(Object.entries(this.filters).filter(([, value]) => value));
    params.set("limit", String(PAGE_SIZE));
    const { data } = await api(`/runs?${params}`);
    if (!this.page.alive) return;
    for (const run of [...data.items].reverse()) {
      const row = this.rows.get(run.id);
      if (row) {
        // Only if newer: a live event may have overtaken this read.
        if ((run.last_event_id ?? 0) > (row.run.last_event_id ?? 0)) {
          row.run = run;
          row.paint();
        }
      } else if (!this.asked.has(run.id)) {
        this.asked.add(run.id);
        this.place(run);
      }
    }
  }

  // A run not in the list: one just created, or one that now has the status filtered on.
  async arrived(runId) {
    this.asked.add(runId);
    const { data: run } = await api(`/runs/${encodeURIComponent(runId)}`);
    this.place(run);
  }

  place(run) {
    if (!this.page.alive || this.rows.has(run.id) || !this.matches(run)) return;
    if (window.scrollY <= AT_TOP_PX && this.waiting.length === 0) {
      this.add(run, true);
      return;
    }
    this.waiting.unshift(run);
    this.pill.hidden = false;
    setText(this.pill, `${this.waiting.length} new run${this.waiting.length === 1 ? "" : "s"}`);
  }

  showWaiting() {
    for (const run of this.waiting.splice(0).reverse()) this.add(run, true);
    this.pill.hidden = true;
    window.scrollTo({ top: 0 });
    this.tbody.querySelector("a.mono")?.focus();
  }
}

export async function runsPage(page) {
  page.title("Runs");
  await new RunsList(page).start();
}

// "/" goes to the filter; j and k move between runs (Enter then opens one).
function keyboard(event, tbody, filter) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest("input, select, textarea, dialog")) return;
  if (event.key === "/") {
    event.preventDefault();
    filter.focus();
    return;
  }
  if (event.key !== "j" && event.key !== "k") return;
  const links = [...tbody.querySelectorAll("a.mono")];
  if (!links.length) return;
  const at = links.indexOf(document.activeElement);
  const next = event.key === "j" ? Math.min(at + 1, links.length - 1) : Math.max(at - 1, 0);
  links[at === -1 ? 0 : next].focus();
  event.preventDefault();
}
