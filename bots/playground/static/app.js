// The playground page: a Slack-like and a Teams-like chat that show what the emulated platform
// APIs received from the real bot, live.
//
// The page holds no logic of the product. It sends what a person does (a message, a file, a
// slash command, a shortcut, a feedback click) to /playground/* and renders what the server
// says the bot did: the snapshot from /playground/state, then each change from the
// /playground/events stream. Message text is untrusted: it is rendered with markdown.js, which
// builds DOM nodes and never parses HTML. (Longer than our usual module: the live feed, the
// two views and the person's actions share one small state object, and the page has no
// bundler; markdown.js and render.js hold what stands alone.)

import { renderMarkup, safeLink } from "./markdown.js";
import {
  activityKeyOf as activityKey,
  renderSlackMessage,
  renderTeamsActivity,
  renderUsageRow,
} from "./render.js";

const token = readToken();

/**
 * The token from the address `chatbot serve` printed, taken out of the address bar (and so
 * out of the history, bookmarks and screen shares) and kept in this tab's sessionStorage, so
 * that a reload still works.
 */
function readToken() {
  const params = new URLSearchParams(location.search);
  const given = params.get("token");
  let kept = "";
  try {
    if (given) sessionStorage.setItem("playground-token", given);
    kept = sessionStorage.getItem("playground-token") || "";
  } catch {
    kept = ""; // storage off: this page load still has the token from its address
  }
  if (given !== null) {
    params.delete("token");
    const rest = params.toString();
    history.replaceState(history.state, "", `${location.pathname}${rest ? `?${rest}` : ""}${location.hash}`);
  }
  return given || kept;
}
const $ = (id) => document.getElementById(id);

const state = {
  bot: { slack_user_id: "", name: "Assistant" },
  user: { id: "", name: "You" },
  slack: { channels: [], disabled: "", messages: new Map() },
  teams: {
    conversations: [],
    disabled: "",
    activities: new Map(),
    bot: { name: "Assistant" },
    typing: new Map(), // conversation → the timer that ends its typing indicator
  },
  statuses: new Map(), // "channel|thread_ts" → {status, loading_messages}
  prompts: new Map(), // "channel|thread_ts" → {title, prompts}
  titles: new Map(), // "channel|thread_ts" → title
  answers: [],
  seq: 0, // the last change applied
  view: "slack",
  channel: "",
  thread: null, // {channel, ts}
  teamsConversation: "",
  unread: new Set(),
  people: new Map(), // Slack user id → display name
  feedback: new Map(), // "channel|ts" → the value of the feedback button pressed
};

// ---------------------------------------------------------------------------- server calls

class ServerError extends Error {}

async function api(path, body) {
  const init = { method: body === undefined ? "GET" : "POST", headers: {} };
  init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ServerError("The playground server cannot be reached. Is `chatbot serve` running?");
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok || (payload && payload.ok === false)) {
    const said = payload && typeof payload.error === "string" ? payload.error : "";
    throw new ServerError(said || `The server answered ${response.status}.`);
  }
  return payload;
}

// ---------------------------------------------------------------------------- live changes

let source = null;
let retryDelay = 1000;
let retryTimer = null;
let evicted = false; // another tab took this one's place: no reconnecting

function connect() {
  clearTimeout(retryTimer);
  if (evicted) return;
  if (source) source.close();
  source = new EventSource(`/playground/events?token=${encodeURIComponent(token)}`);
  source.onmessage = (event) => {
    let change;
    try {
      change = JSON.parse(event.data);
    } catch {
      return;
    }
    const seq = Number(String(event.lastEventId || "").split(":")[1] || 0);
    if (change.type === "hello") {
      setConnection("");
      retryDelay = 1000;
      if (change.resync) void resync();
      return;
    }
    if (change.type === "evicted") {
      // The server keeps a few live streams; reconnecting would only evict another tab.
      evicted = true;
      source.close();
      clearTimeout(retryTimer);
      setConnection(
        "This tab was disconnected because another tab opened the playground; reload to reconnect.",
      );
      return;
    }
    if (resyncing) pending.push([seq, change]);
    else applyChange(change, seq);
  };
  source.onerror = () => {
    if (evicted) return;
    setConnection("Reconnecting to the playground server…");
    // While the server is away the browser retries by itself (each retry resumes after the
    // last event it saw); if it gave up (the server answered an error), we retry.
    if (source.readyState === EventSource.CLOSED) scheduleReconnect();
  };
}

function scheduleReconnect() {
  clearTimeout(retryTimer);
  if (evicted) return;
  retryTimer = setTimeout(async () => {
    try {
      await api("/playground/state"); // says why not, e.g. a server restarted with a new token
      connect();
    } catch (error) {
      setConnection(`Reconnecting… ${error.message}`);
      scheduleReconnect();
    }
  }, retryDelay);
  retryDelay = Math.min(retryDelay * 2, 10000);
}

let resyncing = false;
let pending = [];

async function resync() {
  resyncing = true;
  pending = [];
  try {
    const snapshot = await api("/playground/state");
    loadSnapshot(snapshot);
    const floor = Number(snapshot.seq || 0);
    for (const [seq, change] of pending) if (!seq || seq > floor) applyChange(change, seq);
  } catch (error) {
    setConnection(`Reconnecting… ${error.message}`);
    resyncing = false;
    if (source) source.close();
    scheduleReconnect();
    return;
  }
  resyncing = false;
  pending = [];
  renderAll();
}

function setConnection(text) {
  const banner = $("connection");
  banner.textContent = text;
  banner.hidden = !text;
}

function loadSnapshot(snapshot) {
  state.bot = snapshot.bot || state.bot;
  state.user = snapshot.user || state.user;
  const slack = snapshot.slack || {};
  state.slack.channels = slack.channels || [];
  state.slack.disabled = disabledReason(slack);
  state.slack.messages = new Map();
  for (const m of slack.messages || []) state.slack.messages.set(messageKey(m), m);
  const teams = snapshot.teams || {};
  state.teams.conversations = teams.conversations || [];
  state.teams.disabled = disabledReason(teams);
  state.teams.activities = new Map();
  state.teams.bot = teams.bot || state.teams.bot;
  for (const a of teams.activities || []) state.teams.activities.set(activityKey(a), a);
  state.statuses = new Map();
  state.prompts = new Map();
  state.titles = new Map();
  // An assistant thread's state: {channel, thread_ts, status, loading_messages, prompts,
  // prompts_title, title}.
  for (const t of slack.threads || []) {
    if (t.status) state.statuses.set(threadKey(t), t);
    if (t.prompts && t.prompts.length) {
      state.prompts.set(threadKey(t), { ...t, title: t.prompts_title || "" });
    }
    if (t.title) state.titles.set(threadKey(t), t.title);
  }
  state.people = new Map((slack.users || []).map((u) => [u.id, u.name]));
  state.answers = (snapshot.answers || []).slice();
  state.seq = Number(snapshot.seq || 0);
  if (!state.slack.channels.some((c) => c.id === state.channel)) {
    state.channel = (state.slack.channels.find((c) => !c.is_im) || state.slack.channels[0] || {}).id || "";
    state.thread = null;
  }
  if (!state.teams.conversations.some((c) => c.id === state.teamsConversation)) {
    state.teamsConversation = (state.teams.conversations[0] || {}).id || "";
  }
}

function disabledReason(part) {
  if (typeof part.disabled === "string" && part.disabled) return part.disabled;
  if (part.enabled === false) {
    return part.disabled_reason || part.reason || "This view is turned off on this server.";
  }
  return "";
}

const messageKey = (m) => `${m.channel}|${m.ts}`;
const threadKey = (x) => `${x.channel}|${x.thread_ts || ""}`;

function applyChange(change, seq) {
  if (seq) state.seq = Math.max(state.seq, seq);
  switch (change.type) {
    case "slack.message": {
      const m = change.message;
      const key = messageKey(m);
      if (!state.slack.messages.has(key) && m.channel !== state.channel) state.unread.add(m.channel);
      state.slack.messages.set(key, m);
      if (m.bot_id && !m.ephemeral) {
        // Slack clears the assistant's status once the app replies in that thread.
        state.statuses.delete(`${m.channel}|${m.thread_ts || m.ts}`);
      }
      break;
    }
    case "slack.deleted":
      state.slack.messages.delete(`${change.channel}|${change.ts}`);
      break;
    case "slack.status":
      if (change.status) state.statuses.set(threadKey(change), change);
      else state.statuses.delete(threadKey(change));
      break;
    case "slack.prompts":
      state.prompts.set(threadKey(change), change);
      break;
    case "slack.title":
      state.titles.set(threadKey(change), change.title);
      break;
    case "teams.activity": {
      const a = change.activity;
      state.teams.activities.set(activityKey(a), a);
      if (a.from === "bot") state.teams.typing.delete(a.conversation);
      break;
    }
    case "teams.typing": {
      // Teams shows "… is typing" for a few seconds, or until the bot's message comes.
      const conversation = change.conversation;
      clearTimeout(state.teams.typing.get(conversation));
      state.teams.typing.set(conversation, setTimeout(() => {
        state.teams.typing.delete(conversation);
        renderAll();
      }, 3000));
      break;
    }
    case "teams.deleted":
      for (const [key, a] of state.teams.activities) {
        if (a.id === change.id) state.teams.activities.delete(key);
      }
      break;
    case "usage":
      state.answers.push(change.usage);
      break;
    case "reset":
      state.feedback.clear();
      state.unread.clear();
      state.thread = null;
      void resync();
      return;
    default:
      return; // a change this page does not know: newer server, older page
  }
  renderAll();
}

// ---------------------------------------------------------------------------- rendering

let currentRender = 0;

function renderAll() {
  // Coalesce bursts of changes into one render per frame.
  if (currentRender) return;
  currentRender = requestAnimationFrame(() => {
    currentRender = 0;
    renderViews();
    renderSlack();
    renderTeams();
    renderUsage();
  });
}

function renderViews() {
  for (const kbd of document.querySelectorAll(".mention-example")) {
    kbd.textContent = `@${state.bot.name}`;
  }
  $("view-slack").setAttribute("aria-pressed", String(state.view === "slack"));
  $("view-teams").setAttribute("aria-pressed", String(state.view === "teams"));
  $("slack-view").hidden = state.view !== "slack";
  $("teams-view").hidden = state.view !== "teams";
}

function names() {
  const map = Object.fromEntries(state.people);
  map[state.bot.slack_user_id] = state.bot.name;
  map[state.user.id] = state.user.name;
  for (const c of state.slack.channels) map[c.id] = c.name;
  return map;
}

function channelLabel(channel) {
  if (!channel) return "";
  return channel.is_im ? channel.name || state.bot.name : `#${channel.name}`;
}

function renderSlack() {
  const channel = state.slack.channels.find((c) => c.id === state.channel);
  renderChannelList($("slack-channels"), state.slack.channels.filter((c) => !c.is_im));
  renderChannelList($("slack-dms"), state.slack.channels.filter((c) => c.is_im));
  const label = channelLabel(channel);
  $("slack-channel-title").textContent = label || "Slack";
  $("composer-text").placeholder = `Message ${label}`;
  $("composer-label").textContent = `Message ${label}`;
  const disabled = state.slack.disabled;
  $("slack-disabled").hidden = !disabled;
  $("slack-disabled").textContent = disabled;
  for (const el of $("composer").elements) el.disabled = Boolean(disabled);
  $("assistant-open").hidden = Boolean(disabled);

  const all = [...state.slack.messages.values()].filter((m) => m.channel === state.channel);
  all.sort((a, b) => Number(a.ts) - Number(b.ts));
  const replies = new Map();
  for (const m of all) {
    if (m.thread_ts && m.thread_ts !== m.ts) {
      replies.set(m.thread_ts, (replies.get(m.thread_ts) || 0) + 1);
    }
  }
  const top = all.filter((m) => !m.thread_ts || m.thread_ts === m.ts);
  const ctx = {
    names: names(),
    bot: state.bot,
    replies,
    feedbackGiven: state.feedback,
    onAction: slackAction,
  };
  const sig = (m) => [m, replies.get(m.ts) || 0, state.feedback.get(messageKey(m)) || ""];
  syncList($("slack-messages"), top, messageKey, (m) => renderSlackMessage(m, ctx), sig);
  renderStatus($("slack-status"), `${state.channel}|`, true);

  const pane = $("thread-pane");
  const thread = state.thread;
  // The assistant panel stays open beside whatever channel is shown, as in Slack.
  pane.hidden = !thread || (thread.channel !== state.channel && !thread.assistant);
  if (pane.hidden) {
    syncList($("thread-messages"), [], messageKey, () => null);
  } else {
    const inThread = [...state.slack.messages.values()]
      .filter((m) => m.channel === thread.channel && (m.ts === thread.ts || m.thread_ts === thread.ts))
      .sort((a, b) => Number(a.ts) - Number(b.ts));
    const key = `${thread.channel}|${thread.ts}`;
    const where = channelLabel(state.slack.channels.find((c) => c.id === thread.channel));
    $("thread-title").textContent =
      state.titles.get(key) || (thread.assistant ? "Assistant" : `Thread in ${where}`);
    const threadCtx = { ...ctx, inThread: true };
    syncList($("thread-messages"), inThread, messageKey, (m) => renderSlackMessage(m, threadCtx), sig);
    renderPrompts(state.prompts.get(key), thread);
    renderStatus($("thread-status"), key, false);
  }
}

function renderChannelList(list, channels) {
  syncList(list, channels, (c) => c.id, (c) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "channel-button";
    button.textContent = channelLabel(c);
    button.dataset.channel = c.id;
    if (c.id === state.channel) button.setAttribute("aria-current", "page");
    if (state.unread.has(c.id) && c.id !== state.channel) {
      const badge = document.createElement("span");
      badge.className = "unread";
      badge.textContent = "new";
      button.append(" ", badge);
    }
    button.addEventListener("click", () => selectChannel(c.id));
    li.append(button);
    return li;
  }, (c) => [c, c.id === state.channel, state.unread.has(c.id)]);
}

function renderStatus(el, key, includeThreads) {
  let status = state.statuses.get(key);
  if (!status && includeThreads) {
    for (const [k, s] of state.statuses) {
      const [channel, threadTs] = k.split("|");
      const shownInPane = state.thread && state.thread.ts === threadTs;
      if (channel === state.channel && !shownInPane) status = s;
    }
  }
  const text = status ? `${state.bot.name} ${status.status}` : "";
  if (el.dataset.status === text) return;
  el.dataset.status = text;
  el.textContent = text;
  clearInterval(el._timer);
  const loading = (status && status.loading_messages) || [];
  if (loading.length) {
    // Slack rotates the loading messages while the status stands.
    let i = 0;
    const line = document.createElement("span");
    line.className = "loading";
    line.textContent = ` · ${loading[0]}`;
    el.append(line);
    el._timer = setInterval(() => {
      i = (i + 1) % loading.length;
      line.textContent = ` · ${loading[i]}`;
    }, 2000);
  }
}

function renderPrompts(prompts, thread) {
  const box = $("thread-prompts");
  box.hidden = !prompts || !(prompts.prompts || []).length;
  box.replaceChildren();
  if (box.hidden) return;
  const heading = document.createElement("p");
  heading.className = "prompts-title";
  heading.textContent = prompts.title || "Try these prompts:";
  box.append(heading);
  for (const p of prompts.prompts) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "prompt";
    button.textContent = p.title;
    button.addEventListener("click", () =>
      sendSlack(thread.channel, thread.ts, p.message, $("thread-error")),
    );
    box.append(button);
  }
}

function renderTeams() {
  const conv = state.teams.conversations.find((c) => c.id === state.teamsConversation);
  syncList($("teams-conversations"), state.teams.conversations, (c) => c.id, (c) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "channel-button";
    button.textContent = c.name;
    if (c.id === state.teamsConversation) button.setAttribute("aria-current", "page");
    button.addEventListener("click", () => {
      state.teamsConversation = c.id;
      renderAll();
      $("teams-text").focus();
    });
    li.append(button);
    return li;
  }, (c) => [c, c.id === state.teamsConversation]);
  $("teams-title").textContent = conv ? conv.name : "Teams";
  $("teams-label").textContent = conv ? `Message ${conv.name}` : "Type a message";
  const disabled = state.teams.disabled;
  $("teams-disabled").hidden = !disabled;
  $("teams-disabled").textContent = disabled;
  for (const el of $("teams-composer").elements) el.disabled = Boolean(disabled);

  // Replies (a channel's threads) follow the post they answer.
  const acts = [...state.teams.activities.values()].filter(
    (a) => conv && (a.conversation === conv.id || a.conversation === conv.type),
  );
  const byId = new Map(acts.map((a) => [a.id, a]));
  const ordered = [];
  for (const a of acts) {
    if (a.reply_to && byId.has(a.reply_to)) continue;
    ordered.push(a);
    for (const r of acts) if (r.reply_to === a.id) ordered.push(r);
  }
  const typing = conv && state.teams.typing.has(conv.type) ? `${state.teams.bot.name} is typing…` : "";
  if ($("teams-status").textContent !== typing) $("teams-status").textContent = typing;
  const ctx = { bot: state.teams.bot, onFeedback: teamsFeedback, feedbackGiven: state.feedback };
  const sig = (a) => [a, state.feedback.get(activityKey(a)) || ""];
  syncList($("teams-messages"), ordered, activityKey, (a) => renderTeamsActivity(a, ctx), sig);
}

function renderUsage() {
  const rows = state.answers.slice(-50).reverse();
  $("usage-empty").hidden = rows.length > 0;
  syncList($("usage-rows"), rows, (u) => usageKey(u), (u) => renderUsageRow(u, usagePlace(u)));
}

/** Where an answer went, in the page's words: "Slack #general, thread" or "Teams: General". */
function usagePlace(u) {
  if (u.platform === "slack") {
    const channel = state.slack.channels.find((c) => c.id === u.channel);
    const name = channel ? channelLabel(channel) : u.channel || "";
    return `Slack ${name}${u.thread_ts ? ", thread" : ""}`.trim();
  }
  if (u.platform === "teams") {
    const conv = state.teams.conversations.find(
      (c) => u.channel && (u.channel === c.id || u.channel.startsWith(`${c.id};`)),
    );
    return `Teams${conv ? `: ${conv.name}` : ""}`;
  }
  return u.platform || "answer";
}

const usageIds = new WeakMap();
let usageCounter = 0;
function usageKey(u) {
  if (!usageIds.has(u)) usageIds.set(u, `u${++usageCounter}`);
  return usageIds.get(u);
}

/**
 * Make `list`'s children the rendering of `items`, in order, touching only what changed: an
 * item keeps its element (so focus stays, and a live region announces only new items) and its
 * content is rebuilt only when `signature(item)` changed. An element marked `data-settle`
 * (a bot reply) is aria-busy while it keeps changing, so a screen reader reads the answer
 * once it settles instead of every edit.
 */
function syncList(list, items, keyOf, build, signature = (item) => item) {
  // A list read at its end follows new messages; one scrolled back stays where it is.
  const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 48;
  const old = list._byKey || new Map();
  const next = new Map();
  let cursor = list.firstElementChild;
  for (const item of items) {
    const key = keyOf(item);
    const sig = JSON.stringify(signature(item));
    let entry = old.get(key);
    if (!entry) {
      entry = { el: build(item), sig };
      entry.el.dataset.key = key;
    } else if (entry.sig !== sig) {
      refill(entry.el, build(item));
      entry.el.dataset.key = key;
      entry.sig = sig;
      if (entry.el.dataset.settle) settle(entry.el);
    }
    next.set(key, entry);
    if (entry.el !== cursor) list.insertBefore(entry.el, cursor);
    else cursor = cursor.nextElementSibling;
  }
  for (const [key, entry] of old) if (!next.has(key)) entry.el.remove();
  list._byKey = next;
  if (atEnd) list.scrollTop = list.scrollHeight;
}

function refill(target, fresh) {
  const active = document.activeElement;
  const focusKey = active && target.contains(active) ? active.dataset.focus : null;
  for (const name of target.getAttributeNames()) {
    if (name !== "aria-busy" && !fresh.hasAttribute(name)) target.removeAttribute(name);
  }
  for (const name of fresh.getAttributeNames()) target.setAttribute(name, fresh.getAttribute(name));
  target.replaceChildren(...fresh.childNodes);
  if (focusKey) target.querySelector(`[data-focus="${focusKey}"]`)?.focus();
}

function settle(element) {
  element.setAttribute("aria-busy", "true");
  clearTimeout(element._settle);
  element._settle = setTimeout(() => element.removeAttribute("aria-busy"), 1500);
}

// ---------------------------------------------------------------------------- actions

function showError(el, error) {
  el.textContent = error ? error.message || String(error) : "";
}

async function sendSlack(channel, threadTs, text, errorEl) {
  showError(errorEl, null);
  const trimmed = text.trim();
  if (trimmed.startsWith("/")) {
    const [command, ...rest] = trimmed.split(/\s+/);
    if (threadTs) {
      // Slack's own client refuses slash commands in threads.
      throw new ServerError(`${command} is not supported in threads. Sorry!`);
    }
    await api("/playground/slack/commands", { channel, command, text: rest.join(" ") });
    return;
  }
  await api("/playground/slack/messages", {
    channel,
    thread_ts: threadTs || null,
    text, // the server turns "@assistant" into Slack's <@U…> mention, as Slack's client does
  });
}

function slackAction(action, message, extra) {
  const errorEl = state.thread ? $("thread-error") : $("composer-error");
  const run = async () => {
    if (action === "thread") {
      openThread(message.channel, message.thread_ts || message.ts);
    } else if (action === "summarize") {
      await api("/playground/slack/shortcut", {
        channel: message.channel,
        message_ts: message.ts,
        callback_id: "summarize_thread",
      });
    } else if (action === "feedback") {
      state.feedback.set(messageKey(message), extra);
      renderAll();
      await api("/playground/slack/feedback", {
        channel: message.channel,
        message_ts: message.ts,
        value: extra,
      });
    }
  };
  showError(errorEl, null);
  run().catch((error) => showError(errorEl, error));
}

function teamsFeedback(activity, reaction) {
  state.feedback.set(activityKey(activity), reaction);
  renderAll();
  api("/playground/teams/feedback", {
    conversation: teamsConversationName(),
    message_id: activity.id,
    reaction,
  }).catch((error) => showError($("teams-error"), error));
}

function teamsConversationName() {
  const conv = state.teams.conversations.find((c) => c.id === state.teamsConversation);
  if (!conv) return state.teamsConversation;
  return ["personal", "channel"].includes(conv.type) ? conv.type : conv.id;
}

function selectChannel(id) {
  state.channel = id;
  state.unread.delete(id);
  const thread = state.thread;
  if (thread && thread.assistant && !isDm(id)) {
    // Slack tells the app which channel the person is now looking at.
    api("/playground/slack/assistant", {
      action: "context",
      thread_ts: thread.ts,
      context_channel: id,
    }).catch((error) => showError($("thread-error"), error));
  } else if (thread && thread.channel !== id && !thread.assistant) {
    state.thread = null;
  }
  renderAll();
  $("composer-text").focus();
}

let threadOpener = null;

const isDm = (id) => Boolean(state.slack.channels.find((c) => c.id === id && c.is_im));

function openThread(channel, ts, assistant = false) {
  threadOpener = document.activeElement;
  if (!assistant) state.channel = channel;
  state.unread.delete(channel);
  state.thread = { channel, ts, assistant };
  renderAll();
  requestAnimationFrame(() => $("thread-text").focus());
}

function closeThread() {
  if (!state.thread) return;
  state.thread = null;
  renderAll();
  const back = threadOpener && document.contains(threadOpener) ? threadOpener : $("composer-text");
  back.focus();
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(new ServerError(`Could not read ${file.name}.`));
    reader.readAsDataURL(file);
  });
}

async function uploadFile(input, textArea, channel, threadTs, errorEl) {
  const file = input.files && input.files[0];
  if (!file) return;
  showError(errorEl, null);
  try {
    const data = await readFile(file);
    const comment = textArea.value.trim();
    await api("/playground/slack/files", {
      channel,
      thread_ts: threadTs || null,
      name: file.name,
      mime_type: file.type || "application/octet-stream",
      data_base64: data,
      ...(comment ? { comment } : {}),
    });
    textArea.value = "";
  } catch (error) {
    showError(errorEl, error);
  } finally {
    input.value = "";
  }
}

function wireComposer(form, textArea, errorEl, send) {
  textArea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = textArea.value;
    if (!text.trim()) return;
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      await send(text);
      textArea.value = "";
      showError(errorEl, null);
    } catch (error) {
      showError(errorEl, error);
    } finally {
      submit.disabled = false;
      textArea.focus();
    }
  });
}

function init() {
  if (!token) {
    setConnection("This page needs the address `chatbot serve` printed (it ends in ?token=…).");
    return;
  }
  wireComposer($("composer"), $("composer-text"), $("composer-error"), (text) =>
    sendSlack(state.channel, null, text, $("composer-error")),
  );
  wireComposer($("thread-composer"), $("thread-text"), $("thread-error"), (text) =>
    sendSlack(state.thread.channel, state.thread.ts, text, $("thread-error")),
  );
  wireComposer($("teams-composer"), $("teams-text"), $("teams-error"), (text) =>
    api("/playground/teams/messages", { conversation: teamsConversationName(), text }),
  );
  $("file-input").addEventListener("change", () =>
    uploadFile($("file-input"), $("composer-text"), state.channel, null, $("composer-error")),
  );
  $("thread-file-input").addEventListener("change", () =>
    uploadFile(
      $("thread-file-input"),
      $("thread-text"),
      state.thread?.channel,
      state.thread?.ts,
      $("thread-error"),
    ),
  );
  $("insert-mention").addEventListener("click", () => {
    const area = $("composer-text");
    const mention = `@${state.bot.name} `;
    area.value = area.value && !area.value.endsWith(" ") ? `${area.value} ${mention}` : area.value + mention;
    area.focus();
  });
  $("thread-close").addEventListener("click", closeThread);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.thread && state.view === "slack") closeThread();
  });
  $("assistant-open").addEventListener("click", () => {
    // Slack opens the assistant panel on a new thread of the DM with the app.
    const looking = isDm(state.channel) ? {} : { context_channel: state.channel };
    api("/playground/slack/assistant", { action: "open", ...looking })
      .then((opened) => {
        const dm = state.slack.channels.find((c) => c.is_im);
        if (dm && opened && opened.thread_ts) openThread(dm.id, opened.thread_ts, true);
      })
      .catch((error) => showError($("composer-error"), error));
  });
  $("view-slack").addEventListener("click", () => switchView("slack"));
  $("view-teams").addEventListener("click", () => switchView("teams"));
  $("reset").addEventListener("click", () => {
    api("/playground/reset", {}).catch((error) => setConnection(error.message));
  });
  connect();
}

function switchView(view) {
  state.view = view;
  renderAll();
  requestAnimationFrame(() => $(view === "slack" ? "composer-text" : "teams-text").focus());
}

// Exposed for the browser test and for curious people in the console; not an API.
window.playground = { state, renderMarkup, safeLink };

init();
