// Small DOM helpers. Text only ever goes in through textContent: nothing user-controlled is
// parsed as HTML.

export const $ = (selector) => document.querySelector(selector);

/** A new element with attributes and text (never HTML). */
export function el(tag, { text, attrs = {}, classes = [] } = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.classList.add(...classes);
  return node;
}

/** Sets the text of a message element and hides it when empty. */
export function say(node, text) {
  node.textContent = text ?? '';
  node.hidden = !text;
}

/** Bytes as a short human size: 548.1 MB. */
export function formatBytes(bytes) {
  if (!bytes) return 'unknown size';
  const units = ['B', 'kB', 'MB', 'GB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}
