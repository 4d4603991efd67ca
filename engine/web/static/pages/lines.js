// Lines: each user's line with its external caller ID (one of the company's numbers) and its voicemail
// greetings, uploaded as a WAV file and listened to in the page (the stored audio, fed to an <audio>).
import { t } from "/static/i18n.js";
import { GREETINGS, clearErrors, field, greetingForm, h, notice, select, showError, table } from "/static/ui.js";

function callerIdForm(ctx, line, numbers, onDone) {
  const input = select("external_caller_id", [["", t("lines.no_caller_id")], ...numbers.map((n) => [n, n])],
    line.external_caller_id ?? "");
  const form = h("form", { class: "route-form", id: "caller-id-form", novalidate: true },
    field("external_caller_id", t("lines.caller_id"), input),
    h("div", { class: "field" }, h("label", {}, "\u00a0"), h("button", { type: "submit", id: "caller-id-save", text: t("save") })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      onDone(await ctx.api("PATCH", `/api/lines/${line.id}`, { external_caller_id: input.value || null }));
    } catch (error) {
      if (error.status !== 401) showError(form, error);
    }
  });
  return form;
}

async function lineDetail(ctx, line, numbers, slot, again) {
  const greetings = await Promise.all(GREETINGS.map((kind) =>
    greetingForm(ctx.api, `/api/lines/${line.id}/voicemail/greetings/${kind}`, kind)));
  slot.replaceChildren(h("div", { class: "panel", id: "line-detail", "data-line": line.extension },
    h("h2", { text: t("lines.detail", { extension: line.extension, name: line.name }) }),
    callerIdForm(ctx, line, numbers, (saved) => again(notice("ok", t("lines.saved", { extension: saved.extension })))),
    h("h2", { text: t("lines.greetings") }), h("p", { class: "hint", text: t("lines.greetings.hint") }), greetings));
}

export async function render(main, ctx) {
  const [lines, users, numbers] = await Promise.all([ctx.api("GET", "/api/lines"), ctx.api("GET", "/api/users"),
    ctx.api("GET", "/api/numbers")]);
  const owned = numbers.filter((n) => n.state === "owned").map((n) => n.number);
  const names = Object.fromEntries(users.map((u) => [u.id, `${u.first_name} ${u.last_name}`]));
  const slot = h("div", {});
  const again = async (top) => {
    main.replaceChildren();
    await render(main, ctx);
    if (top) main.prepend(top);
  };
  const rows = lines.map((l) => [h("strong", { text: l.extension }), names[l.user_id] ?? "—",
    l.external_caller_id || "—", l.device_id ? t("users.deskphone") : "—",
    h("button", { class: "link", "data-line": l.extension, text: t("edit"),
      onclick: () => lineDetail(ctx, l, owned, slot, again) })]);
  main.append(h("h1", { text: t("lines.title") }), slot, h("div", { class: "panel", id: "line-list" },
    table([t("users.extension"), t("users.name"), t("lines.caller_id"), t("users.phones"), ""], rows, t("lines.empty"))));
}
