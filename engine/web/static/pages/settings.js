// My settings: the logged-in user's own account and web-login password (every user sees this page).
import { t } from "/static/i18n.js";
import { clearErrors, field, h, notice, showError, textInput } from "/static/ui.js";

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
  main.append(h("h1", { text: t("settings.title") }),
    h("div", { class: "panel", id: "account" }, h("h2", { text: t("settings.account") }),
      h("p", {}, h("strong", { text: `${s.first_name} ${s.last_name}` }), h("br"), s.email || ""),
      h("p", {}, `${t("settings.role")}: `, rights)),
    form);
}
