// Sound clips: the recordings the dial plans play (menus, announcements, hold music): upload a WAV file,
// listen in the page, delete.
import { t } from "/static/i18n.js";
import { clearErrors, field, h, loadAudio, notice, showError, table, textInput } from "/static/ui.js";

export async function render(main, ctx) {
  const clips = await ctx.api("GET", "/api/routing/sound_clips");
  const again = async (top) => {
    main.replaceChildren();
    await render(main, ctx);
    if (top) main.prepend(top);
  };
  const file = h("input", { type: "file", accept: ".wav,audio/wav", name: "file" });
  const form = h("form", { class: "panel", id: "clip-form", novalidate: true }, h("h2", { text: t("clips.add") }),
    h("div", { class: "grid" }, field("name", t("clips.name"), textInput("name"), { hint: t("clips.name.hint") }),
      field("file", t("clips.file"), file)),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "clip-save", text: t("lines.upload") })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const name = form.elements.name.value.trim();
    try {
      if (!name) throw { status: 422, field: "name", detail: t("clips.name.hint") };
      if (!file.files.length) throw { status: 422, field: "file", detail: t("clips.file") };
      const saved = await ctx.api("PUT", `/api/sound-clips/${encodeURIComponent(name)}`, file.files[0]);
      await again(notice("ok", t("clips.uploaded", { name: saved.name, seconds: saved.duration_seconds.toFixed(1) })));
    } catch (error) {
      if (error.status !== 401) showError(form, error);
    }
  });
  const rows = await Promise.all(clips.map(async (c) => {
    const player = h("span", { class: "player" });
    await loadAudio(ctx.api, `/api/sound-clips/${encodeURIComponent(c.name)}`, player, { "data-clip": c.name },
      t("clips.missing"));
    const remove = h("button", { class: "link", "data-delete": c.name, text: t("delete"), onclick: async () => {
      if (!confirm(t("objects.confirm_delete", { name: c.name }))) return;
      try {
        await ctx.api("DELETE", `/api/routing/sound_clips/${encodeURIComponent(c.name)}`);
      } catch (error) { // e.g. a dial plan still plays it (the compiler's 422)
        if (error.status !== 401) main.prepend(notice("error", t("error.generic", { detail: error.detail })));
        return;
      }
      await again(notice("ok", t("objects.deleted", { name: c.name })));
    } });
    return [h("strong", { text: c.name }), player, remove];
  }));
  main.append(h("h1", { text: t("clips.title") }), form, h("div", { class: "panel", id: "clip-list" },
    table([t("clips.name"), t("clips.play"), ""], rows, t("clips.empty"))));
}
