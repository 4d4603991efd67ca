// Users: the list, and adding one with a line (next free extension), a softphone or a desk phone by MAC,
// and admin permissions (only a super admin may grant them; the API refuses everyone else).
import { t } from "/static/i18n.js";
import { clearErrors, field, h, notice, showError, table, textInput } from "/static/ui.js";

const PERMISSIONS = ["configure_pbx", "view_invoices", "pay_invoices", "view_reports"];

function phones(user) {
  const tags = [];
  if (user.softphone) tags.push(h("span", { class: "tag" }, t("users.softphone")));
  if (user.desk_phone) tags.push(h("span", { class: "tag" }, t("users.deskphone")));
  return tags.length ? tags : "—";
}

function rights(user) {
  if (user.admin.role === "custom") return user.admin.permissions.map((p) => t(`perm.${p}`)).join(", ");
  return t(`role.${user.admin.role}`);
}

function radios(name, options, checked) {
  return h("div", { class: "choices", role: "radiogroup" }, options.map(([value, label]) =>
    h("label", {}, h("input", { type: "radio", name, value, checked: value === checked }), label)));
}

function addForm(ctx, extension, onDone) {
  const deskFields = h("div", { class: "grid desk-fields" },
    field("desk_phone.mac", t("users.mac"), textInput("desk_phone.mac"), { hint: t("users.mac.hint") }),
    field("desk_phone.model", t("users.model"), textInput("desk_phone.model"), { hint: t("users.model.hint") }));
  const permissions = h("div", { class: "choices permissions" }, PERMISSIONS.map((p) =>
    h("label", {}, h("input", { type: "checkbox", name: "permission", value: p }), t(`perm.${p}`))));
  const superAdmin = ctx.session.role === "super_admin";
  const form = h("form", { class: "panel", id: "user-form", "data-draft": "user", novalidate: true },
    h("h2", { text: t("users.add") }),
    h("div", { class: "grid" },
      field("first_name", t("users.first_name"), textInput("first_name")),
      field("last_name", t("users.last_name"), textInput("last_name")),
      field("email", t("users.email"), textInput("email", "", "email")),
      field("extension", t("users.extension"), textInput("extension", extension), { hint: t("users.extension.hint") }),
      h("div", { class: "field wide", "data-field": "phone" }, h("label", { text: t("users.phone") }),
        radios("phone", [["none", t("users.phone.none")], ["softphone", t("users.phone.softphone")],
          ["desk", t("users.phone.desk")]], "none"))),
    deskFields,
    superAdmin ? h("div", { class: "grid" },
      h("div", { class: "field wide", "data-field": "admin" }, h("label", { text: t("users.admin") }),
        radios("role", [["none", t("role.none")], ["custom", t("role.custom")], ["super_admin", t("role.super_admin")]], "none"),
        permissions, h("span", { class: "field-error", "data-error-for": "admin" }))) : null,
    h("div", { class: "grid" }, h("label", { class: "field wide" },
      h("span", { class: "choices" }, h("label", {}, h("input", { type: "checkbox", name: "allow_web_login", value: "yes" }),
        t("users.web_login"))))),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "user-save", text: t("save") })));
  const sync = () => {
    deskFields.hidden = form.elements.phone.value !== "desk";
    if (superAdmin) permissions.hidden = form.elements.role.value !== "custom";
  };
  form.addEventListener("change", sync);
  sync();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const v = (name) => form.elements[name].value.trim();
    const body = { first_name: v("first_name"), last_name: v("last_name") };
    if (v("email")) body.email = v("email");
    if (v("extension")) body.extension = v("extension");
    const phone = form.elements.phone.value;
    if (phone === "softphone") body.softphone = true;
    if (phone === "desk") body.desk_phone = { mac: v("desk_phone.mac"), ...(v("desk_phone.model") ? { model: v("desk_phone.model") } : {}) };
    if (superAdmin && form.elements.role.value !== "none") {
      const role = form.elements.role.value;
      const chosen = [...form.querySelectorAll("input[name=permission]:checked")].map((el) => el.value);
      body.admin = { role, permissions: role === "custom" ? chosen : [] };
    }
    if (form.elements.allow_web_login.checked) body.allow_web_login = true;
    try {
      const made = await ctx.api("POST", "/api/users", body);
      onDone(made);
    } catch (error) {
      if (error.status !== 401) showError(form, error);
    }
  });
  return form;
}

function created(made) {
  const user = made.user;
  const extension = user.lines[0]?.extension ?? "";
  const box = notice("ok", t("users.created", { name: `${user.first_name} ${user.last_name}`, extension }));
  box.id = "user-created";
  if (made.sip_password) box.append(h("div", {}, `${t("users.sip_password")}: `, h("span", { class: "secret", text: made.sip_password })));
  if (made.provisioning_password) {
    box.append(h("div", {}, `${t("users.prov_password")}: `, h("span", { class: "secret", text: made.provisioning_password })));
  }
  return box;
}

// The guide's bulk edit: one row per selected user with the dialable username and password (hot desking
// and voicemail from any phone), web login, groups and hot desking; saved in one request, all or nothing
// (the API's 422 lists every bad row and field, each shown in its row).
function bulkForm(ctx, users, onDone) {
  const rows = users.map((u, i) => h("tr", { "data-user": u.id },
    h("td", {}, h("strong", { text: `${u.first_name} ${u.last_name}` })),
    h("td", {}, field(`${i}.dial_username`, t("users.dial_username"), textInput(`${i}.dial_username`, u.dial_username ?? ""))),
    h("td", {}, field(`${i}.dial_password`, t("users.dial_password"),
      textInput(`${i}.dial_password`, "", "password", { autocomplete: "new-password", placeholder: t("users.unchanged") }))),
    h("td", {}, field(`${i}.groups`, t("users.groups"), textInput(`${i}.groups`, u.groups.join(", ")), { hint: t("users.groups.hint") })),
    h("td", {}, field(`${i}.allow_web_login`, t("users.web_login.short"),
      h("input", { type: "checkbox", name: `${i}.allow_web_login`, checked: u.allow_web_login }))),
    h("td", {}, field(`${i}.hot_desking`, t("users.hot_desking"), h("input", { type: "checkbox", name: `${i}.hot_desking`, checked: u.hot_desking })))));
  const form = h("form", { class: "panel", id: "bulk-form", novalidate: true },
    h("h2", { text: t("users.bulk.title", { count: users.length }) }),
    h("table", { class: "bulk" }, h("tbody", {}, rows)),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "bulk-save", text: t("save") }),
      h("button", { type: "button", class: "secondary", text: t("cancel"), onclick: () => onDone(null) })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const el = (i, name) => form.elements[`${i}.${name}`];
    const body = { rows: users.map((u, i) => {
      const row = { id: u.id, allow_web_login: el(i, "allow_web_login").checked, hot_desking: el(i, "hot_desking").checked };
      const username = el(i, "dial_username").value.trim();
      if (username !== (u.dial_username ?? "")) row.dial_username = username || null;
      if (el(i, "dial_password").value) row.dial_password = el(i, "dial_password").value;
      const groups = el(i, "groups").value.split(",").map((g) => g.trim()).filter(Boolean);
      if (groups.join(",") !== u.groups.join(",")) row.groups = groups;
      return row;
    }) };
    try {
      onDone(await ctx.api("POST", "/api/users/bulk", body));
    } catch (error) {
      if (error.status === 401) return;
      const issues = (error.errors || []).map((e) => ({ path: `${e.row}.${e.field}`, message: e.message }));
      showError(form, { ...error, errors: issues });
    }
  });
  return form;
}

// A web-login invitation: the link the user opens to set their password (/register).
async function invite(ctx, user, slot) {
  try {
    const made = await ctx.api("POST", `/api/users/${user.id}/login-invitation`);
    const link = `${location.origin}/register?token=${encodeURIComponent(made.token)}`;
    const box = notice("ok", t("users.invited", { name: `${user.first_name} ${user.last_name}` }));
    box.id = "invitation";
    box.append(h("div", {}, h("a", { href: link, class: "secret", id: "invitation-link", text: link })));
    slot.replaceChildren(box);
  } catch (error) {
    if (error.status !== 401) slot.replaceChildren(notice("error", t("error.generic", { detail: error.detail })));
  }
}

export async function render(main, ctx) {
  const [users, next] = await Promise.all([ctx.api("GET", "/api/users"), ctx.api("GET", "/api/users/next-extension")]);
  const slot = h("div", {});
  const again = async (top) => {
    main.replaceChildren();
    await render(main, ctx);
    if (top) main.prepend(top);
  };
  const bulk = h("button", { id: "bulk-edit", class: "secondary", disabled: true, text: t("users.bulk") });
  const picks = users.map((u) => h("input", { type: "checkbox", "data-select": u.id, "aria-label": `${u.first_name} ${u.last_name}`,
    onchange: () => { bulk.disabled = !picks.some((p) => p.checked); } }));
  bulk.addEventListener("click", () => {
    const chosen = users.filter((_, i) => picks[i].checked);
    slot.replaceChildren(bulkForm(ctx, chosen, (saved) => again(saved
      ? notice("ok", t("users.bulk.saved", { count: saved.length })) : null)));
  });
  const list = h("div", { class: "panel", id: "user-list" }, table(
    ["", t("users.name"), t("users.email"), t("users.extension"), t("users.phones"), t("users.admin"), t("users.web_login.short")],
    users.map((u, i) => [picks[i], `${u.first_name} ${u.last_name}`, u.email || "—",
      u.lines.map((l) => l.extension).join(", ") || "—", phones(u), rights(u),
      u.registered ? h("span", { class: "tag good" }, t("users.registered"))
        : u.allow_web_login ? h("button", { class: "link", "data-invite": u.id, text: t("users.invite"),
          onclick: () => invite(ctx, u, slot) }) : "—"]),
    t("users.empty")));
  const open = h("button", { id: "user-add", text: t("users.add") });
  open.addEventListener("click", () => {
    open.hidden = true;
    slot.replaceChildren(addForm(ctx, next.extension, (made) => again(created(made))));
    slot.querySelector("input").focus();
  });
  main.append(h("div", { class: "toolbar" }, h("h1", { text: t("users.title") }), h("div", { class: "actions" }, bulk, open)),
    slot, list);
  if (sessionStorage.getItem("pbx.drafts")?.includes('"user"')) open.click();
}
