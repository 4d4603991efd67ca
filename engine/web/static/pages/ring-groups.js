// Ring groups: who rings together and how (the guide's "Rufgruppen"): list, add, edit, delete.
import { renderObjects } from "/static/objects.js";
import { t } from "/static/i18n.js";

const members = (spec) => (spec.members || []).map((m) => m.line ?? m.number).join(", ") || "—";

export const RING_GROUPS = {
  kind: "ring_groups",
  id: "ring-group",
  strings: "ringgroups",
  note: true, // what happens when nobody answers
  fields: [
    { key: "name", type: "text" },
    { key: "extension", type: "text", hint: true },
    { key: "members", type: "lines" },
    { key: "strategy", type: "choice", options: ["ring_all", "sequential", "round_robin"], strings: "ringgroups.strategy" },
    { key: "member_ring_seconds", type: "seconds", placeholder: "20", hint: true },
    { key: "ring_seconds", type: "seconds", placeholder: "60", hint: true },
  ],
  headers: ["extension", "members", "strategy", "ring_seconds"],
  columns: (spec) => [spec.extension || "—", members(spec), t(`ringgroups.strategy.${spec.strategy || "ring_all"}`),
    `${spec.ring_seconds ?? 60} s`],
};

export const render = (main, ctx) => renderObjects(RING_GROUPS, main, ctx);
