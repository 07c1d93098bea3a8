// The web chat's conversation (chat.html): the transcript, the buttons, the message box and the uploads.
// Its requests go through chat-net.js (window.QinglianChatNet).
(function () {
  "use strict";

  var STORE_KEY = "qinglian.chat.v1";
  var MAX_STORED = 300;            // bubbles kept in sessionStorage
  var COUNTER_FROM = 2500;         // show the character counter above this
  var DESCRIPTION_LIMIT = 3000;    // the server explains when it is exceeded
  var POLL_MS = 15000;
  var UPLOAD_TIMEOUT_MS = 180000;
  // A receipt code as the bot shows it: four groups of four digits (no lookbehind, for older Safari).
  var CODE_RE = /(^|[^0-9])([0-9]{4}[ \u00a0][0-9]{4}[ \u00a0][0-9]{4}[ \u00a0][0-9]{4})(?![0-9])/;
  var LANG_RE = /^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})?$/;
  // the server refuses longer messages outright (bot/channels/web.py MAX_TEXT, which the page carries)
  var MAX_TEXT = parseInt(document.documentElement.getAttribute("data-max-text"), 10) || 0;
  // the city's limit for one evidence file, which the service writes into the page
  var MAX_FILE_BYTES = parseInt(document.documentElement.getAttribute("data-max-file-bytes"), 10) || 0;
  var NET = window.QinglianChatNet;
  var TEXT = NET.TEXT, api = NET.api, failure = NET.failure, newMessageId = NET.newMessageId, toPayload = NET.toPayload;

  var list = document.getElementById("messages");
  var form = document.getElementById("composer");
  var input = document.getElementById("input");
  var sendBtn = document.getElementById("send");
  var attachBtn = document.getElementById("attach");
  var fileInput = document.getElementById("file");
  var counter = document.getElementById("counter");
  var quickButtons = Array.prototype.slice.call(document.querySelectorAll("[data-command]"));

  var items = [];      // transcript: {role: "bot"|"user", text, choices?, columns?}
  var busy = false;
  var polling = false;
  var typingRow = null;
  var atBottom = true;

  // ---------- storage ----------
  function load() {
    try {
      var raw = window.sessionStorage.getItem(STORE_KEY);
      var data = raw ? JSON.parse(raw) : null;
      if (data && Array.isArray(data.items)) {
        return data.items.filter(function (it) {
          return it && (it.role === "bot" || it.role === "user") && typeof it.text === "string";
        });
      }
    } catch (e) { /* storage blocked or corrupt: start afresh */ }
    return [];
  }

  function save() {
    try {
      var kept = items.slice(-MAX_STORED);
      window.sessionStorage.setItem(STORE_KEY, JSON.stringify({ v: 1, items: kept }));
    } catch (e) { /* quota exceeded or storage blocked: the page still works */ }
  }

  // ---------- rendering ----------
  function scrollToEnd() {
    list.scrollTop = list.scrollHeight;
  }

  function removeTyping() {
    if (typingRow && typingRow.parentNode) typingRow.parentNode.removeChild(typingRow);
    typingRow = null;
  }

  function append(row) {
    // Keep the typing indicator last.
    if (typingRow && typingRow.parentNode === list) list.insertBefore(row, typingRow);
    else list.appendChild(row);
  }

  function makeRow(item) {
    var row = document.createElement("div");
    row.className = "row " + item.role;
    var bubble = document.createElement("div");
    bubble.className = "msg " + item.role;
    bubble.textContent = item.text;
    if (item.lang) bubble.setAttribute("lang", item.lang);  // read with the voice of its language
    row.appendChild(bubble);
    if (item.role === "bot") {
      var match = CODE_RE.exec(item.text);
      if (match) row.appendChild(makeCopyButton(match[2].replace(/\u00a0/g, " "), item.lang));
      if (item.choices && item.choices.length) row.appendChild(makeChoices(item.choices, item.columns));
    }
    row._item = item;
    return row;
  }

  function makeChoices(choices, columns) {
    var cols = Math.max(1, Math.min(parseInt(columns, 10) || 1, 4, choices.length));
    var box = document.createElement("div");
    box.className = "choices";
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", TEXT.options);
    box.style.setProperty("--cols", String(cols));
    box.style.setProperty("--cols-narrow", String(Math.min(cols, 3)));
    choices.forEach(function (choice) {
      var btn = document.createElement("button");
      btn.type = "button";
      btn.className = "choice";
      btn.setAttribute("data-key", choice.key);
      btn.textContent = choice.label;
      var stars = /^★+$/.test(choice.label) ? choice.label.length : 0;  // read as "5 stars", not "black star" × 5
      if (stars) btn.setAttribute("aria-label", stars + " 星 / " + stars + (stars > 1 ? " stars" : " star"));
      btn.disabled = busy;
      btn.addEventListener("click", function () {
        send({ choice: choice.key }, choice.label);
      });
      box.appendChild(btn);
    });
    return box;
  }

  // The page's own texts are "中文 / English": an element shows the half of the language given (else the
  // conversation's), marked with it so that a screen reader reads it with that voice.
  function showOwnText(element, text, lang) {
    var halves = text.split(" / ");
    if (halves.length !== 2) {
      element.textContent = text;
      return;
    }
    var english = /^en\b/.test(lang || conversationLanguage());
    element.textContent = halves[english ? 1 : 0];
    element.setAttribute("lang", english ? "en" : "zh-CN");
  }

  function makeCopyButton(code, lang) {
    var btn = document.createElement("button");
    btn.type = "button";
    btn.className = "copy-code";
    btn.setAttribute("data-code", code);
    showOwnText(btn, TEXT.copy, lang);
    btn.addEventListener("click", function () { copyCode(code, btn); });
    return btn;
  }

  function clearChoices() {
    items.forEach(function (it) { delete it.choices; delete it.columns; });
    Array.prototype.slice.call(list.querySelectorAll(".choices")).forEach(function (box) {
      box.parentNode.removeChild(box);
    });
  }

  function addItem(item) {
    items.push(item);
    var row = makeRow(item);
    append(row);
    return row;
  }

  function conversationLanguage() {
    for (var i = items.length - 1; i >= 0; i--) {  // the language of the bot's latest message, else the page's
      if (items[i].role === "bot" && items[i].lang) return items[i].lang;
    }
    return document.documentElement.lang || "zh-CN";
  }

  function addError(text, retry) {
    var row = document.createElement("div");
    row.className = "row error";
    var bubble = document.createElement("div");
    bubble.className = "msg error";
    bubble.setAttribute("role", "alert");
    showOwnText(bubble, text);  // the half of the language the resident is answered in
    row.appendChild(bubble);
    if (retry) {
      var btn = document.createElement("button");
      btn.type = "button";
      btn.className = "retry";
      btn.textContent = TEXT.retry;
      btn.addEventListener("click", function () {
        if (busy) return;
        row.parentNode.removeChild(row);
        retry();
      });
      row.appendChild(btn);
    }
    append(row);
    scrollToEnd();
  }

  // Bot messages from one reply (or the inbox). The choices of the last message that has any become
  // the live buttons; the buttons of older messages disappear.
  function showBotMessages(messages, isReply) {
    if (!messages.length) return;
    var last = -1;
    messages.forEach(function (m, i) {
      if (m && Array.isArray(m.choices) && m.choices.length) last = i;
    });
    // A reply always supersedes older buttons; a later notice only if it brings its own.
    if (isReply || last >= 0) clearChoices();
    messages.forEach(function (m, i) {
      if (!m) return;
      var item = { role: "bot", text: String(m.text == null ? "" : m.text) };
      if (typeof m.lang === "string" && LANG_RE.test(m.lang)) item.lang = m.lang;
      if (i === last) {
        item.choices = m.choices.map(function (c) { return { key: String(c.key), label: String(c.label) }; });
        item.columns = m.columns;
      }
      if (!item.text && !item.choices) return;
      addItem(item);
    });
    save();
    scrollToEnd();
  }

  // The button a keyboard user pressed is disabled while the step runs and then replaced, which leaves the focus
  // on the page's body: it goes on to the new question's first choice, or else to the message box.
  function keepFocus() {
    var active = document.activeElement;
    if (active && active !== document.body && document.contains(active) && !active.disabled) return;
    var boxes = list.querySelectorAll(".choices");
    var first = boxes.length ? boxes[boxes.length - 1].querySelector("button.choice") : null;
    (first || input).focus({ preventScroll: true });
  }

  function setBusy(value) {
    busy = value;
    sendBtn.disabled = value;
    attachBtn.disabled = value;
    quickButtons.forEach(function (b) { b.disabled = value; });
    Array.prototype.slice.call(list.querySelectorAll("button.choice, button.retry")).forEach(function (b) {
      b.disabled = value;
    });
    list.setAttribute("aria-busy", value ? "true" : "false");
    if (value) {
      if (!typingRow) {
        typingRow = document.createElement("div");
        typingRow.className = "row bot typing-row";
        var dots = document.createElement("div");
        dots.className = "typing";
        dots.setAttribute("role", "status");
        dots.setAttribute("aria-label", TEXT.typing);
        dots.appendChild(document.createElement("i"));
        dots.appendChild(document.createElement("i"));
        dots.appendChild(document.createElement("i"));
        typingRow.appendChild(dots);
        list.appendChild(typingRow);
        scrollToEnd();
      }
    } else {
      removeTyping();
    }
  }

  // Resolves to true on success, false on failure (with an error bubble shown).
  function exchange(userText, request, retryOnFailure) {
    if (busy) return Promise.resolve(false);
    var pressed = document.activeElement;  // disabled while the step runs: the focus returns to it if it fails
    var userRow = null;
    if (userText) {
      userRow = addItem({ role: "user", text: userText });
      save();
    }
    setBusy(true);
    scrollToEnd();
    return request().then(function (messages) {
      setBusy(false);
      showBotMessages(messages, true);
      tellOtherTabs(userText, messages, true);
      keepFocus();
      return true;
    }, function (err) {
      setBusy(false);
      if (userRow) {
        // Not part of the conversation: mark it and keep it out of the stored transcript.
        var at = items.indexOf(userRow._item);
        if (at >= 0) items.splice(at, 1);
        save();
        userRow.querySelector(".msg").classList.add("failed");
        var note = document.createElement("div");
        note.className = "note";
        note.textContent = TEXT.notSent;
        userRow.appendChild(note);
      }
      addError((err && err.friendly) || TEXT.network, (!(err && err.final) && retryOnFailure) || null);
      if (pressed && pressed !== document.body && document.contains(pressed) && !pressed.disabled) {
        pressed.focus({ preventScroll: true });
      } else {
        keepFocus();
      }
      return false;
    });
  }

  // Every message carries an id. A message whose answer never came (the request timed out or the connection
  // dropped, though the service may have handled it) keeps its id when it is sent again — typed again, pressed
  // again or retried — so the service handles it once and says so, instead of taking it for the next answer.
  var unanswered = null;  // {key: the payload as JSON, id}

  function send(payload, userText, retry) {
    var key = JSON.stringify(payload);
    var id = unanswered && unanswered.key === key ? unanswered.id : newMessageId();
    return exchange(userText, function () {
      return api("POST", "/chat/api/message", payload, undefined, id);
    }, retry).then(function (ok) {
      unanswered = ok ? null : { key: key, id: id };
      return ok;
    });
  }

  function megabytes(bytes) {
    return (bytes / 1048576).toFixed(1).replace(/\.0$/, "");
  }

  function upload(file, messageId) {
    var id = messageId || newMessageId();  // the same id when this file is retried
    var data = new FormData();
    data.append("file", file, file.name);
    return exchange("📎 " + (file.name || "file"), function () {
      if (MAX_FILE_BYTES && file.size > MAX_FILE_BYTES) {  // said at once, not after uploading it all
        var size = megabytes(file.size), limit = megabytes(MAX_FILE_BYTES);
        return Promise.reject(failure("文件太大（" + size + " MB），每个文件最大 " + limit + " MB / The file is " +
                                      size + " MB; each file may be at most " + limit + " MB", true));
      }
      return api("POST", "/chat/api/upload", data, UPLOAD_TIMEOUT_MS, id);
    }, function () { upload(file, id); });  // a file not sent is offered again: no need to find it once more
  }

  function start() {
    send({ command: "start" }, null, start).then(function (ok) { if (ok) poll(); });
  }

  function poll() {
    if (busy || polling || document.visibilityState === "hidden") return;
    polling = true;
    api("GET", "/chat/api/inbox").then(function (messages) {
      polling = false;
      if (messages.length) {
        showBotMessages(messages, false);
        tellOtherTabs(null, messages, false);  // the inbox hands each message once: to this tab
      }
    }, function () {
      polling = false;  // silent: the next poll tries again
    });
  }


  // ---------- other tabs ----------
  // Tabs of one browser share its cookie, so they are one conversation. Each tab shows what was said in the
  // others, so its buttons are always the current question's: a second tab that starts over, or answers, leaves
  // no button in the first that belongs to a question already gone.
  var tabs = null;
  try {
    tabs = typeof BroadcastChannel === "function" ? new BroadcastChannel(STORE_KEY) : null;
  } catch (e) { tabs = null; }

  function tellOtherTabs(userText, messages, isReply) {
    if (!tabs) return;
    try {
      tabs.postMessage({ user: userText || null, messages: messages, reply: !!isReply });
    } catch (e) { /* a tab that cannot be told still works alone */ }
  }

  if (tabs) {
    tabs.onmessage = function (event) {
      var data = event.data;
      if (!data || !Array.isArray(data.messages)) return;
      if (typeof data.user === "string" && data.user) addItem({ role: "user", text: data.user });
      if (data.messages.length) showBotMessages(data.messages, !!data.reply);
      else save();
    };
  }

  // ---------- input ----------
  function autosize() {
    input.style.height = "auto";
    var max = 140;
    var h = Math.min(input.scrollHeight + 2, max);
    input.style.height = h + "px";
    input.style.overflowY = input.scrollHeight + 2 > max ? "auto" : "hidden";
    if (atBottom) scrollToEnd();
  }

  function updateCounter() {
    var length = Array.from ? Array.from(input.value).length : input.value.length;
    if (length > COUNTER_FROM) {
      counter.hidden = false;
      counter.textContent = length + " / " + DESCRIPTION_LIMIT;
      counter.classList.toggle("over", length > DESCRIPTION_LIMIT);
    } else {
      counter.hidden = true;
      counter.textContent = "";
    }
  }

  function submitText() {
    if (busy) return;
    var raw = input.value;
    var text = raw.trim();
    if (!text) return;
    if (MAX_TEXT && text.length > MAX_TEXT) {
      addError(TEXT.tooLong.replace("{max}", String(MAX_TEXT))
                           .replace("{max_en}", MAX_TEXT.toLocaleString("en-US")));
      return;
    }
    input.value = "";
    autosize();
    updateCounter();
    send(toPayload(text), text).then(function (ok) {
      if (!ok) {
        // Never lose what the user typed: put it back (ahead of anything typed meanwhile).
        input.value = input.value ? raw + "\n" + input.value : raw;
        autosize();
        updateCounter();
      }
    });
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    submitText();
  });

  input.addEventListener("keydown", function (e) {
    // Enter sends; Shift+Enter is a new line; Enter that confirms an IME candidate does nothing here.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submitText();
    }
  });

  input.addEventListener("input", function () {
    autosize();
    updateCounter();
  });

  attachBtn.addEventListener("click", function () {
    if (!busy) fileInput.click();
  });

  fileInput.addEventListener("change", function () {
    var files = Array.prototype.slice.call(fileInput.files || []);
    fileInput.value = "";  // choosing the same file again fires "change" again
    // each file is sent, one after the other: one that fails says why (with "Retry" where sending again can help)
    // and the others still go
    var chain = Promise.resolve(true);
    files.forEach(function (file) {
      chain = chain.then(function () { return upload(file); });
    });
  });

  quickButtons.forEach(function (btn) {
    btn.addEventListener("click", function () {
      send({ command: btn.getAttribute("data-command") }, btn.getAttribute("aria-label"));
    });
  });

  // ---------- copying the receipt code ----------
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.top = "-1000px";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok;
  }

  function copyCode(code, btn) {
    function copied() {
      var lang = btn.getAttribute("lang");
      showOwnText(btn, TEXT.copied, lang);
      setTimeout(function () { showOwnText(btn, TEXT.copy, lang); }, 2500);
    }
    function failed() { showOwnText(btn, TEXT.copyFailed, btn.getAttribute("lang")); btn.textContent += code; }
    if (navigator.clipboard && navigator.clipboard.writeText && window.isSecureContext) {
      navigator.clipboard.writeText(code).then(copied, function () {
        if (fallbackCopy(code)) copied(); else failed();
      });
    } else if (fallbackCopy(code)) {
      copied();
    } else {
      failed();
    }
  }

  // ---------- start ----------
  items = load();
  if (items.length) {
    items.forEach(function (item) { list.appendChild(makeRow(item)); });
    scrollToEnd();
    poll();
  } else {
    start();
  }

  setInterval(poll, POLL_MS);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") poll();
  });
  list.addEventListener("scroll", function () {
    atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 48;
  }, { passive: true });
  // The on-screen keyboard shrinks the viewport: stay on the newest message if the user was there.
  window.addEventListener("resize", function () { if (atBottom) scrollToEnd(); });
  autosize();
})();

