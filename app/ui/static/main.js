// The single-page shell: client-side routes over the history API, so that every page has a
// URL that works on reload, and one page at a time, which is disposed of when left.

import { FIRST_RETRY_MS, installKeyButton, MAX_RETRY_MS, retryDelay, transient } from "./api.js";
import { h } from "./dom.js";
import { showConnection } from "./live.js";
import { pipelinePage, pipelinesPage } from "./pipelines.js";
import { runPage } from "./run.js";
import { runsPage } from "./runs.js";

const ROUTES = [
  [/^\/ui(?:\/|\/runs\/?)?$/, "runs", () => runsPage],
  [/^\/ui\/runs\/([^/]+)$/, "runs", (id) => (page) => runPage(page, decodeURIComponent(id))],
  [/^\/ui\/pipelines\/?$/, "pipelines", () => pipelinesPage],
  [/^\/ui\/pipelines\/([^/]+)$/, "pipelines",
    (name) => (page) => pipelinePage(page, decodeURIComponent(name))],
];

// What a page gets: where to draw, whether it is still shown, and where to leave cleanups.
class Page {
  constructor(main) {
    this.main = main;
    this.alive = true;
    this.cleanups = [];
  }

  onLeave(cleanup) {
    this.cleanups.push(cleanup);
  }

  leave() {
    this.alive = false;
    for (const cleanup of this.cleanups) cleanup();
  }

  title(text) {
    document.title = `${text} · Stepline`;
  }
}

let current = null;
// How long to wait before the page at `path`, which the server did not give, is tried
// again: it doubles with each failure, until the page loads or another is opened.
const retry = { path: null, delay: FIRST_RETRY_MS };

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  render();
}

function render() {
  current?.leave();
  showConnection("idle");
  const main = document.getElementById("main");
  main.replaceChildren();
  const page = new Page(main);
  current = page;
  const path = location.pathname;
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (route && link.dataset.nav === route[1]) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!route) {
    page.title("Not found");
    main.append(h("h1", { tabindex: -1 }, "Not found"), h("p", {}, h("a", { href: "/ui" }, "All runs")));
    return;
  }
  const [pattern, , make] = route;
  const show = make(...pattern.exec(path).slice(1));
  Promise.resolve()
    .then(() => show(page))
    .then(() => {
      if (retry.path === path) retry.path = null;
    })
    .catch((error) => page.alive && showError(page, error));
}

// A server that did not answer (or was unavailable) is waited for, as the event streams
// reconnect by themselves, and the page loads again once it answers; the error stays as
// it is meanwhile (announced once, focus kept). Any other error waits for the button.
function showError(page, error) {
  const again = transient(error);
  page.main.replaceChildren(
    h("div", { class: "error-box", role: "alert" },
      h("h1", { tabindex: -1 }, error.problem?.title ?? "Something went wrong"),
      h("p", {}, error.message),
      again && h("p", { class: "reconnecting load-retry" }, "Trying again…"),
      h("button", { type: "button", onclick: render }, "Try again")),
  );
  if (again) waitForServer(page, error).then((back) => back && page.alive && render());
}

async function waitForServer(page, error) {
  const path = location.pathname;
  if (retry.path !== path) Object.assign(retry, { path, delay: FIRST_RETRY_MS });
  let delay = retryDelay(error, retry.delay);
  while (page.alive) {
    await new Promise((resolve) => setTimeout(resolve, delay));
    while (document.hidden && page.alive) { // a hidden tab asks nothing of the server
      await new Promise((resolve) => document.addEventListener("visibilitychange", resolve, { once: true }));
    }
    retry.delay = delay = Math.min(delay * 2, MAX_RETRY_MS);
    if (page.alive && await answers()) return true;
  }
  return false;
}

// The server is up: its liveness probe answers (it needs no key).
async function answers() {
  try {
    return (await fetch("/healthz", { cache: "no-store" })).ok;
  } catch {
    return false;
  }
}

// Move focus to the new page's heading, so that a screen reader announces where it is.
export function focusHeading(page) {
  page.main.querySelector("h1")?.focus({ preventScroll: true });
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href]");
  if (!link || link.target || link.hasAttribute("download") || event.defaultPrevented) return;
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/ui")) return;
  event.preventDefault();
  navigate(url.pathname + url.search + url.hash);
});
window.addEventListener("popstate", render);
installKeyButton(render);
render();
