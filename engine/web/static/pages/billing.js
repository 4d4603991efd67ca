// Invoices (billing is not part of the engine yet: the list is empty).
import { t } from "/static/i18n.js";
import { h, table } from "/static/ui.js";

export async function render(main, ctx) {
  const invoices = await ctx.api("GET", "/api/invoices");
  main.append(h("h1", { text: t("billing.title") }), h("div", { class: "panel" },
    table(["#", "", ""], invoices.map((i) => [String(i.id), `${(i.amount_cents / 100).toFixed(2)} ${i.currency}`,
      i.paid ? t("yes") : t("no")]), t("billing.empty"))));
}
