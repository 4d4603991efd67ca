// Received faxes (issue 14): newest first, of all fax lines or one (?line=NAME); each one viewed in the page
// (its PDF, fetched with the session and shown through a blob: URL), downloaded, or deleted. The API lets
// view_reports read them (engine/api/faxes.py); the page sits with the fax lines (configure_pbx), so that
// a reports-only user's web admin stays the call reports alone.
import { t } from "/static/i18n.js";
import { formatTime, h, notice, select, table } from "/static/ui.js";

function result(fax) {
  if (fax.ok) return h("span", { class: "tag good" }, t("faxes.ok"));
  return h("span", { class: "tag bad", title: `T.30 ${fax.code}` }, t("faxes.failed", { text: fax.text }));
}

async function view(ctx, fax, slot) {
  const pdf = await ctx.api("GET", `/api/faxes/${fax.id}/pdf`);
  const url = URL.createObjectURL(pdf);
  const from = fax.caller_name ? `${fax.caller_name} (${fax.caller})` : fax.caller;
  slot.replaceChildren(h("div", { class: "panel", id: "fax-view", "data-fax": fax.id },
    h("div", { class: "toolbar" }, h("h2", { text: t("faxes.view.title", { from, time: formatTime(fax.received_at) }) }),
      h("a", { class: "button", href: url, download: `fax-${fax.id}.pdf`, id: "fax-download", text: t("faxes.download") })),
    h("iframe", { src: url, class: "fax-pdf", title: t("faxes.view.frame") })));
}

export async function render(main, ctx) {
  const line = new URLSearchParams(location.search).get("line") || "";
  const [all, faxes] = await Promise.all([ctx.api("GET", "/api/faxes"),
    line ? ctx.api("GET", `/api/faxes?fax_line=${encodeURIComponent(line)}`) : null]);
  const shown = faxes ?? all;
  const slot = h("div", {});
  const again = async (top) => {
    main.replaceChildren();
    await render(main, ctx);
    if (top) main.prepend(top);
  };
  const lines = [...new Set([...all.map((f) => f.fax_line), ...(line ? [line] : [])])].sort();
  const filter = select("line", [["", t("faxes.all_lines")], ...lines.map((l) => [l, l])], line);
  filter.id = "fax-line-filter";
  filter.setAttribute("aria-label", t("faxes.fax_line"));
  filter.addEventListener("change", () => ctx.navigate(filter.value ? `/faxes?line=${encodeURIComponent(filter.value)}` : "/faxes"));
  const rows = shown.map((f) => [
    formatTime(f.received_at), f.fax_line,
    h("span", {}, f.caller_name ? `${f.caller_name} ` : "", f.caller || "—",
      f.remote_id ? h("span", { class: "hint" }, ` · ${f.remote_id}`) : null),
    String(f.pages), result(f),
    h("span", {},
      f.pdf ? h("button", { class: "link", "data-view": f.id, text: t("faxes.view"), onclick: async () => {
        try {
          await view(ctx, f, slot);
        } catch (error) {
          if (error.status !== 401) slot.replaceChildren(notice("error", t("error.generic", { detail: error.detail })));
        }
      } }) : h("span", { class: "hint", text: t("faxes.no_pdf") }),
      " · ", h("button", { class: "link", "data-delete": f.id, text: t("delete"), onclick: async () => {
        if (!confirm(t("faxes.confirm_delete", { from: f.caller || f.remote_id, time: formatTime(f.received_at) }))) return;
        try {
          await ctx.api("DELETE", `/api/faxes/${f.id}`);
          await again(notice("ok", t("faxes.deleted")));
        } catch (error) {
          if (error.status !== 401) main.prepend(notice("error", t("error.generic", { detail: error.detail })));
        }
      } }))]);
  main.append(h("div", { class: "toolbar" }, h("h1", { text: t("faxes.title") }), filter), slot,
    h("div", { class: "panel", id: "fax-list" },
      table([t("faxes.received_at"), t("faxes.fax_line"), t("faxes.from"), t("faxes.pages"), t("faxes.result"), ""], rows,
        t("faxes.empty"))));
}
