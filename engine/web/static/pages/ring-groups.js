// Ring groups: who rings together, and how.
import { t } from "/static/i18n.js";
import { h, table } from "/static/ui.js";

export async function render(main, ctx) {
  const groups = await ctx.api("GET", "/api/routing/ring_groups");
  const members = (spec) => (spec.members || []).map((m) => (typeof m === "object" ? m.extension ?? JSON.stringify(m) : m)).join(", ");
  main.append(h("h1", { text: t("ringgroups.title") }), h("div", { class: "panel", id: "ring-group-list" },
    table([t("ringgroups.name"), t("ringgroups.members"), t("ringgroups.strategy")],
      groups.map((g) => [h("strong", { text: g.name }), members(g.spec) || "—", g.spec.strategy || "—"]),
      t("ringgroups.empty"))));
}
