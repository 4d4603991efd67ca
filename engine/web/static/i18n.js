// The web admin's strings: one table per language (strings/<lang>.json, the same keys in each);
// t(key, values) picks the chosen language's text (English where a text is missing).
import de from "/static/strings/de.json" with { type: "json" };
import en from "/static/strings/en.json" with { type: "json" };

export const STRINGS = { en, de };
export const LANGUAGES = { en: "English", de: "Deutsch" };

export function language() {
  const chosen = localStorage.getItem("pbx.lang");
  if (chosen && chosen in STRINGS) return chosen;
  return (navigator.language || "en").toLowerCase().startsWith("de") ? "de" : "en";
}

export function setLanguage(lang) {
  localStorage.setItem("pbx.lang", lang);
}

export function t(key, values = {}) {
  const text = STRINGS[language()][key] ?? en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}
