// A run's log lines: first those already written (GET /runs/{id}/logs), then those the
// stream brings, each once (by its sequence number). The list follows the newest line only
// while the reader is at its bottom, and keeps at most MAX_LINES in the page.

import { api } from "./api.js";
import { absolute, h, setText } from "./dom.js";

const MAX_LINES = 2000;
const PAGE_SIZE = 200;
const FOLLOW_SLACK_PX = 24;

export class LogView {
  constructor(runId, onCount) {
    this.runId = runId;
    this.onCount = onCount;
    this.seq = 0;
    this.count = 0;
    this.started = false;
    this.ready = false;
    this.queue = []; // stream lines that came before the earlier ones were read
    this.list = h("ol", {
      class: "log", "aria-live": "off", "aria-label": "Log lines", tabindex: 0, hidden: true,
    });
    this.note = h("p", { class: "hint", hidden: true });
    this.empty = h("p", { class: "empty" }, "No log lines yet.");
    this.jump = h("button", { type: "button", class: "pill", hidden: true }, "Jump to latest");
    this.jump.addEventListener("click", () => this.follow());
    this.list.addEventListener("scroll", () => {
      if (this.atBottom()) this.jump.hidden = true;
    });
    this.elements = [h("div", { class: "log-tools" }, this.jump, this.note), this.empty, this.list];
  }

  async load(page) {
    this.started = true;
    try {
      let after = 0;
      for (;;) {
        const path = `/runs/${encodeURIComponent(this.runId)}/logs?after=${after}&limit=${PAGE_SIZE}`;
        const { data } = await api(path);
        if (!page.alive) return;
        this.append(data.items);
        if (data.next_after === null || data.next_after === undefined) break;
        after = data.next_after;
      }
    } catch (error) {
      setText(this.empty, `The earlier log lines could not be read: ${error.message}`);
    }
    this.ready = true;
    this.append(this.queue.splice(0));
  }

  receive(line) {
    if (this.ready) this.append([line]);
    else this.queue.push(line);
  }

  atBottom() {
    const list = this.list;
    return list.scrollHeight - list.scrollTop - list.clientHeight < FOLLOW_SLACK_PX;
  }

  follow() {
    this.list.scrollTop = this.list.scrollHeight;
    this.jump.hidden = true;
  }

  append(lines) {
    const fresh = lines.filter((line) => line.seq > this.seq);
    if (!fresh.length) return;
    const following = this.atBottom();
    this.list.append(...fresh.map(logLine));
    this.seq = fresh.at(-1).seq;
    this.count += fresh.length;
    for (let extra = this.list.childElementCount - MAX_LINES; extra > 0; extra--) {
      this.list.firstElementChild.remove();
    }
    this.empty.hidden = true;
    this.list.hidden = false;
    this.note.hidden = this.count <= MAX_LINES;
    setText(this.note, `Showing the last ${MAX_LINES} of ${this.count} lines; `
      + `every line: GET /runs/${this.runId}/logs`);
    this.onCount(this.count);
    if (following) this.follow();
    else this.jump.hidden = false;
  }
}

function logLine(line) {
  const time = new Date(line.time);
  const clock = time.toLocaleTimeString([], { hour12: false });
  const millis = String(time.getMilliseconds()).padStart(3, "0");
  const data = line.data && Object.keys(line.data).length ? JSON.stringify(line.data) : "";
  return h("li", { "data-seq": line.seq, class: `level-${line.level}` },
    h("time", { datetime: line.time, title: absolute(line.time) }, `${clock}.${millis}`),
    h("span", { class: "step" }, line.step ?? ""),
    h("span", { class: "level" }, line.level),
    h("span", { class: "event" }, line.event),
    data && h("span", { class: "data" }, data));
}
