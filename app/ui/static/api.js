// The public HTTP API, with the API key when the server asks for one. A 401 opens the key
// dialog; the key is kept in sessionStorage (this tab only) and sent as a bearer header.

const STORAGE = "stepline.api-key";

export class ApiError extends Error {
  constructor(status, problem, retryAfter = null) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem ?? {};
    this.retryAfter = retryAfter; // seconds, from the Retry-After header of a 429 or 503
  }
}

// The server did not answer at all (down, restarting, or the network is): what fetch()
// rejects with, told apart from our own bugs, so that a page may wait and try again.
export class NetworkError extends Error {}

// A page the server could not give is loaded again by itself, from this delay doubling up
// to the next.
export const FIRST_RETRY_MS = 500;
export const MAX_RETRY_MS = 5000;
const AWAY = new Set([429, 502, 503, 504]);

// Worth trying again: the server did not answer, was unavailable, or asked us to slow
// down. Anything else (a 500 included: the same request would fail the same way) is the
// page's error to show.
export function transient(error) {
  return error instanceof NetworkError || (error instanceof ApiError && AWAY.has(error.status));
}

// How long to wait before trying again: `delay`, or longer if the server said so.
export function retryDelay(error, delay) {
  const asked = Number(error?.retryAfter);
  return Number.isFinite(asked) && asked > 0 ? Math.max(delay, asked * 1000) : delay;
}

export const apiKey = {
  get: () => sessionStorage.getItem(STORAGE),
  set(value) {
    sessionStorage.setItem(STORAGE, value);
    showForget();
  },
  clear() {
    sessionStorage.removeItem(STORAGE);
    showForget();
  },
};

function showForget() {
  const button = document.getElementById("forget-key");
  if (button) button.hidden = !apiKey.get();
}

let asking = null;

// Ask once however many requests were refused at the same time.
function askForKey(reason) {
  asking ??= new Promise((resolve, reject) => {
    const dialog = document.getElementById("key-dialog");
    const input = document.getElementById("key-input");
    document.getElementById("key-reason").textContent = reason;
    input.value = "";
    const finish = (ok) => {
      dialog.onsubmit = dialog.oncancel = null;
      asking = null;
      if (ok) resolve();
      else reject(new ApiError(401, { title: "API key needed", detail: reason }));
    };
    dialog.onsubmit = (event) => {
      event.preventDefault();
      apiKey.set(input.value.trim());
      dialog.close();
      finish(true);
    };
    dialog.oncancel = () => finish(false);
    dialog.showModal();
    input.focus();
  });
  return asking;
}

async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return { title: response.statusText, status: response.status };
  }
}

// fetch() a path of the API: {status, headers, data} for a 2xx, an ApiError otherwise.
export async function api(path, { method = "GET", body, headers = {} } = {}) {
  for (;;) {
    const sent = { Accept: "application/json", ...headers };
    const key = apiKey.get();
    if (key) sent.Authorization = `Bearer ${key}`;
    if (body !== undefined) sent["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method, headers: sent, cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new NetworkError(error.message);
    }
    if (response.status === 401) {
      const problem = await problemOf(response);
      await askForKey(key ? `The server refused the key: ${problem.detail}` : problem.detail);
      continue;
    }
    if (!response.ok) {
      const problem = await problemOf(response);
      throw new ApiError(response.status, problem, response.headers.get("Retry-After"));
    }
    const data = response.status === 204 ? null : await response.json();
    return { status: response.status, headers: response.headers, data };
  }
}

export function installKeyButton(onForget) {
  const button = document.getElementById("forget-key");
  button.addEventListener("click", () => {
    apiKey.clear();
    onForget();
  });
  showForget();
}
