// Phone numbers: the company's numbers with where each one rings, and routing one to any destination.
import { t } from "/static/i18n.js";
import { clearErrors, field, h, notice, select, showError, table, textInput } from "/static/ui.js";

const KINDS = ["extension", "dial_plan", "ring_group", "queue", "conference_room", "fax_line", "mailbox", "number"];
const OBJECTS = { ring_group: "ring_groups", queue: "queues", conference_room: "conference_rooms",
  fax_line: "fax_lines", mailbox: "mailboxes" };

// The destinations of each kind, as (value, label) pairs; "number" is typed.
async function destinations(ctx, numbers) {
  const [lines, plans, ...objects] = await Promise.all([
    ctx.api("GET", "/api/lines"), ctx.api("GET", "/api/dial-plans"),
    ...Object.values(OBJECTS).map((kind) => ctx.api("GET", `/api/routing/${kind}`)),
  ]);
  const out = {
    extension: lines.map((l) => [l.extension, `${l.extension} ${l.name}`]),
    dial_plan: plans.map((p) => [p.name, p.name]),
    number: numbers.filter((n) => n.state === "owned").map((n) => [n.number, n.number]),
  };
  Object.keys(OBJECTS).forEach((kind, i) => { out[kind] = objects[i].map((o) => [o.name, o.name]); });
  return out;
}

function routeLabel(n) {
  if (!n.route_kind) return h("span", { class: "tag bad" }, t("numbers.unrouted"));
  return `${t(`kind.${n.route_kind}`)}: ${n.route_target}`;
}

function routeForm(ctx, number, targets, onDone) {
  const kind = select("kind", KINDS.map((k) => [k, t(`kind.${k}`)]), number.route_kind || "extension");
  const targetSlot = h("div", {});
  const form = h("form", { class: "route-form", "data-draft": `route-${number.number}`, "data-number": number.number },
    field("kind", t("numbers.kind"), kind), targetSlot,
    h("div", { class: "field" }, h("label", {}, "\u00a0"), h("button", { type: "submit", text: t("save") })));
  const draw = () => {
    const choices = targets[kind.value] || [];
    const input = kind.value === "number" || choices.length === 0
      ? textInput("target", number.route_kind === kind.value ? number.route_target : "")
      : select("target", choices, number.route_kind === kind.value ? number.route_target : undefined);
    targetSlot.replaceChildren(field("target", t("numbers.target"), input));
  };
  kind.addEventListener("change", draw);
  draw();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const body = { kind: kind.value, target: form.elements.target.value.trim() };
    try {
      const routed = await ctx.api("PUT", `/api/numbers/${encodeURIComponent(number.number)}/route`, body);
      onDone(routed);
    } catch (error) {
      if (error.status !== 401) showError(form, error);
    }
  });
  return form;
}

export async function render(main, ctx) {
  const numbers = (await ctx.api("GET", "/api/numbers")).filter((n) => n.state === "owned");
  const targets = await destinations(ctx, numbers);
  const rows = numbers.map((n) => {
    const cell = h("div", {}, routeLabel(n), " ");
    const change = h("button", { class: "link", "data-route": n.number, text: t("numbers.change") });
    change.addEventListener("click", () => {
      cell.replaceChildren(routeForm(ctx, n, targets, async (routed) => {
        main.replaceChildren();
        await render(main, ctx);
        main.prepend(notice("ok", t("numbers.routed", { number: routed.number, target: `${t(`kind.${routed.kind}`)} ${routed.target}` })));
      }));
    });
    cell.append(change);
    return [h("strong", { text: n.number }), t(`state.${n.state}`), cell];
  });
  main.append(h("h1", { text: t("numbers.title") }), h("div", { class: "panel", id: "number-list" },
    table([t("numbers.number"), t("numbers.state"), t("numbers.route")], rows, t("numbers.empty"))));
}
