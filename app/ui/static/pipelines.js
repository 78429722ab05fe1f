// The pipeline catalogue: every pipeline's steps with their weights and what undoing each
// means; a pipeline's own page adds the form that starts a run.

import { api } from "./api.js";
import { add, duration, h, pct } from "./dom.js";
import { startForm } from "./form.js";
import { focusHeading } from "./main.js";

const STEP_COLUMNS = ["#", "Step", "Weight", "Rollback", "Retry", "Timeout"];

export async function pipelinesPage(page) {
  page.title("Pipelines");
  const { data } = await api("/pipelines");
  if (!page.alive) return;
  add(page.main,
    h("h1", { tabindex: -1 }, "Pipelines"),
    data.items.length
      ? data.items.map((pipeline) => card(pipeline, true))
      : h("p", { class: "empty" }, "No pipeline is registered."));
  focusHeading(page);
}

export async function pipelinePage(page, name) {
  const { data: pipeline } = await api(`/pipelines/${encodeURIComponent(name)}`);
  if (!page.alive) return;
  page.title(pipeline.title || pipeline.name);
  add(page.main,
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" },
      h("a", { href: "/ui/pipelines" }, "Pipelines"), " / ", pipeline.name),
    card(pipeline, false),
    startForm(pipeline));
  focusHeading(page);
}

function rollbackOf(step) {
  if (step.irreversible) return "irreversible: a later failure keeps it and what came before";
  return step.can_rollback ? "undo" : "nothing to undo";
}

function card(pipeline, linked) {
  const href = `/ui/pipelines/${encodeURIComponent(pipeline.name)}`;
  const title = pipeline.title || pipeline.name;
  const weights = h("div", { class: "weights", "aria-hidden": "true" });
  for (const step of pipeline.steps) {
    const segment = h("span", { title: `${step.name} ${pct(step.weight, 1)}` }, step.name);
    segment.style.width = `${step.weight * 100}%`;
    weights.append(segment);
  }
  const known = pipeline.steps.length > 0; // not without params, when some are required
  const facts = [known ? `${pipeline.steps.length} steps` : "steps set by the params",
    `after a crash: ${pipeline.recovery}`];
  if (pipeline.max_concurrency) facts.push(`at most ${pipeline.max_concurrency} at once`);
  return h("article", { class: "pipeline" },
    linked ? h("h2", {}, h("a", { href }, title)) : h("h1", { tabindex: -1 }, title),
    h("p", { class: "muted" }, h("code", {}, pipeline.name), ` · ${facts.join(" · ")}`),
    h("p", {}, pipeline.description),
    known ? weights : h("p", { class: "muted" }, "Its steps depend on the params: each run lists its own."),
    known && h("table", { class: "pipeline-steps" },
      h("caption", { class: "sr-only" }, `Steps of ${title}`),
      h("thead", {}, h("tr", {}, STEP_COLUMNS.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, pipeline.steps.map((step, i) => h("tr", {},
        h("td", { class: "num" }, i + 1),
        h("th", { scope: "row" }, step.name),
        h("td", { class: "num" }, pct(step.weight, 1)),
        h("td", {}, rollbackOf(step)),
        h("td", {}, step.retry ? `${step.retry.max_attempts} attempts` : "none"),
        h("td", {}, step.timeout_seconds ? duration(step.timeout_seconds) : "none"))))),
    linked && h("p", {}, h("a", { href, class: "button" }, `Start ${pipeline.name}…`)));
}
