// My settings: the logged-in user's own account and web-login password, and the voicemail of their lines:
// messages listed, played in the page, marked heard and deleted; greetings uploaded, played and removed;
// the temporary greeting switched; the mailbox PIN (every user sees this page: engine/api/voicemail.py).
import { t } from "/static/i18n.js";
import { GREETINGS, clearErrors, field, formatTime, greetingForm, h, loadAudio, notice, showError, table, textInput } from "/static/ui.js";

function pinForm(ctx, base) {
  const form = h("form", { class: "route-form", "data-pin-form": "", novalidate: true },
    field("pin", t("voicemail.pin"), textInput("pin", "", "password", { autocomplete: "new-password", inputmode: "numeric" }),
      { hint: t("voicemail.pin.hint") }),
    h("div", { class: "field" }, h("label", {}, "\u00a0"), h("button", { type: "submit", text: t("save") })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      await ctx.api("PUT", `${base}/pin`, { pin: form.elements.pin.value });
      form.reset();
      form.prepend(notice("ok", t("voicemail.pin.saved"), "form-notice"));
    } catch (error) {
      if (error.status !== 401) showError(form, error);
    }
  });
  return form;
}

async function mailbox(ctx, box, again) {
  const base = `/api/me/voicemail/${encodeURIComponent(box.extension)}`;
  const act = async (method, path, done, body) => {
    try {
      await ctx.api(method, path, body);
      await again(notice("ok", done));
    } catch (error) {
      if (error.status !== 401) await again(notice("error", t("error.generic", { detail: error.detail })));
    }
  };
  const rows = box.messages.map((m) => {
    const player = h("span", { class: "player" });
    const play = h("button", { class: "link", "data-play": m.id, text: t("voicemail.play"), onclick: async () => {
      await loadAudio(ctx.api, `${base}/messages/${m.id}`, player, { "data-message": m.id, autoplay: true }, t("clips.missing"));
    } });
    player.append(play);
    const from = m.caller_name ? `${m.caller_name} (${m.caller || t("voicemail.unknown")})` : m.caller || t("voicemail.unknown");
    return [h("span", { class: m.folder === "new" ? "tag good" : "tag" }, t(`voicemail.folder.${m.folder}`)),
      h("strong", { text: from }), formatTime(m.received_at), `${m.duration_seconds.toFixed(1)} s`, player,
      h("span", {}, m.folder === "new" ? [h("button", { class: "link", "data-heard": m.id, text: t("voicemail.heard"),
        onclick: () => act("POST", `${base}/messages/${m.id}/heard`, t("voicemail.marked")) }), " · "] : null,
      h("button", { class: "link", "data-delete": m.id, text: t("delete"), onclick: () => {
        if (confirm(t("voicemail.confirm_delete", { from }))) act("DELETE", `${base}/messages/${m.id}`, t("voicemail.deleted"));
      } }))];
  });
  const temporary = h("input", { type: "checkbox", id: `f-temporary-${box.extension}`, checked: box.temporary_active,
    onchange: () => act("PUT", `${base}/temporary`, t(temporary.checked ? "voicemail.temporary.on" : "voicemail.temporary.off"),
      { active: temporary.checked }) });
  const greetings = await Promise.all(GREETINGS.map((kind) => greetingForm(ctx.api, `${base}/greetings/${kind}`, kind, { removable: true })));
  return h("div", { class: "panel", id: `voicemail-${box.extension}`, "data-mailbox": box.extension },
    h("h2", { text: t("voicemail.title", { extension: box.extension, name: box.line_name }) }),
    h("p", { class: "hint", text: t("voicemail.counts", { new: box.new, saved: box.saved }) }),
    table(["", t("voicemail.from"), t("voicemail.received"), t("voicemail.length"), t("voicemail.listen"), ""], rows,
      t("voicemail.empty")),
    h("h2", { text: t("lines.greetings") }), greetings,
    h("label", { class: "choices" }, temporary, t("voicemail.temporary")),
    pinForm(ctx, base));
}

export async function render(main, ctx) {
  const s = ctx.session;
  const rights = s.role === "custom" ? s.permissions.map((p) => t(`perm.${p}`)).join(", ") : t(`role.${s.role}`);
  const form = h("form", { class: "panel", id: "password-form", novalidate: true },
    h("h2", { text: t("settings.password") }),
    h("div", { class: "grid" },
      field("current_password", t("settings.current"), textInput("current_password", "", "password", { autocomplete: "current-password" })),
      field("new_password", t("settings.new"), textInput("new_password", "", "password", { autocomplete: "new-password" }))),
    h("div", { class: "actions" }, h("button", { type: "submit", text: t("save") })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      await ctx.api("POST", "/api/me/password", {
        current_password: form.elements.current_password.value, new_password: form.elements.new_password.value });
      form.reset();
      form.prepend(notice("ok", t("settings.changed"), "form-notice"));
    } catch (error) {
      if (error.status !== 401) showError(form, error);
    }
  });
  const boxes = await ctx.api("GET", "/api/me/voicemail");
  const again = async (top) => {
    main.replaceChildren();
    await render(main, ctx);
    if (top) main.querySelector(`[data-mailbox]`)?.prepend(top);
  };
  const mailboxes = await Promise.all(boxes.map((box) => mailbox(ctx, box, again)));
  main.append(h("h1", { text: t("settings.title") }),
    h("div", { class: "panel", id: "account" }, h("h2", { text: t("settings.account") }),
      h("p", {}, h("strong", { text: `${s.first_name} ${s.last_name}` }), h("br"), s.email || ""),
      h("p", {}, `${t("settings.role")}: `, rights)),
    form, ...mailboxes);
}
