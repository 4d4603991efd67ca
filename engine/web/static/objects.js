// A routing object's page (ring groups, queues, ...): the list, and one form that adds or edits an object
// from a table of its fields. The spec sent is the edited object's spec with the form's fields written over
// it, so keys the form does not show (a ring group's external members) survive an edit. The dial-plan
// compiler's 422 names a field as "<kind>[<name>].<field>[<i>]...": showError puts it next to that field.
import { t } from "/static/i18n.js";
import { clearErrors, field, h, notice, select, showError, table, textInput } from "/static/ui.js";

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

// Field types: how each is drawn from a spec value and read back into one (undefined: leave the key out).
const TYPES = {
  text: {
    input: (f, value) => textInput(f.key, value ?? ""),
    read: (form, f) => form.elements[f.key].value.trim() || undefined,
  },
  seconds: {
    input: (f, value) => textInput(f.key, value ?? "", "number", { min: "0", step: "1", placeholder: f.placeholder ?? "" }),
    read: (form, f) => {
      const raw = form.elements[f.key].value.trim();
      return raw === "" ? undefined : Number(raw);
    },
  },
  flag: { // true when ticked; unticked leaves the key out (the schema's default is false)
    input: (f, value) => h("input", { type: "checkbox", name: f.key, value: "yes", checked: value === true }),
    read: (form, f) => (form.elements[f.key].checked ? true : undefined),
  },
  emails: { // a list of e-mail addresses, typed separated by commas or spaces
    input: (f, value) => textInput(f.key, (value || []).join(", "), "text", { placeholder: "fax@example.com, office@example.com" }),
    read: (form, f) => {
      const out = form.elements[f.key].value.split(/[\s,;]+/).filter(Boolean);
      return out.length ? out : undefined;
    },
  },
  choice: {
    input: (f, value) => select(f.key, f.options.map((o) => [o, t(`${f.strings}.${o}`)]), value ?? f.options[0]),
    read: (form, f) => form.elements[f.key].value,
  },
  lines: { // a list of {line: EXTENSION}, chosen among the company's lines
    input: (f, value, ctx) => {
      const chosen = new Set((value || []).filter((m) => m.line !== undefined).map((m) => m.line));
      return h("div", { class: "choices", id: `f-${f.key}` }, ctx.lines.map((l) =>
        h("label", {}, h("input", { type: "checkbox", name: f.key, value: l.extension, checked: chosen.has(l.extension) }),
          `${l.extension} ${l.name}`)));
    },
    read: (form, f, old) => [
      ...[...form.querySelectorAll(`input[name="${f.key}"]:checked`)].map((el) => ({ line: el.value })),
      ...(old[f.key] || []).filter((m) => m.line === undefined), // members the form does not show
    ],
  },
  week: { // the weekly open hours: one row a day, open or closed, from-to (a day's several spans kept as given)
    input: (f, value) => {
      const byDay = {};
      for (const span of value || []) for (const day of span.days || []) byDay[day] ??= span;
      return h("table", { class: "week", id: `f-${f.key}` }, h("tbody", {}, DAYS.map((day) => h("tr", { "data-day": day },
        h("td", {}, h("label", {}, h("input", { type: "checkbox", name: `${f.key}.${day}.open`, checked: day in byDay }),
          " ", t(`day.${day}`))),
        h("td", {}, h("input", { type: "time", name: `${f.key}.${day}.from`, value: byDay[day]?.from ?? "08:00",
          "aria-label": `${t(`day.${day}`)} ${t("schedules.from")}` })),
        h("td", {}, h("input", { type: "time", name: `${f.key}.${day}.to`, value: byDay[day]?.to ?? "18:00",
          "aria-label": `${t(`day.${day}`)} ${t("schedules.to")}` }))))));
    },
    read: (form, f) => DAYS.filter((day) => form.elements[`${f.key}.${day}.open`].checked).map((day) => ({
      days: [day], from: form.elements[`${f.key}.${day}.from`].value, to: form.elements[`${f.key}.${day}.to`].value })),
  },
  holidays: { // closed days: name, from, to (one a line: "2026-12-24 2026-12-26 Christmas")
    input: (f, value) => h("textarea", { name: f.key, rows: "4", placeholder: "2026-12-24 2026-12-26 Christmas" },
      (value || []).map((d) => [d.from, d.to && d.to !== d.from ? d.to : "", d.name ?? ""].filter(Boolean).join(" ")).join("\n")),
    read: (form, f) => {
      const out = form.elements[f.key].value.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
        const [from, ...rest] = line.split(/\s+/);
        const holiday = { from };
        if (/^\d{4}-\d{2}-\d{2}$/.test(rest[0] || "")) holiday.to = rest.shift();
        if (rest.length) holiday.name = rest.join(" ");
        return holiday;
      });
      return out.length ? out : undefined;
    },
  },
  destination: { // {kind, target}, or none
    input: (f, value, ctx) => {
      const kind = select(`${f.key}.kind`, [["", t("objects.nowhere")], ...f.kinds.map((k) => [k, t(`kind.${k}`)])], value?.kind ?? "");
      const slot = h("span", {});
      const draw = () => {
        const choices = ctx.targets[kind.value] || [];
        const current = value?.kind === kind.value ? value.target : undefined;
        const input = kind.value === "" ? null
          : choices.length ? select(`${f.key}.target`, choices, current) : textInput(`${f.key}.target`, current ?? "");
        if (input) input.setAttribute("aria-label", t("numbers.target"));
        slot.replaceChildren(...(input ? [input] : []));
      };
      kind.addEventListener("change", draw);
      draw();
      return h("div", { class: "route-form", id: `f-${f.key}` }, kind, slot);
    },
    read: (form, f) => {
      const kind = form.elements[`${f.key}.kind`].value;
      return kind ? { kind, target: form.elements[`${f.key}.target`].value.trim() } : undefined;
    },
  },
};

// The destinations a field may name, by kind, as (value, label) pairs.
async function loadTargets(ctx) {
  const kinds = { dial_plan: "/api/dial-plans", ring_group: "/api/routing/ring_groups", queue: "/api/routing/queues",
    mailbox: "/api/routing/mailboxes" };
  const [lines, ...lists] = await Promise.all([ctx.api("GET", "/api/lines"),
    ...Object.values(kinds).map((path) => ctx.api("GET", path))]);
  const targets = { extension: lines.map((l) => [l.extension, `${l.extension} ${l.name}`]) };
  targets.voicemail = targets.extension;
  Object.keys(kinds).forEach((kind, i) => { targets[kind] = lists[i].map((o) => [o.name, o.name]); });
  return { lines, targets };
}

function objectForm(def, ctx, old, onDone) {
  const editing = old !== null;
  const spec = old?.spec ?? {};
  const form = h("form", { class: "panel", id: `${def.id}-form`, "data-draft": def.id, novalidate: true },
    h("h2", { text: editing ? t(`${def.strings}.edit`, { name: old.name }) : t(`${def.strings}.add`) }),
    h("div", { class: "grid" }, def.fields.map((f) => field(f.key, t(`${def.strings}.${f.key}`),
      TYPES[f.type].input(f, spec[f.key], ctx), {
        wide: ["lines", "destination", "week", "holidays"].includes(f.type),
        hint: f.hint ? t(`${def.strings}.${f.key}.hint`) : undefined,
      }))),
    def.note ? h("p", { class: "hint", text: t(`${def.strings}.note`) }) : null,
    h("div", { class: "actions" }, h("button", { type: "submit", id: `${def.id}-save`, text: t("save") }),
      h("button", { type: "button", class: "secondary", text: t("cancel"), onclick: () => onDone(null) })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const body = { ...spec };
    for (const f of def.fields) {
      const value = TYPES[f.type].read(form, f, spec);
      if (value === undefined) delete body[f.key];
      else body[f.key] = value;
    }
    try {
      const saved = editing
        ? await ctx.api("PUT", `/api/routing/${def.kind}/${encodeURIComponent(old.name)}`, body)
        : await ctx.api("POST", `/api/routing/${def.kind}`, body);
      onDone(saved);
    } catch (error) {
      if (error.status !== 401) showError(form, error);
    }
  });
  return form;
}

// Draw the page of routing objects described by `def`: {kind, id, strings, fields, columns(object) -> cells},
// and optionally actions(object, {api, slot}) -> more buttons for its row (a conference room's participants).
export async function renderObjects(def, main, ctx) {
  const [objects, extra] = await Promise.all([ctx.api("GET", `/api/routing/${def.kind}`), loadTargets(ctx)]);
  const fctx = { ...ctx, ...extra };
  const slot = h("div", {});
  const again = async (message) => {
    main.replaceChildren();
    await renderObjects(def, main, ctx);
    if (message) main.prepend(notice("ok", message));
  };
  const open = (old) => {
    add.hidden = true;
    slot.replaceChildren(objectForm(def, fctx, old, (saved) => (saved
      ? again(t(`${def.strings}.saved`, { name: saved.name }))
      : again())));
    slot.querySelector("input, select").focus();
  };
  const add = h("button", { id: `${def.id}-add`, text: t(`${def.strings}.add`), onclick: () => open(null) });
  const rows = objects.map((o) => {
    const edit = h("button", { class: "link", "data-edit": o.name, text: t("edit"), onclick: () => open(o) });
    const remove = h("button", { class: "link", "data-delete": o.name, text: t("delete"), onclick: async () => {
      if (!confirm(t("objects.confirm_delete", { name: o.name }))) return;
      try {
        await ctx.api("DELETE", `/api/routing/${def.kind}/${encodeURIComponent(o.name)}`);
        await again(t("objects.deleted", { name: o.name }));
      } catch (error) {
        if (error.status !== 401) main.prepend(notice("error", t("error.generic", { detail: error.detail })));
      }
    } });
    const more = def.actions ? def.actions(o, { ...fctx, slot }).flatMap((b) => [" · ", b]) : [];
    return [h("strong", { text: o.name }), ...def.columns(o.spec), h("span", {}, edit, " · ", remove, ...more)];
  });
  main.append(h("div", { class: "toolbar" }, h("h1", { text: t(`${def.strings}.title`) }), add), slot,
    h("div", { class: "panel", id: `${def.id}-list` },
      table([t(`${def.strings}.name`), ...def.headers.map((k) => t(`${def.strings}.${k}`)), ""], rows,
        t(`${def.strings}.empty`))));
  if (sessionStorage.getItem("pbx.drafts")?.includes(`"${def.id}"`)) open(null);
}
