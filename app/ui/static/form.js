// The start form, drawn from a pipeline's params JSON Schema: scalars, enums and arrays of
// scalars get native inputs, anything nested a JSON text area. A 422's errors go back to
// their fields. One Idempotency-Key per form: pressing twice starts one run; a refused
// request (no run was made) takes a new key for the next attempt, whose body may differ.

import { api, ApiError, apiKey } from "./api.js";
import { copyBlock, curl, fill, h, json, newKey, setText, shellQuote } from "./dom.js";
import { navigate } from "./main.js";

const SCALARS = new Set(["string", "integer", "number", "boolean"]);

function resolve(schema, defs) {
  let resolved = schema ?? {};
  if (resolved.$ref) {
    resolved = { ...defs[resolved.$ref.split("/").pop()], ...resolved, $ref: undefined };
  }
  const options = resolved.anyOf ?? resolved.oneOf;
  if (options) {
    const real = options.filter((o) => o.type !== "null");
    if (real.length === 1) {
      return {
        ...resolve(real[0], defs), ...resolved, anyOf: undefined, oneOf: undefined, nullable: true,
      };
    }
  }
  return resolved;
}

function kindOf(schema, defs) {
  if (schema.enum) return "enum";
  if (SCALARS.has(schema.type)) return schema.type;
  if (schema.type === "array") {
    const items = resolve(schema.items, defs);
    if (items.enum) return "choices";
    if (SCALARS.has(items.type) && items.type !== "boolean") return "list";
  }
  return "json";
}

function coerce(text, type) {
  if (type !== "integer" && type !== "number") return text;
  const value = Number(text);
  if (text.trim() === "" || Number.isNaN(value)) {
    throw new Error(`${JSON.stringify(text)} is not a number`);
  }
  return value;
}

// The input for each kind of value, and how to read it back (undefined: leave it to the
// server's default).
function control(kind, schema, defs, attrs, required) {
  const fallback = schema.default;
  if (kind === "enum" || kind === "choices") {
    const many = kind === "choices";
    const values = many ? resolve(schema.items, defs).enum : schema.enum;
    const chosen = (v) => (many ? (fallback ?? []).includes(v) : v === fallback);
    const input = h("select", { ...attrs, multiple: many },
      !many && (!required || schema.nullable) && h("option", { value: "" }, "(default)"),
      values.map((v) => h("option", { value: JSON.stringify(v), selected: chosen(v) }, String(v))));
    return [input, () => {
      const picked = [...input.selectedOptions].filter((o) => o.value).map((o) => JSON.parse(o.value));
      return many ? (picked.length ? picked : undefined) : picked[0];
    }];
  }
  if (kind === "boolean") {
    const input = h("input", { ...attrs, type: "checkbox", checked: fallback === true });
    return [input, () => input.checked];
  }
  if (kind === "integer" || kind === "number") {
    const input = h("input", {
      ...attrs, type: "number", value: fallback, min: schema.minimum, max: schema.maximum,
      step: kind === "integer" ? 1 : "any", inputmode: kind === "integer" ? "numeric" : "decimal",
    });
    return [input, () => (input.value.trim() === "" ? undefined : coerce(input.value, kind))];
  }
  if (kind === "string") {
    const input = h("input", { ...attrs, type: "text", value: fallback, maxlength: schema.maxLength });
    return [input, () => (input.value === "" && !required ? undefined : input.value)];
  }
  const list = kind === "list";
  const text = fallback === undefined ? "" : list ? fallback.join("\n") : json(fallback);
  const input = h("textarea", {
    ...attrs, rows: list ? 3 : 5, class: list ? "" : "mono", spellcheck: "false",
  }, text);
  const type = list ? resolve(schema.items, defs).type : null;
  return [input, () => {
    const value = input.value.trim();
    if (!value) return undefined;
    if (list) {
      return value.split("\n").map((line) => line.trim()).filter(Boolean).map((v) => coerce(v, type));
    }
    try {
      return JSON.parse(value);
    } catch (exc) {
      throw new Error(`is not valid JSON: ${exc.message}`);
    }
  }];
}

// One field: its element, its value, and where its errors go.
function field(name, schema, { required = false, defs = {}, prefix = "param", help = null } = {}) {
  const id = `${prefix}-${name}`;
  const kind = kindOf(schema, defs);
  const attrs = { id, name, "aria-describedby": `${id}-help ${id}-error` };
  const [input, read] = control(kind, schema, defs, attrs, required);
  const fallback = schema.default;
  const notes = help ?? [
    schema.description,
    { list: "One value per line.", json: "JSON.", choices: "Pick one or more." }[kind],
    fallback !== undefined && fallback !== null && kind !== "boolean" && `Default: ${JSON.stringify(fallback)}.`,
  ].filter(Boolean).join(" ");
  const error = h("p", { id: `${id}-error`, class: "field-error" });
  const label = h("label", { for: id }, schema.title ?? name,
    required && h("span", { class: "required" }, " (required)"));
  return {
    name, input, read,
    element: h("div", { class: `field field-${kind}` },
      kind === "boolean" ? [input, " ", label] : [label, input],
      h("small", { id: `${id}-help`, class: "help" }, notes), error),
    fail(message) {
      error.textContent = error.textContent ? `${error.textContent} ${message}` : message;
      input.setAttribute("aria-invalid", "true");
    },
    clear() {
      error.textContent = "";
      input.removeAttribute("aria-invalid");
    },
  };
}

function labelsField() {
  const labels = field("labels", { title: "Labels", type: "string" }, {
    prefix: "run", help: "Yours to filter runs by: key=value, one per line.",
  });
  const textarea = h("textarea", { ...Object.fromEntries(
    ["id", "name", "aria-describedby"].map((a) => [a, labels.input.getAttribute(a)])), rows: 2 });
  labels.input.replaceWith(textarea);
  labels.input = textarea;
  labels.read = () => {
    const values = {};
    for (const line of textarea.value.split("\n").map((l) => l.trim()).filter(Boolean)) {
      const at = line.indexOf("=");
      if (at < 1) throw new Error(`${JSON.stringify(line)} is not key=value`);
      values[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    return values;
  };
  return labels;
}

export function startForm(pipeline) {
  const schema = pipeline.params_schema ?? {};
  const defs = schema.$defs ?? schema.definitions ?? {};
  const required = new Set(schema.required ?? []);
  const fields = Object.entries(schema.properties ?? {}).map(([name, property]) =>
    field(name, resolve(property, defs), { required: required.has(name), defs }));
  const labels = labelsField();
  const byName = new Map(fields.map((f) => [f.name, f]));
  const formError = h("div", { class: "form-error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary" }, "Start run");
  const preview = copyBlock("");
  let key = newKey();
  let sending = false;

  const form = h("form", { class: "start", novalidate: true, "aria-labelledby": "start-title" },
    h("h2", { id: "start-title" }, "Start a run"),
    fields.length
      ? fields.map((f) => f.element)
      : h("p", { class: "muted" }, "This pipeline takes no parameters."),
    labels.element, formError, h("div", { class: "actions" }, submit),
    h("details", { class: "curl" },
      h("summary", {}, "The same request with curl"), preview.element));

  // The request body, or null (with the reasons beside the fields when `report`).
  const collect = (report) => {
    const params = {};
    let ok = true;
    for (const f of fields) {
      if (report) f.clear();
      try {
        const value = f.read();
        if (value !== undefined) params[f.name] = value;
      } catch (error) {
        ok = false;
        if (report) f.fail(`This ${error.message}.`);
      }
    }
    if (report) labels.clear();
    try {
      return ok ? { pipeline: pipeline.name, params, labels: labels.read() } : null;
    } catch (error) {
      if (report) labels.fail(`${error.message}.`);
      return null;
    }
  };

  const showCurl = () => {
    const body = collect(false);
    if (!body) return;
    const data = shellQuote(JSON.stringify(body));
    const extra = ` -H 'content-type: application/json' -H 'Idempotency-Key: ${key}' -d ${data}`;
    setText(preview.pre, curl("-si", "/runs", Boolean(apiKey.get()), extra));
  };

  const showProblem = (error) => {
    const unplaced = [];
    for (const item of error.problem?.errors ?? []) {
      const loc = (item.loc ?? []).filter((part) => part !== "body");
      const target = loc[0] === "params" ? byName.get(loc[1]) : loc[0] === "labels" ? labels : null;
      if (target) target.fail(`${item.msg}${loc.length > 2 ? ` (${loc.slice(2).join(".")})` : ""}.`);
      else unplaced.push(`${loc.join(".") || "request"}: ${item.msg}`);
    }
    fill(formError,
      h("p", {}, h("strong", {}, `${error.problem?.title ?? "Not started"}: `), error.message),
      unplaced.length > 0 && h("ul", {}, unplaced.map((text) => h("li", {}, text))));
    form.querySelector("[aria-invalid=true]")?.focus();
  };

  form.addEventListener("input", showCurl);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (sending) return; // a second press while the first is on its way
    formError.replaceChildren();
    const body = collect(true);
    if (!body) {
      form.querySelector("[aria-invalid=true]")?.focus();
      return;
    }
    sending = true;
    submit.disabled = true;
    try {
      const headers = { "Idempotency-Key": key };
      const { data } = await api("/runs", { method: "POST", headers, body });
      navigate(`/ui/runs/${data.id}`);
    } catch (error) {
      if (error instanceof ApiError && error.status < 500) key = newKey(); // no run was made
      showProblem(error);
      showCurl();
    } finally {
      sending = false;
      submit.disabled = false;
    }
  });
  showCurl();
  return form;
}
