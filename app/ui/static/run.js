// One run, live: drawn from its document, then from its event stream (run.snapshot, then
// deltas; any event at or before the last one applied is dropped), reconnecting with the
// last sequence number after a lost connection. The document is read again when a step
// fails and when the run ends, for what events do not carry (tracebacks).

import { api, apiKey, ApiError } from "./api.js";
import {
  absolute, add, badge, bar, copyBlock, curl, duration, fill, h, json, labelList, newKey,
  seconds, setBadge, setBar, setText, shellQuote, short, statusText, tickTimes, when,
} from "./dom.js";
import { LiveStream, showConnection } from "./live.js";
import { LogView } from "./logs.js";
import { focusHeading, navigate } from "./main.js";
import { STEP_COLUMNS, StepRow, overallText, rollbackParts, showsRollback } from "./steps.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const CANCELLABLE = new Set(["queued", "running"]);
const EVENTS = [
  "run.snapshot", "run.queued", "run.started", "run.cancelling", "run.recovered",
  "run.rollback_started", "run.succeeded", "run.failed", "run.cancelled", "step.started",
  "step.progress", "step.log", "step.retrying", "step.succeeded", "step.failed", "step.skipped",
  "step.cancelled", "step.rollback_started", "step.rolled_back", "step.rollback_failed",
];
const TABS = [["steps", "Steps"], ["logs", "Logs"], ["details", "Params & result"]];

export async function runPage(page, runId) {
  const { data } = await api(`/runs/${encodeURIComponent(runId)}`);
  if (!page.alive) return;
  new RunView(page, data).start();
}

class RunView {
  constructor(page, run) {
    this.page = page;
    this.run = run;
    this.path = `/runs/${encodeURIComponent(run.id)}`;
    this.seq = -1; // the last event taken from the stream
    this.docSeq = run.last_event_id; // what the document in hand already reflects
    this.rows = [];
    this.toggled = new Set();
    this.lastUpdate = Date.now();
    this.ended = false;
    this.note = "";
    this.painting = false;
    this.logs = new LogView(run.id, (count) => setText(this.tabs[1].tab, `Logs (${count})`));
    page.title(`${run.pipeline} ${short(run.id)}`);
    this.build();
  }

  start() {
    this.stream = new LiveStream({
      path: `${this.path}/events`, tokenPath: `${this.path}/stream-token`, probe: this.path,
      events: EVENTS,
      onEvent: (type, data, id) => this.receive(type, data, id),
      onState: (state) => this.connection(state),
    });
    this.page.onLeave(() => this.stream.close());
    if (TERMINAL.has(this.run.status)) {
      this.finish(false);
      this.logs.load(this.page);
    } else {
      this.stream.start(); // the logs are read once its snapshot says up to where
    }
    const ticker = setInterval(() => this.tick(), 1000);
    this.page.onLeave(() => clearInterval(ticker));
    this.paint();
    focusHeading(this.page);
  }

  // -- the page's parts ------------------------------------------------------------------

  build() {
    const run = this.run;
    this.status = badge("run", run.status);
    this.times = h("dl", { class: "times" });
    this.duration = h("dd", { class: "num" });
    this.cancel = h("button", { type: "button", class: "danger", hidden: true }, "Cancel…");
    this.cancel.addEventListener("click", () => this.confirmCancel());
    this.rerun = h("button", { type: "button", hidden: true }, "Re-run");
    this.rerun.addEventListener("click", () => this.rerunRun());
    this.actionError = h("p", { class: "field-error", role: "alert" });
    this.curl = copyBlock("");
    this.reconnecting = h("p", { class: "reconnecting", hidden: true },
      h("strong", { role: "status" }), " ", h("span"));
    this.noteLine = h("p", { class: "note", hidden: true });
    this.overall = bar("Overall progress");
    this.overallText = h("p", { class: "overall-text" });
    this.announcer = h("p", { class: "sr-only", "aria-live": "polite" });
    this.summary = h("p", { class: "summary" });
    this.rollback = h("section", {
      class: "rollback", "aria-labelledby": "rollback-title", hidden: true,
    });
    this.tbody = h("tbody");
    this.details = h("div", { class: "details" });

    const steps = h("table", { class: "steps" },
      h("caption", { class: "sr-only" }, "Steps in order"),
      h("thead", {}, h("tr", {}, STEP_COLUMNS.map((name) => h("th", { scope: "col" }, name)))),
      this.tbody);
    const panels = { steps: [this.rollback, steps], logs: this.logs.elements, details: this.details };
    const tablist = h("div", { role: "tablist", "aria-label": "Run views", class: "tabs" });
    this.tabs = TABS.map(([name, label]) => {
      const tab = h("button", {
        type: "button", role: "tab", id: `tab-${name}`, "aria-controls": `panel-${name}`,
      }, label);
      tab.addEventListener("click", () => this.select(name, true));
      tablist.append(tab);
      const panel = h("section", {
        role: "tabpanel", id: `panel-${name}`, "aria-labelledby": `tab-${name}`, tabindex: 0,
      }, panels[name]);
      return { name, tab, panel };
    });
    tablist.addEventListener("keydown", (event) => this.tabKey(event));

    const pipeline = `/ui/pipelines/${encodeURIComponent(run.pipeline)}`;
    add(this.page.main,
      h("nav", { class: "crumbs", "aria-label": "Breadcrumb" },
        h("a", { href: "/ui" }, "Runs"), " / ", h("a", { href: pipeline }, run.pipeline)),
      h("div", { class: "run-head" },
        h("h1", { tabindex: -1 }, run.pipeline, " ", h("span", { class: "mono id" }, run.id)),
        this.status),
      labelList(run.labels),
      this.times,
      h("div", { class: "actions" }, this.cancel, this.rerun,
        h("details", { class: "curl" }, h("summary", {}, "Copy as curl"), this.curl.element)),
      this.actionError, this.reconnecting, this.noteLine,
      h("section", { class: "overall", "aria-label": "Overall progress" },
        this.overall, this.overallText),
      this.announcer, this.summary,
      tablist, this.tabs.map((t) => t.panel));
    const linked = TABS.find(([name]) => `#${name}` === location.hash);
    this.select(linked ? linked[0] : "steps", false);
  }

  select(name, byReader) {
    for (const { name: n, tab, panel } of this.tabs) {
      tab.setAttribute("aria-selected", String(n === name));
      tab.tabIndex = n === name ? 0 : -1;
      panel.hidden = n !== name;
    }
    if (byReader) {
      history.replaceState(null, "", name === "steps" ? location.pathname : `#${name}`);
    }
    if (name === "logs" && this.logs.jump.hidden) this.logs.follow(); // unless scrolled up
  }

  tabKey(event) {
    const at = this.tabs.findIndex((t) => t.tab === document.activeElement);
    const moves = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: this.tabs.length - 1 };
    if (at === -1 || !(event.key in moves)) return;
    const next = this.tabs[(moves[event.key] + this.tabs.length) % this.tabs.length];
    next.tab.focus();
    this.select(next.name, true);
    event.preventDefault();
  }

  // -- events ----------------------------------------------------------------------------

  receive(type, data, id) {
    this.lastUpdate = Date.now();
    if (type === "run.snapshot") {
      this.seq = Math.max(this.seq, id);
      if (id >= this.docSeq) this.adopt(data);
      // Lines up to the snapshot come from the logs endpoint, those after from the stream.
      if (!this.logs.started) this.logs.load(this.page);
    } else {
      if (id === null || id <= this.seq) return;
      this.seq = id;
      if (type === "step.log") {
        this.logs.receive(data);
        return;
      }
      if (id > this.docSeq) this.apply(type, data);
      if (type === "step.failed" || type === "step.rollback_failed") this.refresh();
    }
    if (TERMINAL.has(this.run.status)) this.finish(true);
    this.schedulePaint();
  }

  adopt(run) {
    this.run = run;
    this.docSeq = run.last_event_id;
  }

  apply(type, event) {
    const run = this.run;
    const step = Number.isInteger(event.index) ? run.steps[event.index] : null;
    run.status = event.status ?? run.status;
    if (typeof event.progress === "number") run.progress = event.progress;
    if (typeof event.rollback_progress === "number") {
      run.rollback_progress = event.rollback_progress;
    }
    const done = { finished_at: event.time };
    switch (type) {
      case "run.started":
        run.started_at ??= event.time;
        break;
      case "run.cancelling":
        run.cancel_requested = true;
        this.cancelledAt = event.time;
        this.say("Cancel requested");
        break;
      case "run.recovered":
        this.note = `Recovered: ${event.reason}`;
        break;
      case "step.started":
        Object.assign(step, { status: "running", attempts: event.attempt, progress: 0 });
        step.started_at ??= event.time;
        this.say(`Step ${step.name} started, ${step.index + 1} of ${run.steps.length}`);
        break;
      case "step.progress":
        step.progress = event.step_progress;
        break;
      case "step.retrying":
        step.error = event.error;
        this.say(`Step ${step.name} failed and will be retried`);
        break;
      case "step.succeeded":
        Object.assign(step, done, {
          status: "succeeded", progress: 1, duration_seconds: event.duration_seconds, error: null,
        });
        break;
      case "step.failed":
        Object.assign(step, done, { status: "failed", error: { ...event.error, traceback: null } });
        step.duration_seconds ??= seconds(step.started_at, event.time);
        this.say(`Step ${step.name} failed`);
        break;
      case "step.skipped":
        Object.assign(step, { status: "skipped", progress: 1 });
        break;
      case "step.cancelled":
        Object.assign(step, done, { status: "cancelled" });
        break;
      case "run.rollback_started":
        for (const s of run.steps) {
          if (event.steps?.includes(s.name)) s.rollback.status = "pending";
          if (event.not_supported?.includes(s.name)) s.rollback.status = "not_supported";
        }
        this.say("Rolling back the completed steps");
        break;
      case "step.rollback_started":
        Object.assign(step.rollback, { status: "running", started_at: event.time });
        break;
      case "step.rolled_back":
        Object.assign(step.rollback, done, { status: "rolled_back" });
        break;
      case "step.rollback_failed":
        Object.assign(step.rollback, done, { status: "failed", error: event.error });
        break;
      case "run.succeeded":
        Object.assign(run, done, { result: event.result, summary: event.summary });
        break;
      case "run.failed":
      case "run.cancelled":
        Object.assign(run, done, { summary: event.summary, error: event.error ?? run.error });
        break;
      default:
        break;
    }
    if (TERMINAL.has(run.status)) this.say(`Run ${statusText("run", run.status).toLowerCase()}`);
  }

  finish(refresh) {
    if (this.ended) return;
    this.ended = true;
    this.stream.close();
    this.connection("ended");
    if (refresh) this.refresh();
  }

  // The document, for what events leave out; taken only if it is not behind the page.
  async refresh() {
    if (this.refreshing) {
      this.again = true;
      return;
    }
    this.refreshing = true;
    try {
      const { data } = await api(this.path);
      if (this.page.alive && data.last_event_id >= this.seq) {
        this.adopt(data);
        this.schedulePaint();
      }
    } catch {
      // What the events said stays on the page; the next refresh tries again.
    } finally {
      this.refreshing = false;
      if (this.again) {
        this.again = false;
        this.refresh();
      }
    }
  }

  say(text) {
    setText(this.announcer, text);
  }

  connection(state) {
    showConnection(state);
    const away = state === "reconnecting" || state === "failed";
    this.reconnecting.hidden = !away;
    const words = { reconnecting: "Reconnecting…", failed: "Not connected." };
    setText(this.reconnecting.firstChild, words[state] ?? "");
    this.tick();
  }

  tick() {
    const run = this.run;
    if (!this.reconnecting.hidden) {
      const ago = duration((Date.now() - this.lastUpdate) / 1000);
      setText(this.reconnecting.lastChild, `last update ${ago} ago`);
    }
    setText(this.duration, duration(seconds(run.started_at, run.finished_at)));
    for (const row of this.rows) row.tick();
    tickTimes(this.page.main);
  }

  schedulePaint() {
    if (this.painting) return;
    this.painting = true;
    requestAnimationFrame(() => {
      this.painting = false;
      if (this.page.alive) this.paint();
    });
  }

  // -- drawing ---------------------------------------------------------------------------

  paint() {
    const run = this.run;
    setBadge(this.status, "run", run.status);
    const timesKey = `${run.started_at}|${run.finished_at}`;
    if (this.timesKey !== timesKey) {
      this.timesKey = timesKey;
      fill(this.times,
        h("dt", {}, "Created"), h("dd", {}, when(run.created_at)),
        h("dt", {}, "Started"), h("dd", {}, run.started_at ? absolute(run.started_at) : "not yet"),
        run.finished_at && [h("dt", {}, "Finished"), h("dd", {}, absolute(run.finished_at))],
        h("dt", {}, "Duration"), this.duration);
    }
    setBar(this.overall, run.progress);
    setText(this.overallText, overallText(run));
    setText(this.summary, run.summary ?? "");
    this.noteLine.hidden = !this.note;
    setText(this.noteLine, this.note);
    run.steps.forEach((step, index) => {
      this.rows[index] ??= new StepRow(step, this.tbody, this.toggled);
      this.rows[index].paint(step);
    });
    this.rollback.hidden = !showsRollback(run);
    const rollbackKey = JSON.stringify([run, this.cancelledAt]);
    if (!this.rollback.hidden && rollbackKey !== this.rollbackKey) {
      this.rollbackKey = rollbackKey;
      fill(this.rollback, rollbackParts(run, this.cancelledAt));
    }
    this.paintActions();
    this.paintDetails();
    this.tick();
  }

  paintActions() {
    const run = this.run;
    this.cancel.hidden = !CANCELLABLE.has(run.status) || run.cancel_requested;
    this.rerun.hidden = !TERMINAL.has(run.status);
    const withKey = Boolean(apiKey.get());
    const again = { pipeline: run.pipeline, params: run.params, labels: run.labels };
    const body = ` -H 'content-type: application/json' -d ${shellQuote(JSON.stringify(again))}`;
    setText(this.curl.pre, [
      "# this run, with every step and its rollback",
      curl("-s", `/runs/${run.id}`, withKey),
      "# its events, live until it ends",
      curl("-N", `/runs/${run.id}/events`, withKey),
      "# the same pipeline again, with the same params and labels",
      curl("-si", "/runs", withKey, body),
    ].join("\n"));
  }

  paintDetails() {
    const run = this.run;
    const key = JSON.stringify([run.params, run.result, run.error]);
    if (key === this.detailsKey) return;
    this.detailsKey = key;
    fill(this.details,
      h("h2", {}, "Params"), h("pre", {}, json(run.params)),
      run.result && [h("h2", {}, "Result"), h("pre", {}, json(run.result))],
      run.error && [h("h2", {}, "Error"), h("pre", {}, json(run.error))]);
  }

  // -- actions ---------------------------------------------------------------------------

  confirmCancel() {
    const started = this.run.steps
      .filter((s) => s.status === "succeeded" || s.status === "running")
      .reverse();
    const outcome = (s) => (s.status === "running" ? "stops, then " : "")
      + (s.can_rollback ? "will be rolled back" : "has no rollback: nothing to undo");
    const rollback = h("input", { type: "checkbox", id: "cancel-rollback", checked: true });
    const dialog = h("dialog", { class: "confirm", "aria-labelledby": "cancel-title" },
      h("form", { method: "dialog" },
        h("h2", { id: "cancel-title" }, "Cancel this run?"),
        started.length
          ? [h("p", {}, "The run stops, and these steps are rolled back, newest first:"),
            h("ol", { class: "rollback-list", "aria-label": "What the cancel rolls back" },
              started.map((s) => h("li", { "data-step": s.name },
                h("span", { class: "name" }, s.name), " ",
                h("span", { class: "muted" }, outcome(s)))))]
          : h("p", {}, "No step has started yet: there is nothing to roll back."),
        h("p", {}, h("label", { for: "cancel-rollback" }, rollback, " Roll back these steps")),
        h("div", { class: "actions" },
          h("button", { type: "submit", value: "keep", autofocus: true }, "Keep running"),
          h("button", { type: "submit", value: "cancel", class: "danger" }, "Cancel run"))));
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (dialog.returnValue === "cancel") this.sendCancel(rollback.checked);
      else this.cancel.focus();
    });
    this.page.main.append(dialog);
    dialog.showModal();
  }

  async sendCancel(rollback) {
    setText(this.actionError, "");
    try {
      const { data } = await api(`${this.path}/cancel`, { method: "POST", body: { rollback } });
      if (data.last_event_id > this.docSeq && data.last_event_id >= this.seq) {
        this.adopt(data);
        this.cancelledAt ??= data.updated_at;
      }
      this.schedulePaint();
    } catch (error) {
      setText(this.actionError, `Not cancelled: ${error.message}`);
    }
  }

  async rerunRun() {
    const run = this.run;
    this.rerunKey ??= newKey(); // one run however often the button is pressed
    this.rerun.disabled = true;
    try {
      const { data } = await api("/runs", {
        method: "POST", headers: { "Idempotency-Key": this.rerunKey },
        body: { pipeline: run.pipeline, params: run.params, labels: run.labels },
      });
      navigate(`/ui/runs/${data.id}`);
    } catch (error) {
      this.rerun.disabled = false;
      if (error instanceof ApiError && error.status < 500) this.rerunKey = null; // no run made
      setText(this.actionError, `Not started: ${error.message}`);
    }
  }
}
