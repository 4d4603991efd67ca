// Schedules: the weekly open/closed hours (a grid of days), holidays and an override, as the dial plans'
// schedule nodes read them.
import { renderObjects } from "/static/objects.js";
import { t } from "/static/i18n.js";

export const SCHEDULES = {
  kind: "schedules",
  id: "schedule",
  strings: "schedules",
  fields: [
    { key: "name", type: "text" },
    { key: "timezone", type: "text", hint: true },
    { key: "open", type: "week" },
    { key: "holidays", type: "holidays", hint: true },
    { key: "override", type: "choice", options: ["none", "open", "closed"], strings: "schedules.override" },
  ],
  headers: ["days", "holidays", "override"],
  columns: (spec) => [
    (spec.open || []).map((s) => `${(s.days || []).map((d) => t(`day.${d}`)).join(", ")} ${s.from}-${s.to}`).join("; ") || "—",
    String((spec.holidays || []).length), t(`schedules.override.${spec.override || "none"}`)],
};

export const render = (main, ctx) => renderObjects(SCHEDULES, main, ctx);
