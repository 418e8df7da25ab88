/*
 * quanta's web page logic (static/app.js), loaded by static/index.html; no framework, no build step, no network
 * beyond the server itself, so the page works offline straight from the Python package.
 *
 * What it does: sends the conversation to /v1/chat/completions with stream=true and reads the event stream with
 * fetch() and a ReadableStream reader (Stop aborts the fetch, which closes the connection, and the server then
 * cancels the request and frees its slot); regenerates the last reply; keeps conversations and sampler settings
 * in localStorage; asks for an API key when /props says one is required (or answers 401) or a request gets 401;
 * shows the server's OpenAI-shaped errors ({"error": {"message": ...}}) in the page; and renders replies with a
 * small markdown renderer written to be safe: it escapes all HTML first, so the only tags in its output are the
 * ones it writes itself, and links must be http(s).
 *
 * window.quanta exposes renderMarkdown and escapeHtml for tests and the console.
 */
"use strict";

(function () {
  // ---- markdown ----------------------------------------------------------------------------------------------

  const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
  }

  // Inline markup of one block's (already escaped) text: code spans, links (http and https only, written as
  // [text](url) or bare), bold, italic, strikethrough. Finished pieces are parked in `slots` behind NUL-delimited
  // placeholders so that later rules cannot reach inside them (the input has had its NULs removed).
  function inline(text) {
    const slots = [];
    const park = (html) => "\u0000" + (slots.push(html) - 1) + "\u0000";
    let s = text.replace(/(`+)([\s\S]*?[^`])\1(?!`)/g, (m, ticks, code) => {
      const body = /^ [\s\S]* $/.test(code) && code.trim() ? code.slice(1, -1) : code;
      return park("<code>" + body + "</code>");
    });
    s = s.replace(/\[([^\[\]\n]+)\]\((https?:\/\/(?:[^\s()&]|&amp;)+)\)/g,
                  (m, label, url) => park(link(url, emphasis(label))));
    // A bare URL ends at a space or an escaped quote or bracket (&amp; is a URL's own); punctuation that ends it
    // belongs to the sentence.
    s = s.replace(/\bhttps?:\/\/(?:[^\s\u0000&]|&amp;)+/g, (url) => {
      let tail = "";
      for (;;) {
        const m = /[.,;:!?)\]*_~]$/.exec(url);
        if (!m || m.index === 0) break;
        tail = m[0] + tail;
        url = url.slice(0, m.index);
      }
      return /^https?:\/\/./.test(url) ? park(link(url, url)) + tail : url + tail;
    });
    s = emphasis(s);
    for (let i = 0; i < 4 && s.indexOf("\u0000") >= 0; i++) {
      s = s.replace(/\u0000(\d+)\u0000/g, (m, n) => slots[+n]);
    }
    return s;
  }

  function link(url, label) {
    // `url` is escaped text without spaces or quotes, so it cannot leave the attribute.
    return '<a href="' + url + '" target="_blank" rel="noopener noreferrer">' + label + "</a>";
  }

  function emphasis(s) {
    return s
      .replace(/\*\*\*(?=\S)([\s\S]*?\S)\*\*\*/g, "<strong><em>$1</em></strong>")
      .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
      .replace(/\*(?=[^\s*])([^*]*?[^\s*])\*/g, "<em>$1</em>")
      .replace(/\*([^\s*])\*/g, "<em>$1</em>")
      .replace(/(^|[^\w])_(?=[^\s_])([^_]*?[^\s_]|[^\s_])_(?!\w)/g, "$1<em>$2</em>")
      .replace(/~~(?=\S)([\s\S]*?\S)~~/g, "<del>$1</del>");
  }

  const FENCE = /^ {0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)/;
  const HEADING = /^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/;
  const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
  const QUOTE = /^ {0,3}&gt; ?/;
  const ITEM = /^([ \t]*)([-*+]|\d{1,9}[.)])([ \t]+|$)(.*)$/;
  const TABLE_RULE = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;

  function indentOf(line) {
    return /^[ \t]*/.exec(line)[0].replace(/\t/g, "    ").length;
  }

  function cells(row) {
    let r = row.trim();
    if (r.startsWith("|")) r = r.slice(1);
    if (r.endsWith("|") && !r.endsWith("\\|")) r = r.slice(0, -1);
    return r.split(/(?<!\\)\|/).map((c) => inline(c.trim().replace(/\\\|/g, "|")));
  }

  // Blocks of escaped lines: code fences, headings, rules, quotes, lists, tables, paragraphs.
  function blocks(lines) {
    const out = [];
    let para = [];
    const flush = () => {
      if (para.length) out.push("<p>" + inline(para.join("\n")).replace(/\n/g, "<br>") + "</p>");
      para = [];
    };
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      const fence = FENCE.exec(line);
      if (fence) {
        flush();
        const mark = fence[1];
        const lang = fence[2].replace(/[^\w+#.-]/g, "");
        const close = new RegExp("^ {0,3}" + (mark[0] === "`" ? "`" : "~") + "{" + mark.length + ",}[ \\t]*$");
        const body = [];
        for (i++; i < lines.length && !close.test(lines[i]); i++) body.push(lines[i]);
        i++; // the closing fence; a reply still streaming may not have one yet
        out.push("<pre><code" + (lang ? ' class="language-' + lang + '"' : "") + ">" + body.join("\n") +
                 "</code></pre>");
        continue;
      }
      if (!line.trim()) {
        flush();
        i++;
        continue;
      }
      const heading = HEADING.exec(line);
      if (heading) {
        flush();
        const n = heading[1].length;
        out.push("<h" + n + ">" + inline(heading[2]) + "</h" + n + ">");
        i++;
        continue;
      }
      if (RULE.test(line)) {
        flush();
        out.push("<hr>");
        i++;
        continue;
      }
      if (QUOTE.test(line)) {
        flush();
        const quoted = [];
        for (; i < lines.length && QUOTE.test(lines[i]); i++) quoted.push(lines[i].replace(QUOTE, ""));
        out.push("<blockquote>" + blocks(quoted) + "</blockquote>");
        continue;
      }
      const item = ITEM.exec(line);
      if (item && (item[4].trim() || !para.length)) {
        flush();
        i = list(lines, i, out);
        continue;
      }
      if (line.includes("|") && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1]) && lines[i + 1].includes("-")) {
        flush();
        const head = cells(line);
        const aligns = cells(lines[i + 1]).map((c) => (/^:-+:$/.test(c) ? "center" : /-:$/.test(c) ? "right" : ""));
        const cell = (tag, html, k) =>
          "<" + tag + (aligns[k] ? ' style="text-align:' + aligns[k] + '"' : "") + ">" + html + "</" + tag + ">";
        let html = "<table><thead><tr>" + head.map((c, k) => cell("th", c, k)).join("") + "</tr></thead><tbody>";
        for (i += 2; i < lines.length && lines[i].includes("|") && lines[i].trim(); i++) {
          html += "<tr>" + cells(lines[i]).map((c, k) => cell("td", c, k)).join("") + "</tr>";
        }
        out.push(html + "</tbody></table>");
        continue;
      }
      para.push(line.trim());
      i++;
    }
    flush();
    return out.join("");
  }

  // One list starting at lines[i]; appends its HTML to out and returns the index after it. Items hold their
  // own blocks (nested lists, code fences), taken from the lines indented under them.
  function list(lines, i, out) {
    const first = ITEM.exec(lines[i]);
    const base = indentOf(lines[i]);
    const ordered = /\d/.test(first[2]);
    const items = [];
    let current = null;
    let offset = 0;
    while (i < lines.length) {
      const line = lines[i];
      const m = ITEM.exec(line);
      const ind = indentOf(line);
      if (m && ind <= base + 1 && /\d/.test(m[2]) === ordered && (m[4].trim() || current === null || ind < offset)) {
        current = [m[4]];
        items.push(current);
        offset = ind + m[2].length + Math.max(1, Math.min(m[3].length, 4));
        i++;
      } else if (!line.trim()) {
        let j = i + 1;
        while (j < lines.length && !lines[j].trim()) j++;
        if (j === lines.length) break;
        const next = ITEM.exec(lines[j]);
        const sameList = next && indentOf(lines[j]) <= base + 1 && /\d/.test(next[2]) === ordered;
        if (!sameList && indentOf(lines[j]) <= base) break;
        current.push("");
        i++;
      } else if (ind > base) {
        current.push(line.replace(new RegExp("^[ \\t]{0," + offset + "}"), ""));
        i++;
      } else {
        break;
      }
    }
    const start = ordered ? parseInt(first[2], 10) : 1;
    const tag = ordered ? "ol" : "ul";
    out.push("<" + tag + (ordered && start !== 1 ? ' start="' + start + '"' : "") + ">" +
             items.map((body) => "<li>" + blocks(body) + "</li>").join("") + "</" + tag + ">");
    return i;
  }

  function renderMarkdown(text) {
    const clean = String(text == null ? "" : text).replace(/\r\n?/g, "\n").replace(/\u0000/g, "");
    return blocks(escapeHtml(clean).split("\n"));
  }

  window.quanta = { renderMarkdown, escapeHtml };

  // ---- storage -----------------------------------------------------------------------------------------------

  const CHATS_KEY = "quanta.chats.v1";
  const SETTINGS_KEY = "quanta.settings.v1";
  const API_KEY = "quanta.apiKey";
  const FIELDS = {  // setting -> how the request takes it
    temperature: parseFloat, top_p: parseFloat, top_k: (v) => parseInt(v, 10), min_p: parseFloat,
    max_tokens: (v) => parseInt(v, 10), seed: (v) => parseInt(v, 10),
  };

  function readJSON(storage, key, fallback) {
    try {
      const v = JSON.parse(storage.getItem(key));
      return v && typeof v === "object" ? v : fallback;
    } catch (e) {
      return fallback;
    }
  }

  function writeJSON(storage, key, value) {
    try {
      storage.setItem(key, JSON.stringify(value));
    } catch (e) {
      showError("Could not save in the browser's storage: " + e.message);
    }
  }

  function loadChats() {
    const s = readJSON(localStorage, CHATS_KEY, {});
    const chats = Array.isArray(s.chats) ? s.chats.filter((c) => c && c.id && Array.isArray(c.messages)) : [];
    for (const chat of chats) {
      for (const m of chat.messages) {
        if (m.status === "streaming") m.status = "stopped"; // the page went away mid-reply
      }
    }
    return { current: chats.some((c) => c.id === s.current) ? s.current : null, chats };
  }

  let store = loadChats();
  let saveTimer = null;

  function save() {
    clearTimeout(saveTimer);
    saveTimer = null;
    writeJSON(localStorage, CHATS_KEY, store);
  }

  function saveSoon() {
    if (saveTimer === null) saveTimer = setTimeout(save, 1000);
  }

  function newId() {  // crypto.randomUUID needs a secure context, which plain http on a LAN is not
    return Date.now().toString(36) + Math.random().toString(36).slice(2, 10);
  }

  function currentChat() {
    return store.chats.find((c) => c.id === store.current) || null;
  }

  function titleOf(text) {
    const t = text.replace(/\s+/g, " ").trim();
    return t.length > 48 ? t.slice(0, 47) + "\u2026" : t || "New chat";
  }

  // ---- the page ----------------------------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  const el = {};
  let busy = null;       // the reply streaming now: {chat, message, controller}
  let props = null;      // /props once it answered
  let renderQueued = false;

  function showError(message) {
    if (!el.error) return;
    el.errorText.textContent = message;
    el.error.hidden = false;
  }

  function clearError() {
    el.error.hidden = true;
    el.errorText.textContent = "";
  }

  function apiKey() {
    return (el.apiKey && el.apiKey.value.trim()) || "";
  }

  function headers(json) {
    const h = {};
    if (json) h["Content-Type"] = "application/json";
    const key = apiKey();
    if (key) h["Authorization"] = "Bearer " + key;
    return h;
  }

  function askForKey(message) {
    el.apiKeyRow.hidden = false;
    setSettingsOpen(true);
    if (message) showError(message);
    el.apiKey.focus();
  }

  async function errorOf(response) {
    let message = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) message = body.error.message;
    } catch (e) { /* not JSON: keep the status line */ }
    const err = new Error(message);
    err.status = response.status;
    return err;
  }

  let propsLoading = false;

  async function loadProps() {
    if (propsLoading) return;
    propsLoading = true;
    try {
      await askProps();
    } finally {
      propsLoading = false;
    }
  }

  async function askProps() {
    let response;
    try {
      response = await fetch("props", { headers: headers(false) });
    } catch (e) {
      el.modelName.textContent = "server unreachable";
      setTimeout(loadProps, 3000);
      return;
    }
    if (response.status === 503) {
      el.modelName.textContent = "loading model\u2026";
      setTimeout(loadProps, 1000);
      return;
    }
    if (response.status === 401) {
      el.modelName.textContent = "API key needed";
      const reason = (await errorOf(response)).message;  // "Missing API key ..." or "Invalid API key"
      askForKey("This server needs an API key (" + reason + "): enter it under Settings.");
      return;
    }
    if (!response.ok) {
      showError((await errorOf(response)).message);
      return;
    }
    const answer = await response.json();
    if (answer.api_key_required) {
      el.apiKeyRow.hidden = false;
      if (!apiKey()) {  // props stays unset, so typing a key asks again
        el.modelName.textContent = "API key needed";
        askForKey("This server needs an API key: enter it under Settings.");
        return;
      }
    }
    props = answer;
    el.modelName.textContent = props.model;
    $("tab-images").hidden = !props.image_model;
    el.serverInfo.textContent = props.parallel + " slots, " + props.n_ctx + " tokens of context (shared)";
    if (!el.error.hidden && /API key/.test(el.errorText.textContent)) clearError();
  }

  // The image tab: one POST /v1/images/generations per click; the PNG shows above the form, newest first.
  async function generateImage(event) {
    event.preventDefault();
    const prompt = $("image-prompt").value.trim();
    if (!prompt) return;
    const button = $("image-generate");
    const body = { prompt: prompt, n: 1, size: $("image-size").value.trim() || "512x512",
                   steps: Number($("image-steps").value) || 20, negative_prompt: $("image-negative").value };
    const seed = $("image-seed").value.trim();
    if (seed !== "") body.seed = Number(seed);
    button.disabled = true;
    button.textContent = "Generating\u2026";
    clearError();
    try {
      const response = await fetch("v1/images/generations", { method: "POST", headers: headers(true),
                                                               body: JSON.stringify(body) });
      if (!response.ok) throw await errorOf(response);
      const answer = await response.json();
      const figure = document.createElement("figure");
      const img = document.createElement("img");
      img.src = "data:image/png;base64," + answer.data[0].b64_json;
      img.alt = prompt;
      img.dataset.testid = "image";
      const caption = document.createElement("figcaption");
      caption.textContent = prompt + " (" + body.size + ", " + body.steps + " steps)";
      figure.append(img, caption);
      $("images").prepend(figure);
    } catch (e) {
      showError(e.message);
    } finally {
      button.disabled = false;
      button.textContent = "Generate";
    }
  }

  function setSettingsOpen(open) {
    document.body.classList.toggle("settings-open", open);
    el.settingsToggle.setAttribute("aria-expanded", String(open));
  }

  function setSidebarOpen(open) {
    document.body.classList.toggle("sidebar-open", open);
    el.sidebarToggle.setAttribute("aria-expanded", String(open));
  }

  // ---- rendering ---------------------------------------------------------------------------------------------

  function renderChats() {
    el.conversations.replaceChildren();
    const sorted = store.chats.slice().sort((a, b) => (b.updated || 0) - (a.updated || 0));
    for (const chat of sorted) {
      const li = document.createElement("li");
      li.className = "conversation";
      li.dataset.chatId = chat.id;
      li.dataset.testid = "conversation";
      const open = document.createElement("button");
      open.type = "button";
      open.className = "conversation-open";
      open.dataset.testid = "conversation-open";
      open.textContent = chat.title || "New chat";
      open.title = chat.title || "";
      if (chat.id === store.current) open.setAttribute("aria-current", "true");
      open.addEventListener("click", () => switchTo(chat.id));
      const del = document.createElement("button");
      del.type = "button";
      del.className = "icon-button conversation-delete";
      del.dataset.testid = "conversation-delete";
      del.setAttribute("aria-label", "Delete conversation: " + (chat.title || "New chat"));
      del.title = "Delete";
      del.textContent = "\u00d7";
      del.addEventListener("click", () => deleteChat(chat.id));
      li.append(open, del);
      el.conversations.append(li);
    }
  }

  function messageElement(m, index) {
    const article = document.createElement("article");
    article.className = "message " + m.role;
    article.dataset.testid = "message-" + m.role;
    article.dataset.index = String(index);
    const role = document.createElement("div");
    role.className = "role";
    role.textContent = m.role === "user" ? "You" : (m.model || (props && props.model) || "Assistant");
    const content = document.createElement("div");
    content.className = "content";
    content.dataset.testid = "message-content";
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.dataset.testid = "message-meta";
    article.append(role, content, meta);
    fillMessage(article, m);
    return article;
  }

  function fillMessage(article, m) {
    const content = article.querySelector(".content");
    const meta = article.querySelector(".meta");
    article.dataset.status = m.status || "done";
    article.setAttribute("aria-busy", String(m.status === "streaming")); // screen readers: read it once done
    if (m.role === "user") {
      content.textContent = m.content;
    } else {
      content.innerHTML = renderMarkdown(m.content);
    }
    const notes = [];
    if (m.status === "stopped") notes.push("stopped");
    if (m.status === "length") notes.push("cut at the token limit");
    if (m.status === "error") notes.push("error: " + (m.error || "unknown"));
    if (m.tokens) notes.push(m.tokens + " tokens" + (m.tps ? ", " + m.tps.toFixed(1) + " tokens/s" : ""));
    meta.textContent = notes.join(" \u00b7 ");
    meta.hidden = !notes.length;
    article.classList.toggle("failed", m.status === "error");
  }

  function renderMessages() {
    const chat = currentChat();
    const messages = chat ? chat.messages : [];
    el.messages.replaceChildren(...messages.map(messageElement));
    el.empty.hidden = messages.length > 0;
    scrollToEnd(true);
  }

  function renderControls() {
    const chat = currentChat();
    el.send.hidden = !!busy;
    el.stop.hidden = !busy;
    el.regenerate.disabled = !!busy || !chat || !chat.messages.length;
  }

  function renderAll() {
    renderChats();
    renderMessages();
    renderControls();
  }

  function nearEnd() {
    const m = el.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }

  function scrollToEnd(force) {
    if (force || nearEnd()) el.messages.scrollTop = el.messages.scrollHeight;
  }

  // The streaming reply changes many times a second: repaint its bubble at most once a frame.
  function renderStreaming() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      if (!busy || busy.chat.id !== store.current) return;
      const index = busy.chat.messages.indexOf(busy.message);
      const article = el.messages.querySelector('article[data-index="' + index + '"]');
      if (!article) return;
      const follow = nearEnd();
      fillMessage(article, busy.message);
      if (follow) scrollToEnd(true);
    });
  }

  // ---- chat --------------------------------------------------------------------------------------------------

  function settingsBody() {
    const body = {};
    for (const [name, parse] of Object.entries(FIELDS)) {
      const input = el.settings[name];
      if (!input.validity.valid) throw new Error(input.labels[0].textContent + ": " + input.validationMessage);
      if (input.value.trim() === "") continue;
      const v = parse(input.value);
      if (!Number.isFinite(v)) throw new Error(input.labels[0].textContent + ": not a number");
      body[name] = v;
    }
    return body;
  }

  function requestMessages(chat) {
    const out = [];
    const system = el.systemPrompt.value.trim();
    if (system) out.push({ role: "system", content: system });
    for (const m of chat.messages) {
      if (m.role === "assistant" && (m.status === "error" || m.status === "streaming" || !m.content)) continue;
      out.push({ role: m.role, content: m.content });
    }
    return out;
  }

  async function send() {
    if (busy) return;
    const text = el.prompt.value;
    if (!text.trim()) {
      el.prompt.focus();
      return;
    }
    const sampling = checkedSettings();
    if (!sampling) return;
    let chat = currentChat();
    if (!chat) {
      chat = { id: newId(), title: titleOf(text), created: Date.now(), updated: Date.now(), messages: [] };
      store.chats.push(chat);
      store.current = chat.id;
    }
    chat.messages.push({ role: "user", content: text });
    el.prompt.value = "";
    await generate(chat, sampling);
  }

  async function regenerate() {
    const chat = currentChat();
    if (busy || !chat || !chat.messages.length) return;
    const sampling = checkedSettings();
    if (!sampling) return;
    if (chat.messages[chat.messages.length - 1].role === "assistant") chat.messages.pop();
    if (!chat.messages.length) return;
    await generate(chat, sampling);
  }

  function stop() {
    if (busy) busy.controller.abort();
  }

  // The settings as request fields, or null (and the error shown) when one is invalid.
  function checkedSettings() {
    try {
      return settingsBody();
    } catch (e) {
      showError(e.message);
      setSettingsOpen(true);
      return null;
    }
  }

  // Streams a reply to the chat's messages into a new assistant message at its end.
  async function generate(chat, sampling) {
    clearError();
    const message = { role: "assistant", content: "", status: "streaming", model: props && props.model };
    const body = Object.assign({ messages: requestMessages(chat), stream: true,
                                 stream_options: { include_usage: true } }, sampling);
    chat.messages.push(message);
    chat.updated = Date.now();
    busy = { chat, message, controller: new AbortController() };
    save();
    renderAll();
    let first = 0;
    try {
      const response = await fetch("v1/chat/completions", {
        method: "POST", headers: headers(true), body: JSON.stringify(body), signal: busy.controller.signal,
      });
      if (!response.ok) throw await errorOf(response);
      const finish = await readEvents(response, (chunk) => {
        for (const choice of chunk.choices || []) {
          if (choice.index !== 0) continue;
          const delta = (choice.delta && choice.delta.content) || "";
          if (delta) {
            if (!first) first = performance.now();
            message.content += delta;
          }
          if (choice.finish_reason) message.status = choice.finish_reason === "length" ? "length" : "done";
        }
        if (chunk.usage) {
          message.tokens = chunk.usage.completion_tokens;
          const seconds = first ? (performance.now() - first) / 1000 : 0;
          if (seconds > 0.05 && message.tokens > 1) message.tps = (message.tokens - 1) / seconds;
        }
        renderStreaming();
        saveSoon();
      });
      if (!finish && message.status === "streaming") throw new Error("the connection closed before the reply ended");
      if (message.status === "streaming") message.status = "done";
    } catch (e) {
      if (e.name === "AbortError") {
        message.status = "stopped";
      } else {
        message.status = "error";
        message.error = e.message;
        if (e.status === 401) askForKey(e.message);
        else showError(e.message);
      }
    } finally {
      busy = null;
      chat.updated = Date.now();
      save();
      if (chat.id === store.current) renderAll(); else renderChats();
      renderControls();
      if (matchMedia("(pointer: fine)").matches) el.prompt.focus();
    }
  }

  // Reads an OpenAI event stream (`data: {...}` lines, a blank line after each event, `data: [DONE]` last) and
  // calls onChunk with each parsed chunk. True once [DONE] came; an error event throws.
  async function readEvents(response, onChunk) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let data = [];
    const dispatch = () => {
      const payload = data.join("\n");
      data = [];
      if (payload === "[DONE]") return true;
      const chunk = JSON.parse(payload);
      if (chunk.error) {
        const err = new Error(chunk.error.message || "the server reported an error");
        err.status = typeof chunk.error.code === "number" ? chunk.error.code : undefined;
        throw err;
      }
      onChunk(chunk);
      return false;
    };
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).replace(/\r$/, "");
        buffer = buffer.slice(nl + 1);
        if (line === "") {
          if (data.length && dispatch()) {
            reader.cancel().catch(() => {});
            return true;
          }
        } else if (line.startsWith("data:")) {
          data.push(line.slice(5).replace(/^ /, ""));
        } // other fields and ":" comments: nothing to do
      }
      if (done) break;
    }
    if (buffer.startsWith("data:")) data.push(buffer.slice(5).replace(/^ /, ""));
    return data.length ? dispatch() : false;
  }

  function switchTo(id) {
    store.current = id;
    save();
    renderAll();
    setSidebarOpen(false);
    el.prompt.focus();
  }

  function newChat() {
    store.current = null;
    save();
    renderAll();
    setSidebarOpen(false);
    el.prompt.focus();
  }

  function deleteChat(id) {
    if (busy && busy.chat.id === id) busy.controller.abort();
    store.chats = store.chats.filter((c) => c.id !== id);
    if (store.current === id) store.current = null;
    save();
    renderAll();
  }

  // ---- settings ----------------------------------------------------------------------------------------------

  function loadSettings() {
    const s = readJSON(localStorage, SETTINGS_KEY, {});
    for (const name of Object.keys(FIELDS)) el.settings[name].value = s[name] == null ? "" : String(s[name]);
    el.systemPrompt.value = typeof s.system === "string" ? s.system : "";
    const remembered = localStorage.getItem(API_KEY);
    el.rememberKey.checked = remembered !== null;
    el.apiKey.value = remembered !== null ? remembered : sessionStorage.getItem(API_KEY) || "";
    if (el.apiKey.value) el.apiKeyRow.hidden = false;
  }

  function saveSettings() {
    const s = { system: el.systemPrompt.value };
    for (const name of Object.keys(FIELDS)) s[name] = el.settings[name].value;
    writeJSON(localStorage, SETTINGS_KEY, s);
  }

  function saveKey() {
    const key = el.apiKey.value.trim();
    try {
      localStorage.removeItem(API_KEY);
      sessionStorage.removeItem(API_KEY);
      if (key) (el.rememberKey.checked ? localStorage : sessionStorage).setItem(API_KEY, key);
    } catch (e) {
      showError("Could not save the API key: " + e.message);
    }
  }

  // ---- start -------------------------------------------------------------------------------------------------

  function start() {
    for (const [name, id] of Object.entries({
      error: "error", errorText: "error-text", errorClose: "error-close", modelName: "model-name",
      messages: "messages", empty: "empty", composer: "composer", prompt: "prompt", send: "send", stop: "stop",
      regenerate: "regenerate", conversations: "conversations", newChat: "new-chat",
      settingsToggle: "settings-toggle", sidebarToggle: "sidebar-toggle", settingsForm: "settings-form",
      systemPrompt: "system-prompt", apiKey: "api-key", apiKeyRow: "api-key-row", rememberKey: "remember-key",
      resetSettings: "reset-settings", serverInfo: "server-info",
    })) el[name] = $(id);
    el.settings = {};
    for (const name of Object.keys(FIELDS)) el.settings[name] = $(name);

    el.composer.addEventListener("submit", (e) => {
      e.preventDefault();
      send();
    });
    el.prompt.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        send();
      }
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && busy) stop();
    });
    el.stop.addEventListener("click", stop);
    el.regenerate.addEventListener("click", regenerate);
    el.newChat.addEventListener("click", newChat);
    el.errorClose.addEventListener("click", clearError);
    el.settingsToggle.addEventListener("click", () =>
      setSettingsOpen(!document.body.classList.contains("settings-open")));
    el.sidebarToggle.addEventListener("click", () =>
      setSidebarOpen(!document.body.classList.contains("sidebar-open")));
    el.settingsForm.addEventListener("input", (e) => {
      if (e.target === el.apiKey || e.target === el.rememberKey) saveKey();
      else saveSettings();
    });
    el.settingsForm.addEventListener("submit", (e) => e.preventDefault());
    let keyTimer = null;  // a new key: ask /props again once typing pauses
    el.apiKey.addEventListener("input", () => {
      clearTimeout(keyTimer);
      keyTimer = setTimeout(() => {
        if (!props) loadProps();
      }, 300);
    });
    el.resetSettings.addEventListener("click", () => {
      for (const name of Object.keys(FIELDS)) el.settings[name].value = "";
      el.systemPrompt.value = "";
      saveSettings();
    });
    // Another tab changed the conversations: show them (unless a reply is streaming here).
    window.addEventListener("storage", (e) => {
      if (e.key === CHATS_KEY && !busy) {
        store = loadChats();
        renderAll();
      }
    });
    window.addEventListener("pagehide", () => {
      if (saveTimer !== null) save();
    });
    // Tabs: each [role=tab] button shows the panel it controls.
    const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
    for (const tab of tabs) {
      tab.addEventListener("click", () => {
        for (const t of tabs) {
          const selected = t === tab;
          t.setAttribute("aria-selected", String(selected));
          $(t.getAttribute("aria-controls")).hidden = !selected;
        }
      });
    }

    $("image-form").addEventListener("submit", generateImage);

    loadSettings();
    renderAll();
    loadProps();
    el.prompt.focus();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
