// Call queues (issue 12): agents, how they are rung, wrap-up, limits and where callers go when they leave.
import { renderObjects } from "/static/objects.js";
import { t } from "/static/i18n.js";

export const QUEUES = {
  kind: "queues",
  id: "queue",
  strings: "queues",
  fields: [
    { key: "name", type: "text" },
    { key: "extension", type: "text", hint: true },
    { key: "agents", type: "lines" },
    { key: "strategy", type: "choice", strings: "queues.strategy",
      options: ["ring_all", "round_robin", "least_recent", "fewest_calls", "linear", "random"] },
    { key: "agent_ring_seconds", type: "seconds", placeholder: "15" },
    { key: "wrap_up_seconds", type: "seconds", placeholder: "0" },
    { key: "max_wait_seconds", type: "seconds", hint: true },
    { key: "max_callers", type: "seconds", placeholder: "0", hint: true },
    { key: "exit_key", type: "text", hint: true },
    { key: "exit", type: "destination",
      kinds: ["extension", "dial_plan", "ring_group", "queue", "mailbox", "voicemail", "number"] },
  ],
  headers: ["extension", "agents", "strategy", "exit"],
  columns: (spec) => [spec.extension || "—", (spec.agents || []).map((a) => a.line).join(", ") || "—",
    t(`queues.strategy.${spec.strategy || "ring_all"}`),
    spec.exit ? `${t(`kind.${spec.exit.kind}`)}: ${spec.exit.target}` : "—"],
};

export const render = (main, ctx) => renderObjects(QUEUES, main, ctx);
