// Locations: the emergency addresses of the company's sites (US and Canada), listed and added.
import { t } from "/static/i18n.js";
import { clearErrors, field, h, notice, select, showError, table, textInput } from "/static/ui.js";

const FIELDS = ["name", "street", "city", "region", "postal_code"];

export async function render(main, ctx) {
  const locations = await ctx.api("GET", "/api/locations");
  const form = h("form", { class: "panel", id: "location-form", "data-draft": "location", novalidate: true },
    h("h2", { text: t("locations.add") }), h("p", { class: "hint", text: t("locations.hint") }),
    h("div", { class: "grid" },
      field("name", t("locations.name"), textInput("name")),
      field("country", t("locations.country"), select("country", [["US", t("country.US")], ["CA", t("country.CA")]])),
      field("street", t("locations.street"), textInput("street"), { wide: true }),
      field("city", t("locations.city"), textInput("city")),
      field("region", t("locations.region"), textInput("region")),
      field("postal_code", t("locations.postal_code"), textInput("postal_code"))),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "location-save", text: t("add") })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const body = { country: form.elements.country.value };
    for (const name of FIELDS) body[name] = form.elements[name].value.trim();
    try {
      const made = await ctx.api("POST", "/api/locations", body);
      main.replaceChildren();
      await render(main, ctx);
      main.prepend(notice("ok", t("locations.created", { name: made.name })));
    } catch (error) {
      if (error.status !== 401) showError(form, error);
    }
  });
  const rows = locations.map((l) => [h("strong", { text: l.name }),
    `${l.street}, ${l.city}, ${l.region} ${l.postal_code}, ${l.country}`,
    h("span", { class: l.verified ? "tag good" : "tag" }, l.verified ? t("yes") : t("no"))]);
  main.append(h("h1", { text: t("locations.title") }),
    h("div", { class: "panel", id: "location-list" },
      table([t("locations.name"), t("locations.address"), t("locations.verified")], rows, t("locations.empty"))),
    form);
}
