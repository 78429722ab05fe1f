// DOM building and the formats every page shares. Elements are built, never parsed from
// HTML strings, and styles are set through the CSSOM: the page's CSP allows nothing inline.

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...nodes(children));
  return element;
}

function nodes(children) {
  return children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false);
}

export function setText(element, text) {
  const value = String(text ?? "");
  if (element.textContent !== value) element.textContent = value;
}

export function add(element, ...children) {
  element.append(...nodes(children));
  return element;
}

export function fill(element, ...children) {
  element.replaceChildren(...nodes(children));
  return element;
}

export const short = (id) => (id.length > 10 ? id.slice(-10) : id);

export function pct(fraction, digits = 0) {
  const scale = 10 ** digits;
  const value = Math.floor(Math.max(0, Math.min(1, fraction ?? 0)) * 100 * scale) / scale;
  return `${Number.isInteger(value) ? value : value.toFixed(digits)} %`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const s = Math.floor(seconds);
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

// Seconds from one ISO time to another, or to now.
export function seconds(from, to) {
  if (!from) return null;
  return ((to ? Date.parse(to) : Date.now()) - Date.parse(from)) / 1000;
}

export function relative(iso) {
  if (!iso) return "";
  const ago = (Date.now() - Date.parse(iso)) / 1000;
  if (ago < 5) return "just now";
  if (ago < 60) return `${Math.floor(ago)} s ago`;
  if (ago < 3600) return `${Math.floor(ago / 60)} min ago`;
  if (ago < 86400) return `${Math.floor(ago / 3600)} h ago`;
  return `${Math.floor(ago / 86400)} d ago`;
}

const DATE_TIME = { dateStyle: "medium", timeStyle: "medium" };
export const absolute = (iso) => (iso ? new Date(iso).toLocaleString([], DATE_TIME) : "");

// A <time> that shows a relative time and the absolute one on hover; tick() refreshes it.
export function when(iso) {
  return h("time", { datetime: iso ?? "", title: absolute(iso), "data-relative": "" }, relative(iso));
}

export function tickTimes(root = document) {
  for (const time of root.querySelectorAll("time[data-relative]")) {
    setText(time, relative(time.getAttribute("datetime")));
  }
}

// The words; the icon beside each comes from the stylesheet, out of the text.
const LABELS = {
  run: {
    queued: "Queued", running: "Running", rolling_back: "Rolling back", cancelling: "Cancelling",
    succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled",
  },
  step: {
    pending: "Pending", running: "Running", succeeded: "Succeeded", failed: "Failed",
    skipped: "Skipped", cancelled: "Cancelled",
  },
  rollback: {
    not_needed: "Not needed", pending: "Waiting", running: "Rolling back",
    rolled_back: "Rolled back", failed: "Failed to undo", not_supported: "Not supported",
  },
};

export const statusText = (kind, status) => LABELS[kind][status] ?? status;

// Status as an icon, a word and a colour: never colour alone.
export function badge(kind, status) {
  const element = h("span", { class: "badge" });
  setBadge(element, kind, status);
  return element;
}

export function setBadge(element, kind, status) {
  if (element.dataset.status === status) return;
  element.dataset.status = status;
  element.className = `badge ${kind}-${status}`;
  element.textContent = statusText(kind, status);
}

export function bar(label) {
  const fillElement = h("span", { class: "fill" });
  return h("span", {
    class: "bar", role: "progressbar", "aria-label": label,
    "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": 0,
  }, fillElement);
}

export function setBar(element, fraction) {
  const value = Math.max(0, Math.min(1, fraction ?? 0));
  element.firstChild.style.width = `${value * 100}%`;
  element.setAttribute("aria-valuenow", String(Math.floor(value * 1000) / 10));
}

export function labelList(labels) {
  const entries = Object.entries(labels ?? {});
  if (!entries.length) return null;
  return h("ul", { class: "labels", "aria-label": "Labels" },
    entries.map(([k, v]) => h("li", {}, `${k}: ${v}`)));
}

// A key that makes a request idempotent; crypto.randomUUID needs a secure context, which a
// dashboard served over plain HTTP beyond loopback is not.
export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export const json = (value) => JSON.stringify(value, null, 2);

export function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

// A curl command line for a request to this server, with the key left as a variable.
export function curl(flags, path, withKey, extra = "") {
  const auth = withKey ? ` -H "Authorization: Bearer $STEPLINE_API_KEY"` : "";
  return `curl ${flags} ${location.origin}${path}${auth}${extra}`;
}

export function copyBlock(text) {
  const pre = h("pre", { class: "copyable", tabindex: 0 }, text);
  const button = h("button", { type: "button", class: "quiet" }, "Copy");
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(pre.textContent);
      setText(button, "Copied");
    } catch {
      getSelection().selectAllChildren(pre);
      setText(button, "Selected: press Ctrl+C");
    }
    setTimeout(() => setText(button, "Copy"), 2000);
  });
  return { pre, button, element: h("div", { class: "copy" }, pre, button) };
}
