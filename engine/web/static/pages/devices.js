// Desk phones: the list (MAC, model, the lines on it), adding one by MAC, putting a line on it or taking
// one off, deleting it, and where the phone fetches its configuration (this server's /prov/ with the
// device's provisioning credentials; the file name by vendor, engine/provisioning/templates.py).
import { t } from "/static/i18n.js";
import { clearErrors, field, formatTime, h, notice, select, showError, table, textInput } from "/static/ui.js";

const FILES = { yealink: (mac) => `${mac}.cfg`, polycom: (mac) => `${mac}-extension.cfg` };

export const macText = (mac) => mac.toUpperCase().match(/../g).join(":");

function provisioningUrl() {
  return `${location.origin}/prov/`;
}

function secrets(device, password) {
  return h("div", { class: "notice ok", id: "device-secret", role: "status" },
    h("div", { text: t("devices.created", { mac: macText(device.mac) }) }),
    h("div", {}, `${t("devices.url")}: `, h("span", { class: "secret", "data-url": "", text: provisioningUrl() })),
    h("div", {}, `${t("devices.username")}: `, h("span", { class: "secret", text: device.provisioning_username })),
    h("div", {}, `${t("devices.password")}: `, h("span", { class: "secret", "data-password": "", text: password })));
}

function addForm(ctx, onDone) {
  const form = h("form", { class: "panel", id: "device-form", "data-draft": "device", novalidate: true },
    h("h2", { text: t("devices.add") }),
    h("div", { class: "grid" },
      field("mac", t("users.mac"), textInput("mac"), { hint: t("users.mac.hint") }),
      field("model", t("users.model"), textInput("model"), { hint: t("users.model.hint") })),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "device-save", text: t("save") }),
      h("button", { type: "button", class: "secondary", text: t("cancel"), onclick: () => onDone(null) })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const body = { mac: form.elements.mac.value.trim() };
    const model = form.elements.model.value.trim();
    if (model) body.model = model;
    try {
      onDone(await ctx.api("POST", "/api/devices", body));
    } catch (error) {
      if (error.status !== 401) showError(form, error);
    }
  });
  return form;
}

// A line onto the phone: a line already on a desk phone keeps its stored SIP password (moved by PATCH);
// any other gets a new one, which only the phone's file carries (the API refuses a move without it).
async function assign(ctx, device, line) {
  if (line.device_id !== null) await ctx.api("PATCH", `/api/lines/${line.id}`, { device_id: device.id });
  else await ctx.api("POST", `/api/lines/${line.id}/rotate-password`, { device_id: device.id });
}

function detail(ctx, device, lines, names, again) {
  const mine = lines.filter((l) => l.device_id === device.id);
  const others = lines.filter((l) => l.device_id !== device.id);
  const label = (l) => `${l.extension} ${names[l.user_id] ?? ""}`.trim();
  const chooser = select("line", [["", t("devices.choose_line")], ...others.map((l) => [String(l.id), label(l)])], "");
  const form = h("form", { class: "route-form", id: "assign-form", novalidate: true },
    field("line", t("devices.assign"), chooser, { hint: t("devices.assign.hint") }),
    h("div", { class: "field" }, h("label", {}, "\u00a0"), h("button", { type: "submit", id: "assign-save", text: t("devices.assign.button") })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const line = others.find((l) => String(l.id) === chooser.value);
    if (!line) return showError(form, { field: "line", detail: t("devices.choose_line") });
    try {
      await assign(ctx, device, line);
      await again(notice("ok", t("devices.assigned", { extension: line.extension, mac: macText(device.mac) })), device.id);
    } catch (error) {
      if (error.status !== 401) showError(form, error);
    }
  });
  const onPhone = mine.map((l) => [h("strong", { text: l.extension }), names[l.user_id] ?? "—",
    h("button", { class: "link", "data-unassign": l.extension, text: t("devices.unassign"), onclick: async () => {
      try {
        await ctx.api("PATCH", `/api/lines/${l.id}`, { device_id: null });
        await again(notice("ok", t("devices.unassigned", { extension: l.extension, mac: macText(device.mac) })), device.id);
      } catch (error) {
        if (error.status !== 401) form.prepend(notice("error", t("error.generic", { detail: error.detail }), "form-notice"));
      }
    } })]);
  const files = device.vendor ? [FILES[device.vendor](device.mac)] : Object.values(FILES).map((f) => f(device.mac));
  const rotate = h("button", { class: "secondary", id: "device-rotate", text: t("devices.rotate"), onclick: async () => {
    try {
      const secret = await ctx.api("POST", `/api/devices/${device.id}/rotate-password`);
      rotate.replaceWith(h("div", { class: "notice ok", id: "device-secret" }, `${t("devices.password")}: `,
        h("span", { class: "secret", "data-password": "", text: secret.password })));
    } catch (error) {
      if (error.status !== 401) form.prepend(notice("error", t("error.generic", { detail: error.detail }), "form-notice"));
    }
  } });
  return h("div", { class: "panel", id: "device-detail", "data-device": device.mac },
    h("h2", { text: t("devices.detail", { mac: macText(device.mac) }) }),
    h("dl", { class: "facts" },
      h("dt", { text: t("devices.url") }), h("dd", {}, h("span", { class: "secret", "data-url": "", text: provisioningUrl() })),
      h("dt", { text: t("devices.username") }), h("dd", {}, h("span", { class: "secret", text: device.provisioning_username })),
      h("dt", { text: t("devices.file") }), h("dd", { "data-files": "" }, files.join(", ")),
      h("dt", { text: t("devices.last_provisioned") }),
      h("dd", { text: device.last_provisioned_at ? formatTime(device.last_provisioned_at) : t("devices.never") })),
    h("p", { class: "hint", text: t("devices.url.hint") }), h("p", {}, rotate),
    h("h2", { text: t("devices.lines") }),
    table([t("users.extension"), t("users.name"), ""], onPhone, t("devices.no_lines")), form);
}

export async function render(main, ctx, open = null) {
  const [devices, lines, users] = await Promise.all([ctx.api("GET", "/api/devices"), ctx.api("GET", "/api/lines"),
    ctx.api("GET", "/api/users")]);
  const names = Object.fromEntries(users.map((u) => [u.id, `${u.first_name} ${u.last_name}`]));
  const byId = Object.fromEntries(lines.map((l) => [l.id, l]));
  const slot = h("div", {});
  const again = async (top, reopen = null) => {
    main.replaceChildren();
    await render(main, ctx, reopen);
    if (top) main.prepend(top);
  };
  const show = (device) => {
    add.hidden = false;
    slot.replaceChildren(detail(ctx, device, lines, names, again));
  };
  const add = h("button", { id: "device-add", text: t("devices.add"), onclick: () => {
    add.hidden = true;
    slot.replaceChildren(addForm(ctx, (made) => (made ? again(secrets(made.device, made.provisioning_password), made.device.id)
      : again())));
    slot.querySelector("input").focus();
  } });
  const rows = devices.map((d) => [
    h("strong", { class: "mac", text: macText(d.mac) }),
    d.model || "—",
    d.line_ids.map((id) => byId[id]).filter(Boolean).map((l) => `${l.extension} ${names[l.user_id] ?? ""}`.trim()).join(", ") || "—",
    d.last_provisioned_at ? formatTime(d.last_provisioned_at) : t("devices.never"),
    h("span", {}, h("button", { class: "link", "data-open": d.mac, text: t("edit"), onclick: () => show(d) }), " · ",
      h("button", { class: "link", "data-delete": d.mac, text: t("delete"), onclick: async () => {
        if (!confirm(t("devices.confirm_delete", { mac: macText(d.mac) }))) return;
        try {
          await ctx.api("DELETE", `/api/devices/${d.id}`);
          await again(notice("ok", t("devices.deleted", { mac: macText(d.mac) })));
        } catch (error) {
          if (error.status !== 401) main.prepend(notice("error", t("error.generic", { detail: error.detail })));
        }
      } }))]);
  main.append(h("div", { class: "toolbar" }, h("h1", { text: t("devices.title") }), add), slot,
    h("div", { class: "panel", id: "device-list" },
      table([t("devices.mac"), t("devices.model"), t("devices.lines"), t("devices.last_provisioned"), ""], rows,
        t("devices.empty"))));
  const chosen = devices.find((d) => d.id === open);
  if (chosen) slot.append(detail(ctx, chosen, lines, names, again));
  if (sessionStorage.getItem("pbx.drafts")?.includes('"device"')) add.click();
}
