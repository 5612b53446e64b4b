// A small, safe renderer for the two markups the bot writes: Slack's mrkdwn (message `text`,
// context and section blocks) and Markdown (Slack's `markdown` block, Teams message text).
//
// Why hand-written: the page has no build step and no dependencies, and message text is
// untrusted (people type it, files are quoted). Everything here builds DOM nodes and sets
// text with textContent; nothing is ever parsed as HTML. Links keep only http(s) targets.

const SAFE_SCHEMES = new Set(["http:", "https:"]);

/** An <a> for `href` if it is an http(s) URL, else null. */
export function safeLink(href, label) {
  let url;
  try {
    url = new URL(href);
  } catch {
    return null;
  }
  if (!SAFE_SCHEMES.has(url.protocol)) return null;
  const a = document.createElement("a");
  a.href = url.href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  a.textContent = label || url.href;
  return a;
}

function unescapeSlack(text) {
  return text.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
}

// Inline rules, tried at each position in order; the earliest match wins, ties go to the
// first rule. `inner: true` renders the captured text recursively.
const MRKDWN_RULES = [
  { re: /`([^`\n]+)`/, tag: "code" },
  { re: /<([^<>\n]+)>/, angle: true },
  { re: /\*([^*\n]+)\*/, tag: "strong", inner: true },
  { re: /(?<![\w])_([^_\n]+)_(?![\w])/, tag: "em", inner: true },
  { re: /~([^~\n]+)~/, tag: "del", inner: true },
];

const MARKDOWN_RULES = [
  { re: /`([^`\n]+)`/, tag: "code" },
  { re: /\[([^\]\n]+)\]\(([^()\s]+)\)/, link: true },
  { re: /\*\*([^\n]+?)\*\*/, tag: "strong", inner: true },
  { re: /__([^\n]+?)__/, tag: "strong", inner: true },
  { re: /\*([^*\n]+)\*/, tag: "em", inner: true },
  { re: /(?<![\w])_([^_\n]+)_(?![\w])/, tag: "em", inner: true },
  { re: /~~([^~\n]+)~~/, tag: "del", inner: true },
  { re: /https?:\/\/[^\s<>()\]]+[^\s<>()\].,;:!?'"]/, bare: true },
];

/**
 * Inline markup of one line into `parent`.
 * @param {"mrkdwn"|"markdown"} dialect
 * @param {{names?: Record<string,string>}} ctx  user and channel ids → names for <@U…> mentions
 */
export function renderInline(parent, text, dialect, ctx = {}) {
  const rules = dialect === "mrkdwn" ? MRKDWN_RULES : MARKDOWN_RULES;
  let rest = text;
  while (rest) {
    let best = null;
    for (const rule of rules) {
      const m = rule.re.exec(rest);
      if (m && (best === null || m.index < best.m.index)) best = { rule, m };
    }
    if (best === null) {
      appendText(parent, rest, dialect);
      return;
    }
    const { rule, m } = best;
    if (m.index > 0) appendText(parent, rest.slice(0, m.index), dialect);
    parent.append(inlineNode(rule, m, dialect, ctx));
    rest = rest.slice(m.index + m[0].length);
  }
}

function appendText(parent, text, dialect) {
  parent.append(document.createTextNode(dialect === "mrkdwn" ? unescapeSlack(text) : text));
}

function inlineNode(rule, m, dialect, ctx) {
  if (rule.angle) return angleNode(m[1], ctx);
  if (rule.link) return safeLink(m[2], m[1]) || document.createTextNode(m[1]);
  if (rule.bare) return safeLink(m[0], m[0]) || document.createTextNode(m[0]);
  const el = document.createElement(rule.tag);
  if (rule.inner) renderInline(el, m[1], dialect, ctx);
  else el.textContent = dialect === "mrkdwn" ? unescapeSlack(m[1]) : m[1];
  return el;
}

// Slack's <…> forms: <@U123>, <#C123|name>, <!here>, <https://x|label>, <https://x>.
function angleNode(body, ctx) {
  const names = ctx.names || {};
  const [target, label] = splitOnce(body, "|");
  if (target.startsWith("@")) {
    return mention("@" + (label || names[target.slice(1)] || target.slice(1)));
  }
  if (target.startsWith("#")) {
    return mention("#" + (label || names[target.slice(1)] || target.slice(1)));
  }
  if (target.startsWith("!")) return mention("@" + (label || target.slice(1).split("^")[0]));
  const shown = unescapeSlack(label || target);
  return safeLink(unescapeSlack(target), shown) || document.createTextNode(shown);
}

function splitOnce(text, sep) {
  const i = text.indexOf(sep);
  return i < 0 ? [text, ""] : [text.slice(0, i), text.slice(i + 1)];
}

function mention(text) {
  const span = document.createElement("span");
  span.className = "mention";
  span.textContent = text;
  return span;
}

const FENCE = /^\s*```/;
const LIST_ITEM = /^\s*(?:[-*•]|(\d+)[.)])\s+(.*)$/;
const QUOTE = /^\s*(?:>|&gt;)\s?(.*)$/;
const HEADING = /^(#{1,6})\s+(.*)$/;

/**
 * Block markup (paragraphs, lists, quotes, code blocks, headings) of `text` as a fragment.
 * @param {"mrkdwn"|"markdown"} dialect
 */
export function renderMarkup(text, dialect, ctx = {}) {
  const frag = document.createDocumentFragment();
  const lines = String(text ?? "").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (FENCE.test(line)) {
      // A code block: everything up to the closing fence (or the end) as plain text. Slack
      // also allows ```code``` on one line.
      const sameLine = line.trim().slice(3);
      const body = [];
      if (sameLine.endsWith("```") && sameLine.length >= 3) {
        body.push(sameLine.slice(0, -3));
        i += 1;
      } else {
        if (sameLine && dialect === "mrkdwn") body.push(sameLine);
        i += 1;
        while (i < lines.length && !FENCE.test(lines[i])) body.push(lines[i++]);
        i += 1;
      }
      const pre = document.createElement("pre");
      const code = document.createElement("code");
      const joined = body.join("\n");
      code.textContent = dialect === "mrkdwn" ? unescapeSlack(joined) : joined;
      pre.append(code);
      frag.append(pre);
      continue;
    }
    if (QUOTE.test(line)) {
      const quoted = [];
      while (i < lines.length && QUOTE.test(lines[i])) quoted.push(QUOTE.exec(lines[i++])[1]);
      const bq = document.createElement("blockquote");
      bq.append(renderMarkup(quoted.join("\n"), dialect, ctx));
      frag.append(bq);
      continue;
    }
    if (LIST_ITEM.test(line)) {
      const ordered = LIST_ITEM.exec(line)[1] !== undefined;
      const list = document.createElement(ordered ? "ol" : "ul");
      while (i < lines.length && LIST_ITEM.test(lines[i])) {
        const m = LIST_ITEM.exec(lines[i++]);
        if ((m[1] !== undefined) !== ordered) {
          i -= 1;
          break;
        }
        const li = document.createElement("li");
        renderInline(li, m[2], dialect, ctx);
        list.append(li);
      }
      frag.append(list);
      continue;
    }
    const heading = dialect === "markdown" ? HEADING.exec(line) : null;
    if (heading) {
      const h = document.createElement("p");
      h.className = "md-heading";
      const strong = document.createElement("strong");
      renderInline(strong, heading[2], dialect, ctx);
      h.append(strong);
      frag.append(h);
      i += 1;
      continue;
    }
    if (!line.trim()) {
      i += 1;
      continue;
    }
    // A paragraph: consecutive plain lines, kept as separate lines.
    const p = document.createElement("p");
    let first = true;
    while (i < lines.length && lines[i].trim() && !startsBlock(lines[i], dialect)) {
      if (!first) p.append(document.createElement("br"));
      renderInline(p, lines[i++], dialect, ctx);
      first = false;
    }
    frag.append(p);
  }
  return frag;
}

function startsBlock(line, dialect) {
  return (
    FENCE.test(line) ||
    QUOTE.test(line) ||
    LIST_ITEM.test(line) ||
    (dialect === "markdown" && HEADING.test(line))
  );
}

/** Plain text of a markup, for labels and announcements. */
export function plainText(text, dialect, ctx = {}) {
  const div = document.createElement("div");
  div.append(renderMarkup(text, dialect, ctx));
  return div.textContent || "";
}
