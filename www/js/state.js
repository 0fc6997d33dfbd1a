// The page state lives in the URL query, so a configuration can be shared by copying the address.
// Each panel owns a prefix-free set of keys; writes use history.replaceState (no reload).

const params = new URLSearchParams(location.search);

export function get(key, fallback) {
  const v = params.get(key);
  return v === null ? fallback : v;
}

export function set(values) {
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined || v === null || v === '') { params.delete(k); } else { params.set(k, String(v)); }
  }
  history.replaceState(null, '', `${location.pathname}?${params.toString()}`);
}

// A small element builder: h('div', {class: 'x', onclick: f}, child, 'text').
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) { el.addEventListener(k.slice(2), v); } else if (k === 'class') { el.className = v; } else if (v !== undefined && v !== null && v !== false) { el.setAttribute(k, v === true ? '' : v); }
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined && c !== false) { el.append(c instanceof Node ? c : document.createTextNode(String(c))); }
  }
  return el;
}

// Shows `message` in the error box `box` (hidden when empty).
export function showError(box, message) {
  box.textContent = message || '';
  box.hidden = !message;
}

// The message of an exception thrown by the wasm module (a JsError carrying the core's text).
export function messageOf(e) {
  return (e && e.message) || String(e);
}
