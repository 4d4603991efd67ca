// Fax lines (issue 14): the fax line objects on the shared form: the station ID a sender's machine shows,
// the page header, and who gets each received fax by e-mail; each line links to its received faxes.
import { renderObjects } from "/static/objects.js";
import { t } from "/static/i18n.js";
import { h } from "/static/ui.js";

export const FAX_LINES = {
  kind: "fax_lines",
  id: "fax-line",
  strings: "faxlines",
  fields: [
    { key: "name", type: "text" },
    { key: "extension", type: "text", hint: true },
    { key: "station_id", type: "text", hint: true },
    { key: "header", type: "text", hint: true },
    { key: "email", type: "emails", hint: true },
  ],
  headers: ["extension", "station_id", "email"],
  columns: (spec) => [spec.extension || "—", spec.station_id || "—", (spec.email || []).join(", ") || "—"],
  actions: (line, ctx) => [h("button", { class: "link", "data-faxes": line.name, text: t("faxlines.received"),
    onclick: () => ctx.navigate(`/faxes?line=${encodeURIComponent(line.name)}`) })],
};

export const render = (main, ctx) => renderObjects(FAX_LINES, main, ctx);
