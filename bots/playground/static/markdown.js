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

// Inline rules; the earliest match wins, ties go to the first rule. `inner: true` renders the
// captured text recursively. Global regexes: each is searched from a position (lastIndex), on
// the whole line, so a lookbehind sees the real character before that position.
const MRKDWN_RULES = [
  { re: /`([^`\n]+)`/g, tag: "code" },
  { re: /<([^<>\n]+)>/g, angle: true },
  { re: /\*([^*\n]+)\*/g, tag: "strong", inner: true },
  { re: /(?<![\w])_([^_\n]+)_(?![\w])/g, tag: "em", inner: true },
  { re: /~([^~\n]+)~/g, tag: "del", inner: true },
];

const MARKDOWN_RULES = [
  { re: /`([^`\n]+)`/g, tag: "code" },
  { re: /\[([^\]\n]+)\]\(([^()\s]+)\)/g, link: true },
  { re: /\*\*([^\n]+?)\*\*/g, tag: "strong", inner: true },
  { re: /__([^\n]+?)__/g, tag: "strong", inner: true },
  { re: /\*([^*\n]+)\*/g, tag: "em", inner: true },
  { re: /(?<![\w])_([^_\n]+)_(?![\w])/g, tag: "em", inner: true },
  { re: /~~([^~\n]+)~~/g, tag: "del", inner: true },
  { re: /https?:\/\/[^\s<>()\]]+[^\s<>()\].,;:!?'"]/g, bare: true },
];

// Markup is looked for in the first this many characters of a line; the rest is plain text
// (a pathological line costs bounded work).
const MAX_INLINE_CHARS = 20000;

/**
 * Inline markup of one line into `parent`, in one pass: each rule's next match is remembered
 * and searched again only once the text before it was consumed, so a line costs about one
 * scan per rule instead of one per rule and match.
 * @param {"mrkdwn"|"markdown"} dialect
 * @param {{names?: Record<string,string>}} ctx  user and channel ids → names for <@U…> mentions
 */
export function renderInline(parent, text, dialect, ctx = {}) {
  const rules = dialect === "mrkdwn" ? MRKDWN_RULES : MARKDOWN_RULES;
  const line = text.length > MAX_INLINE_CHARS ? text.slice(0, MAX_INLINE_CHARS) : text;
  const found = rules.map(() => undefined); // undefined: not searched yet; null: no more
  let pos = 0;
  while (pos < line.length) {
    let best = -1;
    for (let r = 0; r < rules.length; r += 1) {
      let m = found[r];
      if (m === undefined || (m !== null && m.index < pos)) {
        const re = rules[r].re;
        re.lastIndex = pos; // set before every search: nested calls share these regexes
        m = re.exec(line);
        found[r] = m;
      }
      if (m && (best < 0 || m.index < found[best].index)) best = r;
    }
    if (best < 0) break;
    const m = found[best];
    if (m.index > pos) appendText(parent, line.slice(pos, m.index), dialect);
    parent.append(inlineNode(rules[best], m, dialect, ctx));
    pos = m.index + m[0].length;
  }
  if (pos < line.length) appendText(parent, line.slice(pos), dialect);
  if (line.length < text.length) appendText(parent, text.slice(line.length), dialect);
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
