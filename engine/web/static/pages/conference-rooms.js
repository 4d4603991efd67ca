// Conference rooms (issue 13): the room objects on the shared form (extension, PINs, waiting room, muted
// entry, end with the last host, announcements), and a running room's participants, each removable (the
// engine hangs the caller up; engine/api/conferences.py).
import { renderObjects } from "/static/objects.js";
import { t } from "/static/i18n.js";
import { h, notice, table } from "/static/ui.js";

const OPTIONS = ["waiting_room", "enter_muted", "end_with_last_host", "announce_participants", "omit_from_directory"];

function state(p) {
  if (p.waiting) return h("span", { class: "tag" }, t("rooms.state.waiting"));
  if (p.muted) return h("span", { class: "tag bad" }, t("rooms.state.muted"));
  return h("span", { class: "tag good" }, t("rooms.state.talking"));
}

// The live participants of `room` in `slot`, with a remove button each, the room's lock and a refresh.
async function participants(ctx, room, slot) {
  const base = `/api/conferences/${encodeURIComponent(room)}`;
  const path = `${base}/participants`;
  const panel = h("div", { class: "panel", id: "participants", "data-room": room });
  const draw = async (top) => {
    let live;
    try {
      live = await ctx.api("GET", base);
    } catch (error) {
      if (error.status === 401) return;
      panel.replaceChildren(h("h2", { text: t("rooms.participants.title", { name: room }) }),
        notice("error", error.status === 503 ? t("rooms.participants.unavailable") : t("error.generic", { detail: error.detail })));
      return;
    }
    const cells = live.participants.map((p) => [h("strong", { text: p.caller }), t(p.host ? "rooms.role.host" : "rooms.role.participant"),
      state(p), t("rooms.in_room", { minutes: Math.floor(p.in_room_seconds / 60), seconds: Math.floor(p.in_room_seconds % 60) }),
      h("button", { class: "link", "data-remove": p.id, text: t("rooms.remove"), onclick: async () => {
        if (!confirm(t("rooms.confirm_remove", { caller: p.caller }))) return;
        try {
          await ctx.api("DELETE", `${path}/${p.id}`);
          await draw(notice("ok", t("rooms.removed", { caller: p.caller })));
        } catch (error) {
          if (error.status !== 401) await draw(notice("error", t("error.generic", { detail: error.detail })));
        }
      } })]);
    const lock = live.running ? h("button", { class: "secondary", id: "room-lock",
      text: t(live.locked ? "rooms.unlock" : "rooms.lock"), onclick: async () => {
        try {
          await ctx.api("PUT", `${base}/lock`, { locked: !live.locked });
          await draw(notice("ok", t(live.locked ? "rooms.unlocked" : "rooms.locked")));
        } catch (error) {
          if (error.status !== 401) await draw(notice("error", t("error.generic", { detail: error.detail })));
        }
      } }) : null;
    panel.replaceChildren(h("div", { class: "toolbar" }, h("h2", {}, t("rooms.participants.title", { name: room }), " ",
      live.locked ? h("span", { class: "tag bad", id: "room-locked" }, t("rooms.locked.tag")) : null),
      h("span", { class: "actions" }, lock,
        h("button", { class: "secondary", id: "participants-refresh", text: t("rooms.refresh"), onclick: () => draw() }))),
    top ?? null, table([t("rooms.caller"), t("rooms.role"), t("rooms.state"), t("rooms.in_room.header"), ""], cells,
      t("rooms.participants.empty")));
  };
  await draw();
  slot.replaceChildren(panel);
}

export const ROOMS = {
  kind: "conference_rooms",
  id: "room",
  strings: "rooms",
  fields: [
    { key: "name", type: "text" },
    { key: "extension", type: "text", hint: true },
    { key: "participant_pin", type: "text", hint: true },
    { key: "host_pin", type: "text", hint: true },
    ...OPTIONS.map((key) => ({ key, type: "flag", hint: true })),
  ],
  headers: ["extension", "pins", "options"],
  columns: (spec) => [spec.extension || "—",
    [spec.participant_pin ? t("rooms.participant_pin.short") : null, spec.host_pin ? t("rooms.host_pin.short") : null]
      .filter(Boolean).join(", ") || t("rooms.no_pin"),
    OPTIONS.filter((key) => spec[key]).map((key) => t(`rooms.${key}.short`)).join(", ") || "—"],
  actions: (room, ctx) => [h("button", { class: "link", "data-participants": room.name, text: t("rooms.participants"),
    onclick: () => participants(ctx, room.name, ctx.slot) })],
};

export const render = (main, ctx) => renderObjects(ROOMS, main, ctx);
