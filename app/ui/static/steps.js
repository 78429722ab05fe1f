// A run's steps as the run page draws them: one table row each (patched in place, never
// added twice), the failed step's error and traceback, and the rollback panel.

import {
  absolute, badge, bar, duration, fill, h, pct, seconds, setBadge, setBar, setText, statusText,
} from "./dom.js";

export const STEP_COLUMNS = [
  "#", "Step", "Weight", "Status", "Progress", "Attempts", "Duration", "Rollback",
];

// "48.8 % · step 2 of 3: train 48 %"
export function overallText(run) {
  const steps = run.steps;
  const running = steps.find((s) => s.status === "running");
  const failed = steps.find((s) => s.status === "failed");
  const at = (s) => `step ${s.index + 1} of ${steps.length}: ${s.name}`;
  const head = pct(run.progress, 1);
  if (running) return `${head} · ${at(running)} ${pct(running.progress)}`;
  if (run.status === "succeeded") return `${head} · all ${steps.length} steps done`;
  if (failed) return `${head} · stopped at ${at(failed)}`;
  return `${head} · ${statusText("run", run.status).toLowerCase()}`;
}

export class StepRow {
  // toggled: the steps whose details the reader opened or closed (then left as they are).
  constructor(step, tbody, toggled) {
    this.step = step;
    this.toggled = toggled;
    const id = `step-detail-${step.index}`;
    this.status = badge("step", step.status);
    this.rollback = badge("rollback", step.rollback.status);
    this.bar = bar(`Progress of step ${step.name}`);
    this.percent = h("span", { class: "num" });
    this.attempts = h("td", { class: "num" });
    this.duration = h("td", { class: "num" });
    this.toggle = h("button", {
      type: "button", class: "disclose", "aria-expanded": "false", "aria-controls": id,
    }, step.name);
    this.toggle.addEventListener("click", () => {
      toggled.add(step.index);
      this.open(this.toggle.getAttribute("aria-expanded") !== "true");
    });
    this.body = h("td", { colspan: STEP_COLUMNS.length });
    this.detail = h("tr", { class: "detail", id, hidden: true }, this.body);
    this.element = h("tr", { class: "step", "data-step": step.name },
      h("td", { class: "num" }, step.index + 1),
      h("th", { scope: "row" }, this.toggle),
      h("td", { class: "num" }, pct(step.weight, 1)),
      h("td", {}, this.status),
      h("td", { class: "progress" }, this.bar, this.percent),
      this.attempts, this.duration,
      h("td", {}, this.rollback));
    tbody.append(this.element, this.detail);
  }

  open(open) {
    this.toggle.setAttribute("aria-expanded", String(open));
    this.detail.hidden = !open;
  }

  paint(step) {
    this.step = step;
    setBadge(this.status, "step", step.status);
    setBadge(this.rollback, "rollback", step.rollback.status);
    this.element.dataset.status = step.status;
    setBar(this.bar, step.progress);
    setText(this.percent, pct(step.progress));
    setText(this.attempts, step.attempts || "");
    if (step.status === "failed" && !this.toggled.has(step.index)) this.open(true);
    // Redrawn only when it changes: a reader may be selecting text in a traceback.
    const key = JSON.stringify([step.error, step.rollback.error, step.started_at, step.finished_at]);
    if (key !== this.key) {
      this.key = key;
      fill(this.body,
        errorBlock("Error", step.error),
        errorBlock("Rollback failed", step.rollback.error),
        h("p", { class: "muted" },
          step.started_at ? `Started ${absolute(step.started_at)}` : "Not started",
          step.finished_at ? ` · finished ${absolute(step.finished_at)}` : ""));
    }
    this.tick();
  }

  tick() {
    const step = this.step;
    const took = step.status === "running"
      ? seconds(step.started_at)
      : step.duration_seconds ?? seconds(step.started_at, step.finished_at);
    setText(this.duration, duration(took));
  }
}

function errorBlock(title, error) {
  if (!error) return null;
  return h("div", { class: "error" },
    h("p", {}, h("strong", {}, `${title}: `), h("code", {}, error.type ?? "Error"),
      ` ${error.message ?? ""}`),
    error.traceback && h("pre", {
      class: "traceback", tabindex: 0, "aria-label": `${title}: traceback`,
    }, error.traceback));
}

export function showsRollback(run) {
  return run.rollback_progress !== null
    || ["rolling_back", "cancelling", "failed", "cancelled"].includes(run.status);
}

const SUMMARY = [
  ["rolled_back", "rolled back"], ["not_supported", "not supported"], ["failed", "failed to undo"],
  ["not_needed", "not needed"], ["pending", "waiting"], ["running", "rolling back"],
];

// The rollback panel: the cause first, then every step that ran, newest first, with what
// its rollback did, then the counts.
export function rollbackParts(run, cancelledAt) {
  const touched = run.steps
    .filter((s) => s.status !== "pending" || s.rollback.status !== "not_needed")
    .reverse();
  const counts = {};
  for (const s of touched) counts[s.rollback.status] = (counts[s.rollback.status] ?? 0) + 1;
  const summary = SUMMARY
    .filter(([status], i) => i < 3 || counts[status])
    .map(([status, text]) => `${counts[status] ?? 0} ${text}`);
  const rolling = run.status === "rolling_back"
    || (run.status === "cancelling" && run.rollback_progress !== null);
  const progress = bar("Rollback progress");
  setBar(progress, run.rollback_progress ?? 0);
  return [
    h("h2", { id: "rollback-title" }, "Rollback"),
    h("p", { class: "cause" }, h("strong", {}, "Cause: "), cause(run, cancelledAt)),
    rolling && h("div", { class: "overall" }, progress,
      h("span", {}, `${pct(run.rollback_progress, 1)} undone`)),
    touched.length
      ? h("ol", { class: "rollback-list", "aria-label": "Steps undone, newest first" },
        touched.map(rollbackItem))
      : h("p", {}, "No step had run: nothing to undo."),
    h("p", { class: "rollback-summary" }, summary.join(" · ")),
  ];
}

function rollbackItem(step) {
  const { status, started_at: started, finished_at: finished, error } = step.rollback;
  return h("li", { "data-step": step.name },
    badge("rollback", status), " ", h("span", { class: "name" }, step.name),
    finished && h("span", { class: "muted" }, ` ${duration(seconds(started, finished))}`),
    status === "not_supported"
      && h("span", { class: "muted" }, " the step has no rollback: nothing was undone"),
    error && h("span", { class: "error-text" }, ` ${error.type}: ${error.message}`));
}

function cause(run, cancelledAt) {
  if (["cancelled", "cancelling"].includes(run.status)) {
    const at = cancelledAt ?? run.finished_at;
    return `cancelled on request${at ? ` at ${absolute(at)}` : ""}`;
  }
  const error = run.error;
  if (!error) return "the run is rolling back";
  const step = run.steps.find((s) => s.name === error.step);
  const attempts = step && step.attempts > 1 ? ` after ${step.attempts} attempts` : "";
  const type = error.type ? `${error.type}: ` : "";
  return `step ${error.step ?? "?"} failed${attempts}: ${type}${error.message ?? ""}`;
}
