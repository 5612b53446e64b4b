// How one Slack message, one Teams activity and one answer's usage look on the page.
//
// Slack: the page shows what the emulated Web API holds, as Slack's client would: the blocks
// when a message has them (markdown, section, context, the feedback buttons of an AI reply),
// else its mrkdwn `text`. Teams: the activity's Markdown text, its streaming state and its
// feedback buttons. Every string from a message goes through markdown.js or textContent.

import { renderMarkup } from "./markdown.js";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function button(label, focusKey, onClick, ariaLabel) {
  const b = el("button", "msg-action", label);
  b.type = "button";
  b.dataset.focus = focusKey;
  if (ariaLabel) b.setAttribute("aria-label", ariaLabel);
  b.addEventListener("click", onClick);
  return b;
}

function clock(ts) {
  const seconds = Number(ts);
  if (!Number.isFinite(seconds) || seconds <= 0) return null;
  const date = new Date(seconds * 1000);
  const time = el("time", "when", date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  time.dateTime = date.toISOString();
  return time;
}

function plain(obj) {
  return obj && typeof obj === "object" ? String(obj.text ?? "") : String(obj ?? "");
}

function textObject(obj, ctx) {
  // A Block Kit text object: mrkdwn is rendered, plain_text shown as is.
  if (!obj || typeof obj !== "object") return document.createDocumentFragment();
  if (obj.type === "plain_text") {
    const frag = document.createDocumentFragment();
    frag.append(document.createTextNode(String(obj.text ?? "")));
    return frag;
  }
  return renderMarkup(String(obj.text ?? ""), "mrkdwn", ctx);
}

// ---------------------------------------------------------------------------- Slack

const isSlackBot = (m, ctx) => Boolean(m.bot_id) || (m.user && m.user === ctx.bot.slack_user_id);

export function renderSlackMessage(m, ctx) {
  const bot = isSlackBot(m, ctx);
  const li = el("li", `msg${bot ? " from-bot" : ""}${m.ephemeral ? " ephemeral" : ""}`);
  li.dataset.author = bot ? "bot" : "user";
  li.dataset.ts = m.ts;
  li.dataset.streaming = String(Boolean(m.streaming));
  if (bot) li.dataset.settle = "true"; // see syncList: quiet for screen readers while it grows
  const author = bot ? ctx.bot.name : ctx.names[m.user] || m.user || "Someone";

  const avatar = el("span", "avatar", author.slice(0, 1).toUpperCase());
  avatar.setAttribute("aria-hidden", "true");
  const main = el("div", "msg-main");
  const meta = el("div", "meta");
  meta.append(el("strong", "author", author));
  if (bot) meta.append(el("span", "app-tag", "APP"));
  const when = clock(m.ts);
  if (when) meta.append(when);
  if (m.edited > 0 && !m.streaming) meta.append(el("span", "edited", "(edited)"));
  if (m.ephemeral) meta.append(el("span", "ephemeral-tag", "Only visible to you"));
  main.append(meta);

  const body = el("div", "body");
  if (m.subtype === "assistant_app_thread") body.append(el("p", "informative", "New assistant thread"));
  else body.append(slackBody(m, ctx));
  if (m.streaming) appendCursor(body);
  main.append(body);

  if (m.files && m.files.length) {
    const files = el("ul", "files");
    files.setAttribute("aria-label", "Files");
    for (const f of m.files) {
      const item = el("li", "file");
      item.append(icon("file"), ` ${f.name || f.title || "file"}`);
      const kind = f.pretty_type || f.filetype || f.mimetype || "";
      if (kind) item.append(el("span", "file-kind", ` ${kind}`));
      files.append(item);
    }
    main.append(files);
  }
  const feedback = feedbackButtons(m, ctx);
  if (feedback) main.append(feedback);

  const replies = ctx.replies.get(m.ts) || 0;
  if (!ctx.inThread && replies) {
    const label = `${replies} ${replies === 1 ? "reply" : "replies"}`;
    main.append(button(label, "replies", () => ctx.onAction("thread", m), `${label}: open the thread`));
  }
  if (!m.ephemeral) {
    const actions = el("div", "msg-actions");
    actions.setAttribute("role", "group");
    actions.setAttribute("aria-label", `Actions for the message from ${author}`);
    if (!ctx.inThread) {
      actions.append(button("Reply in thread", "thread", () => ctx.onAction("thread", m)));
    }
    actions.append(
      button("Summarize thread", "summarize", () => ctx.onAction("summarize", m),
        `Summarize thread (shortcut) on the message from ${author}`),
    );
    main.append(actions);
  }
  li.append(avatar, main);
  return li;
}

const ICONS = {
  up: "M2 21h4V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.4-1.1L13.2 1 6.6 7.6C6.2 8 6 8.5 6 9v10a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7.1c.1-.2.2-.5.2-.7v-2z",
  down: "M22 3h-4v12h4V3zM2 14a2 2 0 0 0 2 2h6.3l-1 4.6v.3c0 .4.2.8.4 1.1l1.1 1 6.6-6.6c.4-.4.6-.9.6-1.4V5a2 2 0 0 0-2-2H7c-.8 0-1.5.5-1.8 1.2l-3 7.1c-.1.2-.2.5-.2.7v2z",
  file: "M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8l-6-6zm-1 7V3.5L18.5 9H13z",
};

/** A small inline icon, hidden from screen readers (its button or text says what it is). */
export function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "14");
  svg.setAttribute("height", "14");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.classList.add("icon");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name]);
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}

/** The streaming cursor, at the end of the last line of text. */
function appendCursor(body) {
  let last = body;
  while (last.lastElementChild && /^(DIV|P|UL|OL|LI|BLOCKQUOTE)$/.test(last.lastElementChild.tagName)) {
    last = last.lastElementChild;
  }
  last.append(cursor());
}

function cursor() {
  const c = el("span", "cursor", "▍");
  c.setAttribute("aria-hidden", "true");
  return c;
}

function slackBody(m, ctx) {
  const frag = document.createDocumentFragment();
  const blocks = Array.isArray(m.blocks) ? m.blocks : [];
  for (const block of blocks) {
    const node = slackBlock(block, ctx);
    if (node) frag.append(node);
  }
  if (!frag.childNodes.length) frag.append(renderMarkup(String(m.text ?? ""), "mrkdwn", ctx));
  return frag;
}

function slackBlock(block, ctx) {
  if (!block || typeof block !== "object") return null;
  switch (block.type) {
    case "markdown": {
      const div = el("div", "block-markdown");
      div.append(renderMarkup(String(block.text ?? ""), "markdown", ctx));
      return div;
    }
    case "section": {
      const div = el("div", "block-section");
      if (block.text) div.append(textObject(block.text, ctx));
      for (const field of block.fields || []) {
        const f = el("div", "field");
        f.append(textObject(field, ctx));
        div.append(f);
      }
      return div;
    }
    case "header":
      return el("p", "block-header", plain(block.text));
    case "divider":
      return el("hr");
    case "context": {
      const div = el("div", "block-context");
      for (const item of block.elements || []) {
        if (item.type === "image") div.append(el("span", "", item.alt_text || ""));
        else div.append(textObject(item, ctx));
      }
      return div;
    }
    case "rich_text": {
      const div = el("div", "block-rich");
      div.append(el("p", "", richText(block)));
      return div;
    }
    default:
      return null; // actions are drawn apart (feedbackButtons); unknown blocks are skipped
  }
}

function richText(block) {
  const parts = [];
  const walk = (node) => {
    if (!node || typeof node !== "object") return;
    if (node.type === "text" || node.type === "link") parts.push(String(node.text || node.url || ""));
    for (const child of node.elements || []) walk(child);
  };
  walk(block);
  return parts.join("");
}

function feedbackButtons(m, ctx) {
  const blocks = Array.isArray(m.blocks) ? m.blocks : [];
  for (const block of blocks) {
    if (!block || (block.type !== "context_actions" && block.type !== "actions")) continue;
    for (const item of block.elements || []) {
      if (item.type !== "feedback_buttons") continue;
      const group = el("div", "feedback");
      group.setAttribute("role", "group");
      group.setAttribute("aria-label", "Rate this answer");
      const given = ctx.feedbackGiven && ctx.feedbackGiven.get(`${m.channel}|${m.ts}`);
      for (const [which, glyph, key] of [
        ["positive_button", "up", "fb-good"],
        ["negative_button", "down", "fb-bad"],
      ]) {
        const spec = item[which];
        if (!spec) continue;
        const label = spec.accessibility_label || plain(spec.text) || which;
        const b = button(plain(spec.text), key, () => ctx.onAction("feedback", m, spec.value), label);
        b.prepend(icon(glyph), " ");
        b.setAttribute("aria-pressed", String(given === spec.value));
        group.append(b);
      }
      return group;
    }
  }
  return null;
}

// ---------------------------------------------------------------------------- Teams

export const activityKeyOf = (a) => `${a.conversation}|${a.id}`;

export function renderTeamsActivity(a, ctx) {
  const bot = a.from === "bot";
  const li = el("li", `msg teams-msg${bot ? " from-bot" : " from-user"}${a.reply_to ? " reply" : ""}`);
  li.dataset.author = bot ? "bot" : "user";
  li.dataset.id = a.id;
  li.dataset.streaming = String(Boolean(a.streaming));
  li.dataset.streamType = a.stream_type || "";
  if (bot) li.dataset.settle = "true";
  const author = bot ? ctx.bot.name : "You";
  const main = el("div", "msg-main");
  const meta = el("div", "meta");
  meta.append(el("strong", "author", author));
  if (a.updated > 0 && !a.streaming && bot) meta.append(el("span", "edited", "Edited"));
  main.append(meta);

  const body = el("div", "body");
  const text = String(a.text ?? "");
  if (a.stream_type === "informative") {
    body.append(el("p", "informative", text));
  } else if (!text.trim() && a.streaming) {
    body.append(el("p", "informative", `${ctx.bot.name} is typing…`));
  } else {
    body.append(renderMarkup(text, "markdown", {}));
  }
  if (a.streaming && a.stream_type !== "informative") appendCursor(body);
  main.append(body);

  for (const attachment of a.attachments || []) {
    const card = attachmentNode(attachment);
    if (card) main.append(card);
  }
  if (bot && a.feedback && !a.streaming) {
    const group = el("div", "feedback");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", "Rate this answer");
    const like = button("", "fb-like", () => ctx.onFeedback(a, "like"), "Like this answer");
    const dislike = button("", "fb-dislike", () => ctx.onFeedback(a, "dislike"), "Dislike this answer");
    like.append(icon("up"));
    dislike.append(icon("down"));
    const given = ctx.feedbackGiven && ctx.feedbackGiven.get(activityKeyOf(a));
    like.setAttribute("aria-pressed", String(given === "like"));
    dislike.setAttribute("aria-pressed", String(given === "dislike"));
    group.append(like, dislike);
    main.append(group);
  }
  li.append(main);
  return li;
}

function attachmentNode(attachment) {
  if (!attachment || typeof attachment !== "object") return null;
  const content = attachment.content;
  const box = el("div", "card");
  if (content && typeof content === "object") {
    // Adaptive Card: its TextBlocks; Hero/Thumbnail card: title and text.
    const texts = [];
    const walk = (node) => {
      if (!node || typeof node !== "object") return;
      if (node.type === "TextBlock" && node.text) texts.push(String(node.text));
      for (const key of ["body", "items", "columns"]) {
        for (const child of node[key] || []) walk(child);
      }
    };
    walk(content);
    if (content.title) texts.unshift(String(content.title));
    if (content.text) texts.push(String(content.text));
    for (const t of texts) box.append(renderMarkup(t, "markdown", {}));
  }
  if (!box.childNodes.length) {
    if (!attachment.name) return null;
    const file = el("span", "file");
    file.append(icon("file"), ` ${attachment.name}`);
    box.append(file);
  }
  return box;
}

// ---------------------------------------------------------------------------- usage

function seconds(value) {
  if (value === null || value === undefined || value === "") return "—";
  const n = Number(value);
  return Number.isFinite(n) ? `${n.toFixed(2)} s` : "—";
}

function count(value) {
  return value === null || value === undefined ? "—" : String(value);
}

export function renderUsageRow(u, place) {
  // One answer as a small card: where it went and what kind, then its figures.
  const li = el("li", `usage-card${u.complete === false ? " incomplete" : ""}`);
  li.append(el("p", "usage-where", `${place}${u.kind === "summary" ? " · summary" : ""}`));
  const dl = el("dl", "usage-figures");
  const cached = u.cache_read ? ` (+${u.cache_read} cached)` : "";
  const figures = [
    ["model", "Model", u.model || "—"],
    ["tokens-in", "Tokens in", `${count(u.tokens_in)}${cached}`],
    ["tokens-out", "Tokens out", count(u.tokens_out)],
    ["first-text", "First text", seconds(u.time_to_first_token)],
    ["done", "Done", seconds(u.time_to_final)],
    ["edits", "Edits", count(u.edits)],
    ["posts", "Posts", count(u.posts)],
    ["passages", "Passages", count(u.passages)],
    ["result", "Result", u.complete ? "complete" : u.cause || "incomplete"],
  ];
  for (const [key, label, value] of figures) {
    const row = el("div", "figure");
    row.dataset.col = key;
    row.append(el("dt", "", label), el("dd", "", value));
    dl.append(row);
  }
  li.append(dl);
  return li;
}
