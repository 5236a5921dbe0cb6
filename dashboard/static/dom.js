// Small DOM and formatting helpers. Every string from the server reaches the page as a text node
// or an attribute value, never as HTML.

/**
 * Build an element: h("a", {href: "#", class: "x"}, "text", child).
 * Attributes go through setAttribute; `hidden`/`disabled` take booleans; children that are strings
 * become text nodes; null and false children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace all children of `el`. */
export function setChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** 75.4 -> "1:15"; 3725 -> "1:02:05". */
export function clock(seconds) {
  const s = Math.max(0, Math.floor(Number(seconds) || 0));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

/** Unix seconds -> "24 Nov, 14:03" (today: "14:03"). */
export function when(unixSeconds) {
  if (!unixSeconds) return "";
  const date = new Date(unixSeconds * 1000);
  const time = date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === new Date().toDateString()) return `today ${time}`;
  const day = date.toLocaleDateString(undefined, { day: "numeric", month: "short" });
  return `${day}, ${time}`;
}

/** 1536000 -> "1.5 MB". */
export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

const STATE_LABELS = {
  recording: "Recording",
  queued: "Queued",
  running: "Running",
  done: "Done",
  partial: "Partial",
  failed: "Failed",
  assigned: "Assigned",
  online: "Online",
  draining: "Draining",
  offline: "Offline",
};

/** A coloured badge for a job, chunk or node state. */
export function badge(state) {
  const known = Object.hasOwn(STATE_LABELS, state);
  return h("span", { class: `badge state-${known ? state : "unknown"}` }, known ? STATE_LABELS[state] : String(state));
}
