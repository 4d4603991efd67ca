// The web admin's entry point: the session, the API client, the navigation and the page router.
import { LANGUAGES, language, setLanguage, t } from "/static/i18n.js";
import { clearErrors, field, h, notice, restoreDrafts, saveDrafts, showError, textInput } from "/static/ui.js";

const CONFIG = JSON.parse(document.getElementById("pbx-config").textContent);
const PAGES = CONFIG.pages; // page -> permission (engine/web/pages.py), in navigation order
const root = document.getElementById("app");
let session = null;

export class ApiError extends Error {
  constructor(status, body) {
    super(body.detail || `HTTP ${status}`);
    this.status = status;
    this.detail = body.detail || `HTTP ${status}`;
    this.field = body.field || null;
    this.errors = body.errors || null;
  }
}

// One API call with the session cookie (same origin) and, for changes, the session's CSRF token. A body is
// sent as JSON, a Blob (an uploaded file) as it is; an answer that is not JSON (audio) comes back as a Blob.
// A 401 means the session ended: what the page's forms hold is kept and the user goes to the login.
export async function api(method, path, body) {
  const file = body instanceof Blob;
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = file ? body.type || "audio/wav" : "application/json";
  if (method !== "GET" && session) headers["X-CSRF-Token"] = session.csrf_token;
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", body: body === undefined || file ? body : JSON.stringify(body),
  });
  const type = response.headers.get("content-type") || "";
  if (response.ok && type && !type.includes("json")) return response.blob();
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (response.status === 401 && path !== "/api/login") {
    saveDrafts(location.pathname);
    location.assign(`/login?next=${encodeURIComponent(location.pathname)}&expired=1`);
    throw new ApiError(401, data || {});
  }
  if (!response.ok) throw new ApiError(response.status, data || {});
  return data;
}

export function allowed(page) {
  const needed = PAGES[page];
  if (!session || needed === undefined) return false;
  return needed === "authenticated" || session.role === "super_admin" || session.permissions.includes(needed);
}

function firstPage() {
  return Object.keys(PAGES).find(allowed) || "settings";
}

export function navigate(path) {
  history.pushState(null, "", path);
  route();
}

function languageSwitch() {
  const el = h("select", { "aria-label": t("top.language"), id: "language" });
  for (const [code, name] of Object.entries(LANGUAGES)) el.append(h("option", { value: code, text: name }));
  el.value = language();
  el.addEventListener("change", () => {
    setLanguage(el.value);
    document.documentElement.lang = el.value;
    route();
  });
  return h("span", { class: "lang" }, el);
}

function frame(page) {
  const nav = h("nav", { class: "side", "aria-label": "main" }, h("div", { class: "brand", text: t("app.name") }));
  for (const name of Object.keys(PAGES)) {
    if (!allowed(name)) continue;
    const link = h("a", { href: `/${name}`, "data-page": name, class: name === page ? "active" : null },
      t(`nav.${name}`));
    link.addEventListener("click", (event) => {
      event.preventDefault();
      navigate(`/${name}`);
    });
    nav.append(link);
  }
  const logout = h("button", { class: "secondary", id: "logout", text: t("top.logout") });
  logout.addEventListener("click", async () => {
    await api("POST", "/api/logout");
    session = null;
    location.assign("/login");
  });
  const name = `${session.first_name} ${session.last_name}`.trim() || session.email;
  const main = h("main", { id: "main" });
  root.replaceChildren(h("div", { class: "layout" }, nav,
    h("div", {}, h("header", { class: "top" }, languageSwitch(), h("span", { class: "who", text: name }), logout), main)));
  return main;
}

async function route() {
  document.documentElement.lang = language();
  const page = location.pathname.replace(/^\/+|\/+$/g, "");
  if (page === "login") return renderLogin();
  if (page === "register") return renderRegister();
  if (!session) {
    try {
      session = await api("GET", "/api/session");
    } catch {
      return;
    }
  }
  if (page === "") return navigate(`/${firstPage()}`);
  const main = frame(page);
  if (!allowed(page) || CONFIG.status === "forbidden") {
    CONFIG.status = "ok"; // the server's verdict was for the page it served; later pages are checked here
    document.title = `${t("forbidden.title")} · ${t("app.name")}`;
    main.append(h("h1", { text: t("forbidden.title") }), notice("error", t("forbidden.text")));
    return;
  }
  document.title = `${t(`nav.${page}`)} · ${t("app.name")}`;
  const module = await import(`/static/pages/${page}.js`);
  await module.render(main, { api, session, navigate });
  if (restoreDrafts(location.pathname)) main.prepend(notice("info", t("restored")));
}

function renderLogin() {
  const params = new URLSearchParams(location.search);
  const email = h("input", { type: "email", id: "login-email", name: "email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", id: "login-password", name: "password", autocomplete: "current-password", required: true });
  const message = h("div", { id: "login-message" });
  if (params.get("expired")) message.append(notice("info", t("login.expired")));
  if (params.get("registered")) message.append(notice("ok", t("register.done")));
  if (params.get("email")) email.value = params.get("email");
  const form = h("form", { class: "panel", id: "login-form" },
    h("h1", { text: t("app.name") }),
    message,
    h("div", { class: "field" }, h("label", { for: "login-email", text: t("login.email") }), email),
    h("div", { class: "field" }, h("label", { for: "login-password", text: t("login.password") }), password),
    h("button", { type: "submit", id: "login-submit", text: t("login.submit") }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      session = await api("POST", "/api/login", { email: email.value, password: password.value });
    } catch (error) {
      const key = error.status === 429 ? "login.throttled" : "login.failed";
      message.replaceChildren(notice("error", t(key)));
      return;
    }
    const next = params.get("next");
    location.assign(next && next.startsWith("/") && !next.startsWith("//") ? next : "/");
  });
  document.title = `${t("login.title")} · ${t("app.name")}`;
  root.replaceChildren(h("div", { class: "login" }, form, h("p", { class: "hint" }, languageSwitch())));
  (email.value ? password : email).focus();
}

// The invitation's link: the invited user confirms their e-mail address and sets the web-login password.
function renderRegister() {
  const token = new URLSearchParams(location.search).get("token") || "";
  const form = h("form", { class: "panel", id: "register-form", novalidate: true },
    h("h1", { text: t("register.title") }),
    h("p", { class: "hint", text: t("register.intro") }),
    token ? null : notice("error", t("register.no_token")),
    h("span", { class: "field-error", "data-error-for": "token" }),
    field("email", t("register.email"), textInput("email", "", "email", { autocomplete: "username" })),
    field("password", t("register.password"), textInput("password", "", "password", { autocomplete: "new-password" })),
    h("button", { type: "submit", id: "register-submit", text: t("register.submit") }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const email = form.elements.email.value.trim();
    try {
      await api("POST", "/api/login/register", { token, email, password: form.elements.password.value });
    } catch (error) {
      showError(form, error);
      return;
    }
    location.assign(`/login?registered=1&email=${encodeURIComponent(email)}`);
  });
  document.title = `${t("register.title")} · ${t("app.name")}`;
  root.replaceChildren(h("div", { class: "login" }, form, h("p", { class: "hint" }, languageSwitch())));
  form.elements.email.focus();
}

window.addEventListener("popstate", route);
route();
