// Call reports: the call detail records, newest first, filtered by direction and result.
import { t } from "/static/i18n.js";
import { formatTime, h, select, table } from "/static/ui.js";

const DIRECTIONS = ["inbound", "outbound", "internal"];
const DISPOSITIONS = ["answered", "busy", "no_answer", "cancelled", "unavailable", "not_found", "forbidden", "failed"];

function duration(call) {
  if (call.answered_at === null) return "—";
  const s = Math.max(0, Math.round(call.ended_at - call.answered_at));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

export async function render(main, ctx) {
  const direction = select("direction", [["", t("reports.all")], ...DIRECTIONS.map((d) => [d, t(`direction.${d}`)])]);
  const disposition = select("disposition", [["", t("reports.all")], ...DISPOSITIONS.map((d) => [d, t(`disposition.${d}`)])]);
  const slot = h("div", { class: "panel", id: "call-list" });
  const load = async () => {
    const query = new URLSearchParams({ limit: "200" });
    if (direction.value) query.set("direction", direction.value);
    if (disposition.value) query.set("disposition", disposition.value);
    const calls = await ctx.api("GET", `/api/reports/calls?${query}`);
    slot.replaceChildren(table(
      [t("reports.when"), t("reports.direction"), t("reports.from"), t("reports.to"), t("reports.result"), t("reports.duration")],
      calls.map((c) => [formatTime(c.started_at), t(`direction.${c.direction}`),
        c.caller_name ? `${c.caller_name} <${c.caller}>` : c.caller, c.did ? `${c.callee} (${c.did})` : c.callee,
        h("span", { class: c.disposition === "answered" ? "tag good" : "tag bad" }, t(`disposition.${c.disposition}`)),
        duration(c)]),
      t("reports.empty")));
  };
  direction.addEventListener("change", load);
  disposition.addEventListener("change", load);
  main.append(h("div", { class: "toolbar" }, h("h1", { text: t("reports.title") }),
    h("div", { class: "route-form" }, direction, disposition)), slot);
  await load();
}
