// DOM helpers shared by the pages: element builder, form fields with their error slot, drafts.
import { t } from "/static/i18n.js";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// A labelled field; `name` is the API's field path (its errors come back with it), shown under the input.
export function field(name, label, input, { hint, wide } = {}) {
  input.name ??= name;
  input.id ||= `f-${name.replaceAll(".", "-")}`;
  return h("div", { class: wide ? "field wide" : "field", "data-field": name },
    h("label", { for: input.id, text: label }), input,
    hint ? h("span", { class: "hint", text: hint }) : null,
    h("span", { class: "field-error", role: "alert", "data-error-for": name }));
}

export function textInput(name, value = "", type = "text", extra = {}) {
  return h("input", { type, name, value, autocomplete: "off", ...extra });
}

export function select(name, options, value) {
  const el = h("select", { name });
  for (const [key, label] of options) el.append(h("option", { value: key, text: label }));
  if (value !== undefined) el.value = value;
  return el;
}

export function clearErrors(form) {
  for (const f of form.querySelectorAll(".field.invalid")) f.classList.remove("invalid");
  for (const e of form.querySelectorAll(".field-error")) e.textContent = "";
  form.querySelector(".form-notice")?.remove();
}

// The form field an API error path names: a routing object's errors come from the dial-plan compiler as
// "<kind>[<name>].<field>[<i>].<sub>"; the object prefix and list indexes are dropped ("members.line").
function fieldPath(path) {
  return path.replace(/^[a-z_]+\[[^\]]*\]\./, "").replace(/\[\d+\]/g, "");
}

// Show one error on its field (the closest field named by a prefix of its path); false if none matches.
function showOn(form, path, message) {
  const parts = fieldPath(path).split(".");
  for (let n = parts.length; n > 0; n--) {
    const slot = form.querySelector(`[data-error-for="${CSS.escape(parts.slice(0, n).join("."))}"]`);
    if (slot) {
      // The API's message names the field ("email: ..."); next to the field that is said already.
      const prefix = `${path}: `;
      const text = message.startsWith(prefix) ? message.slice(prefix.length) : message;
      slot.textContent = slot.textContent ? `${slot.textContent}; ${text}` : text;
      slot.closest(".field")?.classList.add("invalid");
      return true;
    }
  }
  return false;
}

// Show an API error next to its fields (every issue of a 422 that lists several), else above the form.
export function showError(form, error) {
  const issues = (error.errors || []).filter((i) => i.path && i.message);
  const shown = issues.length
    ? issues.map((i) => showOn(form, i.path, i.message)).every(Boolean)
    : Boolean(error.field) && showOn(form, error.field, error.detail);
  form.querySelector(".field.invalid input, .field.invalid select")?.focus();
  if (!shown) form.prepend(notice("error", t("error.generic", { detail: error.detail }), "form-notice"));
}

export function notice(kind, text, extraClass = "") {
  return h("div", { class: `notice ${kind} ${extraClass}`.trim(), role: "status" }, text);
}

export function table(columns, rows, empty) {
  if (rows.length === 0) return h("p", { class: "empty", text: empty });
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { text: c })))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))));
}

// Drafts: what the user typed in the page's forms, kept across a login (session expiry) in sessionStorage.
const DRAFTS = "pbx.drafts";

export function saveDrafts(path) {
  const forms = {};
  for (const form of document.querySelectorAll("form[data-draft]")) {
    const values = {};
    for (const el of form.elements) {
      if (!el.name || el.type === "password" || el.type === "submit") continue;
      values[el.name + (el.type === "radio" || el.type === "checkbox" ? `=${el.value}` : "")] =
        el.type === "radio" || el.type === "checkbox" ? el.checked : el.value;
    }
    forms[form.dataset.draft] = values;
  }
  sessionStorage.setItem(DRAFTS, JSON.stringify({ path, forms }));
}

export function restoreDrafts(path) {
  const raw = sessionStorage.getItem(DRAFTS);
  if (!raw) return false;
  const saved = JSON.parse(raw);
  if (saved.path !== path) return false;
  sessionStorage.removeItem(DRAFTS);
  let restored = false;
  for (const [name, values] of Object.entries(saved.forms)) {
    const form = document.querySelector(`form[data-draft="${CSS.escape(name)}"]`);
    if (!form) continue;
    for (const el of form.elements) {
      if (!el.name) continue;
      if (el.type === "radio" || el.type === "checkbox") {
        const key = `${el.name}=${el.value}`;
        if (key in values) el.checked = values[key];
      } else if (el.name in values) el.value = values[el.name];
      el.dispatchEvent(new Event("change", { bubbles: true }));
    }
    restored = true;
  }
  return restored;
}

export function formatTime(epoch) {
  return new Date(epoch * 1000).toLocaleString(document.documentElement.lang);
}

// Fill `slot` with an <audio> player of the WAV the API serves at `url` (fetched with the session, shown
// through a blob: URL, which the CSP's media-src allows), or with `missing` when the API answers 404.
export async function loadAudio(api, url, slot, attrs, missing) {
  try {
    const audio = await api("GET", url);
    slot.replaceChildren(h("audio", { controls: true, src: URL.createObjectURL(audio), ...attrs }));
  } catch (error) {
    if (error.status !== 404) throw error;
    slot.replaceChildren(h("span", { class: "hint", text: missing }));
  }
}

export const GREETINGS = ["unavailable", "busy", "temporary"];

// One voicemail greeting at `url` (a line's, for an admin; your own, on My settings): the player when there
// is one, the upload, and (with `removable`) a button that removes it.
export async function greetingForm(api, url, kind, { removable = false } = {}) {
  const player = h("span", { class: "player" });
  const load = async () => {
    await loadAudio(api, url, player, { "data-greeting": kind }, t("lines.no_greeting"));
    if (remove) remove.hidden = !player.querySelector("audio");
  };
  const file = h("input", { type: "file", accept: ".wav,audio/wav", name: "file", id: `f-greeting-${kind}` });
  const remove = removable ? h("button", { type: "button", class: "link", "data-remove-greeting": kind, text: t("delete"),
    onclick: async () => {
      clearErrors(form);
      try {
        await api("DELETE", url);
        await load();
      } catch (error) {
        if (error.status !== 401) showError(form, error);
      }
    } }) : null;
  const form = h("form", { class: "route-form", "data-greeting-form": kind, novalidate: true },
    field("file", t(`lines.greeting.${kind}`), file), h("div", { class: "field" }, h("label", {}, "\u00a0"),
      h("button", { type: "submit", text: t("lines.upload") })), player, remove);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    if (!file.files.length) return;
    try {
      const saved = await api("PUT", url, file.files[0]);
      form.prepend(notice("ok", t("lines.uploaded", { seconds: saved.duration_seconds.toFixed(1) }), "form-notice"));
      await load();
    } catch (error) {
      if (error.status !== 401) showError(form, error);
    }
  });
  await load();
  return form;
}
